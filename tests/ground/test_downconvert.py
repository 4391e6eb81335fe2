"""The down-converter (ground/downconvert.py) and version skew through the router.

What docs/PROTOCOL.md "Versions" says, checked:
  - a version-2 frame converted to version 1 decodes on a version-1 codec (the
    firmware's, told it speaks only 1, and the ground's construct mirror) with
    the same header and the same common fields, and nothing else changed;
  - a signed frame is signed again: the converted line passes the fleet key
    (and only it) under the sender's counter;
  - what cannot be converted is refused, saying why;
  - in a run, a version-1 node among version-2 peers gets their frames
    converted (a `converted` fate, then `delivered` with the converted bytes),
    follows the cluster's one coordinator and counts no bad frame; with
    `downconvert: false` it gets none of them (dropped, reason `version`) and
    follows nobody.
"""

import os

import pytest

from ground import downconvert, firmware, metrics, run, scenario, trace
from ground import protocol as P
from ground.yamlfile import ConfigError
from ground import history

wire, msgs = firmware.wire, firmware.msgs
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SKEW = os.path.join(ROOT, "tests", "ground", "scenarios", "skew.yaml")
KEY = b"fleet key"
HB = dict(term=7, coordinator=3, standby=2, role=msgs.ROLE_COORDINATOR, lineage=1, rec_version=4,
          rec_data=0x02000001, digest=0x1B03001B, alive=3)


def _v2_heartbeat(counter=None, key=KEY, type=msgs.HEARTBEAT, payload=None, flags=0):
    """(line without delimiter, frame) of a version-2 frame, built by the construct side."""
    line = P.build_line(type=type, src=3, dst=wire.cluster_addr(1), seq=0x1B, key=key if counter is not None else None,
                        counter=counter, version=2, flags=flags,
                        **({"payload": payload} if payload is not None else {"msg": HB}))[:-1]
    return line, wire.decode(line)


# ---- the conversion itself -------------------------------------------------------


def test_a_version_2_heartbeat_converted_to_version_1_decodes_on_a_version_1_codec():
    line, frame = _v2_heartbeat()
    with pytest.raises(wire.ProtocolError) as e:
        wire.decode(line, None, False, 1)  # as sent: a version-1 node refuses it
    assert e.value.code == wire.ERR_VERSION
    out, new = downconvert.convert(line, frame, 1)
    f = wire.decode(out, None, False, 1)  # a version-1 node's decoder
    assert (f.version, f.type, f.seq, f.src, f.dst, f.flags, f.counter) == (1, frame.type, 0x1B, 3, frame.dst, 0, None)
    assert (new.version, new.payload) == (f.version, f.payload)
    values = msgs.unpack(msgs.HEARTBEAT, f.payload, 1)
    assert dict(zip(msgs.LAYOUTS[msgs.HEARTBEAT][2], values)) == {k: v for k, v in HB.items() if k != "alive"}
    g = P.parse_line(out, version_max=1)  # and the construct mirror agrees
    assert g.version == 1 and dict(g.msg) == {k: v for k, v in HB.items() if k != "alive"}
    # and back up on a version-2 node: the common fields, `alive` not known
    assert msgs.unpack_as(msgs.HEARTBEAT, f.payload, 1) == tuple(HB.values())[:8] + (msgs.ALIVE_UNKNOWN,)


def test_a_signed_frame_is_signed_again_under_its_own_counter():
    line, frame = _v2_heartbeat(counter=0x0003001B)
    out, new = downconvert.convert(line, frame, 1, wire.Auth(KEY))
    f = wire.decode(out, wire.Auth(KEY), True, 1)  # the tag checks under the fleet key, auth required
    assert f.counter == 0x0003001B and new.counter == f.counter and f.version == 1
    assert P.parse_line(out, key=KEY, require_auth=True, version_max=1).counter == 0x0003001B
    with pytest.raises(wire.ProtocolError) as e:
        wire.decode(out, wire.Auth(b"another key"), True, 1)
    assert e.value.code == wire.ERR_TAG
    # the old tag does not pass: the version nibble is under it
    body = wire.cobs_decode(wire.unescape(out))
    old_body = wire.cobs_decode(wire.unescape(line))
    assert body[-12:-4] != old_body[-12:-4]


