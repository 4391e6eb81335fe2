# The ground's construct codec (ground/protocol.py) against the firmware's:
#  - the golden vectors, both directions;
#  - live, against the real MicroPython unix port running the firmware codec
#    (tests/ground/mpy_codec_peer.py): seeded random frames of every type,
#    signed and plain, encoded on one side and decoded on the other, then
#    seeded junk, where both sides must refuse for the same reason;
#  - the error reasons, build-side validation and describe().
import json
import os
import random
import struct
import subprocess

import pytest

from ground import protocol as P
from ground.protocol import FrameError
from node import msgs, wire
from node.catchup import CATCHUP

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GOLDEN = os.path.join(ROOT, "tests", "core", "golden", "frames.json")
MPY = os.path.join(ROOT, ".venv", "bin", "micropython")
PEER = os.path.join(ROOT, "tests", "ground", "mpy_codec_peer.py")
PEER_TIMEOUT_S = 300  # a hang guard for the subprocess, not a performance bound


def _vectors():
    with open(GOLDEN) as f:
        return json.load(f)["vectors"]


def _key(v):
    return bytes.fromhex(v["key"]) if v["key"] is not None else None


def _plain(obj):
    """construct Containers as plain dicts and lists, for comparing with JSON."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items() if not k.startswith("_")}
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    return obj


def _header(f):
    return {k: f[k] for k in ("version", "flags", "type", "seq", "src", "dst", "counter")}


# ---- golden vectors ------------------------------------------------------


def test_construct_parses_every_golden_line_to_its_fields():
    for v in _vectors():
        line = bytes.fromhex(v["line"])
        f = P.parse_line(line[:-1], key=_key(v), require_auth=v["key"] is not None)
        assert _header(f) == {k: v[k] for k in ("version", "flags", "type", "seq", "src", "dst", "counter")}, v["name"]
        assert f.payload.hex() == v["payload"], v["name"]
        assert _plain(f.msg) == v["fields"], v["name"]
        assert P.type_name(f.type) == v["type_name"], v["name"]


def test_construct_builds_every_golden_vector_to_its_line():
    for v in _vectors():
        line = P.build_line(
            type=v["type"], src=v["src"], dst=v["dst"], seq=v["seq"], msg=v["fields"],
            key=_key(v), counter=v["counter"], version=v["version"],
        )
        assert line.hex() == v["line"], v["name"]
        assert P.build_message(v["type"], v["fields"], v["version"]).hex() == v["payload"], v["name"]


def test_parsed_frame_builds_back_to_the_same_line():
    for v in _vectors():
        line = bytes.fromhex(v["line"])
        f = P.parse_line(line[:-1])  # no key: the tag is carried as read
        assert P.build_line(**f) == line, v["name"]
        assert P.build_line(**f, key=_key(v)) == line, v["name"]


def test_signed_golden_lines_refused_under_another_key_and_unsigned_when_required():
    for v in _vectors():
        line = bytes.fromhex(v["line"])[:-1]
        if v["key"] is not None:
            with pytest.raises(FrameError) as e:
                P.parse_line(line, key=b"not the golden key")
            assert e.value.reason == "tag"
        else:
            with pytest.raises(FrameError) as e:
                P.parse_line(line, key=b"any", require_auth=True)
            assert e.value.reason == "no_auth"


# ---- random frames, and the live cross-check against MicroPython ---------

_MAX = {"B": 0xFF, "H": 0xFFFF, "I": 0xFFFFFFFF}
_TEXT = "abc xyz 019 \x00\x03\x1b\x7f \u00e9\u03bb\u2603\U0001f680"


def _random_addr(rng):
    kind = rng.randrange(4)
    if kind == 0:
        return wire.ADDR_GROUND
    if kind == 1:
        return wire.ADDR_BROADCAST
    if kind == 2:
        return wire.cluster_addr(rng.randrange(0xFFF))
    return rng.randrange(1, wire.MAX_NODE_ID + 1)


def _random_fields(rng, t, version=1):
    """Random values for every field of type t in `version`, from the firmware's layouts."""
    if t == msgs.STATE:
        n = rng.choice((0, 1, rng.randrange(27), msgs.STATE_MAX_ENTRIES))
        first = rng.randrange(256 - n)
        entries = [{"node": rng.randrange(0x10000), "version": rng.randrange(0x10000),
                    "data": rng.randrange(1 << 32)} for _ in range(n)]
        return {"term": rng.randrange(1 << 32), "digest": rng.randrange(1 << 32), "first": first,
                "total": rng.randrange(first + n, 256), "entries": entries}
    if t == msgs.JOURNAL:
        n = rng.randrange(msgs.JOURNAL_MAX_ENTRIES + 1)
        return {"first": rng.randrange(1 << 32), "entries": [{"kind": rng.randrange(256), "t_ms": rng.randrange(1 << 32),
                                                               "arg": rng.randrange(1 << 32)} for _ in range(n)]}
    if t == msgs.LOG:
        while True:
            text = "".join(rng.choice(_TEXT) for _ in range(rng.randrange(60)))
            if len(text.encode()) <= wire.MAX_PAYLOAD:
                return {"text": text}
    if t == CATCHUP:
        names = msgs.layout(t)[2][:7]
        out = {n: rng.randrange(1 << 32) if n == "term" else rng.randrange(1 << 16) for n in names}
        out["entries"] = [{"node": rng.randrange(1 << 16), "parent": rng.randrange(1 << 16)}
                          for _ in range(rng.choice((0, 1, rng.randrange(53), 52)))]
        return out
    if t == msgs.UPD_CHUNK:
        return {"upd_id": rng.randrange(1 << 32), "index": rng.randrange(1 << 16),
                "data": bytes(rng.randrange(256) for _ in range(rng.randrange(1, 219))).hex()}
    if t == msgs.UPD_ACK:
        return {"upd_id": rng.randrange(1 << 32), "state": rng.randrange(256), "reason": rng.randrange(256),
                "have": rng.randrange(1 << 16), "base": rng.randrange(1 << 16), "fw_major": rng.randrange(256),
                "fw_minor": rng.randrange(256),
                "bitmap": bytes(rng.randrange(256) for _ in range(rng.randrange(213))).hex()}
    _, fmt, names = msgs.layout(t, version)
    codes = [c for c in fmt[1:] if not c.isdigit()]  # "32s": one field
    return {n: bytes(rng.randrange(256) for _ in range(32)).hex() if c == "s" else rng.randint(0, _MAX[c])
            for n, c in zip(names, codes)}


