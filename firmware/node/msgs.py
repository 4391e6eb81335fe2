# Message types and their payloads: one table, struct layouts, little endian.
#
# The ground mirrors every layout with `construct` (ground/protocol.py); the
# golden vectors in tests/core/golden/ pin both. Add a type here, there and in
# docs/PROTOCOL.md together. Unknown types and payloads of the wrong length
# raise ProtocolError, never struct.error.
#
# Protocol versions: LAYOUTS is version 1. A layout that changes in version v
# goes into _CHANGED[v] (a tier's type: node/msgs_tiers.py's CHANGED[v]) and
# nowhere else; a type not listed there keeps its layout from the version
# before. Changes are additive: a new version only
# appends fields, each with a value in DEFAULTS that a frame of an older
# version is read as carrying. convert() moves values between versions (so
# by field name, which the additive rule makes a slice or an append): a node
# reads every frame in the newest layout (unpack_as), and the ground's
# down-converter writes an older one (ground/downconvert.py).

from micropython import const


import struct

from node.wire import ERR_PAYLOAD, ERR_TYPE, VERSION, ProtocolError

# ---- types ---------------------------------------------------------------
HELLO = const(0x01)  # node -> ground + cluster at boot: capabilities
HEARTBEAT = const(0x02)  # node -> cluster, every heartbeat interval
PREVOTE_REQUEST = const(0x10)  # would I win term+1? (changes nobody's state)
PREVOTE = const(0x11)
VOTE_REQUEST = const(0x12)
VOTE = const(0x13)
COORDINATOR = const(0x14)  # elected: announce term and standby
STANDBY = const(0x15)  # coordinator names a (new) standby
STATE = const(0x20)  # coordinator -> cluster: records table, for repair
TELEMETRY = const(0x30)  # node -> ground
MARKET_TEL = const(0x31)  # node -> ground: market tier, production, mode
CONFIG = const(0x40)  # ground -> node: time scale, fault flags
INTENT = const(0x41)  # ground -> fleet or cluster: strategic intent (Tier 3)
LOG = const(0x50)  # node -> ground: text
JOURNAL = const(0x70)  # board shell -> ground: when it called the core (replay)
# Software updates (node/update.py, docs/UPDATES.md).
UPD_OFFER = const(0x80)  # ground -> node: an image to fetch (its digest, size, version)
UPD_CHUNK = const(0x81)  # ground -> node: upd_id u32, index u16, then the chunk's bytes
UPD_ACK = const(0x82)  # node -> ground: state, refusal, progress and a bitmap of received chunks
UPD_CMD = const(0x83)  # ground -> node: install, rollback, status, abort
# Tier 2, the regional market (docs/MARKET.md). Slots are market slots (one
# auction cycle each); times in seconds are mission seconds.
BID = const(0x60)  # node -> regional coordinator: one sealed bid
AWARD = const(0x61)  # coordinator -> holder: a lease; -> standby: its replica
PRICES = const(0x62)  # coordinator -> broadcast: round result; -> standby: markers
ROUND_ACK = const(0x63)  # standby -> coordinator: replica matches (or not)
RELEASE = const(0x64)  # holder -> coordinator (-> standby): give slots back
RECONCILE = const(0x65)  # node -> coordinator after an autonomy window
RECONCILE_ACK = const(0x66)  # coordinator -> node

