# mpy-heap: 256K (the test's own junk streams need contiguous blocks; the node under test is one)
# Fuzzing the firmware's decoders. The invariant first:
#
#     any bytes give a Frame or a ProtocolError, never another exception;
#     a node fed any bytes counts the error and carries on.
#
# A seeded mutation loop (node.rng.Rng, so CPython and MicroPython run the same
# cases): random bytes, truncations, bit flips, inserted and dropped bytes,
# oversize lines and bodies, every version nibble, junk between frames on a
# stream, and all of it fed to Node.receive. A few thousand cases in all, so it
# stays quick under the MicroPython unix port. Where a mutation has one right
# answer (a prefix never decodes, an oversize line is too_long, a foreign
# version is refused) the test asserts that answer, not just "no crash".
# tests/core/test_fuzz_hypothesis.py (CPython only) adds hypothesis and the
# ground's construct codec.
import binascii
import struct

from mesh import Mesh
from node import election as el
from node import msgs, wire
from node.catchup import CATCHUP
from node.config import Config
from node.node import Node
from node.rng import Rng
from node.wire import ProtocolError

KEY = b"fuzz key"
AUTH = wire.Auth(KEY)


def _bytes(rng, n, alphabet=None):
    out = bytearray(n)  # filled in place: no list of n ints to fragment a small heap
    if alphabet is None:
        for i in range(n):
            out[i] = rng.below(256)
    else:
        for i in range(n):
            out[i] = alphabet[rng.below(len(alphabet))]
    return bytes(out)


# Bytes that matter to the framing: delimiter, escape, Ctrl-C, short COBS codes.
_FRAMING = b"\x00\x01\x02\x03\x04\x1b\xfe\xff\x10\x11"


def _random_payload(rng, t):
    if t == msgs.STATE:
        n = rng.below(msgs.STATE_MAX_ENTRIES + 1)
        first = rng.below(256 - n)
        entries = [(rng.below(0x10000), rng.below(0x10000), rng.next32()) for _ in range(n)]
        return msgs.pack_state(rng.next32(), rng.next32(), first, first + n + rng.below(256 - first - n), entries)
    if t == msgs.LOG:
        return _bytes(rng, rng.below(60), b"abc \x00\x03\x1b\n").decode()  # ASCII: a str on both runtimes
    if t == msgs.JOURNAL:
        n = rng.below(msgs.JOURNAL_MAX_ENTRIES + 1)
        return msgs.pack_journal(rng.next32(), [(rng.below(8), rng.next32(), rng.next32()) for _ in range(n)])
    if t == CATCHUP:
        from node.catchup import pack_fields

        head = (rng.next32(),) + tuple(rng.below(0x10000) for _ in range(6))
        return pack_fields(head, [(rng.below(0x10000), rng.below(0x10000)) for _ in range(rng.below(53))])
    fmt = msgs.layout(t)[1]
    values = []
    for c in fmt[1:]:
        values.append(rng.next32() & {"B": 0xFF, "H": 0xFFFF, "I": 0xFFFFFFFF}[c])
    return msgs.pack(t, *values)


_TYPES = sorted(t for t in msgs.all_layouts() if t not in msgs.UPDATE_TYPES)  # msgs.LAYOUTS and the tiers'


def _good(rng):
    """(line without its 0x00, type, payload, signed) for a random valid frame."""
    t = _TYPES[rng.below(len(_TYPES))]
    payload = _random_payload(rng, t)
    if t == msgs.LOG:
        payload = payload.encode()
    signed = rng.below(2) == 1
    src = rng.below(wire.MAX_NODE_ID + 1)
    dst = rng.below(0x10000)
    line = wire.encode(t, src, dst, payload, rng.below(256), AUTH if signed else None, rng.next32())
    return bytes(line[:-1]), t, payload, signed


