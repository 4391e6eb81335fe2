"""A rollout on the lean path (ground/fleet_rollout.py, ground/shard_rollout.py,
docs/FLEET_RUN.md "Rollouts on the lean path"): one orchestrator in the
driver deciding at window ends, the nodes' real update agent in the shards;
the same decisions and counters with 1 and 2 shards, the --sim path's
decisions within a window each, a bad test build rolled back."""

import json
import math

import pytest

from ground import fleetcli, fleetrun, run, scenario, trace
from ground.report_rollout import rollout_series
from test_rollout_defects import hello_versions

S = 1_000_000_000
# two regions of 3 clusters of 5 (each region a unit: 2 shards hold one each); 2.1 to every cluster, then a test
# build 2.2 that crashes on becoming coordinator, caught at its canary cluster; a pause holds the first wave back
TEXT = """\
name: lean-rollout
seed: 4
duration_s: 160
election_timeout_ms: 2000
fleet:
  nodes: 30
  cluster_sizes: {min: 5, max: 5}
  regions: {count: 2, electors: 3}
  allow_region_sizes: true
  lineages: 2
  firmware: {"2.0": 1.0}
  market: {units: [2, 2, 2, 2, 1, 1, 1, 1], slot_ms: 30000, region_timeout_ms: 6000}
  geometry: {ring_radius_km: 100000, region_radius_km: 20000}
  steps:
    - {at_s: 35, rollout: pause}      # the first wave waits for the resume
    - {at_s: 50, rollout: resume}
  links:
    intra_cluster: {delay_ms: 20}
    intra_region: {delay_ms: 10}
    inter_region: {delay_ms: 10}
rollout:
  start_s: 10
  window_s: 30
  canary_percent: 5
  step_percent: 50
  confirm_after_s: 3
  deploy_timeout_s: 28
  checks: {crashes: {max_ratio: 2, slack: 0}, failovers: {max_ratio: 2, slack: 1}}
  images:
    - version: "2.1"
    - version: "2.2"
      test_build: true
      defects: {crash_on_coordinator: true}
"""
PAUSE = """\
  steps:
    - {at_s: 35, rollout: pause}      # the first wave waits for the resume
    - {at_s: 50, rollout: resume}
"""
DECISIONS = ("start", "step", "analysis", "deployed", "deploy_timeout", "complete", "abort", "rolled_back", "pause",
             "resume")


def _rollout(path):
    _, events, _ = trace.read(str(path / "trace.jsonl"))
    return events, [e for e in events if e["kind"] == "rollout"]


def _run(tmp_path, name, **kw):
    sc = scenario.load_text(TEXT, "lean-rollout.yaml")
    lr = fleetrun.LeanRun(sc, str(tmp_path / name), **kw)
    return sc, lr, lr.execute()


@pytest.fixture(scope="module")
def lean_one(tmp_path_factory):
    """The lean run in one shard, shared by the tests below (a few CPU seconds)."""
    tmp = tmp_path_factory.mktemp("lean-rollout")
    return (tmp,) + _run(tmp, "one")


def test_lean_rollout_decides_at_window_ends_rolls_back_and_ignores_the_shard_count(lean_one):
    tmp_path, sc, lr, one = lean_one
    _, lr2, two = _run(tmp_path, "two", shards=2)
    assert len(lr.plan) == 1 and len(lr2.plan) == 2
    assert one.status == two.status == "ok" and not one.failures
    # the same fleet, counter for counter, and the same metrics (the rollout family too), with 1 and 2 shards
    f1, f2 = (json.load(open(tmp_path / d / "fleet.json")) for d in ("one", "two"))
    assert {k: v for k, v in f1.items() if k != "shards"} == {k: v for k, v in f2.items() if k != "shards"}
    assert one.metrics == two.metrics
    events, ro = _rollout(tmp_path / "one")
    assert ro == _rollout(tmp_path / "two")[1]
    # every decision at a window end: the first at or after start_s, the paused wave at the resume's, the next a
    # validation window (plus less than one window) after it
    w = lr.window_ns
    at_end = lambda s: math.ceil(s * S / w) * w  # noqa: E731
    assert {e["mission_ns"] % w for e in ro if e["event"] in DECISIONS} == {0}
    assert ro[0]["event"] == "start" and ro[0]["mission_ns"] == at_end(10)
    assert [e["mission_ns"] for e in ro if e["event"] in ("pause", "resume")] == [at_end(35), at_end(50)]
    steps = [e["mission_ns"] for e in ro if e["event"] == "step" and e["image"] == "2.1"]
    assert len(steps) == 3 and steps[1] == at_end(50) and 0 <= steps[2] - steps[1] - 30 * S < w
    # 2.1 reached every node; 2.2 only its canary cluster, whose crashes abort it; every node ends on 2.1
    seen, last = hello_versions(events)
    assert seen["2.1"] == set(sc.nodes)
    (start2,) = [e for e in ro if e["event"] == "start" and e["image"] == "2.2"]
    assert seen["2.2"] and {sc.nodes[n].cluster for n in seen["2.2"]} <= set(start2["canaries"])
    assert last == {n: "2.1" for n in sc.nodes}
    (abort,) = [e for e in ro if e["event"] == "abort"]
    assert abort["image"] == "2.2" and "crashes" in abort["reason"]
    assert [e["image"] for e in ro if e["event"] == "rolled_back"] == ["2.2"]
    flat = one.metrics["flat"]
    assert flat["rollout_completed"] == 1 and flat["rollout_aborted"] == 1
    assert flat["rollout_bad_share"] == round(5 / 30, 9)  # the canary cluster's 5 of the 30 nodes
    lines = fleetcli.rollout_summary(one.metrics)  # what `ground run --lean` prints under the fleet's counters
    assert len(lines) == 2 and "2.1: from" in lines[0] and "complete at" in lines[0]
    assert "2.2: from" in lines[1] and "aborted at" in lines[1] and "rolled back by" in lines[1]
    ground = f1["nodes"]["0"]  # the update frames are in the fleet's counters: the ground's, out and in
    assert ground["upd_chunk"]["sent"] > 0 and ground["upd_ack"]["delivered"] > 0