# Fault containment (docs/CONTAINMENT.md): 0x90-0x9F.
ACCUSE = const(0x90)  # auditor -> region's electors + ground: a round's clearing differs from mine
AUDIT_BID = const(0x91)  # coordinator -> each auditor at a round's close: one bid row of the book, as bid
REINSTATE = const(0x92)  # ground -> region's electors: take this node out of quarantine (ground intent)
WITNESS = const(0x93)  # elector -> region's electors + ground: a cluster member's stale-term claims, seen first hand
BID_SEEN = const(0x94)  # trader -> each of the region's auditors: the digest of a bid it sent the coordinator
SEVER = const(0x95)  # ground -> the other regions' electors: refuse region R's frames (severed 1), or no more (0)
HELD = const(0x96)  # elector -> a node's cluster: its quarantine state in my table (the cluster election: node/heldview.py)
_AUDIT_MISS = const(0x97)  # auditor -> coordinator: resend AUDIT_BID rows (msgs_tiers.AUDIT_MISS: no global here, the
#                           plain board's globals table would grow ~1.2 KB)
# 0x98 BID_RECEIPT, coordinator -> bidder: its BID is in the book (msgs_tiers.BID_RECEIPT, node/bidcopy.py), a
# literal here: even a private const of it grew the plain board's built heap by 640 B (test_board_shell)
# (ACCUSE's `reason` bits are node/audit.py's REASON_*: msgs' globals stay few.)

# Replication (docs/PROTOCOL.md "Joining and splitting"; node/join.py): 0xA0-0xA7.
JOIN = const(0xA0)  # daughter -> its cluster: let me in (until a ROSTER names it)
ROSTER = const(0xA1)  # coordinator -> cluster: `node` joined; the roster's epoch and size after
SPLIT = const(0xA2)  # coordinator -> cluster: ids from `pivot` up form cluster `new_cluster`
DAUGHTER = const(0xA3)  # parent -> ground: a daughter is complete (the ground fabs and boots it)
JOIN_REFUSED = const(0xA4)  # node -> ground: a JOIN, ROSTER or SPLIT refused, and why

# PRICES status: what the message says about its round.
ROUND_COMPLETE = const(1)  # awarded: every award of the round stands
ROUND_VOID = const(2)  # nothing of the round was awarded: bid again
ROUND_PREPARE = const(3)  # to the standby: the round's replica is complete
ROUND_SYNC = const(4)  # elector -> new coordinator: the ledger copy it asked for is complete
ROUND_RESYNC = const(5)  # broadcast: new coordinator without a majority's ledgers; holders, claim
ROUND_QUERY = const(6)  # new coordinator -> each elector: how recent is your ledger? (ROUND_ACK answers)
ROUND_FETCH = const(7)  # new coordinator -> the elector with the most recent ledger: send me a copy
ROUND_STATUS_NAMES = ("", "complete", "void", "prepare", "sync", "resync", "query", "fetch")

# AWARD flags.
AWARD_REPLICA = const(1)  # a copy for the standby, not for the holder
AWARD_SYNC = const(2)  # part of a full ledger copy (round = the sync's round)
AWARD_RESEND = const(4)  # the same award again (after a takeover)
AWARD_MERGE = const(8)  # extends the holder's lease on that resource
AWARD_CLAIM = const(16)  # holder -> new coordinator: a lease I hold (resync)

# Roles as carried in HEARTBEAT / TELEMETRY.
ROLE_FOLLOWER = const(0)
ROLE_CANDIDATE = const(1)
ROLE_COORDINATOR = const(2)
ROLE_STANDBY = const(3)
ROLE_NAMES = ("follower", "candidate", "coordinator", "standby")

NO_NODE = const(0)  # "none" in a node-id field (0 is the ground's address)

# STATE entries: node u16, version u16, data u32.
STATE_ENTRY = "<HHI"
STATE_ENTRY_LEN = const(8)
STATE_HEAD = "<IIBB"  # term, digest, first index, total count
STATE_HEAD_LEN = const(10)
STATE_MAX_ENTRIES = const(26)  # (MAX_PAYLOAD 224 - 10) // 8

