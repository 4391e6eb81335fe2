"""The containment steps on the lean path (ground/shard_contain.py):
lineage_fault, reinstate, sever (by order and by a region's `sever:
unreplaced` policy) and reinstate_region give the --sim path's per-node
counters, metrics and history verdict, the same fleet counters with 1, 2 and
3 shards, and visibly act (rollout, still refused: tests/ground/test_fleetrun_skew.py)."""

import json

from ground import fleetrun, history, run, scenario, trace
from tests.ground.test_fleetrun import _lean_counters, _run_counters

# Three regions of two clusters of five, three lineages mixed; auditors in
# each. Lineage 2 (nodes 3, 8, 13, 18, 23, 28) crashes for 10 s; the ground
# severs region 3 by order at 20 s and lifts it at 40 s; region 2's node 12
# is reinstated (taken out of quarantine) at 35 s.
THREE = """\
name: lean-containment
seed: 3
duration_s: 50
election_timeout_ms: 2000
clusters:
  - {id: 1, nodes: [1, 2, 3, 4, 5], hw_gen: 2, lineages: [0, 1, 2]}
  - {id: 2, nodes: [6, 7, 8, 9, 10], hw_gen: 3, lineages: [0, 1, 2]}
  - {id: 3, nodes: [11, 12, 13, 14, 15], hw_gen: 2, lineages: [0, 1, 2]}
  - {id: 4, nodes: [16, 17, 18, 19, 20], hw_gen: 3, lineages: [0, 1, 2]}
  - {id: 5, nodes: [21, 22, 23, 24, 25], hw_gen: 2, lineages: [0, 1, 2]}
  - {id: 6, nodes: [26, 27, 28, 29, 30], hw_gen: 3, lineages: [0, 1, 2]}
links:
  intra_cluster: {delay_ms: 50, jitter_ms: 5}
  intra_region: {delay_ms: 500}
  inter_region: {delay_ms: 1500}
regions:
  - {region: 1, clusters: [1, 2], electors: [1, 2, 6, 7], auditors: [1, 2, 6, 7], lineages: enforce,
     units: [1, 1, 1, 1, 1, 1, 1, 1], slot_ms: 60000, region_timeout_ms: 3000}
  - {region: 2, clusters: [3, 4], electors: [11, 12, 16, 17], auditors: [11, 12, 16, 17], lineages: enforce,
     units: [1, 1, 1, 1, 1, 1, 1, 1], slot_ms: 60000, region_timeout_ms: 3000}
  - {region: 3, clusters: [5, 6], electors: [21, 22, 26, 27], auditors: [21, 22, 26, 27], lineages: enforce,
     units: [1, 1, 1, 1, 1, 1, 1, 1], slot_ms: 60000, region_timeout_ms: 3000}
faults:
  - {at_s: 10, lineage_fault: {lineage: 2, kind: crash}, duration_s: 10}
  - {at_s: 20, sever: 3}
  - {at_s: 35, reinstate: 12}
  - {at_s: 40, reinstate_region: 3}
"""
S = 1_000_000_000
REGION3 = set(range(21, 31))
LINEAGE2 = {3, 8, 13, 18, 23, 28}


def _events(path):
    _, events, torn = trace.read(str(path))
    assert not torn
    return events


def _fleet(result):
    """fleet.json without the shard plan: what must not depend on the shards."""
    got = dict(result.fleet)
    got.pop("shards")
    return json.loads(json.dumps(got))