def test_unchanged_layouts_keep_their_payload_and_only_the_nibble_moves():
    for type, msg in ((msgs.VOTE, dict(term=9, candidate=2, granted=1)), (msgs.HELLO, dict(
            hw_gen=1, fw_major=2, fw_minor=0, lineage=0, proto_min=1, proto_max=2, cluster=1))):
        line = P.build_line(type=type, src=3, dst=4, seq=5, msg=msg, version=2)[:-1]
        out, new = downconvert.convert(line, wire.decode(line), 1)
        assert new.version == 1 and new.payload == wire.decode(line).payload
        a, b = wire.cobs_decode(wire.unescape(line)), wire.cobs_decode(wire.unescape(out))
        assert a[0] == 0x20 and b[0] == 0x10 and a[1:-4] == b[1:-4]


def test_version_4_market_frames_lose_their_new_field_signed_again_and_read_on_every_older_codec():
    # BID's hw_gen and AWARD's end_s (docs/PROTOCOL.md "Versions": dropped
    # safely, each a check an older node makes its own way)
    bid = dict(round=40, seq=0x2A00, first=41, resource=0xFFFF, price=24, classes=0x03, span=1, period=3, count=1,
               flags=1, hw_gen=2)
    award = dict(term=2, round=40, seq=0x2A00, first=42, resource=7, holder=5, price=1, span=1, period=4, count=3,
                 flags=0, end_s=(42 + 2 * 4 + 1) * 60)
    for type, msg, new_field in ((msgs.BID, bid, "hw_gen"), (msgs.AWARD, award, "end_s")):
        line = P.build_line(type=type, src=1, dst=5, seq=0x1B, key=KEY, counter=77, msg=msg, version=4)[:-1]
        frame = wire.decode(line, wire.Auth(KEY), True)
        assert msgs.unpack(type, frame.payload, 4) == tuple(msg.values())  # the firmware reads the mirror's bytes
        old = {k: v for k, v in msg.items() if k != new_field}
        for to in (3, 2, 1):
            out, new = downconvert.convert(line, frame, to, wire.Auth(KEY))
            f = wire.decode(out, wire.Auth(KEY), True, to)
            assert f.version == to and f.counter == 77 and len(f.payload) == len(frame.payload) - (
                1 if type == msgs.BID else 4)
            assert dict(P.parse_line(out, key=KEY, require_auth=True, version_max=to).msg) == old
            # a 4.x node hearing a 3.x sender reads the field as not said
            assert msgs.unpack_as(type, f.payload, to)[-1] == 0


def test_reserved_flag_bits_travel_as_they_came():
    line, frame = _v2_heartbeat(counter=9, flags=0x4)
    out, new = downconvert.convert(line, frame, 1, wire.Auth(KEY))
    f = wire.decode(out, wire.Auth(KEY), True, 1)
    assert f.flags == 0x4 | wire.FLAG_AUTH and f.counter == 9


def test_what_cannot_be_converted_is_refused_saying_why():
    line, frame = _v2_heartbeat(type=0x7E, payload=b"\x01\x02")
    with pytest.raises(downconvert.ConvertError) as e:
        downconvert.convert(line, frame, 1)
    assert e.value.reason == "type" and "0x7e" in str(e.value)
    line, frame = _v2_heartbeat(payload=bytes(20))  # a version-1 sized heartbeat under a version-2 header
    with pytest.raises(downconvert.ConvertError) as e:
        downconvert.convert(line, frame, 1)
    assert e.value.reason == "payload"
    line, frame = _v2_heartbeat(counter=1)
    with pytest.raises(downconvert.ConvertError) as e:
        downconvert.convert(line, frame, 1, None)  # signed, and no key to sign it again
    assert e.value.reason == "no_key"
    with pytest.raises(downconvert.ConvertError) as e:
        downconvert.convert(line, frame, 0, wire.Auth(KEY))
    assert e.value.reason == "version"


