# cpython-only
# Property fuzzing with hypothesis, the firmware codec against the ground's.
#
# The invariant first: any bytes give wire.decode a Frame or a ProtocolError,
# and ground.protocol.parse_line a Container or a FrameError, never anything
# else; and the two agree: the same fields, or a refusal for the same reason
# (FrameError.reason == wire.ERROR_NAMES[code]). The firmware side is
# wire.decode then the msgs layer, in the order a node applies them.
# hypothesis does not run under MicroPython; tests/core/test_fuzz.py is the
# seeded loop that does.
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ground import protocol as P
from node import msgs, wire
from node.catchup import CATCHUP
from node.wire import ProtocolError

FUZZ = settings(max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
KEYS = [None, b"k", b"fleet key \x03\x1b", bytes(range(70))]  # 70 > 64: hashed first (RFC 2104)

_FRAMING = [0x00, 0x01, 0x02, 0x03, 0x04, 0x1B, 0xFE, 0xFF, 0x10, 0x11]
# mostly the bytes the framing cares about, so 1B is often followed by any byte
framing_bytes = st.lists(st.one_of(st.sampled_from(_FRAMING), st.integers(0, 255)), max_size=80).map(bytes)
any_line = st.one_of(st.binary(max_size=wire.MAX_LINE + 20), framing_bytes)


def _fields_firmware(t, payload, version=1):
    if t == msgs.STATE:
        term, digest, first, total, entries = msgs.unpack_state(payload)
        return (term, digest, first, total, [tuple(e) for e in entries])
    if t == msgs.LOG:
        return (msgs.unpack_log(payload),)
    if t == msgs.JOURNAL:
        first, entries = msgs.unpack_journal(payload)
        return (first, [tuple(e) for e in entries])
    if t == CATCHUP:
        from node import catchup

        values = catchup.unpack(payload)
        return tuple(values[:7]) + ([tuple(e) for e in values[7]],)
    if t in (msgs.UPD_CHUNK, msgs.UPD_ACK):  # variable layouts: the update agent's parsers
        from node import update

        values = update.unpack_chunk(payload) if t == msgs.UPD_CHUNK else update.unpack_ack(payload)
        return tuple(values[:-1]) + (bytes(values[-1]).hex(),)  # the ground reads byte fields as hex
    values = tuple(msgs.unpack(t, payload, version))
    if t == msgs.UPD_OFFER:
        values = values[:1] + (values[1].hex(),) + values[2:]
    return values


def firmware_verdict(line, key=None, require_auth=False):
    try:
        f = wire.decode(line, wire.Auth(key) if key is not None else None, require_auth)
        fields = _fields_firmware(f.type, f.payload, f.version)
    except ProtocolError as e:
        return ("refused", wire.ERROR_NAMES[e.code])
    return ("frame", f.version, f.flags, f.type, f.seq, f.src, f.dst, f.payload, f.counter, fields)


def ground_verdict(line, key=None, require_auth=False):
    try:
        f = P.parse_line(line, key=key, require_auth=require_auth)
    except P.FrameError as e:
        return ("refused", e.reason)
    names = msgs.layout(f.type, f.version)[2]
    fields = tuple(f.msg[n] for n in names)
    if f.type == msgs.STATE:
        fields = fields[:4] + ([(e.node, e.version, e.data) for e in fields[4]],)
    if f.type == msgs.JOURNAL:
        fields = (fields[0], [(e.kind, e.t_ms, e.arg) for e in fields[1]])
    if f.type == CATCHUP:
        fields = fields[:7] + ([(e.node, e.parent) for e in fields[7]],)
    return ("frame", f.version, f.flags, f.type, f.seq, f.src, f.dst, f.payload, f.counter, fields)


# Every type laid out by msgs: its LAYOUTS and the tiers' (node/msgs_tiers.py), not the UPD_* ones.
_FIXED = sorted(t for t in msgs.all_layouts() if t not in msgs.UPDATE_TYPES)


@st.composite
def frame_specs(draw):
    """A valid frame: any type, any protocol version, any field values, signed or not."""
    t = draw(st.sampled_from(_FIXED))
    version = draw(st.integers(wire.VERSION_MIN, wire.VERSION))
    if t == msgs.STATE:
        n = draw(st.integers(0, msgs.STATE_MAX_ENTRIES))
        first = draw(st.integers(0, 255 - n))
        total = draw(st.integers(first + n, 255))
        entries = draw(st.lists(st.tuples(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF)),
                                min_size=n, max_size=n))
        fields = dict(term=draw(st.integers(0, 0xFFFFFFFF)), digest=draw(st.integers(0, 0xFFFFFFFF)),
                      first=first, total=total, entries=[dict(node=a, version=b, data=c) for a, b, c in entries])
        payload = msgs.pack_state(fields["term"], fields["digest"], first, total, entries)
    elif t == msgs.LOG:
        text = draw(st.text(max_size=50))
        fields = dict(text=text)
        payload = text.encode()
    elif t == msgs.JOURNAL:
        entries = draw(st.lists(st.tuples(st.integers(0, 0xFF), st.integers(0, 0xFFFFFFFF), st.integers(0, 0xFFFFFFFF)),
                                max_size=msgs.JOURNAL_MAX_ENTRIES))
        first = draw(st.integers(0, 0xFFFFFFFF))
        fields = dict(first=first, entries=[dict(kind=a, t_ms=b, arg=c) for a, b, c in entries])
        payload = msgs.pack_journal(first, entries)
    elif t == CATCHUP:
        from node import catchup

        head = [draw(st.integers(0, 0xFFFFFFFF))] + [draw(st.integers(0, 0xFFFF)) for _ in range(6)]
        entries = draw(st.lists(st.tuples(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF)), max_size=catchup.MAX_MEMBERS))
        fields = dict(zip(msgs.layout(t)[2][:7], head), entries=[dict(node=a, parent=b) for a, b in entries])
        payload = catchup.pack_fields(head, entries)
    else:
        _, fmt, names = msgs.layout(t, version)
        top = {"B": 0xFF, "H": 0xFFFF, "I": 0xFFFFFFFF}
        values = [draw(st.integers(0, top[c])) for c in fmt[1:]]
        fields = dict(zip(names, values))
        payload = msgs.pack(t, *values, version=version)
    key = draw(st.sampled_from(KEYS))
    return dict(
        type=t,
        version=version,
        src=draw(st.integers(0, wire.MAX_NODE_ID)),
        dst=draw(st.integers(0, 0xFFFF)),
        seq=draw(st.integers(0, 255)),
        fields=fields,
        payload=payload,
        key=key,
        counter=draw(st.integers(0, 0xFFFFFFFF)) if key is not None else None,
    )


