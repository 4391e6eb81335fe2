# Message layouts across protocol versions (node/msgs.py): what each version
# lays out, the additive rule, and moving values between versions by name.
# Runs under CPython and the MicroPython unix port.
from node import msgs, wire
from node.wire import ProtocolError

_HB1 = (7, 1, 2, msgs.ROLE_COORDINATOR, 0, 1, 0x02000000, 0x89ABCDEF)  # term .. digest


def _raises(code, fn, *args):
    try:
        fn(*args)
    except ProtocolError as e:
        assert e.code == code, (e.code, code)
        return
    raise AssertionError("no ProtocolError")


# Every type laid out by msgs: its LAYOUTS and the tiers' (node/msgs_tiers.py),
# not the UPD_* ones (node/update.py).
_FIXED = sorted(t for t in msgs.all_layouts() if t not in msgs.UPDATE_TYPES)


def test_version_1_is_layouts_and_version_2_appends_alive_to_heartbeat():
    assert msgs.layout(msgs.HEARTBEAT, 1) is msgs.LAYOUTS[msgs.HEARTBEAT]
    v2 = msgs.layout(msgs.HEARTBEAT, 2)
    assert v2[0] == "heartbeat" and list(v2[2]) == list(msgs.LAYOUTS[msgs.HEARTBEAT][2]) + ["alive"]
    assert v2[1] == msgs.LAYOUTS[msgs.HEARTBEAT][1] + "B"
    for t in _FIXED:
        if t != msgs.HEARTBEAT:
            assert msgs.layout(t, 2) is msgs.layout(t, 1), msgs.name(t)
    assert msgs.layout(0x7F, 1) is None and msgs.layout(0x7F, 2) is None


def test_every_later_layout_only_appends_fields_each_with_a_default():
    for t in _FIXED:
        for version in range(wire.VERSION_MIN + 1, wire.VERSION + 1):
            old, new = msgs.layout(t, version - 1), msgs.layout(t, version)
            if old is new:
                continue
            assert old[1] is not None and new[1].startswith(old[1]), msgs.name(t)
            assert new[2][: len(old[2])] == old[2], msgs.name(t)
            for field in new[2][len(old[2]):]:
                assert field in msgs.DEFAULTS, (msgs.name(t), field)


def test_each_version_packs_and_unpacks_its_own_layout_only():
    p1 = msgs.pack(msgs.HEARTBEAT, *_HB1)
    p2 = msgs.pack(msgs.HEARTBEAT, *(_HB1 + (3,)), version=2)
    assert len(p1) == 20 and len(p2) == 21 and p2[:20] == p1 and p2[20] == 3
    assert msgs.unpack(msgs.HEARTBEAT, p1) == _HB1
    assert msgs.unpack(msgs.HEARTBEAT, p2, 2) == _HB1 + (3,)
    _raises(wire.ERR_PAYLOAD, msgs.unpack, msgs.HEARTBEAT, p1, 2)
    _raises(wire.ERR_PAYLOAD, msgs.unpack, msgs.HEARTBEAT, p2, 1)
    _raises(wire.ERR_TYPE, msgs.unpack, 0x7F, p1, 2)


def test_a_version_1_heartbeat_reads_as_the_newest_layout_with_the_default():
    p1 = msgs.pack(msgs.HEARTBEAT, *_HB1)
    assert msgs.unpack_as(msgs.HEARTBEAT, p1, 1) == _HB1 + (msgs.ALIVE_UNKNOWN,)
    p2 = msgs.pack(msgs.HEARTBEAT, *(_HB1 + (4,)), version=2)
    assert msgs.unpack_as(msgs.HEARTBEAT, p2, 2) == _HB1 + (4,)
    assert msgs.unpack_as(msgs.HEARTBEAT, p2, 2, 1) == _HB1  # down: `alive` left out


def test_pack_as_writes_the_newest_values_in_an_older_layout():
    values = _HB1 + (4,)
    assert msgs.pack_as(msgs.HEARTBEAT, values, 2) == msgs.pack(msgs.HEARTBEAT, *values, version=2)
    assert msgs.pack_as(msgs.HEARTBEAT, values, 1) == msgs.pack(msgs.HEARTBEAT, *_HB1)
    vote = (9, 3, 1)
    assert msgs.convert(msgs.VOTE, vote, 2, 1) is vote  # an unchanged layout: the same tuple back
    assert msgs.pack_as(msgs.VOTE, vote, 1) == msgs.pack(msgs.VOTE, *vote)