def test_a_frame_at_or_below_the_target_version_is_left_alone():
    line = P.build_line(type=msgs.VOTE_REQUEST, src=3, dst=4, msg=dict(term=2), version=1)[:-1]
    frame = wire.decode(line)
    assert downconvert.convert(line, frame, 1) == (line, frame)
    assert downconvert.convert(line, frame, 2) == (line, frame)


# ---- through the router ----------------------------------------------------------------


def _run(tmp_path, name, extra=""):
    text = open(SKEW).read() + extra
    sc = scenario.load_text(text, SKEW)
    res = run.run(sc, str(tmp_path / name))
    header, events, torn = trace.read(res.out_dir + "/trace.jsonl")
    assert not torn
    return res, header, events


def _last_telemetry(events):
    last = {}
    for e in events:
        if e["kind"] == "frame" and e["fate"] == "sent" and e["type"] == "telemetry":
            last[e["src"]] = e["msg"]
    return last


@pytest.fixture(scope="module")
def skew_run(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("skew"), "convert")


def test_the_old_node_gets_its_peers_frames_converted_and_follows_the_one_coordinator(skew_run):
    res, header, events = skew_run
    assert res.ok, res.failures
    sent = {e["id"]: e for e in events if e["kind"] == "frame" and e["fate"] == "sent"}
    conv = [e for e in events if e["kind"] == "frame" and e["fate"] == "converted"]
    assert conv and {(e["to"], e["from_version"], e["to_version"]) for e in conv} == {(4, 2, 1)}
    assert {sent[e["id"]]["type"] for e in conv} >= {"heartbeat", "hello"}
    assert all(sent[e["id"]]["src"] != 4 for e in conv)
    # every converted frame to node 4 that arrived carries version-1 bytes that check under the key
    delivered = {(e["id"], e.get("copy", 0)): e for e in events
                 if e["kind"] == "frame" and e["fate"] == "delivered" and e["to"] == 4}
    converted_ids = {e["id"] for e in conv}
    arrived = [e for (fid, _), e in delivered.items() if fid in converted_ids]
    assert arrived
    for e in arrived:
        f = wire.decode(bytes.fromhex(e["hex"]), wire.Auth(KEY), True, 1)
        assert f.version == 1 and f.src == sent[e["id"]]["src"]
    # a converted heartbeat keeps every field but `alive`
    hb = next(e for e in arrived if sent[e["id"]]["type"] == "heartbeat")
    f = wire.decode(bytes.fromhex(hb["hex"]))
    want = dict(sent[hb["id"]]["msg"])
    assert "alive" in want and want.pop("alive") >= 1
    assert dict(zip(msgs.LAYOUTS[msgs.HEARTBEAT][2], msgs.unpack(msgs.HEARTBEAT, f.payload))) == want
    # node 4 said version 1 and still follows the coordinator the others follow
    hellos = {e["src"]: e["msg"] for e in sent.values() if e["type"] == "hello" and e["dst"] == 0}
    assert hellos[4]["proto_max"] == 1 and all(hellos[n]["proto_max"] == 2 for n in (1, 2, 3))
    tel = _last_telemetry(events)
    coords = {tel[n]["coordinator"] for n in (1, 2, 3, 4)}
    assert len(coords) == 1 and coords != {0} and coords != {4}
    assert tel[4]["bad_frames"] == 0
    assert res.metrics["flat"]["frames_converted"] == len(conv) and res.metrics["flat"]["unfated_frames"] == 0