def _firmware_line(s):
    auth = wire.Auth(s["key"]) if s["key"] is not None else None
    return bytes(wire.encode(s["type"], s["src"], s["dst"], s["payload"], s["seq"], auth, s["counter"] or 0,
                             s["version"]))


def _ground_line(s):
    return P.build_line(type=s["type"], src=s["src"], dst=s["dst"], seq=s["seq"], msg=s["fields"],
                        key=s["key"], counter=s["counter"], version=s["version"])


@FUZZ
@given(any_line, st.sampled_from(KEYS), st.booleans())
def test_any_bytes_give_the_same_verdict_on_both_sides(line, key, require_auth):
    fw = firmware_verdict(line, key, require_auth)
    assert ground_verdict(line, key, require_auth) == fw


@FUZZ
@given(frame_specs())
def test_both_sides_write_the_same_line_and_read_the_same_fields(s):
    line = _firmware_line(s)
    assert _ground_line(s) == line
    fw = firmware_verdict(line[:-1], s["key"], s["key"] is not None)
    assert fw[0] == "frame" and fw[3] == s["type"] and fw[7] == s["payload"]
    assert ground_verdict(line[:-1], s["key"], s["key"] is not None) == fw


@FUZZ
@given(frame_specs(), st.data())
def test_mutated_frames_get_the_same_verdict_on_both_sides(s, data):
    line = bytearray(_firmware_line(s)[:-1])
    for _ in range(data.draw(st.integers(1, 3))):
        op = data.draw(st.sampled_from(("flip", "set", "insert", "delete", "truncate", "append")))
        at = data.draw(st.integers(0, max(len(line) - 1, 0)))
        if op == "flip" and line:
            line[at] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "set" and line:
            line[at] = data.draw(st.sampled_from(_FRAMING + [data.draw(st.integers(0, 255))]))
        elif op == "insert":
            line[at:at] = bytes([data.draw(st.integers(0, 255))])
        elif op == "delete" and line:
            del line[at]
        elif op == "truncate":
            del line[at:]
        elif op == "append":
            line += data.draw(st.binary(max_size=500))
    key = data.draw(st.sampled_from(KEYS))
    assert ground_verdict(bytes(line), key) == firmware_verdict(bytes(line), key)