def test_lineage_fault_sever_and_reinstate_on_the_lean_path(tmp_path):
    sc = scenario.load_text(THREE, "lean-containment.yaml")
    assert fleetrun.lean_refusal(sc) is None
    ref = run.run(sc, str(tmp_path / "run"), plot=False)
    one = fleetrun.run(sc, str(tmp_path / "one"))
    three = fleetrun.LeanRun(sc, str(tmp_path / "three"), shards=3)
    assert len(three.plan) == 3  # a region per shard: the severed region's frames cross shards
    three = three.execute()
    assert ref.status == one.status == three.status == "ok"
    want = _run_counters(str(tmp_path / "run" / "trace.jsonl"))
    assert _lean_counters(one) == _lean_counters(three) == want
    assert _fleet(one) == _fleet(three)  # per cluster and region, in time buckets too
    assert one.metrics["flat"] == three.metrics["flat"] == ref.metrics["flat"]
    assert history.check(str(tmp_path / "one" / "trace.jsonl")).violations == [] == \
        history.check(str(tmp_path / "run" / "trace.jsonl")).violations
    assert one.metrics["containment"]["severed"] == [{
        "at_s": 20.0, "region": 3, "cause": "ordered by the ground", "cycles": 0.0, "nodes": sorted(REGION3),
        "reinstated_at_s": 40.0}]

    events = _events(tmp_path / "three" / "trace.jsonl")
    sent = {e["id"]: e for e in events if e["kind"] == "frame" and e["fate"] == "sent"}
    # the lineage's nodes are down from 10 s to 20 s: they send nothing, and frames to them are lost
    by_lineage = [e["mission_ns"] / S for e in sent.values() if e["src"] in LINEAGE2]
    assert by_lineage and not [t for t in by_lineage if 10 <= t < 20] and max(by_lineage) > 21
    assert one.fleet["fleet"]["drop_reasons"]["node_down"] > 0
    assert [e["node"] for e in events if e["kind"] == "fault" and e["fault"] == "crash"] == sorted(LINEAGE2)
    # region 3's frames sent between the sever point and the reinstatement reach only region 3
    out_of_3 = [(sent[e["id"]]["mission_ns"] / S, e["to"]) for e in events if e["kind"] == "frame"
                and e["fate"] == "delivered" and e["id"] in sent and sent[e["id"]]["src"] in REGION3
                and e["to"] not in REGION3]
    assert [t for t, _ in out_of_3 if 20 <= t < 40] == []
    assert [t for t, _ in out_of_3 if t < 20] and [t for t, _ in out_of_3 if t >= 40]  # before and after: they do
    severed = [e for e in events if e["kind"] == "frame" and e.get("reason") == "severed"]
    assert severed and all(20 <= sent[e["id"]]["mission_ns"] / S < 40 for e in severed)
    assert 0 in {e["to"] for e in severed}  # the ground too
    assert one.fleet["fleet"]["drop_reasons"]["severed"] == len(severed)
    # the ground told the other regions' electors at the sever point and at the reinstatement, and
    # sent region 2's electors the REINSTATE
    ground = [(e["mission_ns"] / S, e["type"]) for e in sent.values() if e["src"] == 0]
    assert ground == [(20.0, "sever"), (20.0, "sever"), (35.0, "reinstate"), (40.0, "sever"), (40.0, "sever")]
    got = {(e["to"], sent[e["id"]]["type"]) for e in events if e["kind"] == "frame" and e["fate"] == "delivered"
           and e["id"] in sent and sent[e["id"]]["src"] == 0}
    assert got == {(n, "sever") for n in (1, 2, 6, 7, 11, 12, 16, 17)} | {(n, "reinstate") for n in (11, 12, 16, 17)}


def test_a_region_severed_by_its_policy_on_1_and_2_shards(tmp_path):
    """scenarios/containment-sever.yaml to just after its sever point:
    region 2's accused coordinator is not replaced within one cycle, and the
    shard holding region 2 severs it, whatever the shards."""
    text = open("scenarios/containment-sever.yaml", encoding="utf-8").read()
    sc = scenario.load_text(text.replace("duration_s: 600", "duration_s: 118"), "containment-sever.yaml")
    one = fleetrun.run(sc, str(tmp_path / "one"))
    two = fleetrun.LeanRun(sc, str(tmp_path / "two"), shards=2)
    assert two.plan == [[1, 2], [3, 4]]
    two = two.execute()
    assert _lean_counters(one) == _lean_counters(two)
    assert _fleet(one) == _fleet(two)
    assert one.metrics["flat"] == two.metrics["flat"]
    rows = two.metrics["containment"]["severed"]
    assert [(r["region"], r["cycles"], r["cause"]) for r in rows] == [
        (2, 1.0, "coordinator 12 accused and not replaced within one cycle")]
    assert two.metrics["flat"]["severed_frames_honoured"] == 0
    assert two.fleet["fleet"]["drop_reasons"]["severed"] > 0
    # the SEVER to region 1's electors is an order in the window exchange: it leaves as the next window opens
    events = _events(tmp_path / "two" / "trace.jsonl")
    sever_at = rows[0]["at_s"]
    told = [e for e in events if e["kind"] == "frame" and e["fate"] == "sent" and e["src"] == 0]
    assert [e["type"] for e in told] == ["sever"] and sever_at <= told[0]["mission_ns"] / S < sever_at + 1
    assert history.check(str(tmp_path / "two" / "trace.jsonl")).violations == []