def test_every_converted_frame_still_gets_one_final_fate_and_the_history_is_clean(skew_run):
    res, header, events = skew_run
    finals = {}
    for e in events:
        if e["kind"] == "frame" and e["fate"] in ("delivered", "dropped") and e.get("to") is not None:
            finals[(e["id"], e["to"])] = finals.get((e["id"], e["to"]), 0) + 1
    for e in events:
        if e["kind"] == "frame" and e["fate"] == "converted":
            assert finals.get((e["id"], e["to"]), 0) >= 1, e
    m = metrics.compute(header, events)
    assert m["anomalies"]["count"] == 0 and m["frames"]["converted"] > 0 and m["frames"]["unfated"] == 0
    report = history.check_events(header, events)
    assert report.ok, report.format()


def test_without_downconvert_the_old_node_hears_nobody(tmp_path):
    res, header, events = _run(tmp_path, "off", "downconvert: false\n")
    assert not [e for e in events if e["kind"] == "frame" and e["fate"] == "converted"]
    dropped = [e for e in events if e["kind"] == "frame" and e["fate"] == "dropped" and e.get("reason") == "version"]
    assert dropped and {e["to"] for e in dropped} == {4}
    assert res.metrics["frames"]["dropped"]["version"] == len(dropped)
    assert not any(e["kind"] == "frame" and e["fate"] == "delivered" and e["to"] == 4 and "hex" in e for e in events)
    tel = _last_telemetry(events)
    assert tel[4]["coordinator"] == 0 and tel[4]["alive"] == 1  # hears only itself
    coords = {tel[n]["coordinator"] for n in (1, 2, 3)}
    assert len(coords) == 1 and coords != {0}  # the others still elect one among themselves


def test_the_scenario_key_is_a_boolean_named_by_file_and_line():
    text = open(SKEW).read()
    assert scenario.load_text(text, "skew.yaml").downconvert is True
    assert scenario.load_text(text + "downconvert: false\n", "skew.yaml").downconvert is False
    for bad in ("nope", "0", "[]", "\"true\""):
        with pytest.raises(ConfigError) as e:
            scenario.load_text(text + "downconvert: %s\n" % bad, "skew.yaml")
        line = text.count("\n") + 1
        assert str(e.value).startswith("skew.yaml:%d:" % line) and "downconvert" in str(e.value), str(e.value)


def test_the_router_knows_a_node_speaks_version_1_before_its_hello(skew_run):
    # The scenario's firmware says so: the peers' very first frames (sent at
    # mission 0, before node 4's HELLO is routed) are converted, not refused.
    res, header, events = skew_run
    sent = [e for e in events if e["kind"] == "frame" and e["fate"] == "sent"]
    hello4 = next(i for i, e in enumerate(sent) if e["src"] == 4 and e["type"] == "hello")
    before = {e["id"] for e in sent[:hello4] if e["src"] != 4 and e["dst"] != 0}
    assert before
    conv = {e["id"] for e in events if e["kind"] == "frame" and e["fate"] == "converted"}
    assert before <= conv
    tel = _last_telemetry(events)
    assert tel[4]["bad_frames"] == 0


def test_the_bench_scenario_runs_a_version_skew(tmp_path):
    from ground.firmware import config

    sc = scenario.load(os.path.join(ROOT, "scenarios", "bench.yaml"))
    speaks = {n: config.protocols(s.fw_version)[1] for n, s in sc.nodes.items()}
    assert speaks[8] == 1 and {speaks[n] for n in sc.nodes if n != 8} == {2}
    assert sc.downconvert is True and len(sc.firmware_majors()) <= scenario.MAX_MAJOR_VERSIONS
    res = run.run(sc, str(tmp_path / "bench"))
    assert res.ok, res.failures
    header, events, _ = trace.read(res.out_dir + "/trace.jsonl")
    conv = [e for e in events if e["kind"] == "frame" and e["fate"] == "converted"]
    assert conv and {e["to"] for e in conv} == {8}
    tel = _last_telemetry(events)
    assert tel[8]["bad_frames"] == 0
    assert len({tel[n]["coordinator"] for n in (5, 6, 7, 8)} - {0}) == 1  # cluster 2 agrees, node 8 included