# JOURNAL: first u32 (index of the first entry since boot), then entries of
# kind u8, t_ms u32 (the board's mission ms passed to the core), arg u32.
JOURNAL_HEAD = "<I"
JOURNAL_ENTRY = "<BII"
JOURNAL_ENTRY_LEN = const(9)
JOURNAL_MAX_ENTRIES = const(24)  # (MAX_PAYLOAD 224 - 4) // 9
J_BOOT = const(1)  # a Node was built; arg 1: from saved state (TERM, VOTE, COUNTER follow), 0: fresh
J_TERM = const(2)  # arg: saved term
J_VOTE = const(3)  # arg: saved vote
J_COUNTER = const(4)  # arg: saved auth counter reservation
J_LOG = const(5)  # node.log(text); arg: crc32 of the text's bytes as the LOG frame carries them
J_RX = const(6)  # node.receive(line, t_ms); arg: crc32 of the line
J_POLL = const(7)  # node.poll(t_ms); arg: how many frames it returned
J_SEED = const(8)  # arg: the seed the Node was built with (follows J_BOOT)
# 9 kept: arg the bytes of the restored market section (node/durable.py), then
# 10 kept_word entries: arg the next 4 bytes of it, little-endian (the last
# zero-padded). Named in runtime/journal.py only: two more names here would
# grow this module's globals table on every board (J_NAMES.index finds them).
J_NAMES = ("", "boot", "term", "vote", "counter", "log", "rx", "poll", "seed", "kept", "kept_word")

# type -> (name, struct format or None for variable, [field names]).
# The field names are a list, not a tuple, for a board's heap: a tuple of
# literals is one constant of the .mpy, and each of its strings is loaded as
# a heap str object (48 bytes on the 64-bit unix port); a list is built when
# the module runs, from interned names (qstrs, no object each). Read-only all
# the same. 7 KB less on an emulated board (docs/HEAP.md).
LAYOUTS = {
    HELLO: ("hello", "<BBBBBBH", ["hw_gen", "fw_major", "fw_minor", "lineage", "proto_min", "proto_max", "cluster"]),
    HEARTBEAT: (
        "heartbeat",
        "<IHHBBHII",
        ["term", "coordinator", "standby", "role", "lineage", "rec_version", "rec_data", "digest"],
    ),
    PREVOTE_REQUEST: ("prevote_request", "<I", ["term"]),
    PREVOTE: ("prevote", "<IHB", ["term", "candidate", "granted"]),
    VOTE_REQUEST: ("vote_request", "<I", ["term"]),
    VOTE: ("vote", "<IHB", ["term", "candidate", "granted"]),
    COORDINATOR: ("coordinator", "<IH", ["term", "standby"]),
    STANDBY: ("standby", "<IH", ["term", "standby"]),
    STATE: ("state", None, ["term", "digest", "first", "total", "entries"]),
    TELEMETRY: (
        "telemetry",
        "<BIHHIBBH",
        ["role", "term", "coordinator", "standby", "digest", "alive", "suspect", "bad_frames"],
    ),
    CONFIG: ("config", "<IH", ["time_scale_milli", "fault_flags"]),
    LOG: ("log", None, ["text"]),
    JOURNAL: ("journal", None, ["first", "entries"]),
}
# The tiers' layouts (market, containment, replication: MARKET_TEL, INTENT,
# BID ... RECONCILE_ACK, ACCUSE ... BID_RECEIPT, JOIN ... JOIN_REFUSED) live in
# node/msgs_tiers.py, the UPD_* ones in node/update.py (UPDATE_LAYOUTS), each
# loaded the first time a layout of theirs is asked for: a plain cluster
# member does not hold them (docs/HEAP.md). layout() and name() find them
# there; all_layouts() is every type's.
UPDATE_TYPES = (UPD_OFFER, UPD_CHUNK, UPD_ACK, UPD_CMD)  # node/update.py's
MARKET_TYPES = (BID, AWARD, PRICES, ROUND_ACK, RELEASE, RECONCILE, RECONCILE_ACK, INTENT, ACCUSE, AUDIT_BID, REINSTATE,
                WITNESS, BID_SEEN, SEVER, _AUDIT_MISS, 0x98)

# HEARTBEAT `alive` (version 2): how many of the cluster's members the sender
# hears alive, itself included, so a version-2 sender always says 1 or more.
ALIVE_UNKNOWN = const(0)  # a version-1 heartbeat: the sender did not say

