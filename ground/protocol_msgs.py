"""The wire format's messages, declared with `construct` (ground/protocol.py
is the codec's API): one Struct per message type, field for field as
firmware/node/msgs.py's all_layouts() (its LAYOUTS and node/msgs_tiers.py's),
the version changes (CHANGED, msgs.py's _CHANGED and msgs_tiers.py's CHANGED)
and Message, the Switch over them a payload is parsed with."""

from construct import (
    Adapter,
    Bytes,
    Check,
    Container,
    GreedyBytes,
    GreedyRange,
    GreedyString,
    Int8ul,
    Int16ul,
    Int32ul,
    ListContainer,
    Struct,
    Switch,
    Terminated,
    len_,
    this,
)

from ground.protocol_frame import VERSION, VERSION_MIN, _Expect

# ---- messages (msgs.py's LAYOUTS, field for field) -------------------------

HELLO = 0x01
HEARTBEAT = 0x02
PREVOTE_REQUEST = 0x10
PREVOTE = 0x11
VOTE_REQUEST = 0x12
VOTE = 0x13
COORDINATOR = 0x14
STANDBY = 0x15
STATE = 0x20
TELEMETRY = 0x30
MARKET_TEL = 0x31
CONFIG = 0x40
INTENT = 0x41
LOG = 0x50
JOURNAL = 0x70
UPD_OFFER = 0x80  # software updates (docs/UPDATES.md): ground -> node
UPD_CHUNK = 0x81
UPD_ACK = 0x82  # node -> ground
UPD_CMD = 0x83  # ground -> node
BID = 0x60
AWARD = 0x61
PRICES = 0x62
ROUND_ACK = 0x63
RELEASE = 0x64
RECONCILE = 0x65
RECONCILE_ACK = 0x66
ACCUSE = 0x90  # fault containment (docs/CONTAINMENT.md): auditor -> electors + ground
AUDIT_BID = 0x91  # coordinator -> each auditor: one bid row of a closed round
REINSTATE = 0x92  # ground -> the region's electors: a node out of quarantine (ground intent)
WITNESS = 0x93  # elector -> the region's electors + ground: a member's stale-term claims seen first hand
BID_SEEN = 0x94  # trader -> each of the region's auditors: the digest of a bid it sent the coordinator
SEVER = 0x95  # ground -> the other regions' electors: refuse region R's frames (severed 1), or no more (0)
HELD = 0x96  # elector -> a node's cluster address: that node's quarantine state in the elector's table
AUDIT_MISS = 0x97  # auditor -> coordinator: resend these AUDIT_BID rows of a round
BID_RECEIPT = 0x98  # coordinator -> bidder, in a region with auditors: this BID is in my book
JOIN = 0xA0  # replication (node/join.py): daughter -> its cluster
ROSTER = 0xA1  # coordinator -> cluster: a node joined
SPLIT = 0xA2  # coordinator -> cluster: the upper half becomes another cluster
DAUGHTER = 0xA3  # parent -> ground: a daughter is complete
JOIN_REFUSED = 0xA4  # node -> ground: a JOIN, ROSTER, SPLIT or CATCHUP refused
CATCHUP = 0xA5  # coordinator -> a node a split passed by: the roster it belongs to now
JOIN_REFUSAL_NAMES = ("unknown", "duplicate", "full", "split_small", "not_coordinator", "stale",
                      "foreign")  # node/join.py R_*
ACCUSE_REASON_BITS = ((1, "digest"), (2, "prices"), (4, "awards"))  # msgs.ACCUSE_*

ROLE_NAMES = ("follower", "candidate", "coordinator", "standby")
MODE_NAMES = ("normal", "cutoff", "conservative", "reconciling")  # MARKET_TEL mode
ROUND_STATUS_NAMES = ("", "complete", "void", "prepare", "sync", "resync", "query", "fetch")  # PRICES status

