# The wire format, declared with `construct`: the ground's half of the codec.
#
# firmware/node/wire.py and msgs.py are the reference; this is a second,
# independent implementation of the same bytes (no firmware code is imported
# here), and tests/core/golden/frames.json plus the live MicroPython
# cross-check in tests/ground/test_protocol.py pin the two together.
# docs/PROTOCOL.md is the prose version.
#
#     line = build_line(type=HEARTBEAT, src=3, dst=cluster_addr(1), seq=9, msg={...})
#     f = parse_line(line[:-1], key=None)    # Container: version, flags, type, seq,
#                                            #   src, dst, payload, counter, tag, msg
#     build_line(**f) == line                # and back
#     describe(line[:-1])                    # flat dict for traces and metrics
#
# Versions: the header's nibble says which layouts the payload uses. MESSAGES
# is version 1; CHANGED lists what a later version changed (version 2 appends
# `alive` to HEARTBEAT, version 3 counters and heap to TELEMETRY), mirroring msgs.py's _CHANGED; parse_line reads a
# payload in its frame's version, build_line writes the version it is given
# (default 1, as wire.encode). version_max= refuses newer frames, as a node
# whose firmware speaks no further does (docs/PROTOCOL.md "Versions").
#
# Layers, outermost first, each one construct:
#   Line    : _Escaped(_Cobs(Body)): un-escape 1B 01 / 1B 02, then COBS
#   Body    : covered bytes | crc32, the crc a construct Checksum
#   Covered : Signed | [tag], the tag a Checksum (HMAC-SHA256[:8]) when a key
#             is given, raw bytes otherwise
#   Signed  : Header | payload | [counter]
#   Message : Switch on the header's type over one Struct per message
#
# The checks run in the firmware's order (line, cobs, size, crc, version,
# auth trailer, tag, no_auth, address, then the message), so the ground and a
# node name the same reason for the same bad frame: the crc is checked before
# anything inside the body is believed, which is why Body parses the covered
# bytes once as raw bytes and only then re-parses them (RestreamData).
#
# Errors: parse_line raises FrameError and nothing else; `reason` is one of
# REASONS, the same words as wire.ERROR_NAMES. build_line raises FrameError
# for fields it cannot encode. Where this departs from STYLE.md: one error
# class for both directions, not h11's local/remote pair (a parse error is
# always the remote's fault, a build error always the caller's, so the call
# already says whose); and this is ground code under CPython, so it allocates
# freely and favours declarations over speed.

import hashlib
import hmac
import re
import zlib

from construct import (
    BitsInteger,
    BitStruct,
    Bytes,
    Check,
    Checksum,
    Construct,
    ConstructError,
    Container,
    GreedyBytes,
    GreedyRange,
    GreedyString,
    If,
    IfThenElse,
    Int8ul,
    Int16ul,
    Int32ul,
    ListContainer,
    Nibble,
    Octet,
    RawCopy,
    RestreamData,
    Struct,
    Subconstruct,
    Switch,
    Terminated,
    Tunnel,
    len_,
    this,
)
from construct.core import BytesIOWithOffsets, stream_size, stream_tell

VERSION = 3  # newest protocol version this codec speaks
VERSION_MIN = 1  # oldest version it decodes

FLAG_AUTH = 0x1

HEADER_LEN = 7
CRC_LEN = 4
AUTH_LEN = 12  # counter u32 + tag
TAG_LEN = 8
MAX_PAYLOAD = 224  # every body stays under 254 bytes, so COBS adds exactly 1
MAX_BODY = HEADER_LEN + MAX_PAYLOAD + AUTH_LEN + CRC_LEN  # 247
MAX_LINE = 2 * (MAX_BODY + 1)  # 496: COBS of MAX_BODY with every byte escaped

ADDR_GROUND = 0x0000
ADDR_CLUSTER = 0xF000  # | cluster number (0..0xFFE)
ADDR_BROADCAST = 0xFFFF
MAX_NODE_ID = 0xEFFF

