# The firmware codec against the golden vectors (tests/core/golden/frames.json,
# written by tools/make_golden.py): each vector's fields encode to exactly its
# line, and its line decodes to exactly its fields. Runs under CPython pytest
# and the MicroPython unix port; tests/ground/test_protocol.py holds the
# ground's construct codec to the same file.
import json

from msgfields import fields_of, payload_of
from node import msgs, wire

try:
    _GOLDEN = __file__.rsplit("/", 1)[0] + "/golden/frames.json"
except NameError:  # no __file__: the runner works from the repo root
    _GOLDEN = "tests/core/golden/frames.json"


def _vectors():
    try:
        f = open(_GOLDEN)
    except OSError:
        f = open("tests/core/golden/frames.json")
    with f:
        return json.load(f)["vectors"]


def _auth(v):
    return wire.Auth(bytes.fromhex(v["key"])) if v["key"] is not None else None


def test_golden_file_covers_every_type_signed_and_plain():
    vs = _vectors()
    assert len(vs) >= 20
    types = set(v["type"] for v in vs)
    assert types == set(msgs.all_layouts()), sorted(set(msgs.all_layouts()) - types)
    assert any(v["key"] is None for v in vs) and any(v["key"] is not None for v in vs)
    dsts = set(v["dst"] for v in vs)
    assert wire.ADDR_GROUND in dsts and wire.ADDR_BROADCAST in dsts
    assert any(wire.ADDR_CLUSTER <= d < wire.ADDR_BROADCAST for d in dsts)
    assert any(0 < d <= wire.MAX_NODE_ID for d in dsts)
    counts = set(len(v["fields"]["entries"]) for v in vs if v["type"] == msgs.STATE)
    assert set((0, 1, msgs.STATE_MAX_ENTRIES)) <= counts
    payloads = b"".join(bytes.fromhex(v["payload"]) for v in vs)
    for b in (b"\x00", b"\x03", b"\x1b"):
        assert b in payloads


def test_firmware_encodes_each_vector_to_its_line():
    for v in _vectors():
        payload = payload_of(v["type"], v["fields"], v["version"])
        assert payload == bytes.fromhex(v["payload"]), v["name"]
        counter = v["counter"]
        line = wire.encode(v["type"], v["src"], v["dst"], payload, v["seq"], _auth(v), counter or 0, v["version"])
        assert bytes(line).hex() == v["line"], v["name"]


def test_firmware_decodes_each_line_to_its_fields():
    for v in _vectors():
        line = bytes.fromhex(v["line"])
        assert line[-1] == 0 and b"\x00" not in line[:-1] and b"\x03" not in line, v["name"]
        f = wire.decode(line[:-1], _auth(v), v["key"] is not None)
        got = (f.version, f.flags, f.type, f.seq, f.src, f.dst, f.counter, f.payload.hex())
        want = (v["version"], v["flags"], v["type"], v["seq"], v["src"], v["dst"], v["counter"], v["payload"])
        assert got == want, (v["name"], got, want)
        assert msgs.name(f.type) == v["type_name"], v["name"]
        assert fields_of(f.type, f.payload, f.version) == v["fields"], v["name"]


def test_golden_file_has_version_2_frames_and_every_heartbeat_layout():
    vs = _vectors()
    assert set(v["version"] for v in vs) == set(range(wire.VERSION_MIN, wire.VERSION + 1))
    hb = [v for v in vs if v["type"] == msgs.HEARTBEAT]
    assert set(len(v["payload"]) // 2 for v in hb) == {20, 21}
    assert all("alive" in v["fields"] for v in hb if v["version"] >= 2)
    assert not any("alive" in v["fields"] for v in hb if v["version"] == 1)
    tel = [v for v in vs if v["type"] == msgs.TELEMETRY]
    assert set(len(v["payload"]) // 2 for v in tel) == {17, 41}
    assert all("heap_min" in v["fields"] for v in tel if v["version"] >= 3)
    # version 4: the market's BID and AWARD, each in both layouts
    bid = [v for v in vs if v["type"] == msgs.BID]
    assert set(len(v["payload"]) // 2 for v in bid) == {21, 22}
    assert all(("hw_gen" in v["fields"]) == (v["version"] >= 4) for v in bid)
    award = [v for v in vs if v["type"] == msgs.AWARD]
    assert set(len(v["payload"]) // 2 for v in award) == {26, 30}
    assert all(("end_s" in v["fields"]) == (v["version"] >= 4) for v in award)


def test_version_2_vectors_refused_by_a_version_1_decoder():
    # a version-1 node (config.proto_max 1) refuses them by the header nibble,
    # whatever the payload: before the tag or the payload is looked at
    v2 = [v for v in _vectors() if v["version"] == 2]
    assert v2
    for v in v2:
        try:
            wire.decode(bytes.fromhex(v["line"])[:-1], _auth(v), v["key"] is not None, 1)
        except wire.ProtocolError as e:
            assert e.code == wire.ERR_VERSION, (v["name"], e.code)
        else:
            raise AssertionError("%s: a version-1 decoder accepted it" % v["name"])


def test_signed_vectors_fail_under_another_key():
    other = wire.Auth(b"not the golden key")
    signed = [v for v in _vectors() if v["key"] is not None]
    assert signed
    for v in signed:
        try:
            wire.decode(bytes.fromhex(v["line"])[:-1], other)
        except wire.ProtocolError as e:
            assert e.code == wire.ERR_TAG, (v["name"], e.code)
        else:
            raise AssertionError("%s: accepted under the wrong key" % v["name"])