Hello = Struct(
    "hw_gen" / Int8ul,
    "fw_major" / Int8ul,
    "fw_minor" / Int8ul,
    "lineage" / Int8ul,
    "proto_min" / Int8ul,
    "proto_max" / Int8ul,
    "cluster" / Int16ul,
)
Heartbeat = Struct(
    "term" / Int32ul,
    "coordinator" / Int16ul,
    "standby" / Int16ul,
    "role" / Int8ul,
    "lineage" / Int8ul,
    "rec_version" / Int16ul,
    "rec_data" / Int32ul,
    "digest" / Int32ul,
)
ALIVE_UNKNOWN = 0  # what a version-1 heartbeat is read as saying for `alive`
HeartbeatV2 = Struct(  # version 2 appends one field
    *Heartbeat.subcons,
    "alive" / Int8ul,  # members the sender hears alive, itself included (>= 1)
)
TermOnly = Struct("term" / Int32ul)  # PREVOTE_REQUEST, VOTE_REQUEST
Ballot = Struct("term" / Int32ul, "candidate" / Int16ul, "granted" / Int8ul)  # PREVOTE, VOTE
Appointment = Struct("term" / Int32ul, "standby" / Int16ul)  # COORDINATOR, STANDBY
StateEntry = Struct("node" / Int16ul, "version" / Int16ul, "data" / Int32ul)
STATE_MAX_ENTRIES = 26  # (MAX_PAYLOAD 224 - head 10) // 8
State = Struct(
    "term" / Int32ul,
    "digest" / Int32ul,
    "first" / Int8ul,  # index of entries[0] in the coordinator's table
    "total" / Int8ul,  # entries in the whole table
    "entries" / GreedyRange(StateEntry),
    Check(this.first + len_(this.entries) <= this.total),
)
Telemetry = Struct(
    "role" / Int8ul,
    "term" / Int32ul,
    "coordinator" / Int16ul,
    "standby" / Int16ul,
    "digest" / Int32ul,
    "alive" / Int8ul,
    "suspect" / Int8ul,
    "bad_frames" / Int16ul,  # saturates at 65535: version 3 adds counters that do not
)
TelemetryV3 = Struct(  # version 3 appends u32 refusal counters and the board's heap
    *Telemetry.subcons,
    "rejects" / Int32ul,  # every refused frame or line, all reasons; wraps at 2**32
    "unknown_src" / Int32ul,  # from a source in none of the node's rosters
    "long_lines" / Int32ul,  # too_long: lines over MAX_LINE (the board's splitter cuts them)
    "replayed" / Int32ul,  # replay: auth counters already accepted, before or after a reboot
    "heap_free" / Int32ul,  # bytes free on the board's heap (0: not known, in-process)
    "heap_min" / Int32ul,  # the lowest heap_free since boot
)
ConfigMsg = Struct("time_scale_milli" / Int32ul, "fault_flags" / Int16ul)
Log = Struct("text" / GreedyString("utf8"))
JOURNAL_KINDS = ("", "boot", "term", "vote", "counter", "log", "rx", "poll", "seed")  # firmware/runtime/journal.py
JournalEntry = Struct("kind" / Int8ul, "t_ms" / Int32ul, "arg" / Int32ul)
Journal = Struct(  # the board shell's core calls (kind, board mission ms, arg)
    "first" / Int32ul,
    "entries" / GreedyRange(JournalEntry),
)

