"""`ground run` in virtual time: the harness end to end with in-process nodes."""

import json
import os

import pytest

from ground import cli, metrics, run, scenario, trace

SMALL = """\
name: small
seed: 3
duration_s: 60
election_timeout_ms: 2000
clusters:
  - {id: 1, nodes: [1, 2, 3, 4, 5], lineages: [0, 1]}
links:
  intra_cluster: {delay_ms: 200, jitter: uniform, jitter_ms: 30, loss: 0.02}
faults:
%s
gates:
  split_brain: {max: 0}
  unfated_frames: {max: 0}
"""


def _run(tmp_path, faults="  - {at_s: 20, crash: coordinator, cluster: 1}", seed=None, name="r", extra=""):
    sc = scenario.load_text(SMALL % faults + extra, "small.yaml")
    return run.run(sc, str(tmp_path / name), seed=seed)


def test_bench_scenario_passes_its_gates(tmp_path):
    sc = scenario.load("scenarios/bench.yaml")
    res = run.run(sc, str(tmp_path / "bench"))
    assert res.ok, res.failures
    c1 = res.metrics["clusters"]["1"]
    assert c1["failover"]["count"] == 1 and c1["split_brain"]["count"] == 0
    for f in ("trace.jsonl", "metrics.json", "metrics.prom", "metrics.txt", "timeline.png"):
        assert os.path.getsize(tmp_path / "bench" / f) > 0


def test_every_frame_has_one_final_fate_per_recipient(tmp_path):
    res = _run(tmp_path)
    header, events, torn = trace.read(res.out_dir + "/trace.jsonl")
    assert not torn and events[-1]["kind"] == "end" and events[-1]["status"] == "ok"
    final = {}
    for e in events:
        if e["kind"] == "frame" and e["fate"] in ("delivered", "dropped") and e.get("to") is not None:
            key = (e["id"], e["to"], e.get("copy", 0))
            assert key not in final, "two final fates for %r" % (key,)
            final[key] = e["fate"]
    sent = [e for e in events if e["kind"] == "frame" and e["fate"] == "sent"]
    assert len(sent) == res.metrics["frames"]["sent"] and res.metrics["frames"]["unfated"] == 0


def test_same_seed_same_trace_byte_for_byte(tmp_path):
    a = _run(tmp_path, name="a")
    b = _run(tmp_path, name="b")
    c = _run(tmp_path, name="c", seed=99)
    ta, tb, tc = (open(x.out_dir + "/trace.jsonl", "rb").read() for x in (a, b, c))
    assert ta == tb
    assert ta != tc


def test_failover_is_measured_against_the_crash(tmp_path):
    res = _run(tmp_path)
    fo = res.metrics["clusters"]["1"]["failover"]
    assert fo["count"] == 1
    assert 0.5 <= fo["events"][0]["T"] <= 3.0


def test_partition_minority_never_elects_and_heal_keeps_term(tmp_path):
    res = _run(tmp_path, faults="  - {at_s: 20, partition: [[1, 2], [3, 4, 5]]}\n  - {at_s: 40, heal: true}")
    assert res.ok, res.failures
    header, events, _ = trace.read(res.out_dir + "/trace.jsonl")
    claims = {(e["src"], e["msg"]["term"]) for e in events if e["kind"] == "frame" and e["fate"] == "sent"
              and e["type"] == "heartbeat" and e["msg"].get("role") == 2 and 20e9 < e["mission_ns"] < 40e9}
    assert claims and all(src in (3, 4, 5) for src, _ in claims if _ > 1)
    drops = [e for e in events if e.get("reason") == "partition"]
    assert drops and all(20e9 <= e["mission_ns"] < 40e9 for e in drops)


def test_blackout_drops_only_inside_its_window(tmp_path):
    res = _run(tmp_path, faults="  - {at_s: 10, blackout: all, duration_s: 5}")
    header, events, _ = trace.read(res.out_dir + "/trace.jsonl")
    drops = [e for e in events if e.get("reason") == "blackout"]
    assert drops and all(10e9 <= e["mission_ns"] < 15e9 for e in drops)


