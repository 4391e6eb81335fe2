# Frame replay and run replay (ground/replay.py), read as their spec:
#  - replaying any node of a sim run into the in-process core, in virtual
#    time, gives back its recorded frames byte for byte and nanosecond for
#    nanosecond, through crashes, power cuts, resets, skew, byzantine
#    rewrites, partitions and blackouts, and through frames that arrive at
#    the very nanosecond the node's timer falls due (the scenario makes many);
#  - a changed core (a field altered, a timer changed) is caught, and the
#    first differing frame is shown decoded on both sides;
#  - re-running a sim trace's scenario gives the same trace byte for byte,
#    and a changed core is caught at its first differing line;
#  - bad input (torn, unknown node, not a sim run, an --out that exists) is
#    refused naming the file (and line), with exit status 2 from the CLI.
import json
import os

import pytest

from ground import cli, firmware, replay, run, scenario, trace
from replay_checks import assert_caught_at_heartbeat, change_heartbeat_lineage

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCENARIOS = os.path.join(ROOT, "tests", "ground", "scenarios")


@pytest.fixture(scope="module")
def replay_trace(scenario_runs):
    _, res, out = scenario_runs.get(os.path.join(SCENARIOS, "replay.yaml"))  # as test_metrics_stream.py's (conftest.py)
    assert res.status == "ok"
    return os.path.join(out, "trace.jsonl")


@pytest.fixture(scope="module")
def pcap_trace(tmp_path_factory):
    # lossy, duplicating, corrupting links (bytes recorded per delivery)
    d = tmp_path_factory.mktemp("replay_pcap")
    sc = scenario.load(os.path.join(SCENARIOS, "pcap.yaml"))
    run.run(sc, str(d / "run"), seed=4)
    return str(d / "run" / "trace.jsonl")


def _events(path):
    return trace.read(path)[1]


def test_the_scenario_has_ties_and_every_fault(replay_trace):
    events = _events(replay_trace)
    sent_at = {(e["src"], e["mission_ns"]) for e in events if e["kind"] == "frame" and e["fate"] == "sent"}
    ties = [e for e in events if e["kind"] == "frame" and e["fate"] == "delivered" and (e["to"], e["mission_ns"]) in sent_at]
    assert len(ties) > 50, "frames arriving when the recipient's own timer fires"
    faults = {e["fault"] for e in events if e["kind"] == "fault"}
    assert {"crash", "restart", "power_cut", "power_on", "reset", "skew", "byzantine", "partition", "heal",
            "blackout_start", "blackout_end"} <= faults
    assert any("orig_hex" in e for e in events if e["kind"] == "frame")


@pytest.mark.parametrize("node", [1, 2, 3, 4, 5, 6, 7])
def test_every_node_replays_identically_into_the_core(replay_trace, node):
    r = replay.replay_frames(replay_trace, node)
    assert r.identical, r.report()
    assert len(r.replayed) == len(r.stream.outputs) > 100
    assert r.replayed == r.stream.outputs  # bytes and mission ns
    assert r.report().startswith("identical: node %d sent the same %d frames" % (node, len(r.replayed)))


def test_replay_through_lossy_duplicating_corrupting_links(pcap_trace):
    events = _events(pcap_trace)
    assert any(e.get("fate") == "corrupted" for e in events) and any(e.get("fate") == "duplicated" for e in events)
    for node in (1, 2, 3):
        r = replay.replay_frames(pcap_trace, node)
        assert r.identical, r.report()


def test_a_changed_field_is_caught_with_the_first_differing_frame(replay_trace, monkeypatch):
    change_heartbeat_lineage(monkeypatch, after=20)
    r = replay.replay_frames(replay_trace, 2)
    assert_caught_at_heartbeat(r, 20)
    assert r.replayed[:r.diff.index] == r.stream.outputs[:r.diff.index]  # mission ns too, in virtual time


def test_a_changed_timer_is_caught(replay_trace, monkeypatch):
    Node = firmware.core.Node
    real = Node._cold_timeout_ms
    monkeypatch.setattr(Node, "_cold_timeout_ms", lambda self: real(self) + 3)
    results = [replay.replay_frames(replay_trace, n) for n in (1, 2, 3)]
    assert not all(r.identical for r in results)
    r = next(r for r in results if not r.identical)
    assert r.diff.what in ("bytes", "time", "count")
    assert r.replayed[:r.diff.index] == r.stream.outputs[:r.diff.index]


def test_replay_run_is_byte_identical_and_keeps_the_run(replay_trace, tmp_path):
    out = str(tmp_path / "again")
    r = replay.replay_run(replay_trace, out_dir=out)
    assert r.identical, r.report()
    assert open(os.path.join(out, "trace.jsonl"), "rb").read() == open(replay_trace, "rb").read()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".replay-run-")]


