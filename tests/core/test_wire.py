# The wire codec: runs under CPython pytest and the MicroPython unix port.
from node import wire
from node.replay import ReplayWindow
from node.wire import ProtocolError


def _raises(code, fn, *args):
    try:
        fn(*args)
    except ProtocolError as e:
        assert e.code == code, (e.code, code)
        return
    raise AssertionError("no ProtocolError")


def test_cobs_round_trips_edge_cases():
    cases = [b"", b"\x00", b"\x00\x00", b"a", b"a\x00b", bytes(range(256)), b"\xff" * 253, b"\xff" * 254,
             b"\xff" * 255, b"\xff" * 254 + b"\x00" + b"x", b"\x00" * 300, b"\x01" * 600, b"\x00" + b"\x01" * 508 + b"\x00"]
    for data in cases:
        enc = wire.cobs_encode(data)
        assert b"\x00" not in enc
        assert bytes(wire.cobs_decode(enc)) == data, data


def test_cobs_adds_one_byte_under_254():
    for n in (1, 10, 100, 253):
        assert len(wire.cobs_encode(b"\x01" * n)) == n + 1


def test_cobs_rejects_block_past_end():
    _raises(wire.ERR_COBS, wire.cobs_decode, b"\x05ab")
    _raises(wire.ERR_COBS, wire.cobs_decode, b"\xff" + b"\x01" * 254 + b"\x05ab")  # after a full block


def test_escape_removes_ctrl_c_and_round_trips():
    data = bytes(range(1, 256)) + b"\x03\x1b\x1b\x03\x1b\x01\x1b\x02"
    esc = wire.escape(data)
    assert b"\x03" not in esc and b"\x00" not in esc
    assert bytes(wire.unescape(esc)) == data


def test_unescape_rejects_raw_ctrl_c_and_dangling_escape():
    _raises(wire.ERR_ESCAPE, wire.unescape, b"ab\x03")
    _raises(wire.ERR_ESCAPE, wire.unescape, b"ab\x1b")
    _raises(wire.ERR_ESCAPE, wire.unescape, b"ab\x1b\x05")


def test_frame_round_trip_plain():
    line = wire.encode(0x02, 7, wire.cluster_addr(3), b"hello\x00\x03world", seq=300)
    assert line[-1] == 0 and b"\x00" not in line[:-1] and b"\x03" not in line
    f = wire.decode(line[:-1])
    assert (f.type, f.src, f.dst, f.seq, f.payload) == (0x02, 7, 0xF003, 300 & 0xFF, b"hello\x00\x03world")
    assert f.version == wire.VERSION_MIN and f.counter is None  # unless told, frames go out at the oldest


def test_plain_overhead_is_header_crc_and_framing():
    payload = b"\x11" * 20  # no byte needing an escape
    line = wire.encode(0x02, 0x0101, 0x0202, payload, seq=0x11)
    assert len(line) - len(payload) == wire.HEADER_LEN + wire.CRC_LEN + 2


def test_frame_round_trip_authenticated():
    auth = wire.Auth(b"fleet key")
    line = wire.encode(0x10, 4, 5, b"\x01\x02", seq=1, auth=auth, counter=77)
    f = wire.decode(line[:-1], auth)
    assert f.counter == 77 and f.payload == b"\x01\x02"


def test_wrong_key_is_refused_and_unsigned_refused_when_required():
    line = wire.encode(0x10, 4, 5, b"\x01", auth=wire.Auth(b"k1"), counter=1)
    _raises(wire.ERR_TAG, wire.decode, line[:-1], wire.Auth(b"k2"))
    plain = wire.encode(0x10, 4, 5, b"\x01")
    _raises(wire.ERR_NO_AUTH, wire.decode, plain[:-1], wire.Auth(b"k1"), True)


def test_hmac_matches_rfc4231_case_2():
    # RFC 4231 test case 2, truncated to our tag length.
    tag = wire.Auth(b"Jefe").tag(b"what do ya want for nothing?")
    assert tag == bytes.fromhex("5bdcc146bf60754e")


def test_bit_flip_is_caught_by_crc():
    line = bytearray(wire.encode(0x02, 1, 2, b"payload!"))
    body = wire.cobs_decode(wire.unescape(bytes(line[:-1])))
    for i in range(len(body)):
        bad = bytearray(body)
        bad[i] ^= 0x10
        try:
            wire.decode_body(bad)
        except ProtocolError as e:
            assert e.code in (wire.ERR_CRC,), e.code
        else:
            raise AssertionError("flip at %d not caught" % i)


def test_wrong_version_is_refused():
    body = bytearray(wire.encode_body(0x02, 1, 2, b"x", 0, version=wire.VERSION + 1))
    _raises(wire.ERR_VERSION, wire.decode_body, body)


def test_each_version_round_trips_in_the_header_nibble():
    auth = wire.Auth(b"fleet key")
    for version in range(wire.VERSION_MIN, wire.VERSION + 1):
        line = wire.encode(0x12, 4, 5, b"\x01\x02", 9, auth, 3, version)
        assert wire.cobs_decode(wire.unescape(bytes(line[:-1])))[0] >> 4 == version
        f = wire.decode(line[:-1], auth)
        assert (f.version, f.counter, f.payload) == (version, 3, b"\x01\x02")