# version -> {type: layout} of the layouts that version changed (see the top).
_CHANGED = {  # type: dict[int, dict[int, tuple]]
    2: {
        HEARTBEAT: (
            "heartbeat",
            "<IHHBBHIIB",
            ["term", "coordinator", "standby", "role", "lineage", "rec_version", "rec_data", "digest", "alive"],
        ),
    },
    # Version 3: TELEMETRY appends refusal counters that do not saturate (u32,
    # wrapping after 2**32: decades at any line rate a board can take) and the
    # board's heap (bytes free now, lowest since boot; 0: not known, as from
    # an in-process node).
    3: {
        TELEMETRY: (
            "telemetry",
            "<BIHHIBBHIIIIII",
            ["role", "term", "coordinator", "standby", "digest", "alive", "suspect", "bad_frames",
             "rejects", "unknown_src", "long_lines", "replayed", "heap_free", "heap_min"],
        ),
    },
}
# field name -> its value in a frame of a version that does not carry it
DEFAULTS = {"alive": ALIVE_UNKNOWN, "rejects": 0, "unknown_src": 0, "long_lines": 0, "replayed": 0,
            "heap_free": 0, "heap_min": 0, "hw_gen": 0, "end_s": 0}


def layout(type, version=1):
    """(name, format, field names) of `type` as protocol `version` lays it
    out, or None for an unknown type."""
    lays = LAYOUTS  # type: dict
    changed = _CHANGED
    if type not in lays:
        if UPD_OFFER <= type <= UPD_CMD:
            from node.update import UPDATE_LAYOUTS

            return UPDATE_LAYOUTS.get(type)
        if not _tiers(type):
            return None
        from node import msgs_tiers

        lays = msgs_tiers.LAYOUTS
        changed = msgs_tiers.CHANGED
    while version > 1:
        c = changed.get(version)
        if c is not None and type in c:
            return c[type]
        version -= 1
    return lays.get(type)


def _tiers(type):
    """True for a type node/msgs_tiers.py lays out: a stray frame of any
    other unknown type does not load it."""
    return (type == MARKET_TEL or type == INTENT or BID <= type <= RECONCILE_ACK or ACCUSE <= type <= 0x98
            or JOIN <= type <= 0xA5)  # 0x98: BID_RECEIPT (node/bidcopy.py); 0xA5: CATCHUP (node/catchup.py)


def name(type):
    lay = layout(type)
    return lay[0] if lay else "type_0x%02x" % type


def all_layouts():
    """{type: layout} of every type in version 1 (the tiers' and the UPD_*
    ones included)."""
    from node.msgs_tiers import LAYOUTS as tiers
    from node.update import UPDATE_LAYOUTS

    out = dict(LAYOUTS)
    out.update(tiers)
    out.update(UPDATE_LAYOUTS)
    return out


def pack(type, *values, version=1):
    """Payload bytes for a fixed-layout type, in `version`'s layout."""
    lay = layout(type, version)
    fmt = lay[1]
    if fmt is None:
        raise ValueError("variable layout: " + lay[0])
    return struct.pack(fmt, *values)


def unpack(type, payload, version=1):
    """Field values (tuple) of a fixed-layout type in `version`'s layout;
    ProtocolError if wrong."""
    lay = layout(type, version)
    if lay is None:
        raise ProtocolError(ERR_TYPE, "0x%02x" % type)
    fmt = lay[1]
    if fmt is None:
        raise ProtocolError(ERR_TYPE, "variable layout: " + lay[0])
    if len(payload) != struct.calcsize(fmt):
        raise ProtocolError(ERR_PAYLOAD, "%s v%d: %d bytes" % (lay[0], version, len(payload)))
    return struct.unpack(fmt, payload)


def convert(type, values, from_version, to_version):
    """`values` (in from_version's layout of a fixed-layout type) in
    to_version's layout, by field name: a field to_version lacks is left
    out, a field from_version lacks takes its DEFAULTS value. The same tuple
    back when the two layouts are one (every type but a changed one)."""
    have = layout(type, from_version)
    want = layout(type, to_version)
    if have is want:
        return values
    # Versions only append fields (see the top; tests/core/test_msgs.py holds
    # the tables to it), so the older layout's names are a prefix of the
    # newer's: down is a slice, up appends defaults. No per-field search on
    # a node's receive path.
    names = want[2]
    n = len(have[2])
    if len(names) <= n:
        return values[: len(names)]
    out = values
    for i in range(n, len(names)):
        out += (DEFAULTS[names[i]],)
    return out