# Why a frame was refused: the same words, in the same order, as the
# firmware's wire.ERROR_NAMES (its ERR_* codes index this tuple).
REASONS = (
    "",
    "empty",
    "cobs",
    "escape",
    "short",
    "crc",
    "version",
    "too_long",
    "no_auth",
    "tag",
    "replay",
    "payload",
    "type",
    "address",
    "unknown_src",  # a node's own refusal (its rosters), never this decoder's
    "memory",  # a board's shell dropped the frame for lack of heap, never this decoder's
)


class FrameError(ValueError):
    """A line this codec will not parse, or fields it will not build.

    `reason` is one of REASONS; `detail` says what exactly, in words.
    """

    def __init__(self, reason, detail=""):
        super().__init__(reason + (": " + detail if detail else ""))
        self.reason = reason
        self.detail = detail


def cluster_addr(cluster):
    return ADDR_CLUSTER | cluster


def addr_name(addr):
    """'ground', 'broadcast', 'cluster 3' or 'node 12'."""
    if addr == ADDR_GROUND:
        return "ground"
    if addr == ADDR_BROADCAST:
        return "broadcast"
    if addr >= ADDR_CLUSTER:
        return "cluster %d" % (addr & 0x0FFF)
    return "node %d" % addr


# ---- COBS and the Ctrl-C escape, written from the definitions ------------
# (Cheshire & Baker 1999 for COBS.) Deliberately not a copy of wire.py.


def cobs_encode(data):
    """COBS: every run of up to 254 non-zero bytes gets a length code."""
    out = bytearray(1)
    code_at = 0  # where the current block's code byte goes
    for byte in bytes(data):
        if byte:
            out.append(byte)
            if len(out) - code_at == 0xFF:  # a full block: 254 bytes + code
                out[code_at] = 0xFF
                code_at = len(out)
                out.append(0)
        else:
            out[code_at] = len(out) - code_at
            code_at = len(out)
            out.append(0)
    out[code_at] = len(out) - code_at
    return bytes(out)


def cobs_decode(data):
    """Inverse of cobs_encode; FrameError('cobs') if `data` is not COBS."""
    out = bytearray()
    i = 0
    n = len(data)
    while i < n:
        code = data[i]
        block = data[i + 1 : i + code]
        if code == 0 or 0 in block:
            raise FrameError("cobs", "zero byte inside frame")
        if len(block) != code - 1:
            raise FrameError("cobs", "block runs past end")
        out += block
        i += code
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)


_ESCAPE = {b"\x1b": b"\x1b\x02", b"\x03": b"\x1b\x01"}
_UNESCAPE = {b"\x02": b"\x1b", b"\x01": b"\x03"}
_NEEDS_ESCAPE = re.compile(b"[\x03\x1b]")
_ESCAPED = re.compile(b"\x1b(.?)", re.DOTALL)


def escape(data):
    """After COBS: 0x1B -> 1B 02, 0x03 -> 1B 01, so no line carries Ctrl-C."""
    return _NEEDS_ESCAPE.sub(lambda m: _ESCAPE[m.group()], bytes(data))


def unescape(data):
    data = bytes(data)
    if b"\x03" in data:
        raise FrameError("escape", "raw 0x03")

    def one(m):
        code = m.group(1)
        if code not in _UNESCAPE:
            raise FrameError("escape", "bad escape")
        return _UNESCAPE[code]

    return _ESCAPED.sub(one, data)


def _crc32(data):
    return zlib.crc32(data) & 0xFFFFFFFF


def _hmac_tag(key_and_data):
    key, data = key_and_data
    return hmac.new(key, data, hashlib.sha256).digest()[:TAG_LEN]


# ---- five small constructs that construct does not have -----------------