def test_replay_run_catches_a_changed_core(replay_trace, tmp_path, monkeypatch):
    Node = firmware.core.Node
    real = Node._follower_timeout_ms
    monkeypatch.setattr(Node, "_follower_timeout_ms", lambda self: real(self) + 1)
    r = replay.replay_run(replay_trace)
    assert not r.identical and r.line > 1
    old = open(replay_trace, "rb").read().split(b"\n")
    assert old[r.line - 1] == r.old_line != r.new_line
    assert "differs: first at line %d" % r.line in r.report()


def test_cli_replay_commands(replay_trace, tmp_path, capsys):
    assert cli.main(["replay-frames", replay_trace, "--node", "3"]) == 0
    assert capsys.readouterr().out.startswith("identical: node 3")
    assert cli.main(["replay-run", replay_trace]) == 0
    assert "identical" in capsys.readouterr().out
    assert cli.main(["replay-frames", replay_trace, "--node", "42"]) == 2
    assert "node 42 is not in this trace" in capsys.readouterr().err
    os.makedirs(tmp_path / "taken")
    assert cli.main(["replay-run", replay_trace, "--out", str(tmp_path / "taken")]) == 2
    assert "already exists" in capsys.readouterr().err


def test_cli_exit_status_1_when_the_replay_differs(replay_trace, monkeypatch, capsys):
    Node = firmware.core.Node
    real = Node._cold_timeout_ms
    monkeypatch.setattr(Node, "_cold_timeout_ms", lambda self: real(self) + 3)
    codes = [cli.main(["replay-frames", replay_trace, "--node", str(n)]) for n in (1, 2, 3)]
    assert 1 in codes and set(codes) <= {0, 1}
    assert "differs: node" in capsys.readouterr().out


# ---- bad input ---------------------------------------------------------------------------


def test_torn_trace_is_refused_naming_the_line_unless_allowed(replay_trace, tmp_path):
    lines = open(replay_trace, "rb").read().split(b"\n")[:-1]
    torn = str(tmp_path / "torn.jsonl")
    with open(torn, "wb") as f:
        f.write(b"\n".join(lines[:1500] + [lines[1500][:20]]))
    with pytest.raises(replay.ReplayError, match=r"torn\.jsonl:1501: the last line is torn"):
        replay.replay_frames(torn, 1)
    r = replay.replay_frames(torn, 1, allow_torn=True)
    assert "torn" in r.report()
    last_ns = json.loads(lines[1499])["mission_ns"]
    # up to the last recorded instant the replay agrees with what was recorded
    assert [x for x in r.replayed if x[0] < last_ns] == [x for x in r.stream.outputs if x[0] < last_ns]


def test_replay_run_refuses_a_real_time_run_and_a_header_without_scenario(replay_trace, tmp_path):
    lines = open(replay_trace, "rb").read().split(b"\n")
    head = json.loads(lines[0])
    for change, msg in ((dict(mode="emulated"), r"bad\.jsonl:1: a emulated run"),
                        (dict(scenario_text=""), r"bad\.jsonl:1: the header has no scenario_text")):
        bad = str(tmp_path / "bad.jsonl")
        with open(bad, "wb") as f:
            f.write(b"\n".join([json.dumps(dict(head, **change)).encode()] + lines[1:]))
        with pytest.raises(replay.ReplayError, match=msg):
            replay.replay_run(bad)


def test_unrecorded_corruption_is_reported(tmp_path):
    # A corruption burst corrupts frames in the router; when the trace keeps
    # no bytes for such a delivery, the replay says it cannot be exact.
    text = open(os.path.join(SCENARIOS, "replay.yaml")).read()
    text = text.replace("faults:\n", "faults:\n  - {at_s: 2, corruption_burst: 1, duration_s: 6, bitflip: 0.02}\n", 1)
    sc = scenario.load_text(text, "burst.yaml")
    run.run(sc, str(tmp_path / "r"))
    path = str(tmp_path / "r" / "trace.jsonl")
    events = _events(path)
    corrupted = {(e["id"], e["to"]) for e in events if e["kind"] == "frame" and e["fate"] == "corrupted"}
    missing = [e for e in events if e["kind"] == "frame" and e["fate"] == "delivered"
               and (e["id"], e["to"]) in corrupted and "hex" not in e]
    for node in (2, 3, 4):
        r = replay.replay_frames(path, node)
        if any(e["to"] == node for e in missing):
            assert "the bytes the node got are not in the trace" in r.report()
        else:
            assert r.identical, r.report()


# ---- link-condition replay: the `replay` link spec key (linkreplay.TraceReplay) -----