# The regional market tier (docs/MARKET.md). Slots are market slots; *_s are
# mission seconds; prices are credits per slot.
MarketTel = Struct(
    "region_term" / Int32ul,
    "price_round" / Int32ul,
    "price_age_s" / Int32ul,  # how old the prices the node acts on are
    "produced" / Int32ul,  # units
    "lost" / Int32ul,  # units short of the uncoordinated ideal
    "paused_feed_s" / Int32ul,
    "paused_parts_s" / Int32ul,
    "paused_logistics_s" / Int32ul,
    "leases" / Int16ul,
    "bids" / Int16ul,  # sent, wraps
    "awards" / Int16ul,  # received, wraps
    "refused" / Int16ul,  # market input this node refused
    "mode" / Int8ul,  # MODE_NAMES
    "region_role" / Int8ul,  # ROLE_NAMES, in the regional election
)
Intent = Struct(
    "seq" / Int32ul,
    "campaign_start_s" / Int32ul,
    "campaign_end_s" / Int32ul,
    "growth_permille" / Int16ul,
    "cover_permille" / Int16ul,
    "phase" / Int8ul,
    "preapproved" / Int8ul,
)
Bid = Struct(
    "round" / Int32ul,
    "seq" / Int32ul,
    "first" / Int32ul,
    "resource" / Int16ul,  # 0xFFFF: any resource of the classes
    "price" / Int16ul,
    "classes" / Int8ul,  # bit mask over the 8 resource classes
    "span" / Int8ul,
    "period" / Int8ul,
    "count" / Int8ul,
    "flags" / Int8ul,  # 1 flex, 2 asap, 4 cover
)
Award = Struct(
    "term" / Int32ul,
    "round" / Int32ul,
    "seq" / Int32ul,  # the bid it answers
    "first" / Int32ul,
    "resource" / Int16ul,
    "holder" / Int16ul,
    "price" / Int16ul,
    "span" / Int8ul,
    "period" / Int8ul,
    "count" / Int8ul,
    "flags" / Int8ul,  # 1 replica, 2 sync, 4 resend, 8 merge, 16 claim
)
BidV4 = Struct(  # version 4 appends the bidder's hardware generation
    *Bid.subcons,
    "hw_gen" / Int8ul,  # 0: not said (the coordinator's roster table decides)
)
AwardV4 = Struct(  # version 4 appends the lease's end
    *Award.subcons,
    "end_s" / Int32ul,  # mission second its last occurrence ends; 0: not said
)
Prices = Struct(
    "term" / Int32ul,
    "round" / Int32ul,
    "digest" / Int32ul,  # ledger digest (PREPARE)
    "intent_seq" / Int32ul,
    "region" / Int16ul,
    "awards" / Int16ul,
    "status" / Int8ul,  # ROUND_STATUS_NAMES
    "p0" / Int16ul,  # one price per resource class
    "p1" / Int16ul,
    "p2" / Int16ul,
    "p3" / Int16ul,
    "p4" / Int16ul,
    "p5" / Int16ul,
    "p6" / Int16ul,
    "p7" / Int16ul,
)
RoundAck = Struct(
    "term" / Int32ul, "round" / Int32ul, "digest" / Int32ul, "awards" / Int16ul, "status" / Int8ul
)
Release = Struct(
    "seq" / Int32ul,
    "first" / Int32ul,
    "from_slot" / Int32ul,
    "resource" / Int16ul,
    "holder" / Int16ul,
    "span" / Int8ul,
    "period" / Int8ul,
    "count" / Int8ul,
)
Reconcile = Struct(
    "seq" / Int32ul,
    "outage_s" / Int32ul,
    "produced" / Int32ul,
    "lost" / Int32ul,
    "paused_s" / Int32ul,
    "used" / Int16ul,
    "unused" / Int16ul,
    "deferred" / Int16ul,
)
ReconcileAck = Struct("term" / Int32ul, "seq" / Int32ul, "released" / Int16ul, "refused" / Int16ul)
Accuse = Struct(
    "term" / Int32ul,
    "round" / Int32ul,
    "accused" / Int16ul,
    "region" / Int16ul,
    "reason" / Int8ul,
    "lineage" / Int8ul,
    "claimed_digest" / Int32ul,
    "own_digest" / Int32ul,
    "claimed_awards" / Int16ul,
    "own_awards" / Int16ul,
    "holder" / Int16ul,
    "claimed_res" / Int16ul,
    "own_res" / Int16ul,
    "claimed_first" / Int32ul,
    "own_first" / Int32ul,
    "price_class" / Int8ul,
    "claimed_price" / Int16ul,
    "own_price" / Int16ul,
)
AuditBid = Struct(
    "round" / Int32ul,
    "rows" / Int16ul,
    "row" / Int16ul,
    "holder" / Int16ul,
    "before_digest" / Int32ul,
    "seq" / Int32ul,
    "first" / Int32ul,
    "resource" / Int16ul,
    "price" / Int16ul,
    "classes" / Int8ul,
    "span" / Int8ul,
    "period" / Int8ul,
    "count" / Int8ul,
    "flags" / Int8ul,
)

Reinstate = Struct(
    "region" / Int16ul,
    "node" / Int16ul,
)