def test_lean_rollout_takes_the_sim_paths_decisions_each_within_a_window(lean_one, tmp_path):
    lean_dir, sc, lr, lean = lean_one
    ref = run.run(sc, str(tmp_path / "sim"), plot=False)
    assert ref.ok and lean.ok
    key = lambda e: (e["event"], e["image"], e["step"], e.get("clusters"), e.get("canaries"))  # noqa: E731
    sim = [e for e in _rollout(tmp_path / "sim")[1] if e["event"] in DECISIONS and e["event"] != "analysis"]
    got = [e for e in _rollout(lean_dir / "one")[1] if e["event"] in DECISIONS and e["event"] != "analysis"]
    assert [e["event"] for e in sim].count("pause") == 1
    assert [key(e) for e in got] == [key(e) for e in sim]  # the same decisions, in the same order
    # the plan's own decisions (an image's start, a step, completion) each wait for the window end at or after
    # --sim's time: the lag grows by less than a window per step (a node's install, ack by ack, lags more)
    hops = 0
    for a, b in zip(sim, got):
        if a["event"] in ("start", "step", "complete", "pause", "resume"):
            hops += a["event"] == "step"
            assert 0 <= b["mission_ns"] - a["mission_ns"] < max(1, hops) * lr.window_ns, (a, b)
    for name in ("rollout_completed", "rollout_aborted", "rollout_bad_nodes"):
        assert lean.metrics["flat"][name] == ref.metrics["flat"][name]


def test_an_image_of_another_protocol_range_is_not_refused(tmp_path):
    text = open("scenarios/rollout.yaml").read().replace('version: "1.2"', 'version: "2.0"')
    path = tmp_path / "r.yaml"
    path.write_text(text)
    assert fleetrun.lean_refusal(scenario.load(str(path))) is None  # 1.x to 2.0 (tests/ground/test_fleetrun_range.py)
    assert fleetrun.lean_refusal(scenario.load("scenarios/rollout.yaml")) is None  # 1.1, 1.2: one range


def test_a_lean_rollout_draws_rollout_png_from_every_nodes_word(lean_one):
    tmp_path, sc, lr, one = lean_one
    png = tmp_path / "one" / "rollout.png"
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    assert not (tmp_path / "one" / "timeline.png").exists()  # the lean path draws no timeline
    # drawn from the records every node's shard sends the driver (HELLOs, UPD_ACKs) and the decisions: here, with
    # every cluster traced, the same picture as the trace gives (ground metrics TRACE, the --sim path's way)
    header, events, _ = trace.read(str(tmp_path / "one" / "trace.jsonl"))
    series = lr.rollout.series(int(sc.duration_s * S))
    assert series == rollout_series(header, events)
    assert sorted(series["clusters"]) == sorted(sc.clusters)
    assert [m[1:] for m in series["marks"]] == [["start", "2.1"], ["complete", "2.1"], ["start", "2.2"],
                                                 ["abort", "2.2"], ["rolled_back", "2.2"]]


def test_no_plot_draws_no_rollout_png_on_the_lean_path(tmp_path):
    short = TEXT.replace("duration_s: 160", "duration_s: 15").replace(PAUSE, "")  # up to its start
    sc = scenario.load_text(short, "lean-rollout.yaml")
    out = tmp_path / "r"
    fleetrun.LeanRun(sc, str(out)).execute()
    assert (out / "rollout.png").exists()
    fleetrun.LeanRun(sc, str(out), plot=False).execute()  # ground run --lean --no-plot
    assert not (out / "rollout.png").exists()  # nor the one left from the run before