def _frame_or_error(line, auth=None, require_auth=False):
    """wire.decode then the msgs layer: a (Frame, fields) or a ProtocolError.

    Any other exception escapes and fails the test: that is the invariant."""
    try:
        f = wire.decode(line, auth, require_auth)
        if f.type == msgs.STATE:
            fields = msgs.unpack_state(f.payload)
        elif f.type == msgs.LOG:
            fields = msgs.unpack_log(f.payload)
        elif f.type == msgs.JOURNAL:
            fields = msgs.unpack_journal(f.payload)
        elif f.type == CATCHUP:
            from node.catchup import unpack

            fields = unpack(f.payload)
        else:
            fields = msgs.unpack(f.type, f.payload)
        return f, fields
    except ProtocolError as e:
        assert 0 < e.code < wire.N_ERRORS, e.code
        assert str(e)  # every code has a name
        return e


def _framed(body):
    """A line from a raw body: crc appended, COBS, escape (no length checks)."""
    body = bytes(body)
    return bytes(wire.escape(wire.cobs_encode(body + struct.pack("<I", binascii.crc32(body)))))


def test_random_bytes_give_a_frame_or_a_protocol_error():
    rng = Rng(101)
    for i in range(1200):
        n = rng.below(wire.MAX_LINE + 40) if i % 4 == 0 else rng.below(64)
        line = _bytes(rng, n, _FRAMING if i % 2 else None)
        _frame_or_error(line)
        _frame_or_error(line, AUTH, True)
        body = _bytes(rng, rng.below(wire.MAX_BODY + 10))
        try:
            wire.decode_body(body)
        except ProtocolError:
            pass


def test_mutated_frames_never_decode_to_another_frame():
    rng = Rng(202)
    kinds = [0] * 6
    for i in range(900):
        line, t, payload, signed = _good(rng)
        kind = i % 6
        if kind == 0:  # one bit flipped
            bad = bytearray(line)
            bad[rng.below(len(bad))] ^= 1 << rng.below(8)
        elif kind == 1:  # a proper prefix: never a frame
            bad = line[: rng.below(len(line))]
        elif kind == 2:  # one byte inserted
            at = rng.below(len(line) + 1)
            bad = line[:at] + _bytes(rng, 1, _FRAMING if rng.below(2) else None) + line[at:]
        elif kind == 3:  # one byte dropped
            at = rng.below(len(line))
            bad = line[:at] + line[at + 1 :]
        elif kind == 4:  # two frames run together (a lost delimiter)
            bad = line + _good(rng)[0]
        else:  # a slice of it repeated
            at = rng.below(len(line))
            bad = line[:at] + line[at : at + 1 + rng.below(8)] + line[at:]
        got = _frame_or_error(bytes(bad), AUTH)
        if isinstance(got, ProtocolError):
            kinds[kind] += 1
            continue
        f = got[0]
        assert kind != 1, "a prefix decoded"
        # Anything accepted must be the original frame, byte for byte.
        assert (f.type, f.payload, f.counter is not None) == (t, payload, signed), (kind, bytes(bad))
    assert min(kinds) > 100, kinds  # every kind was refused, nearly always


def test_a_line_holding_a_zero_is_never_a_frame():
    # The delimiter cannot occur inside a line: not where a COBS code byte
    # falls, and not inside a block either (wire.cobs_decode once copied such
    # a zero through, so one frame had many accepted spellings).
    rng = Rng(250)
    for _ in range(150):
        line, _, _, _ = _good(rng)
        at = rng.below(len(line) + 1)
        e = _frame_or_error(line[:at] + b"\x00" + line[at:])
        splits_escape = at > 0 and line[at - 1] == 0x1B  # 1B 00: caught a layer earlier
        assert isinstance(e, ProtocolError) and e.code == (wire.ERR_ESCAPE if splits_escape else wire.ERR_COBS), e
        body = wire.cobs_decode(wire.unescape(line))
        if b"\x00" in body:  # the same body as one block, its zeros literal
            e = _frame_or_error(bytes(wire.escape(bytes([len(body) + 1]) + bytes(body))))
            assert isinstance(e, ProtocolError) and e.code == wire.ERR_COBS, e