Witness = Struct(
    "region" / Int16ul,
    "node" / Int16ul,  # the member that claimed
    "term" / Int32ul,  # the stale term it last claimed
    "own" / Int32ul,  # the witness's term when it saw it
    "claims" / Int8ul,  # stale claims seen within the window
)
BidSeen = Struct(
    "round" / Int32ul,  # the round the bid is for (BID's round)
    "seq" / Int32ul,  # the bid's sequence number
    "coordinator" / Int16ul,  # the regional coordinator the bid went to
    "digest" / Int32ul,  # crc32 of its fields as AUDIT_BID rows carry them (node/bidcopy.py)
)
Sever = Struct("region" / Int16ul, "severed" / Int8ul)  # the region; 1 severed, 0 reinstated
Held = Struct("region" / Int16ul, "node" / Int16ul, "state" / Int8ul)  # 0 normal, 1 suspect, 2 quarantined, 3 probation
AuditMiss = Struct(
    "round" / Int32ul,  # the round whose AUDIT_BID rows the auditor lacks
    "from_row" / Int16ul,  # the first row `missing` covers
    "missing" / Int32ul,  # bit i set: row from_row + i is missing
)
BidReceipt = Struct(
    "round" / Int32ul,  # the round the bid is for (BID's round)
    "seq" / Int32ul,  # the bid's sequence number
    "digest" / Int32ul,  # crc32 of the bid as the coordinator got it, as AUDIT_BID rows carry it (node/bidcopy.py)
)

Join = Struct("parent" / Int16ul, "cluster" / Int16ul, "lineage" / Int8ul, "hw_gen" / Int8ul, "fw" / Int16ul)
Roster = Struct("term" / Int32ul, "epoch" / Int16ul, "node" / Int16ul, "parent" / Int16ul, "members" / Int8ul)
Split = Struct("term" / Int32ul, "epoch" / Int16ul, "new_cluster" / Int16ul, "pivot" / Int16ul, "low" / Int8ul,
               "high" / Int8ul)
Daughter = Struct("daughters" / Int16ul, "lineage" / Int8ul, "hw_gen" / Int8ul, "fw_major" / Int8ul,
                  "fw_minor" / Int8ul)
JoinRefused = Struct("reason" / Int8ul, "type" / Int8ul, "src" / Int16ul, "subject" / Int16ul, "count" / Int32ul)
CatchupEntry = Struct("node" / Int16ul, "parent" / Int16ul)  # a member; parent 0: not a daughter
Catchup = Struct(  # node/catchup.py: a cluster's roster now, sent to one node a split passed by
    "term" / Int32ul,
    "epoch" / Int16ul,
    "cluster" / Int16ul,
    "first" / Int16ul,  # its spare ids
    "count" / Int16ul,
    "split_first" / Int16ul,  # its split block
    "split_count" / Int16ul,
    "entries" / GreedyRange(CatchupEntry),
)

# Software updates (firmware/node/update.py, docs/UPDATES.md). Byte fields
# read as hex strings, so a parsed message is JSON as it stands (traces).


class _Hex(Adapter):
    def _decode(self, obj, context, path):
        return bytes(obj).hex()

    def _encode(self, obj, context, path):
        return bytes.fromhex(obj) if isinstance(obj, str) else bytes(obj)


UpdOffer = Struct(
    "upd_id" / Int32ul,  # the transfer's id, chosen by the ground
    "digest" / _Hex(Bytes(32)),  # sha256 of the whole image (manifest + files)
    "size" / Int32ul,  # image bytes
    "chunks" / Int16ul,
    "chunk_size" / Int16ul,  # bytes per chunk but the last (at most 218)
    "fw_major" / Int8ul,
    "fw_minor" / Int8ul,
    "lineage" / Int8ul,
    "flags" / Int8ul,  # 1: test build, 2: declares defects
)
UpdChunk = Struct(
    "upd_id" / Int32ul,
    "index" / Int16ul,
    "data" / _Hex(GreedyBytes),
    Check(lambda ctx: len(ctx.data) > 0),  # as the node's unpack_chunk: a chunk holds a byte at least
)
UpdAck = Struct(
    "upd_id" / Int32ul,
    "state" / Int8ul,  # update.STATE_NAMES
    "reason" / Int8ul,  # the last refusal, update.REASON_NAMES
    "have" / Int16ul,  # chunks received
    "base" / Int16ul,  # first chunk the bitmap covers (a multiple of 8)
    "fw_major" / Int8ul,  # the version the node runs
    "fw_minor" / Int8ul,
    "bitmap" / _Hex(GreedyBytes),  # bit i of byte j: chunk base + 8j + i received
)
UpdCmd = Struct("upd_id" / Int32ul, "action" / Int8ul)  # 1 install, 2 rollback, 3 status, 4 abort