def test_a_recorded_links_delays_and_losses_are_replayed(pcap_trace, tmp_path):
    from ground import linkreplay

    recorded = linkreplay.trace_link_outcomes(pcap_trace, 1, 2)
    assert any(o.__class__ is str for o in recorded) and len({o for o in recorded if o.__class__ is int}) > 10
    # a run whose link 1 -> 2 is the recorded one, and nothing else
    text = """\
name: link-replay
seed: 9
duration_s: 15
election_timeout_ms: 1000
clusters:
  - {id: 1, nodes: [1, 2, 3]}
links:
  intra_cluster: {delay_ms: 10}
  pairs:
    - {src: 1, dst: 2, replay: {trace: "%s", src: 1, dst: 2}}
""" % pcap_trace
    sc = scenario.load_text(text, "link-replay.yaml")
    run.run(sc, str(tmp_path / "r"))
    events = _events(str(tmp_path / "r" / "trace.jsonl"))
    src_of = {e["id"]: e["src"] for e in events if e["kind"] == "frame" and e["fate"] == "sent"}
    got = {}
    for e in events:
        if e["kind"] == "frame" and e["fate"] in ("delivered", "dropped") and e.get("to") == 2 and src_of[e["id"]] == 1:
            got[e["id"]] = e["delay_ns"] if e["fate"] == "delivered" else e["reason"]
    seq = [got[i] for i in sorted(got)]
    n = len(seq) - sum(1 for x in seq if x == "run_end")
    assert n > 30
    want = [recorded[k % len(recorded)] for k in range(n)]
    assert seq[:n] == want  # the k-th frame on the link gets the k-th recorded fate
    # other links keep their own model
    assert all(e["delay_ns"] == 10 * 1_000_000 for e in events
               if e["kind"] == "frame" and e["fate"] == "delivered" and e.get("to") == 3 and src_of[e["id"]] == 1)


def test_link_replay_spec_errors(pcap_trace):
    from ground import linkreplay, stages
    from ground.pipeline import build_pipeline

    with pytest.raises(ValueError, match=r"replay: .*no frames on link 1 -> 9"):
        build_pipeline({"replay": {"trace": pcap_trace, "src": 1, "dst": 9}}, seed=0)
    with pytest.raises(ValueError, match=r"replay.dst: required"):
        build_pipeline({"replay": {"trace": pcap_trace, "src": 1}}, seed=0)
    with pytest.raises(ValueError, match=r"cannot read"):
        build_pipeline({"replay": {"trace": "/nonexistent.jsonl", "src": 1, "dst": 2}}, seed=0)
    once = build_pipeline({"replay": {"trace": pcap_trace, "src": 1, "dst": 2, "loop": False}}, seed=0)
    n = len(linkreplay.trace_link_outcomes(pcap_trace, 1, 2))
    outs = [once.send(stages.Packet(i, b"x", i), i)[0][0] for i in range(n + 3)]
    assert outs[n:] == [stages.BLACKOUT] * 3


# ---- into a device: a fake board on a pty ------------------------------------------------


def test_replay_into_a_device_writes_the_inputs_and_captures_the_outputs(tmp_path):
    # The device is a pty; behind it a fake board that, once the replay asks
    # for a reset, says what the recorded node said, when it said it (scaled),
    # for the first half of the run, and records what it is sent. Real time,
    # so only the order of bytes is asserted, with half a run of slack.
    import select
    import threading
    import time as _time

    text = open(os.path.join(SCENARIOS, "replay.yaml")).read().replace("duration_s: 40", "duration_s: 4\ntime_scale: 2")
    text = text[:text.index("faults:")]
    sc = scenario.load_text(text, "device.yaml")
    run.run(sc, str(tmp_path / "r"))
    path = str(tmp_path / "r" / "trace.jsonl")
    stream = replay.node_stream(path, 1)
    half = 2 * 10**9
    says = [(t, d) for t, d in stream.outputs if t <= half]
    master, slave = os.openpty()
    device = os.ttyname(slave)
    got = bytearray()
    go, stop = threading.Event(), threading.Event()

    def board():
        go.wait()
        t0 = _time.monotonic()
        for t, data in says:
            _time.sleep(max(0.0, t0 + t / 1e9 / 2 - _time.monotonic()))
            os.write(master, data + b"\x00")

    def reader():
        while not stop.is_set():
            r, _, _ = select.select([master], [], [], 0.05)
            if r:
                got.extend(os.read(master, 4096))

    threads = [threading.Thread(target=board, daemon=True), threading.Thread(target=reader, daemon=True)]
    for t in threads:
        t.start()
    try:
        r = replay.replay_frames(path, 1, into=device, say=lambda _: go.set(), wait_hello_s=10)
    finally:
        stop.set()
        for t in threads:
            t.join(5)
        os.close(master)
        os.close(slave)
    assert [d for _, d in r.replayed] == [d for _, d in says]
    assert r.diff.what == "count" and r.diff.index == len(says) < len(stream.outputs)
    frames = [bytes(x) for x in bytes(got).split(b"\x00") if x]
    msgs, wire = firmware.msgs, firmware.wire
    assert wire.decode(frames[0]).type == msgs.CONFIG  # a sim trace has none: the replay sends it first
    sent_in = [d for t, d in stream.inputs if t <= half]
    assert frames[1:1 + len(sent_in)] == sent_in
    assert "compared by bytes" in r.report()