class _Escaped(Tunnel):
    """The line layer: length limits, then the Ctrl-C escape."""

    def _decode(self, data, context, path):
        if not data:
            raise FrameError("empty")
        if len(data) > MAX_LINE:
            raise FrameError("too_long", "%d line bytes" % len(data))
        return unescape(data)

    def _encode(self, data, context, path):
        return escape(data)


class _Cobs(Tunnel):
    def _decode(self, data, context, path):
        return cobs_decode(data)

    def _encode(self, data, context, path):
        return cobs_encode(data)


class _AllBut(Subconstruct):
    """`subcon` over the stream's remaining bytes except the last `trailer`.

    GreedyBytes reads to the end; a payload stops where the fixed-size
    trailer (auth, crc) begins, and nothing on the wire says how long it is.
    Builds as `subcon` does.
    """

    def __init__(self, trailer, subcon):
        super().__init__(subcon)
        self.trailer = trailer

    def _parse(self, stream, context, path):
        trailer = self.trailer(context) if callable(self.trailer) else self.trailer
        length = stream_size(stream) - stream_tell(stream, path) - trailer
        if length < 0:
            raise FrameError("short", "%d bytes missing before the trailer" % -length)
        substream = BytesIOWithOffsets.from_reading(stream, length, path)
        return self.subcon._parsereport(substream, context, path)

    def _build(self, obj, stream, context, path):
        return self.subcon._build(obj, stream, context, path)


class _Expect(Construct):
    """A parse-time check naming its reason: refuse unless cond(ctx).

    Unlike construct's Check it does nothing when building, so the ground can
    still build frames a node must refuse (wrong version, bad address) for
    fault injection.
    """

    def __init__(self, reason, cond, detail=None):
        super().__init__()
        self.reason = reason
        self.cond = cond
        self.detail = detail
        self.flagbuildnone = True

    def _parse(self, stream, context, path):
        if not self.cond(context):
            raise FrameError(self.reason, self.detail(context) if self.detail else "")

    def _build(self, obj, stream, context, path):
        return None

    def _sizeof(self, context, path):
        return 0


class _OrRefuse(Subconstruct):
    """Any construct error (or bad UTF-8) inside `subcon` refuses the frame
    for `reason`: no ConstructError ever leaves parse_line."""

    def __init__(self, reason, subcon, detail=None):
        super().__init__(subcon)
        self.reason = reason
        self.detail = detail  # fixed words instead of construct's message

    def _parse(self, stream, context, path):
        try:
            return self.subcon._parsereport(stream, context, path)
        except (ConstructError, UnicodeError) as e:
            raise FrameError(self.reason, self.detail or _why(e, field=False)) from None

    def _build(self, obj, stream, context, path):
        return self.subcon._build(obj, stream, context, path)


def _why(e, field=True):
    """construct's message without its 'Error in path' line, led by the field."""
    text = str(e).strip().split("\n")[-1]
    name = (getattr(e, "path", None) or "").split(" -> ")[-1]
    return name + ": " + text if field and name and not name.startswith("(") else text


# ---- the body --------------------------------------------------------------

Header = BitStruct(  # little endian; byte 0 is version (high nibble) | flags
    "version" / Nibble,
    "flags" / Nibble,
    "type" / Octet,
    "seq" / Octet,
    "src" / BitsInteger(16, swapped=True),
    "dst" / BitsInteger(16, swapped=True),
)


def _signed_auth(signed):
    return signed.header.flags & FLAG_AUTH


Signed = Struct(  # what the HMAC tag covers
    "header" / Header,
    _Expect(  # version_max: a node's proto_max (a version-1 node refuses version 2 here)
        "version",
        lambda ctx: VERSION_MIN <= ctx.header.version <= min(VERSION, ctx._params.get("version_max", VERSION)),
        lambda ctx: "v%d" % ctx.header.version,
    ),
    "payload" / _AllBut(lambda ctx: AUTH_LEN if _signed_auth(ctx) else 0, GreedyBytes),
    "counter" / If(_signed_auth, Int32ul),
)