def test_oversize_lines_and_bodies_are_too_long():
    rng = Rng(303)
    for _ in range(60):
        line, _, _, _ = _good(rng)
        long_line = line + _bytes(rng, wire.MAX_LINE + 1 - len(line) + rng.below(300))
        e = _frame_or_error(long_line)
        assert isinstance(e, ProtocolError) and e.code == wire.ERR_TOO_LONG
        # a body past MAX_BODY with a good crc: too long, not crc
        head = struct.pack("<BBBHH", wire.VERSION << 4, msgs.LOG, 0, 1, 2)
        body = head + _bytes(rng, wire.MAX_BODY - wire.HEADER_LEN - wire.CRC_LEN + 1 + rng.below(40), b"ab")
        e = _frame_or_error(_framed(body))
        assert isinstance(e, ProtocolError) and e.code == wire.ERR_TOO_LONG, e
        # and one under the minimum: short
        e = _frame_or_error(_framed(head[: rng.below(wire.HEADER_LEN)]))
        assert isinstance(e, ProtocolError) and e.code == wire.ERR_SHORT, e


def test_every_version_nibble_is_refused_but_the_supported_ones():
    rng = Rng(404)
    for version in range(16):
        for _ in range(10):
            t = _TYPES[rng.below(len(_TYPES))]
            payload = _random_payload(rng, t)
            if t == msgs.LOG:
                payload = payload.encode()
            body = wire.encode_body(t, rng.below(wire.MAX_NODE_ID + 1), rng.below(0x10000), payload,
                                    rng.below(256), None, 0, version)
            got = _frame_or_error(_framed(body[:-4]))
            if wire.VERSION_MIN <= version <= wire.VERSION:
                assert not isinstance(got, ProtocolError), got
                assert got[0].version == version
            else:
                assert isinstance(got, ProtocolError) and got.code == wire.ERR_VERSION, (version, got)


def _stream(rng, n_frames):
    """Valid lines with junk between them; each valid line follows a 0x00.

    Returns (stream, [good lines], number of zero-free junk runs over MAX_LINE).
    """
    parts = []
    goods = []
    long_runs = 0
    for i in range(n_frames):
        kind = rng.below(4)
        if i == 0:
            kind = 2  # at least one over-long run, whatever the seed and the message types draw
        if kind == 0:
            junk = _bytes(rng, rng.below(40))  # may hold zeros: extra short lines
        elif kind == 1:
            junk = _bytes(rng, rng.below(40), _FRAMING)
        elif kind == 2 and i % 5 == 0:
            junk = _bytes(rng, wire.MAX_LINE + 1 + rng.below(200), b"\x01\x1b\x02\xff")  # no zero
            long_runs += 1
        else:
            junk = b""
        line = _good(rng)[0]
        goods.append(line)
        parts.append(junk + b"\x00" + line + b"\x00")
    return b"".join(parts), goods, long_runs


def test_splitter_then_decode_recovers_every_frame_from_junk():
    rng = Rng(505)
    stream, goods, long_runs = _stream(rng, 50)
    assert long_runs > 0
    for feed_as in ("whole", "chunks", "memoryview"):
        s = wire.FrameSplitter()
        if feed_as == "whole":
            lines = s.feed(stream)
        else:
            lines = []
            at = 0
            while at < len(stream):
                step = 1 + rng.below(64)
                chunk = stream[at : at + step]
                lines += s.feed(memoryview(chunk) if feed_as == "memoryview" else chunk)
                at += step
        decoded = []
        for line in lines:
            assert 0 < len(line) <= wire.MAX_LINE
            got = _frame_or_error(line, AUTH)
            if not isinstance(got, ProtocolError):
                decoded.append(line)
        assert decoded == goods, feed_as
        assert s.overflows == long_runs, (feed_as, s.overflows, long_runs)
        assert s.pending() == 0