def random_specs(seed, n):
    """n frame specs: every type in turn, random fields, half of them
    signed, every protocol version in turn within a type."""
    rng = random.Random(seed)
    types = sorted(msgs.all_layouts())
    specs = []
    for i in range(n):
        t = types[i % len(types)]
        version = wire.VERSION_MIN + (i // len(types)) % (wire.VERSION - wire.VERSION_MIN + 1)
        signed = rng.random() < 0.5
        specs.append({
            "type": t,
            "version": version,
            "src": rng.choice((wire.ADDR_GROUND, rng.randrange(1, wire.MAX_NODE_ID + 1))),
            "dst": _random_addr(rng),
            "seq": rng.randrange(256),
            "fields": _random_fields(rng, t, version),
            "key": bytes(rng.randrange(256) for _ in range(rng.randrange(1, 80))).hex() if signed else None,
            "counter": rng.randrange(1 << 32) if signed else None,
        })
    return specs


def _build(spec):
    key = bytes.fromhex(spec["key"]) if spec["key"] is not None else None
    return P.build_line(type=spec["type"], src=spec["src"], dst=spec["dst"], seq=spec["seq"],
                        msg=spec["fields"], key=key, counter=spec["counter"], version=spec["version"])


def _peer(requests):
    """Run the firmware codec under MicroPython on `requests`; its replies."""
    if not os.path.exists(MPY):
        pytest.skip("no MicroPython unix port at %s" % MPY)
    # Raw UTF-8, not \u escapes: MicroPython's json does not join an escaped
    # surrogate pair back into one character (U+1F680 would arrive as two).
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in requests)
    proc = subprocess.run([MPY, "-X", "heapsize=192K", PEER], input=text, capture_output=True,
                          text=True, encoding="utf-8", cwd=ROOT, timeout=PEER_TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr[-3000:]
    replies = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(replies) == len(requests), proc.stderr[-3000:]
    return replies


def _verdict(line, key=None, require_auth=False):
    """What the ground makes of a line, in the peer's reply format."""
    try:
        f = P.parse_line(line, key=key, require_auth=require_auth)
    except FrameError as e:
        return {"error": e.reason}
    out = _plain(f)
    out["payload"] = f.payload.hex()
    out["fields"] = out.pop("msg")
    del out["tag"]
    return out


def test_random_frames_encoded_by_micropython_parse_in_construct():
    specs = random_specs(seed=20240601, n=240)
    replies = _peer([dict(s, op="encode") for s in specs])
    for spec, reply in zip(specs, replies):
        line = bytes.fromhex(reply["line"])
        key = bytes.fromhex(spec["key"]) if spec["key"] is not None else None
        f = P.parse_line(line[:-1], key=key)
        assert (f.type, f.src, f.dst, f.seq, f.counter) == (
            spec["type"], spec["src"], spec["dst"], spec["seq"], spec["counter"]), spec
        assert f.flags == (wire.FLAG_AUTH if key else 0) and f.version == spec["version"]
        assert _plain(f.msg) == spec["fields"], spec
        assert _build(spec) == line, spec  # and construct writes the very same bytes


def test_random_frames_built_by_construct_decode_in_micropython():
    specs = random_specs(seed=77, n=240)
    lines = [_build(s) for s in specs]
    replies = _peer([{"op": "decode", "line": line[:-1].hex(), "key": s["key"]} for s, line in zip(specs, lines)])
    for spec, line, reply in zip(specs, lines, replies):
        assert "error" not in reply, (spec, reply)
        assert reply["fields"] == spec["fields"], spec
        assert (reply["type"], reply["src"], reply["dst"], reply["seq"], reply["counter"]) == (
            spec["type"], spec["src"], spec["dst"], spec["seq"], spec["counter"]), spec
        key = bytes.fromhex(spec["key"]) if spec["key"] is not None else None
        assert _verdict(line[:-1], key) == reply


def _mutations(rng, spec, line):
    """Bad lines of every kind derived from one good line (without its 0x00)."""
    key = bytes.fromhex(spec["key"]) if spec["key"] is not None else None
    body = P.cobs_decode(P.unescape(line))
    out = []
    flip = bytearray(line)
    i = rng.randrange(len(flip))
    flip[i] ^= 1 << rng.randrange(8)
    out.append(bytes(flip))
    out.append(line[: rng.randrange(len(line))])
    cut = rng.randrange(len(line) + 1)
    out.append(line[:cut] + bytes([rng.randrange(256)]) + line[cut:])
    out.append(bytes(rng.randrange(256) for _ in range(rng.randrange(40))))
    out.append(line + bytes(rng.randrange(1, 256) for _ in range(rng.randrange(1, 500))))
    # well-formed bodies (good crc) with one thing wrong, re-framed
    def reframe(b):
        return P.escape(P.cobs_encode(b + struct.pack("<I", P._crc32(b))))
    covered = bytearray(body[:-4])
    covered[0] = (rng.randrange(16) << 4) | (covered[0] & 0xF)  # any version
    out.append(reframe(bytes(covered)))
    covered = bytearray(body[:-4])
    covered[3:5] = struct.pack("<H", rng.randrange(0x10000))  # any src
    out.append(reframe(bytes(covered)))
    covered = bytearray(body[:-4])
    covered[1] = rng.randrange(256)  # any type
    out.append(reframe(bytes(covered)))
    covered = bytearray(body[:-4])
    del covered[rng.randrange(7, len(covered) + 1) :]  # short payload or trailer
    out.append(reframe(bytes(covered)))
    payload = bytes(rng.randrange(256) for _ in range(rng.randrange(30)))  # any payload bytes
    out.append(P.build_line(type=spec["type"], src=spec["src"], dst=spec["dst"], payload=payload,
                            counter=spec["counter"], key=key)[:-1])
    return [(m, key) for m in out]


def _lax_utf8_log(line, key):
    """A LOG whose text is not strict UTF-8: MicroPython's bytes.decode()
    takes overlong forms and surrogates that CPython (and the ground)
    refuse, so on these the two sides may differ by design (PROTOCOL.md)."""
    try:
        f = P.parse_frame(line, key=key)
    except FrameError:
        return False
    if f.type != msgs.LOG:
        return False
    try:
        f.payload.decode("utf-8")
    except UnicodeError:
        return True
    return False


def test_junk_is_refused_for_the_same_reason_by_construct_and_micropython():
    rng = random.Random(5)
    cases = []
    for spec in random_specs(seed=99, n=120):
        line = _build(spec)[:-1]
        for bad, key in _mutations(rng, spec, line):
            if not _lax_utf8_log(bad, key):
                cases.append((bad, key))
        if spec["key"] is not None:
            cases.append((line, b"wrong key"))
        else:
            cases.append((line, b"required"))
    requests = [{"op": "decode", "line": bad.hex(), "key": key.hex() if key else None,
                 "require_auth": key == b"required"} for bad, key in cases]
    replies = _peer(requests)
    refused = 0
    for (bad, key), reply in zip(cases, replies):
        assert _verdict(bad, key, key == b"required") == reply, bad.hex()
        refused += "error" in reply
    assert refused > len(cases) // 2
    seen = set(r["error"] for r in replies if "error" in r)
    for reason in ("cobs", "escape", "short", "crc", "version", "too_long", "tag", "no_auth", "payload", "type",
                   "address"):
        assert reason in seen, (reason, sorted(seen))


# ---- reasons, building, describe -----------------------------------------


def _reason(line, **kw):
    with pytest.raises(FrameError) as e:
        P.parse_line(line, **kw)
    assert isinstance(e.value, ValueError) and str(e.value).startswith(e.value.reason)
    return e.value.reason


def _framed(covered):
    return P.escape(P.cobs_encode(covered + struct.pack("<I", P._crc32(covered))))


def test_each_defect_has_its_reason():
    good = P.build_line(type="prevote_request", src=4, dst=P.cluster_addr(2), msg={"term": 3})[:-1]
    body = P.cobs_decode(P.unescape(good))
    assert _reason(b"") == "empty"
    assert _reason(b"\x01" * (P.MAX_LINE + 1)) == "too_long"
    assert _reason(good + b"\x03") == "escape"
    assert _reason(good + b"\x1b") == "escape"
    for b in range(256):
        if b not in (1, 2):
            assert _reason(good[:4] + b"\x1b" + bytes([b]) + good[4:]) == "escape", b
    assert _reason(b"\x05ab") == "cobs"
    assert _reason(b"\x04a\x00b") == "cobs"  # a zero inside a block
    assert _reason(good[:-1] + b"\x00") == "cobs"
    assert _reason(P.escape(P.cobs_encode(body[:10]))) == "short"
    assert _reason(_framed(body[:7] + bytes(P.MAX_PAYLOAD + P.AUTH_LEN + 1))) == "too_long"
    bad = bytearray(body)
    bad[8] ^= 0x40
    assert _reason(P.escape(P.cobs_encode(bytes(bad)))) == "crc"
    assert _reason(_framed(bytes([(P.VERSION + 1) << 4]) + body[1:-4])) == "version"
    assert _reason(_framed(bytes([0x00]) + body[1:-4])) == "version"
    assert _reason(_framed(bytes([0x20]) + body[1:-4]), version_max=1) == "version"  # as a version-1 node
    assert _reason(_framed(bytes([0x11]) + body[1:-4])) == "short"  # says signed, no room for a trailer
    signed = P.build_line(type=0x10, src=4, dst=5, msg={"term": 3}, key=b"k", counter=9)[:-1]
    assert _reason(signed, key=b"k2") == "tag"
    assert _reason(good, key=b"k", require_auth=True) == "no_auth"
    assert _reason(_framed(body[:3] + struct.pack("<H", 0xF000) + body[5:-4])) == "address"
    assert _reason(P.build_line(type=0x10, src=4, dst=5, payload=b"\x01\x02")[:-1]) == "payload"
    assert _reason(P.build_line(type=0x7E, src=4, dst=5, payload=b"")[:-1]) == "type"
    assert _reason(P.build_line(type="log", src=4, dst=5, payload=b"\xc3")[:-1]) == "payload"
    state = dict(term=1, digest=2, first=0, total=1, entries=[])
    assert _reason(P.build_line(type="state", src=4, dst=5, payload=P.build_message(P.STATE, state) + b"\x01")[:-1]) == "payload"
    past_total = P.build_message(P.STATE, state) + bytes(8)
    assert _reason(P.build_line(type="state", src=4, dst=5, payload=past_total[:9] + b"\x00" + past_total[10:])[:-1]) == "payload"


def test_reasons_are_the_firmware_error_names():
    assert P.REASONS == wire.ERROR_NAMES


def test_build_refuses_fields_it_cannot_encode():
    ok = dict(term=1, candidate=2, granted=1)
    bad_cases = [
        dict(type="vote", msg=dict(ok, extra=1)),
        dict(type="vote", msg=dict(term=1, granted=1)),
        dict(type="vote", msg=dict(ok, granted=256)),
        dict(type="vote", msg=dict(ok, term=-1)),
        dict(type="nonsense", msg=ok),
        dict(type=0x7E, msg={}),
        dict(type="vote"),
        dict(type="vote", msg=ok, payload=b"\x00"),
        dict(type="log", payload=bytes(P.MAX_PAYLOAD + 1)),
        dict(type="log", msg=dict(text="x" * (P.MAX_PAYLOAD + 1))),
        dict(type="state", msg=dict(term=1, digest=2, first=0, total=26, entries=[dict(node=1, version=1, data=1)] * 27)),
        dict(type="state", msg=dict(term=1, digest=2, first=1, total=1, entries=[dict(node=1, version=1, data=1)])),
        dict(type="vote", msg=ok, counter=5),  # signed, with neither key nor tag
    ]
    for kw in bad_cases:
        with pytest.raises(FrameError):
            P.build_line(src=1, dst=2, **kw)
    for kw, reason in ((dict(src=0x10000), "address"), (dict(dst=-1), "address"), (dict(version=16), "version"),
                       (dict(counter=1 << 32, key=b"k"), "tag")):
        args = dict(dict(type="vote", src=1, dst=2, msg=ok), **kw)
        with pytest.raises(FrameError) as e:
            P.build_line(**args)
        assert e.value.reason == reason, (kw, e.value)


def test_build_can_write_what_a_node_must_refuse():
    # Fault injection: wrong versions and reserved flag bits build fine.
    line = P.build_line(type="vote_request", src=1, dst=2, payload=b"\x01\0\0\0", version=P.VERSION + 1)[:-1]
    with pytest.raises(wire.ProtocolError) as e:
        wire.decode(line)
    assert e.value.code == wire.ERR_VERSION
    line = P.build_line(type="vote_request", src=1, dst=2, msg={"term": 1}, version=2)[:-1]
    assert wire.decode(line).version == 2
    with pytest.raises(wire.ProtocolError) as e:
        wire.decode(line, None, False, 1)  # a version-1 node
    assert e.value.code == wire.ERR_VERSION
    f = wire.decode(P.build_line(type="vote_request", src=1, dst=2, msg={"term": 1}, flags=0x6)[:-1])
    assert f.flags == 0x6 and f.counter is None


def test_describe_names_every_field():
    line = P.build_line(type="telemetry", src=3, dst=P.ADDR_GROUND, seq=4, key=b"k", counter=12,
                        msg=dict(role=2, term=5, coordinator=3, standby=4, digest=6, alive=7, suspect=1, bad_frames=9))
    d = P.describe(line[:-1])
    assert d["type"] == "telemetry" and d["type_code"] == msgs.TELEMETRY
    assert (d["src"], d["dst"], d["dst_name"], d["seq"], d["auth"], d["counter"]) == (3, 0, "ground", 4, True, 12)
    assert (d["role"], d["role_name"], d["term"], d["alive"], d["bad_frames"]) == (2, "coordinator", 5, 7, 9)
    assert d["line_bytes"] == len(line) and d["payload_bytes"] == 17
    s = P.describe(P.build_line(type="state", src=3, dst=P.cluster_addr(7), msg=dict(
        term=1, digest=2, first=0, total=1, entries=[dict(node=3, version=1, data=5)]))[:-1])
    assert s["dst_name"] == "cluster 7" and s["entries"] == [{"node": 3, "version": 1, "data": 5}]
    assert P.addr_name(P.ADDR_BROADCAST) == "broadcast" and P.addr_name(12) == "node 12"
    with pytest.raises(FrameError):
        P.describe(line[:-2])


def test_cobs_and_escape_match_the_firmware_on_edge_cases():
    cases = [b"", b"\x00", b"\x00\x00", b"a", b"a\x00b", bytes(range(256)), b"\xff" * 253, b"\xff" * 254,
             b"\xff" * 255, b"\xff" * 254 + b"\x00" + b"x", b"\x00" * 300, b"\x03\x1b\x1b\x03\x1b\x01"]
    for data in cases:
        enc = P.cobs_encode(data)
        assert enc == bytes(wire.cobs_encode(data)), data
        assert P.cobs_decode(enc) == data
        assert P.escape(data) == bytes(wire.escape(data))
        assert P.unescape(P.escape(data)) == data


# ---- the market tier's messages (docs/MARKET.md) --------------------------


def test_the_live_cross_checks_cover_every_message_type_market_ones_too():
    for seed, n in ((20240601, 240), (77, 240), (99, 120)):  # the specs the tests above send to MicroPython
        assert set(s["type"] for s in random_specs(seed, n)) == set(msgs.all_layouts())
    for t in (P.BID, P.AWARD, P.PRICES, P.ROUND_ACK, P.RELEASE, P.RECONCILE, P.RECONCILE_ACK, P.INTENT, P.MARKET_TEL):
        assert P.MESSAGES[t][0] == msgs.layout(t)[0]
        struct_fields = [sc.name for sc in P.MESSAGES[t][1].subcons if sc.name]
        assert struct_fields == list(msgs.layout(t)[2]), t


def test_describe_names_market_modes_roles_and_round_verdicts():
    tel = dict(region_term=3, price_round=40, price_age_s=86400, produced=100, lost=7, paused_feed_s=0,
               paused_parts_s=60, paused_logistics_s=0, leases=4, bids=9, awards=8, refused=1, mode=2, region_role=3)
    d = P.describe(P.build_line(type="market_tel", src=7, dst=P.ADDR_GROUND, msg=tel)[:-1])
    assert (d["mode_name"], d["region_role_name"], d["price_age_s"]) == ("conservative", "standby", 86400)
    prices = dict(term=3, round=40, digest=0, intent_seq=2, region=1, awards=5, status=2,
                  p0=1, p1=1, p2=1, p3=1, p4=30, p5=1, p6=1, p7=1)
    d = P.describe(P.build_line(type="prices", src=1, dst=P.ADDR_BROADCAST, msg=prices)[:-1])
    assert d["status_name"] == "void" and d["p4"] == 30
    bid = dict(round=40, seq=1, first=41, resource=0xFFFF, price=16, classes=3, span=1, period=2, count=1, flags=1)
    line = P.build_line(type="bid", src=5, dst=1, msg=bid, key=b"k", counter=3)
    f = wire.decode(line[:-1], wire.Auth(b"k"))
    assert msgs.unpack(msgs.BID, f.payload) == tuple(bid[k] for k in msgs.layout(msgs.BID)[2])
    for bad in (dict(bid, price=1 << 16), dict(bid, flags=256)):
        with pytest.raises(FrameError):
            P.build_line(type="bid", src=5, dst=1, msg=bad)
