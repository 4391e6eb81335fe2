# The layouts of the tiers' messages: the market's (BID ... RECONCILE_ACK,
# INTENT, MARKET_TEL), containment's (ACCUSE ... BID_RECEIPT) and replication's
# (JOIN ... JOIN_REFUSED), as msgs.LAYOUTS has the cluster's own.
#
# A plain cluster member never sends these, and most never parse one: they
# live here so its heap does not hold them (~5 KB on the 64-bit unix port,
# docs/HEAP.md). msgs.layout() imports this module the first time it is
# asked for one of these types (a market node, an auditor, a cluster that
# takes a JOIN, or a stray frame of such a type), and every msgs function
# (pack, unpack, convert, name) works on them as before: the type numbers
# stay in msgs.py, the wire bytes are the same (tests/core/golden).
# A new message may still go into msgs.LAYOUTS (looked up first).

from micropython import const

from node import msgs as m

# Containment's AUDIT_MISS (0x97, msgs._AUDIT_MISS): its name lives here, not in
# msgs' globals, which a plain board holds (one more name grew them ~1.2 KB).
AUDIT_MISS = const(0x97)  # auditor -> coordinator: resend these AUDIT_BID rows of a round (node/rowfetch.py)
BID_RECEIPT = const(0x98)  # coordinator -> bidder, in a region with auditors: this BID is in my book (node/bidcopy.py)

# type -> (name, struct format, [field names]), version 1 (msgs.LAYOUTS' shape).
LAYOUTS = {
    m.MARKET_TEL: (
        "market_tel",
        "<IIIIIIIIHHHHBB",
        ["region_term", "price_round", "price_age_s", "produced", "lost", "paused_feed_s", "paused_parts_s",
         "paused_logistics_s", "leases", "bids", "awards", "refused", "mode", "region_role"],
    ),
    m.INTENT: (
        "intent",
        "<IIIHHBB",
        ["seq", "campaign_start_s", "campaign_end_s", "growth_permille", "cover_permille", "phase", "preapproved"],
    ),
    m.BID: (
        "bid",
        "<IIIHHBBBBB",
        ["round", "seq", "first", "resource", "price", "classes", "span", "period", "count", "flags"],
    ),
    m.AWARD: (
        "award",
        "<IIIIHHHBBBB",
        ["term", "round", "seq", "first", "resource", "holder", "price", "span", "period", "count", "flags"],
    ),
    m.PRICES: (
        "prices",
        "<IIIIHHBHHHHHHHH",
        ["term", "round", "digest", "intent_seq", "region", "awards", "status",
         "p0", "p1", "p2", "p3", "p4", "p5", "p6", "p7"],
    ),
    m.ROUND_ACK: ("round_ack", "<IIIHB", ["term", "round", "digest", "awards", "status"]),
    m.RELEASE: (
        "release",
        "<IIIHHBBB",
        ["seq", "first", "from_slot", "resource", "holder", "span", "period", "count"],
    ),
    m.RECONCILE: (
        "reconcile",
        "<IIIIIHHH",
        ["seq", "outage_s", "produced", "lost", "paused_s", "used", "unused", "deferred"],
    ),
    m.RECONCILE_ACK: ("reconcile_ack", "<IIHH", ["term", "seq", "released", "refused"]),
    m.ACCUSE: (
        "accuse",
        "<IIHHBBIIHHHHHIIBHH",
        ["term", "round", "accused", "region", "reason", "lineage", "claimed_digest", "own_digest",
         "claimed_awards", "own_awards", "holder", "claimed_res", "own_res", "claimed_first", "own_first",
         "price_class", "claimed_price", "own_price"],
    ),
    m.AUDIT_BID: (
        "audit_bid",
        "<IHHHIIIHHBBBBB",
        ["round", "rows", "row", "holder", "before_digest", "seq", "first", "resource", "price", "classes", "span",
         "period", "count", "flags"],
    ),
    m.REINSTATE: ("reinstate", "<HH", ["region", "node"]),
    m.WITNESS: ("witness", "<HHIIB", ["region", "node", "term", "own", "claims"]),
    m.BID_SEEN: ("bid_seen", "<IIHI", ["round", "seq", "coordinator", "digest"]),
    m.SEVER: ("sever", "<HB", ["region", "severed"]),
    m.HELD: ("held", "<HHB", ["region", "node", "state"]),
    AUDIT_MISS: ("audit_miss", "<IHI", ["round", "from_row", "missing"]),
    BID_RECEIPT: ("bid_receipt", "<III", ["round", "seq", "digest"]),
    m.JOIN: ("join", "<HHBBH", ["parent", "cluster", "lineage", "hw_gen", "fw"]),
    m.ROSTER: ("roster", "<IHHHB", ["term", "epoch", "node", "parent", "members"]),
    m.SPLIT: ("split", "<IHHHBB", ["term", "epoch", "new_cluster", "pivot", "low", "high"]),
    m.DAUGHTER: ("daughter", "<HBBBB", ["daughters", "lineage", "hw_gen", "fw_major", "fw_minor"]),
    m.JOIN_REFUSED: ("join_refused", "<BBHHI", ["reason", "type", "src", "subject", "count"]),
    # CATCHUP (node/catchup.py; its number is not in msgs.py: a plain board's msgs holds no name for it).
    # Variable: a 16-byte head ("<IHHHHHH"), then (node u16, parent u16) per member.
    0xA5: ("catchup", None, ["term", "epoch", "cluster", "first", "count", "split_first", "split_count",
                                  "entries"]),
}

# version -> {type: layout} of the layouts that version changed (msgs._CHANGED's shape).
CHANGED = {  # type: dict[int, dict[int, tuple]]
    # Version 4, the market's new line: BID carries the bidder's hardware
    # generation (the coordinator checks the classes against it, not a roster
    # table: node/market.py check_bid), AWARD the lease's end in mission
    # seconds (the holder checks it against its own slot clock: a coordinator
    # with another slot length is refused, node/trader.py on_award). 0 in
    # either: not said (a frame of an older version).
    4: {
        m.BID: (
            "bid",
            "<IIIHHBBBBBB",
            ["round", "seq", "first", "resource", "price", "classes", "span", "period", "count", "flags", "hw_gen"],
        ),
        m.AWARD: (
            "award",
            "<IIIIHHHBBBBI",
            ["term", "round", "seq", "first", "resource", "holder", "price", "span", "period", "count", "flags",
             "end_s"],
        ),
    },
}