_WRONG = wire.Auth(b"not the key")


def _junk_line(rng, auth=None):
    """(line, ERR_* code) for a line wire.decode refuses under `auth`."""
    while True:
        kind = rng.below(5)
        if kind == 0:
            line = _bytes(rng, rng.below(80), _FRAMING if rng.below(2) else None)
        elif kind == 1:
            line = bytearray(_good(rng)[0])
            line[rng.below(len(line))] ^= 1 << rng.below(8)
            line = bytes(line)
        elif kind == 2:
            line = _good(rng)[0]
            line = line[: rng.below(len(line))]
        elif kind == 3:  # well-formed but signed with another key, or a wrong version
            t = _TYPES[rng.below(len(_TYPES))]
            p = _random_payload(rng, t)
            p = p.encode() if t == msgs.LOG else p
            # a version the node speaks (it is on firmware 1.0: protocol 1 only), or one it never decodes
            v = wire.VERSION_MIN if rng.below(2) else wire.VERSION + 1 + rng.below(15 - wire.VERSION)
            line = bytes(wire.encode(t, 1, wire.cluster_addr(1), p, 0, _WRONG, rng.next32(), v)[:-1])
        else:  # unsigned (refused when auth is required) or src out of range
            body = wire.encode_body(msgs.HEARTBEAT, 0xF000 + rng.below(0x1000), 1, _random_payload(rng, msgs.HEARTBEAT), 0)
            line = _framed(body[:-4]) if rng.below(2) else bytes(wire.encode(msgs.VOTE_REQUEST, 1, 1, b"\0\0\0\0")[:-1])
        try:
            wire.decode(line, auth, auth is not None)
        except ProtocolError as e:
            return line, e.code


def test_node_counts_every_bad_frame_and_still_elects_itself():
    for auth_key in (None, KEY):
        rng = Rng(606)
        node = Node(1, Config(members=[1], auth_key=auth_key, require_auth=auth_key is not None), seed=6)
        node.poll(0)
        auth = wire.Auth(auth_key) if auth_key else None
        tally = [0] * wire.N_ERRORS
        for i in range(400):
            line, code = _junk_line(rng, auth)
            tally[code] += 1
            assert node.receive(line, 1 + i) is None
        assert node.errors == tally, (node.errors, tally)
        want = (wire.ERR_TAG, wire.ERR_NO_AUTH) if auth else (wire.ERR_ADDRESS,)
        for code in (wire.ERR_ESCAPE, wire.ERR_COBS, wire.ERR_CRC, wire.ERR_VERSION) + want:
            assert tally[code], (code, tally)  # the junk reached every layer
        assert node.frames_in == 0 and node.role == el.FOLLOWER
        sent = []
        t = 1000
        while node.role != el.COORDINATOR and t < 10000:
            sent += node.poll(t)
            t += 50
        assert node.role == el.COORDINATOR and node.term == 1
        types = [wire.decode(line[:-1], auth, auth is not None).type for _, line in sent]
        assert msgs.COORDINATOR in types and msgs.HEARTBEAT in types


def test_cluster_elects_one_coordinator_through_junk_on_every_link():
    rng = Rng(707)
    m = Mesh(3, seed=7)
    injected = 0
    for _ in range(80):  # 80 x 50 ms: several election timeouts of junk
        m.run_for(50)
        for i in m.ids:
            for _ in range(2):
                m.nodes[i].receive(_junk_line(rng)[0], m.now)
                injected += 1
    assert m.run_until(m.now + 20000, until=lambda mesh: mesh.agreed_coordinator() is not None)
    assert m.split_brains() == []
    errors = 0
    for i in m.ids:
        for n in m.nodes[i].errors:
            errors += n
    assert errors == injected