Covered = Struct(  # what the crc covers
    "signed" / RawCopy(Signed),
    "tag"
    / If(
        lambda ctx: _signed_auth(ctx.signed.value),
        IfThenElse(
            lambda ctx: ctx._params.get("key") is not None,
            _OrRefuse(  # never the computed tag in the message: traces are not secret
                "tag",
                Checksum(Bytes(TAG_LEN), _hmac_tag, lambda ctx: (ctx._params.key, ctx.signed.data)),
                "does not match the key",
            ),
            Bytes(TAG_LEN),  # no key: carried, not checked (as wire.decode)
        ),
    ),
    Terminated,
    _Expect(
        "no_auth",
        lambda ctx: ctx.tag is not None or not ctx._params.get("require_auth"),
    ),
    _Expect(
        "address",
        lambda ctx: ctx.signed.value.header.src <= MAX_NODE_ID,
        lambda ctx: "src 0x%04x" % ctx.signed.value.header.src,
    ),
)

Body = Struct(
    _Expect(
        "short",
        lambda ctx: stream_size(ctx._io) >= HEADER_LEN + CRC_LEN,
        lambda ctx: "%d bytes" % stream_size(ctx._io),
    ),
    _Expect(
        "too_long",
        lambda ctx: stream_size(ctx._io) <= MAX_BODY,
        lambda ctx: "%d bytes" % stream_size(ctx._io),
    ),
    "covered" / _AllBut(CRC_LEN, GreedyBytes),
    "crc" / _OrRefuse("crc", Checksum(Int32ul, _crc32, this.covered)),
    Terminated,
    # Only now, with the crc good, are the covered bytes read as fields.
    "frame" / RestreamData(this.covered, Covered),
)

Line = _Escaped(_Cobs(Body))  # one line frame, without its 0x00 delimiter

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
BID = 0x60
AWARD = 0x61
PRICES = 0x62
ROUND_ACK = 0x63
RELEASE = 0x64
RECONCILE = 0x65
RECONCILE_ACK = 0x66
ACCUSE = 0x90  # fault containment (docs/CONTAINMENT.md): auditor -> electors + ground
AUDIT_BID = 0x91  # coordinator -> each auditor: one bid row of a closed round
JOIN = 0xA0  # replication (node/join.py): daughter -> its cluster
ROSTER = 0xA1  # coordinator -> cluster: a node joined
SPLIT = 0xA2  # coordinator -> cluster: the upper half becomes another cluster
DAUGHTER = 0xA3  # parent -> ground: a daughter is complete
JOIN_REFUSED = 0xA4  # node -> ground: a JOIN, ROSTER or SPLIT refused
JOIN_REFUSAL_NAMES = ("unknown", "duplicate", "full", "split_small", "not_coordinator")  # node/join.py R_*
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

Join = Struct("parent" / Int16ul, "cluster" / Int16ul, "lineage" / Int8ul, "hw_gen" / Int8ul, "fw" / Int16ul)
Roster = Struct("term" / Int32ul, "epoch" / Int16ul, "node" / Int16ul, "parent" / Int16ul, "members" / Int8ul)
Split = Struct("term" / Int32ul, "epoch" / Int16ul, "new_cluster" / Int16ul, "pivot" / Int16ul, "low" / Int8ul,
               "high" / Int8ul)
Daughter = Struct("daughters" / Int16ul, "lineage" / Int8ul, "hw_gen" / Int8ul, "fw_major" / Int8ul,
                  "fw_minor" / Int8ul)
JoinRefused = Struct("reason" / Int8ul, "type" / Int8ul, "src" / Int16ul, "subject" / Int16ul, "count" / Int32ul)

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
    JOIN: ("join", Join),
    ROSTER: ("roster", Roster),
    SPLIT: ("split", Split),
    DAUGHTER: ("daughter", Daughter),
    JOIN_REFUSED: ("join_refused", JoinRefused),
}
TYPES = {name: t for t, (name, _) in MESSAGES.items()}