# type -> (name, Struct)
MESSAGES = {
    HELLO: ("hello", Hello),
    HEARTBEAT: ("heartbeat", Heartbeat),
    PREVOTE_REQUEST: ("prevote_request", TermOnly),
    PREVOTE: ("prevote", Ballot),
    VOTE_REQUEST: ("vote_request", TermOnly),
    VOTE: ("vote", Ballot),
    COORDINATOR: ("coordinator", Appointment),
    STANDBY: ("standby", Appointment),
    STATE: ("state", State),
    TELEMETRY: ("telemetry", Telemetry),
    CONFIG: ("config", ConfigMsg),
    LOG: ("log", Log),
    JOURNAL: ("journal", Journal),
    MARKET_TEL: ("market_tel", MarketTel),
    INTENT: ("intent", Intent),
    BID: ("bid", Bid),
    AWARD: ("award", Award),
    PRICES: ("prices", Prices),
    ROUND_ACK: ("round_ack", RoundAck),
    RELEASE: ("release", Release),
    RECONCILE: ("reconcile", Reconcile),
    RECONCILE_ACK: ("reconcile_ack", ReconcileAck),
    ACCUSE: ("accuse", Accuse),
    AUDIT_BID: ("audit_bid", AuditBid),
    REINSTATE: ("reinstate", Reinstate),
    WITNESS: ("witness", Witness),
    BID_SEEN: ("bid_seen", BidSeen),
    SEVER: ("sever", Sever),
    HELD: ("held", Held),
    AUDIT_MISS: ("audit_miss", AuditMiss),
    BID_RECEIPT: ("bid_receipt", BidReceipt),
    JOIN: ("join", Join),
    ROSTER: ("roster", Roster),
    SPLIT: ("split", Split),
    DAUGHTER: ("daughter", Daughter),
    JOIN_REFUSED: ("join_refused", JoinRefused),
    CATCHUP: ("catchup", Catchup),
    UPD_OFFER: ("upd_offer", UpdOffer),
    UPD_CHUNK: ("upd_chunk", UpdChunk),
    UPD_ACK: ("upd_ack", UpdAck),
    UPD_CMD: ("upd_cmd", UpdCmd),
}
TYPES = {name: t for t, (name, _) in MESSAGES.items()}

# MESSAGES is protocol version 1. version -> {type: Struct} of the layouts a
# version changed (msgs.py's _CHANGED); a type not listed keeps the layout of
# the version before.
CHANGED = {2: {HEARTBEAT: HeartbeatV2}, 3: {TELEMETRY: TelemetryV3}, 4: {BID: BidV4, AWARD: AwardV4}}


def message_struct(type, version=VERSION_MIN):
    """The Struct of `type` in protocol `version` (None if unknown)."""
    for v in range(version, VERSION_MIN, -1):
        if type in CHANGED.get(v, {}):
            return CHANGED[v][type]
    entry = MESSAGES.get(type)
    return entry[1] if entry else None


Message = Struct(  # parse with type=... and version=...; the whole payload or nothing
    "msg"
    / Switch(
        lambda ctx: (ctx._params.type, ctx._params.version),
        {(t, v): message_struct(t, v) for t in MESSAGES for v in range(VERSION_MIN, VERSION + 1)},
        default=_Expect("type", lambda ctx: False, lambda ctx: "0x%02x" % ctx._params.type),
    ),
    Terminated,
)


def type_name(type):
    entry = MESSAGES.get(type)
    return entry[0] if entry else "type_0x%02x" % type


def _plain(obj):
    """Container/ListContainer without construct's private `_io` keys."""
    if isinstance(obj, dict):
        return Container((k, _plain(v)) for k, v in obj.items() if not k.startswith("_"))
    if isinstance(obj, list):
        return ListContainer(_plain(v) for v in obj)
    return obj

