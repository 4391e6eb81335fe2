"""Version skew on the lean path (ground/shard_skew.py): a fleet whose nodes
speak two protocol ranges runs with --lean as with --sim, frames converted
for the older recipients in the sending shard, whatever the shard count; the
old nodes really get converted frames. (A rollout on the lean path:
tests/ground/test_fleetrun_rollout.py.)"""

import json

from ground import fleetrun, run, scenario, trace
from ground.shard_route import frame_header
from tests.ground.test_fleetrun import _lean_counters, _run_counters

# Two regions of two clusters of five, signed frames. Firmware 4.0 (protocol
# 1..4) but for one 2.0 node (1..2) per cluster, two of them electors: the
# 4.0 nodes' HEARTBEATs (v2 layout at v4), BIDs and AWARDs (v4 layouts)
# reach them converted. A 4.0 node's corruption burst flips bits of the
# converted copies too; a coordinator crashes.
MIXED = """\
name: lean-skew
seed: 5
duration_s: 40
election_timeout_ms: 2000
auth_key: "00112233445566778899aabbccddeeff"
clusters:
  - {id: 1, nodes: [1, 2, 3, 4, 5], firmware: "4.0", hw_gen: 2}
  - {id: 2, nodes: [6, 7, 8, 9, 10], firmware: "4.0", hw_gen: 3}
  - {id: 3, nodes: [11, 12, 13, 14, 15], firmware: "4.0", hw_gen: 2}
  - {id: 4, nodes: [16, 17, 18, 19, 20], firmware: "4.0", hw_gen: 3}
nodes:
  2: {firmware: "2.0"}
  9: {firmware: "2.0"}
  12: {firmware: "2.0"}
  20: {firmware: "2.0"}
links:
  intra_cluster: {delay_ms: 50, jitter_ms: 5, loss: 0.02}
  intra_region: {delay_ms: 300}
  inter_region: {delay_ms: 800}
regions:
  - {region: 1, clusters: [1, 2], electors: [1, 2, 6, 7], units: [1, 1, 1, 1, 1, 1, 1, 1], slot_ms: 60000,
     region_timeout_ms: 3000}
  - {region: 2, clusters: [3, 4], electors: [11, 12, 16, 17], units: [1, 1, 1, 1, 1, 1, 1, 1], slot_ms: 60000,
     region_timeout_ms: 3000}
faults:
  - {at_s: 8, corruption_burst: 3, duration_s: 6, bitflip: 0.002}
  - {at_s: 15, crash: coordinator, cluster: 3, duration_s: 8}
"""
OLD = {2, 9, 12, 20}


def _fleet(result):
    got = dict(result.fleet)
    got.pop("shards")
    return json.loads(json.dumps(got))


def _frames(path):
    _, events, torn = trace.read(str(path))
    assert not torn
    return [e for e in events if e["kind"] == "frame"]


def _telemetry(frames):
    """node -> the fields of the last TELEMETRY it sent."""
    return {e["src"]: e["msg"] for e in frames if e["fate"] == "sent" and e["type"] == "telemetry"}


def test_two_protocol_ranges_on_the_lean_path_as_on_sim_and_on_1_and_2_shards(tmp_path):
    sc = scenario.load_text(MIXED, "lean-skew.yaml")
    assert fleetrun.lean_refusal(sc) is None
    ref = run.run(sc, str(tmp_path / "run"), plot=False)
    one = fleetrun.run(sc, str(tmp_path / "one"))
    two = fleetrun.LeanRun(sc, str(tmp_path / "two"), shards=2)
    assert two.plan == [[1, 2], [3, 4]]  # a region per shard: converted frames cross shards
    two = two.execute()
    assert ref.status == one.status == two.status == "ok"
    want = _run_counters(str(tmp_path / "run" / "trace.jsonl"))
    assert _lean_counters(one) == _lean_counters(two) == want
    assert _fleet(one) == _fleet(two)
    assert one.metrics["flat"] == two.metrics["flat"] == ref.metrics["flat"]
    # the old nodes, and only they, got converted frames, as many as --sim converted for each
    sim = [e for e in _frames(tmp_path / "run" / "trace.jsonl") if e["fate"] == "converted"]
    per_node = {}
    for e in sim:
        per_node[str(e["to"])] = per_node.get(str(e["to"]), 0) + 1
    assert sorted(map(int, per_node)) == sorted(OLD)
    assert one.fleet["converted"] == two.fleet["converted"] == per_node
    assert one.fleet["fleet"]["converted"] == ref.metrics["flat"]["frames_converted"] == len(sim) > 100
    assert {(e["from_version"], e["to_version"]) for e in sim} == {(4, 2)}
    # the lean trace (every cluster traced: a small fleet) records them as --sim's does
    lean = _frames(tmp_path / "two" / "trace.jsonl")
    sent = {e["id"]: e for e in lean if e["fate"] == "sent"}
    conv = [e for e in lean if e["fate"] == "converted"]
    assert len(conv) == len(sim) and {sent[e["id"]]["type"] for e in conv} >= {"heartbeat", "bid"}
    converted = {(e["id"], e["to"]) for e in conv}
    got = [e for e in lean if e["fate"] == "delivered" and (e["id"], e["to"]) in converted]
    assert got and all(frame_header(bytes.fromhex(e["hex"]))[0] == 2 for e in got)  # the bytes the old node got
    assert all(frame_header(bytes.fromhex(sent[e["id"]]["hex"]))[0] == 4 for e in got)
    # the old nodes' cores took the converted frames: every core ends saying what it says on --sim (its last
    # TELEMETRY), and the 2.0 nodes hear all their cluster (unconverted, they refuse the 4.0 heartbeats as
    # `version`: alive 1, hundreds of bad frames)
    tel = _telemetry(lean)
    assert tel == _telemetry(_frames(tmp_path / "run" / "trace.jsonl"))
    assert [tel[n]["alive"] for n in sorted(OLD)] == [5, 5, 5, 5] and max(tel[n]["bad_frames"] for n in OLD) < 10
    assert not one.fleet["fleet"]["drop_reasons"].get("unconvertible")


def test_without_downconvert_the_old_nodes_hear_nobody_newer_on_either_path(tmp_path):
    sc = scenario.load_text(MIXED.replace("faults:", "downconvert: false\nfaults:"), "lean-skew-off.yaml")
    ref = run.run(sc, str(tmp_path / "run"), plot=False)
    two = fleetrun.LeanRun(sc, str(tmp_path / "two"), shards=2).execute()
    assert _lean_counters(two) == _run_counters(str(tmp_path / "run" / "trace.jsonl"))
    reasons = two.fleet["drop_reasons"]
    assert all(reasons[str(n)]["version"] > 0 for n in OLD)
    assert not any("version" in reasons.get(str(n), {}) for n in range(1, 21) if n not in OLD)
    assert two.fleet["fleet"]["converted"] == 0 == ref.metrics["flat"]["frames_converted"]


def test_version_skew_is_not_refused():
    assert fleetrun.lean_refusal(scenario.load("scenarios/version-skew.yaml")) is None