# MESSAGES is protocol version 1. version -> {type: Struct} of the layouts a
# version changed (msgs.py's _CHANGED); a type not listed keeps the layout of
# the version before.
CHANGED = {2: {HEARTBEAT: HeartbeatV2}, 3: {TELEMETRY: TelemetryV3}}


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


# ---- the API ---------------------------------------------------------------


def parse_message(type, payload, version=VERSION_MIN):
    """The fields of one payload of protocol `version` as a Container;
    FrameError if it is wrong."""
    if type not in MESSAGES:
        raise FrameError("type", "0x%02x" % type)
    if not VERSION_MIN <= version <= VERSION:
        raise FrameError("version", "v%d" % version)
    try:
        return _plain(Message.parse(bytes(payload), type=type, version=version).msg)
    except (ConstructError, UnicodeError) as e:
        raise FrameError("payload", "%s: %s" % (type_name(type), _why(e))) from None


def parse_frame(line, key=None, require_auth=False, version_max=VERSION):
    """The wire layer alone: header, raw payload, auth. No message parsing.

    Container(version, flags, type, seq, src, dst, payload, counter, tag);
    counter and tag are None for an unsigned frame. With `key` a signed
    frame's tag is checked; with `require_auth` unsigned frames are refused;
    a version above `version_max` (a node's proto_max) is refused.
    Replay is the caller's job (it owns the window).
    """
    try:
        body = Line.parse(bytes(line), key=key, require_auth=require_auth, version_max=version_max)
    except ConstructError as e:  # not reached: every layer maps its errors
        raise FrameError("payload", _why(e)) from None
    signed = body.frame.signed.value
    h = signed.header
    return Container(
        version=h.version,
        flags=h.flags,
        type=h.type,
        seq=h.seq,
        src=h.src,
        dst=h.dst,
        payload=signed.payload,
        counter=signed.counter,
        tag=body.frame.tag,
    )


def parse_line(line, key=None, require_auth=False, version_max=VERSION):
    """One line frame (without its 0x00) -> Container, or FrameError.

    parse_frame's fields plus `msg`, the payload's fields by name, in the
    layout of the frame's version.
    """
    frame = parse_frame(line, key, require_auth, version_max)
    frame.msg = parse_message(frame.type, frame.payload, frame.version)
    return frame


def build_message(type, msg, version=VERSION_MIN):
    """Payload bytes for `type` in protocol `version` from a dict of its
    fields (all, and only them)."""
    if type not in MESSAGES:
        raise FrameError("type", "no layout for 0x%02x: give payload= bytes" % type)
    if not VERSION_MIN <= version <= VERSION:
        raise FrameError("version", "no layouts for version %r (%d..%d)" % (version, VERSION_MIN, VERSION))
    name = MESSAGES[type][0]
    struct = message_struct(type, version)
    want = set(sc.name for sc in struct.subcons if sc.name)
    got = set(msg)
    if got != want:
        raise FrameError(
            "payload",
            "%s: missing %s, unknown %s" % (name, sorted(want - got) or "none", sorted(got - want) or "none"),
        )
    try:
        return Message.build(dict(msg=msg), type=type, version=version)
    except (ConstructError, TypeError, ValueError) as e:
        raise FrameError("payload", "%s: %s" % (name, _why(e))) from None


