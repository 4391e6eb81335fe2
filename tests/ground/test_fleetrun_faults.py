"""The lean path's frame faults and intent steps (ground/shard_faults.py):
byzantine rewrites, corruption bursts and the ground's intent frames give
the same per-node counters, the same metrics and the same history verdict
as the --sim path, and the same counters with 1 and 3 shards."""

import json

from ground import cli, exitcodes, fleetrun, history, run, scenario, trace
from tests.ground.test_fleetrun import _lean_counters, _run_counters

FAULTS = """\
name: lean-faults
seed: 5
duration_s: 90
election_timeout_ms: 3000
clusters:
  - {id: 1, nodes: [1, 2, 3, 4, 5]}
  - {id: 2, nodes: [6, 7, 8, 9, 10]}
  - {id: 3, nodes: [11, 12, 13, 14, 15]}
links:
  intra_cluster: {delay_ms: 200, jitter_ms: 30, loss: 0.02}
  inter_cluster: {delay_ms: 400}
  ground: {delay_ms: 1500, loss: 0.1}
%s
faults:
  - {at_s: 10, byzantine: coordinator, cluster: 1, duration_s: 20}
  - {at_s: 15, corruption_burst: 8, duration_s: 10, bitflip: 0.002}
  - {at_s: 30, crash: 12, duration_s: 10}
  - {at_s: 55, corruption_burst: coordinator, cluster: 3, duration_s: 5, bitflip: 0.01}
%s
"""
MARKET = "market: {electors: [1, 6, 11], units: [1, 1, 1, 1, 1, 1, 1, 1], slot_ms: 24000, region_timeout_ms: 3000}"
INTENTS = """\
  - {at_s: 20, intent: {phase: growth, growth_permille: 500}}
  - {at_s: 50, intent: {phase: consolidate, campaign: {start_s: 60, end_s: 80}}, cluster: 2}"""


def _events(path):
    _, events, torn = trace.read(path)
    assert not torn
    return events


def test_byzantine_corruption_and_intent_on_the_lean_path_equal_the_sim_path(tmp_path):
    sc = scenario.load_text(FAULTS % (MARKET, INTENTS), "lean-faults.yaml")
    assert fleetrun.lean_refusal(sc) is None
    ref = run.run(sc, str(tmp_path / "run"), plot=False)
    lean = fleetrun.run(sc, str(tmp_path / "lean"))
    assert ref.status == lean.status == "ok"
    want = _run_counters(str(tmp_path / "run" / "trace.jsonl"))
    assert _lean_counters(lean) == want
    assert lean.metrics["flat"] == ref.metrics["flat"]
    # each fault did something, the same on both paths
    assert want[(0, "intent")][0] == 2 and sum(v[1] for (n, t), v in want.items() if t == "intent") >= 5
    assert ref.metrics["frames"]["corrupted"] == lean.metrics["frames"]["corrupted"] > 10
    for path in ("run", "lean"):
        events = _events(str(tmp_path / path / "trace.jsonl"))
        assert sum(1 for e in events if e.get("orig_hex")) > 5  # rewritten by the byzantine coordinator
        assert [e["type"] for e in events if e["kind"] == "frame" and e["fate"] == "sent" and e["src"] == 0] == \
            ["intent", "intent"]
    # the history verdict (the same checker over each trace)
    assert history.check(str(tmp_path / "run" / "trace.jsonl")).violations == \
        history.check(str(tmp_path / "lean" / "trace.jsonl")).violations


def test_frame_faults_give_the_same_counters_with_1_and_3_shards(tmp_path):
    sc = scenario.load_text(FAULTS % ("", ""), "lean-faults.yaml")  # no market: each cluster a unit
    ref = run.run(sc, str(tmp_path / "run"), plot=False)
    want = _run_counters(str(tmp_path / "run" / "trace.jsonl"))
    one = fleetrun.run(sc, str(tmp_path / "one"), shards=1)
    three = fleetrun.LeanRun(sc, str(tmp_path / "three"), shards=3)
    assert len(three.plan) == 3
    got3 = _lean_counters(three.execute())
    assert _lean_counters(one) == got3 == want
    assert one.metrics["frames"]["corrupted"] > 10


def test_the_lean_path_runs_mixed_protocol_ranges(tmp_path):
    """Once refused: a 2.0 node (protocol 1..2) in this 1.0 fleet's market runs with --lean, and only it
    gets frames converted (the 2.0 node's own frames are newer than its peers speak: theirs are)."""
    text = FAULTS % (MARKET, "") + 'nodes:\n  7: {firmware: "2.0"}\n'
    p = tmp_path / "mixed.yaml"
    p.write_text(text)
    assert cli.main(["run", str(p), "--lean", "-q", "--out", str(tmp_path / "o")]) == exitcodes.OK
    fleet = json.loads((tmp_path / "o" / "fleet.json").read_text())
    assert fleet["fleet"]["converted"] > 0 and "7" not in fleet["converted"]
    assert sum(fleet["converted"].values()) == fleet["fleet"]["converted"]


def test_a_ground_frame_still_on_its_link_when_the_run_ends_is_dropped_run_end_as_on_the_sim_path(tmp_path):
    # the intent leaves the ground 0.5 s before the end over its 1.5-s ground link, so every copy is still
    # in space when the run ends (once an internal error in Shard.finish: the ground's delayed deliveries
    # were scheduled with 7 arguments, every other delivery with 8)
    late = "  - {at_s: 89.5, intent: {phase: growth, growth_permille: 500}}"
    sc = scenario.load_text(FAULTS % (MARKET, late), "lean-faults.yaml")
    run.run(sc, str(tmp_path / "run"), plot=False)
    lean = fleetrun.run(sc, str(tmp_path / "lean"), shards=1)
    three = fleetrun.LeanRun(sc, str(tmp_path / "three"), shards=3).execute()
    want = _run_counters(str(tmp_path / "run" / "trace.jsonl"))
    assert _lean_counters(lean) == _lean_counters(three) == want
    intent = [v for (n, t), v in want.items() if t == "intent" and n]
    assert want[(0, "intent")][0] == 1 and sum(v[1] for v in intent) == 0 and sum(v[2] for v in intent) == 15

    def ends(path):  # the fates of the ground's frames, in a trace holding every cluster
        events = [e for e in _events(str(tmp_path / path / "trace.jsonl")) if e["kind"] == "frame"]
        ground = {e["id"] for e in events if e["fate"] == "sent" and e["src"] == 0}
        return sorted((e["to"], e["fate"], e.get("reason")) for e in events
                      if e["id"] in ground and e["fate"] != "sent")

    assert ends("lean") == ends("run") and {r for _, _, r in ends("run")} >= {"run_end"}
