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
# `alive` to HEARTBEAT, version 3 counters and heap to TELEMETRY, version 4
# hw_gen to BID and end_s to AWARD), mirroring msgs.py's _CHANGED; parse_line reads a
# payload in its frame's version, build_line writes the version it is given
# (default 1, as wire.encode). version_max= refuses newer frames, as a node
# whose firmware speaks no further does (docs/PROTOCOL.md "Versions").
#
# The framing (sizes, COBS, the Line construct) is ground/protocol_frame.py,
# the message layouts ground/protocol_msgs.py; both are re-exported here, so
# callers name everything as protocol.X.
#
# Errors: parse_line raises FrameError and nothing else; `reason` is one of
# REASONS, the same words as wire.ERROR_NAMES. build_line raises FrameError
# for fields it cannot encode. Where this departs from STYLE.md: one error
# class for both directions, not h11's local/remote pair (a parse error is
# always the remote's fault, a build error always the caller's, so the call
# already says whose); and this is ground code under CPython, so it allocates
# freely and favours declarations over speed.

from construct import ConstructError, Container

from ground.protocol_frame import (  # noqa: F401 (re-exported: callers use protocol.X)
    VERSION, VERSION_MIN, FLAG_AUTH, HEADER_LEN, CRC_LEN, AUTH_LEN, TAG_LEN, MAX_PAYLOAD, MAX_BODY, MAX_LINE,
    ADDR_GROUND, ADDR_CLUSTER, ADDR_BROADCAST, MAX_NODE_ID, REASONS, FrameError, cluster_addr, addr_name,
    cobs_encode, cobs_decode, escape, unescape, _crc32, _why, Header, Signed, Covered, Body, Line,
)
from ground.protocol_msgs import (  # noqa: F401 (re-exported: callers use protocol.X)
    HELLO, HEARTBEAT, PREVOTE_REQUEST, PREVOTE, VOTE_REQUEST, VOTE, COORDINATOR, STANDBY, STATE, TELEMETRY,
    MARKET_TEL, CONFIG, INTENT, LOG, JOURNAL, BID, AWARD, PRICES, ROUND_ACK, RELEASE, RECONCILE, RECONCILE_ACK,
    ACCUSE, AUDIT_BID, REINSTATE, WITNESS, UPD_OFFER, UPD_CHUNK, UPD_ACK, UPD_CMD,
    JOIN, ROSTER, SPLIT, DAUGHTER, JOIN_REFUSED, CATCHUP, JOIN_REFUSAL_NAMES, Join, Roster, Split, Daughter, JoinRefused,
    Catchup,
    ACCUSE_REASON_BITS, ROLE_NAMES, MODE_NAMES, ROUND_STATUS_NAMES, Hello, Heartbeat,
    ALIVE_UNKNOWN, HeartbeatV2, TermOnly, Ballot, Appointment, StateEntry, STATE_MAX_ENTRIES, State, Telemetry,
    TelemetryV3, ConfigMsg, Log, JOURNAL_KINDS, JournalEntry, Journal, MarketTel, Intent, Bid, Award, Prices,
    RoundAck, Release, Reconcile, ReconcileAck, Accuse, AuditBid, Reinstate, Witness, UpdOffer, UpdChunk, UpdAck, UpdCmd,
    MESSAGES, TYPES, CHANGED, message_struct,
    Message, type_name, _plain,
)


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