def build_line(
    type,
    src,
    dst,
    seq=0,
    msg=None,
    payload=None,
    counter=None,
    key=None,
    tag=None,
    version=VERSION_MIN,
    flags=0,
):
    """A complete line frame, 0x00 delimiter included.

    `type` is a code or a name ('heartbeat'). Give the message as `msg` (a
    dict of its fields, in `version`'s layout) or as raw `payload` bytes
    (any type, any length up to MAX_PAYLOAD: for fault injection); given
    both, they must agree. `version` defaults to the oldest, as wire.encode. A `counter` signs the frame: with `key`
    the tag is computed, otherwise `tag` is written as given (re-sending a
    captured frame). FLAG_AUTH in `flags` follows `counter`; other flag bits
    are written as given. Accepts what parse_line returns:
    build_line(**parse_line(line), key=k) gives line back.
    """
    if isinstance(type, str):
        if type not in TYPES:
            raise FrameError("type", "unknown name %r" % type)
        type = TYPES[type]
    if msg is not None:
        built = build_message(type, msg, version)
        if payload is not None and bytes(payload) != built:
            raise FrameError("payload", "msg= and payload= disagree")
        payload = built
    elif payload is None:
        raise FrameError("payload", "give msg= (fields) or payload= (bytes)")
    payload = bytes(payload)
    if len(payload) > MAX_PAYLOAD:
        raise FrameError("too_long", "payload %d bytes, at most %d" % (len(payload), MAX_PAYLOAD))
    for what, value, top, reason in (
        ("version", version, 0xF, "version"),
        ("flags", flags, 0xF, "version"),
        ("type", type, 0xFF, "type"),
        ("src", src, 0xFFFF, "address"),
        ("dst", dst, 0xFFFF, "address"),
        ("counter", 0 if counter is None else counter, 0xFFFFFFFF, "tag"),
    ):
        if not isinstance(value, int) or not 0 <= value <= top:
            raise FrameError(reason, "%s %r is not in 0..0x%x" % (what, value, top))
    signed = counter is not None
    if signed and key is None and (tag is None or len(tag) != TAG_LEN):
        raise FrameError("tag", "a signed frame needs key= (or a captured %d-byte tag=)" % TAG_LEN)
    flags = (flags & ~FLAG_AUTH) | (FLAG_AUTH if signed else 0)
    header = dict(version=version, flags=flags, type=type, seq=seq & 0xFF, src=src, dst=dst)
    try:
        covered = Covered.build(
            dict(signed=dict(value=dict(header=header, payload=payload, counter=counter)), tag=tag),
            key=None if key is None else bytes(key),
        )
        return Line.build(dict(covered=covered)) + b"\x00"
    except ConstructError as e:  # not reached: the fields were checked above
        raise FrameError("payload", _why(e)) from None


def describe(line, key=None):
    """Named fields of one line frame, flat, for traces and metrics.

    {'type': 'heartbeat', 'src': 3, 'dst': 61441, 'dst_name': 'cluster 1',
     'seq': 9, 'auth': False, 'counter': None, 'line_bytes': 31,
     <message fields...>} ; STATE entries are a list of dicts. Raises
    FrameError like parse_line.
    """
    f = parse_line(line, key)
    out = {
        "type": type_name(f.type),
        "type_code": f.type,
        "version": f.version,
        "src": f.src,
        "dst": f.dst,
        "dst_name": addr_name(f.dst),
        "seq": f.seq,
        "auth": f.counter is not None,
        "counter": f.counter,
        "payload_bytes": len(f.payload),
        "line_bytes": len(line) + 1,  # with its delimiter
    }
    for k, v in f.msg.items():
        if isinstance(v, list):
            v = [dict(e) for e in v]
        out[k] = v
    if "role" in f.msg and f.msg.role < len(ROLE_NAMES):
        out["role_name"] = ROLE_NAMES[f.msg.role]
    if f.type == MARKET_TEL:
        if f.msg.mode < len(MODE_NAMES):
            out["mode_name"] = MODE_NAMES[f.msg.mode]
        if f.msg.region_role < len(ROLE_NAMES):
            out["region_role_name"] = ROLE_NAMES[f.msg.region_role]
    if f.type == PRICES and 0 < f.msg.status < len(ROUND_STATUS_NAMES):
        out["status_name"] = ROUND_STATUS_NAMES[f.msg.status]
    return out