def test_a_node_refuses_versions_above_its_own_by_the_header_alone():
    # version_max is a node's config.proto_max: a version-1 node refuses a
    # version-2 frame as ERR_VERSION, even signed under the wrong key
    line = wire.encode(0x12, 4, 5, b"\x01\0\0\0", 0, wire.Auth(b"other key"), 1, 2)[:-1]
    _raises(wire.ERR_VERSION, wire.decode, line, wire.Auth(b"fleet key"), True, 1)
    _raises(wire.ERR_TAG, wire.decode, line, wire.Auth(b"fleet key"), True, 2)
    ok = wire.encode(0x12, 4, 5, b"\x01\0\0\0", 0, None, 0, 1)[:-1]
    assert wire.decode(ok, None, False, 1).version == 1


def test_short_and_long_bodies_are_refused():
    _raises(wire.ERR_SHORT, wire.decode_body, b"\x10\x02\x00")
    _raises(wire.ERR_EMPTY, wire.decode, b"")
    _raises(wire.ERR_TOO_LONG, wire.decode, b"\x01" * (wire.MAX_LINE + 1))


def test_replay_window_accepts_each_counter_once_in_any_order():
    w = ReplayWindow((0, 1, 2), size=8)
    a, b = wire.index_of(w.sources, 1), wire.index_of(w.sources, 2)
    assert (a, b, wire.index_of(w.sources, 3)) == (1, 2, -1)
    assert w.accept(a, 100)
    assert not w.accept(a, 100)
    assert w.accept(a, 95) and not w.accept(a, 95)
    assert w.accept(a, 101)
    assert not w.accept(a, 93)  # 101 - 93 = 8: outside the window
    assert w.accept(a, 94)
    assert w.accept(b, 1)  # windows are per source
    assert w.accept(a, 1000) and w.accept(a, 999) and not w.accept(a, 992)
    assert w.accept(a, 1063) and not w.accept(a, 999)  # the bit of 999 is 1063's slot: cleared, yet too old


def test_the_top_counter_is_exact_across_blocks_and_in_the_last_block():
    # the top is kept as its offset in the ceiling's block (docs/PROTOCOL.md): what the window
    # refuses after a block boundary, for the ground's 16-counter blocks, and in the last block
    # (its ceiling saturates) shows the top read back is the counter accepted
    w = ReplayWindow((0, 1))
    assert w.accept(1, 1023) and w.accept(1, 1025) and w.ceiling[1] == 2048
    assert w.accept(1, 1024) and not w.accept(1, 1023) and not w.accept(1, 961) and w.accept(1, 962)
    assert w.accept(1, 2047) and w.accept(1, 2048) and w.ceiling[1] == 3072 and not w.accept(1, 1984)
    assert w.accept(1, 1985) and not w.accept(1, 2048)
    assert w.accept(0, 15) and w.accept(0, 17) and w.ceiling[0] == 32 and w.accept(0, 16) and not w.accept(0, 15)
    top = 0xFFFFFFFF
    assert w.accept(1, 0xFFFFFBFF) and w.accept(1, 0xFFFFFC05) and w.ceiling[1] == top
    assert w.accept(1, top - 1) and not w.accept(1, 0xFFFFFC05) and w.accept(1, top) and not w.accept(1, top - 1)
    assert w.accept(1, top - 63) and not w.accept(1, top - 64)
    assert w.heard(1) and not w.tell(1, 5)  # heard since boot: never told
    w2 = ReplayWindow((0, 1))
    w2.load(b"".join(bytes(p) for p in w.take()))
    assert not w2.heard(1) and w2.tell(1, 5) and not w2.tell(1, 5)  # told once per boot
    assert not w2.accept(1, top - 1) and w2.accept(1, top) and w2.heard(1)


def _lines(n):
    return [wire.encode(0x02, i + 1, 0xFFFF, bytes([i, 0, 3, 27]) * i) for i in range(n)]


def test_splitter_whole_and_byte_by_byte():
    lines = _lines(6)
    stream = b"".join(bytes(l) for l in lines)
    s = wire.FrameSplitter()
    got = s.feed(stream)
    assert got == [bytes(l[:-1]) for l in lines]
    s = wire.FrameSplitter()
    got = []
    for b in stream:
        got += s.feed(bytes([b]))
    assert got == [bytes(l[:-1]) for l in lines]


def test_splitter_resynchronises_after_junk_and_overflow():
    lines = _lines(3)
    s = wire.FrameSplitter()
    junk = b"\x01\x02garbage" + b"\xff" * (wire.MAX_LINE + 10) + b"\x00"
    got = s.feed(b"noise" + junk + bytes(lines[0]) + b"\x00\x00" + bytes(lines[1]))
    assert s.overflows == 1
    frames = []
    for g in got:
        try:
            frames.append(wire.decode(g))
        except ProtocolError:
            pass
    assert [f.src for f in frames] == [1, 2]


def test_splitter_accepts_memoryview():
    line = bytes(_lines(2)[1])
    assert wire.FrameSplitter().feed(memoryview(line)) == [line[:-1]]