def unpack_as(type, payload, version, want=VERSION):
    """A `version` payload's values in `want`'s layout (default the newest:
    what the core reads every frame as)."""
    return convert(type, unpack(type, payload, version), version, want)


def payload_values(type, payload, version):
    """What a node reads of a frame's payload: STATE's (term, digest, first,
    total, entries), LOG's (text,), any other type's values in the newest
    layout, defaults filled in (unpack_as); ProtocolError if malformed."""
    if type == STATE:
        return unpack_state(payload)
    if type == LOG:
        return (unpack_log(payload),)
    return unpack_as(type, payload, version)


def pack_as(type, values, version, have=VERSION):
    """Payload bytes in `version`'s layout from values in `have`'s (default
    the newest: what the core builds every message as)."""
    return pack(type, *convert(type, values, have, version), version=version)


def to_version(type, payload, version):
    """A payload built in the newest layout, in `version`'s (the same bytes
    when that version lays `type` out as the newest does): what a node that
    speaks an older version sends (node/region.py)."""
    want = layout(type, version)
    if want is layout(type, VERSION):
        return payload
    return pack(type, *convert(type, unpack(type, payload, VERSION), VERSION, version), version=version)


def pack_state(term, digest, first, total, entries):
    """entries: list of (node, version, data), at most STATE_MAX_ENTRIES."""
    out = bytearray(STATE_HEAD_LEN + STATE_ENTRY_LEN * len(entries))
    struct.pack_into(STATE_HEAD, out, 0, term, digest, first, total)
    off = STATE_HEAD_LEN
    for node, version, data in entries:
        struct.pack_into(STATE_ENTRY, out, off, node, version, data)
        off += STATE_ENTRY_LEN
    return bytes(out)


def unpack_state(payload):
    n = len(payload)
    if n < STATE_HEAD_LEN or (n - STATE_HEAD_LEN) % STATE_ENTRY_LEN:
        raise ProtocolError(ERR_PAYLOAD, "state: %d bytes" % n)
    term, digest, first, total = struct.unpack_from(STATE_HEAD, payload, 0)
    count = (n - STATE_HEAD_LEN) // STATE_ENTRY_LEN
    if first + count > total:
        raise ProtocolError(ERR_PAYLOAD, "state: entries past total")
    entries = []
    for i in range(count):
        entries.append(struct.unpack_from(STATE_ENTRY, payload, STATE_HEAD_LEN + i * STATE_ENTRY_LEN))
    return term, digest, first, total, entries


def unpack_log(payload):
    try:
        return payload.decode()
    except UnicodeError:
        raise ProtocolError(ERR_PAYLOAD, "log: not UTF-8")


def pack_journal(first, entries):
    """entries: list of (kind, t_ms, arg), at most JOURNAL_MAX_ENTRIES."""
    out = bytearray(4 + JOURNAL_ENTRY_LEN * len(entries))
    struct.pack_into(JOURNAL_HEAD, out, 0, first)
    off = 4
    for kind, t_ms, arg in entries:
        struct.pack_into(JOURNAL_ENTRY, out, off, kind, t_ms, arg)
        off += JOURNAL_ENTRY_LEN
    return bytes(out)


def unpack_journal(payload):
    """(first, [(kind, t_ms, arg), ...]) of a JOURNAL payload."""
    n = len(payload)
    if n < 4 or (n - 4) % JOURNAL_ENTRY_LEN:
        raise ProtocolError(ERR_PAYLOAD, "journal: %d bytes" % n)
    (first,) = struct.unpack_from(JOURNAL_HEAD, payload, 0)
    entries = []
    for off in range(4, n, JOURNAL_ENTRY_LEN):
        entries.append(struct.unpack_from(JOURNAL_ENTRY, payload, off))
    return first, entries