def test_byzantine_stale_term_is_rewritten_and_ignored(tmp_path):
    res = _run(tmp_path, faults="  - {at_s: 15, byzantine: coordinator, cluster: 1, duration_s: 10}")
    header, events, _ = trace.read(res.out_dir + "/trace.jsonl")
    rewritten = [e for e in events if e.get("orig_hex")]
    assert rewritten
    # The stale claims never made anyone follow a lower term: no term ever went backwards
    # in any node's own (unrewritten) heartbeats.
    last = {}
    for e in events:
        if e["kind"] == "frame" and e["fate"] == "sent" and e["type"] == "heartbeat" and not e.get("orig_hex"):
            assert e["msg"]["term"] >= last.get(e["src"], 0)
            last[e["src"]] = e["msg"]["term"]


def test_clock_skew_and_power_cut_keep_the_cluster_sane(tmp_path):
    res = _run(tmp_path, faults="  - {at_s: 5, skew: 2, factor: 1.5}\n"
                                "  - {at_s: 20, power_cut: coordinator, cluster: 1, duration_s: 10}")
    assert res.ok, res.failures
    assert res.metrics["faults"].get("power_cut") == 1


def test_a_failing_gate_fails_the_run_and_the_cli(tmp_path, capsys):
    path = tmp_path / "strict.yaml"
    path.write_text((SMALL % "  - {at_s: 20, crash: coordinator, cluster: 1}").replace(
        "split_brain: {max: 0}", "failover_T_max: {max: 0.01}"))
    code = cli.main(["run", str(path), "--out", str(tmp_path / "o"), "--quiet"])
    out = capsys.readouterr().out
    assert code == 1 and "FAIL: " in out and "failover_T_max" in out


def test_bad_scenario_gives_exit_2_and_file_line(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(SMALL % "  - {at_s: 1, crash: 42}")
    code = cli.main(["run", str(path), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "bad.yaml:10" in err and "unknown node 42" in err


def test_a_crash_mid_run_keeps_the_trace_and_metrics(tmp_path, monkeypatch):
    from ground import router

    calls = {"n": 0}
    orig = router.Router.from_node

    def flaky(self, src, line):
        calls["n"] += 1
        if calls["n"] == 200:
            raise RuntimeError("boom")
        return orig(self, src, line)

    monkeypatch.setattr(router.Router, "from_node", flaky)
    with pytest.raises(RuntimeError):
        _run(tmp_path, name="crashy")
    header, events, torn = trace.read(str(tmp_path / "crashy" / "trace.jsonl"))
    assert events[-1]["kind"] == "end" and events[-1]["status"] == "failed" and "boom" in events[-1]["reason"]
    m = json.load(open(tmp_path / "crashy" / "metrics.json"))
    assert m["frames"]["sent"] == 199


def test_real_time_run_refuses_delays_below_resolution():
    sc = scenario.load_text((SMALL % "  []").replace("duration_s: 60", "duration_s: 60\ntime_scale: 1000"), "fast.yaml")
    with pytest.raises(ValueError) as e:
        run.check_resolution(sc, real=True)
    assert "fast.yaml" in str(e.value) and "time_scale" in str(e.value)
    run.check_resolution(sc, real=False)  # virtual time is exact: fine


def test_ring_partition_cuts_only_non_neighbours(tmp_path):
    res = _run(tmp_path, faults="  - {at_s: 10, partition: {ring: [1, 2, 3, 4, 5]}}")
    header, events, _ = trace.read(res.out_dir + "/trace.jsonl")
    cut = {(e["src"], e["to"]) for e in events if e["kind"] == "link" and e["state"] == "down"}
    assert (1, 2) not in cut and (1, 5) not in cut and (1, 3) in cut and (3, 1) in cut
    assert all(e["mission_ns"] >= 10e9 for e in events if e.get("reason") == "partition")


def test_isolate_and_bridge_partitions_load_and_run(tmp_path):
    res = _run(tmp_path, name="iso", faults="  - {at_s: 10, partition: {isolate: 3}}")
    assert res.ok, res.failures
    res = _run(tmp_path, name="br", faults="  - {at_s: 10, partition: {bridge: {a: [1, 2], b: [4, 5], via: 3}}}")
    header, events, _ = trace.read(res.out_dir + "/trace.jsonl")
    cut = {(e["src"], e["to"]) for e in events if e["kind"] == "link" and e["state"] == "down"}
    assert (1, 4) in cut and (1, 3) not in cut and (3, 5) not in cut