@FUZZ
@given(frame_specs(), st.integers(0, 15), st.integers(0, 15), st.integers(0, 0xFFFF), st.integers(0, 255))
def test_well_formed_bodies_with_any_header_get_the_same_verdict(s, version, flags, src, type):
    # a good crc over any header: the checks after the crc, and the msgs layer
    body = bytearray(wire.encode_body(s["type"], s["src"], s["dst"], s["payload"], s["seq"],
                                      wire.Auth(s["key"]) if s["key"] else None, s["counter"] or 0, s["version"])[:-4])
    body[0] = (version << 4) | flags
    body[1] = type
    body[3:5] = struct.pack("<H", src)
    line = P.escape(P.cobs_encode(bytes(body) + struct.pack("<I", P._crc32(bytes(body)))))
    for key, required in ((None, False), (s["key"], False), (b"other", True)):
        assert ground_verdict(line, key, required) == firmware_verdict(line, key, required)


@FUZZ
@given(st.sampled_from(_FIXED), st.one_of(st.binary(max_size=240), framing_bytes),
       st.integers(wire.VERSION_MIN, wire.VERSION))
def test_any_payload_gets_the_same_fields_or_refusal(t, payload, version):
    try:
        fw = ("fields", _fields_firmware(t, payload, version))
    except ProtocolError as e:
        fw = ("refused", wire.ERROR_NAMES[e.code])
    try:
        m = P.parse_message(t, payload, version)
        got = tuple(m[n] for n in msgs.layout(t, version)[2])
        if t == msgs.STATE:
            got = got[:4] + ([(e.node, e.version, e.data) for e in got[4]],)
        if t == msgs.JOURNAL:
            got = (got[0], [(e.kind, e.t_ms, e.arg) for e in got[1]])
        if t == CATCHUP:
            got = got[:7] + ([(e.node, e.parent) for e in got[7]],)
        ground = ("fields", got)
    except P.FrameError as e:
        ground = ("refused", e.reason)
    assert ground == fw


@FUZZ
@given(st.one_of(st.binary(max_size=700), framing_bytes))
def test_cobs_and_escape_are_the_same_functions_on_both_sides(data):
    assert P.cobs_encode(data) == bytes(wire.cobs_encode(data))
    assert P.escape(data) == bytes(wire.escape(data))
    for f_ground, f_fw in ((P.cobs_decode, wire.cobs_decode), (P.unescape, wire.unescape)):
        try:
            want = ("ok", bytes(f_fw(data)))
        except ProtocolError as e:
            want = ("refused", wire.ERROR_NAMES[e.code])
        try:
            got = ("ok", f_ground(data))
        except P.FrameError as e:
            got = ("refused", e.reason)
        assert got == want
