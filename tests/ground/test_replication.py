"""Replication in the ground (ground/replication.py): daughters become
in-process nodes, clusters split, refusals are reported with the node and the
frame, ids are never reused (history: unique_ids); scenario `replication:`
is checked at load."""

import os

import pytest

from ground import history, replay, run, scenario, trace
from ground.replication import Plan, Replication
from ground.yamlfile import ConfigError

S = 1_000_000_000

SMALL = """\
name: grow-small
description: six nodes, six daughters, a split at 11
seed: 3
duration_s: 300
election_timeout_ms: 2000
clusters:
  - {id: 1, nodes: [1, 2, 3, 4, 5, 6], hw_gen: 3, lineages: [0, 1, 2]}
links:
  intra_cluster: {delay_ms: 20}
market:
  electors: [1, 2, 3]
  units: [8, 8, 8, 8, 4, 4, 4, 4]
  slot_ms: 24000
  region_timeout_ms: 2000
replication: {spares: 8, max_cluster: 10, min_cluster: 5}
faults:
  - {at_s: 1, intent: {growth_permille: 1000}}
gates:
  split_brain: {max: 0}
"""


def _node_events(events, name):
    return [e for e in events if e["kind"] == "node" and e.get("event") == name]


def test_daughters_become_nodes_and_the_cluster_splits_past_its_maximum(tmp_path):
    sc = scenario.load_text(SMALL, "small.yaml")
    res = run.run(sc, str(tmp_path / "a"))
    assert res.ok, res.failures
    _, events, _ = trace.read(str(tmp_path / "a" / "trace.jsonl"))
    added = _node_events(events, "node_added")
    assert [e["node"] for e in added] == list(range(7, 13))  # cluster 1's spares, in order
    assert sorted(e["parent"] for e in added) == [1, 2, 3, 4, 5, 6]
    (split,) = _node_events(events, "cluster_split")
    assert split["low"] == [1, 2, 3, 4, 5] and split["high"] == [6, 7, 8, 9, 10, 11], split
    assert split["new_cluster"] == 2
    flat = res.metrics["flat"]
    assert (flat["nodes_added"], flat["nodes_final"], flat["cluster_splits"], flat["clusters_final"]) == (6, 12, 1, 2)
    growth = res.metrics["growth"]["nodes_over_time"]
    assert growth[0] == [0.0, 6] and growth[-1][1] == 12
    # The caller's scenario is untouched: the run changed its own copy.
    assert sorted(sc.nodes) == [1, 2, 3, 4, 5, 6] and sc.clusters == {1: [1, 2, 3, 4, 5, 6]}
    # The same scenario and seed give the same trace, byte for byte.
    run.run(sc, str(tmp_path / "b"))
    a = open(str(tmp_path / "a" / "trace.jsonl"), "rb").read()
    b = open(str(tmp_path / "b" / "trace.jsonl"), "rb").read()
    assert a == b
    # A node the run began with replays frame for frame (its spares, the widened market);
    # a daughter is refused, naming why.
    path = str(tmp_path / "a" / "trace.jsonl")
    assert replay.replay_frames(path, 1).identical
    with pytest.raises(replay.ReplayError, match="node 9 is a daughter the run added"):
        replay.replay_frames(path, 9)
    # Daughters trade in their parent's region: the roster held their spares from boot.
    sent = [e for e in events if e["kind"] == "frame" and e["fate"] == "sent"]
    assert any(e["type"] == "bid" and e["src"] >= 7 for e in sent)


def test_a_refused_join_is_reported_with_the_node_and_the_frame(tmp_path):
    sc = scenario.load_text(SMALL.replace("duration_s: 300", "duration_s: 20"), "small.yaml")
    r = run.Run(sc, str(tmp_path / "r"))

    def forge(rn):
        # A JOIN the ground sends itself, from id 0: no spare of cluster 1.
        msgs = run.msgs
        payload = msgs.pack(msgs.JOIN, 1, 1, 0, 3, 0x0100)
        rn.clock.call_at(10 * S, rn.router.to_node, 0xF001, msgs.JOIN, payload)

    r.on_start.append(forge)
    res = r.execute()
    _, events, _ = trace.read(str(tmp_path / "r" / "trace.jsonl"))
    (refused,) = _node_events(events, "join_refused")
    frames = {e["id"]: e for e in events if e["kind"] == "frame" and e["fate"] == "sent"}
    f = frames[refused["frame"]]
    assert f["type"] == "join_refused" and f["src"] == refused["node"] and f["msg"]["src"] == 0
    assert refused["reason"] == "unknown"
    assert "node %d refused a join from 0" % refused["node"] in refused["detail"]
    assert "frame %d" % refused["frame"] in refused["detail"]
    assert res.metrics["flat"]["join_refusals"] == 1


def test_spare_ids_are_disjoint_between_clusters_and_a_split_shares_them_out():
    sc = scenario.load_text(SMALL.replace(
        "  - {id: 1, nodes: [1, 2, 3, 4, 5, 6], hw_gen: 3, lineages: [0, 1, 2]}",
        "  - {id: 1, nodes: [1, 2, 3, 4, 5, 6], hw_gen: 3}\n  - {id: 4, nodes: [20, 21, 22, 23, 24], hw_gen: 3}"),
        "two.yaml")
    rep = Replication(sc, Plan(8, 10, 5))
    assert rep.config_args(1)["spares"] == (25, 8) and rep.config_args(4)["spares"] == (33, 8)
    # Split numbers: a block of `splits` (3) each, above the scenario's clusters.
    assert rep.config_args(1)["split_cluster"] == [5, 3] and rep.config_args(4)["split_cluster"] == [8, 3]


def test_a_side_made_by_a_split_splits_again_and_every_side_elects(scenario_runs):
    """Eight daughters come at once to a cluster of eight (max 8): the first
    splits it (cluster 2 takes 5..9), the daughters still joining go to the
    side their spare ids belong to (cluster 1), which grows past 8 and splits
    again with the next number of its block (3). Node 6 power-cycles after.
    The run of scenarios/replication-twice.yaml test_library.py made (conftest.py), or one made now."""
    sc, res, out = scenario_runs.get("replication-twice")
    assert res.ok, res.failures
    _, events, _ = trace.read(os.path.join(out, "trace.jsonl"))
    added = [e["node"] for e in _node_events(events, "node_added")]
    assert added == list(range(9, 17))  # unique, in order (history unique_ids passed too: res.ok)
    splits = _node_events(events, "cluster_split")
    assert [(e["cluster"], e["new_cluster"]) for e in splits] == [(1, 2), (1, 3)], splits
    assert not _node_events(events, "join_refused") and not _node_events(events, "split_unfollowed")
    flat = res.metrics["flat"]
    assert (flat["nodes_final"], flat["cluster_splits"], flat["clusters_final"]) == (16, 2, 3)
    # Every cluster elected: in the last 10 s its heartbeats name one coordinator, a member of it.
    end_ns = max(e["mission_ns"] for e in events)
    members = {c: set() for c in (1, 2, 3)}
    named = {c: set() for c in (1, 2, 3)}
    for e in events:
        if e["kind"] == "frame" and e.get("type") == "heartbeat" and e.get("fate") == "sent" and (
                e["mission_ns"] > end_ns - 10 * S and e.get("dst", 0) & 0xF000 == 0xF000) and (
                e["dst"] & 0xFFF) in members:  # (not the region's seats: cluster 0xE01)
            c = e["dst"] & 0xFFF
            members[c].add(e["src"])
            named[c].add(e["msg"]["coordinator"])
    assert sorted(len(v) for v in members.values()) == [5, 5, 6], members
    for c in (1, 2, 3):
        assert len(named[c]) == 1 and named[c] <= members[c], (c, named[c], members[c])
    assert 6 in members[2]  # power-cycled at 260 s: back in the cluster the first split moved it to


@pytest.mark.parametrize("text, where, says", [
    ("replication: {spares: 8, max_cluster: 5}", "small.yaml:", "cluster 1 has 6 nodes, above max_cluster 5"),
    ("replication: {spares: 8, min_cluster: 11}", "small.yaml:", "min_cluster"),
    ("replication: {spares: 0}", "small.yaml:", "spares"),
    ("replication: {spare: 8}", "small.yaml:", "spare"),
])
def test_bad_replication_settings_are_refused_at_load_naming_the_line(text, where, says):
    bad = SMALL.replace("replication: {spares: 8, max_cluster: 10, min_cluster: 5}", text)
    with pytest.raises(ConfigError) as e:
        scenario.load_text(bad, "small.yaml")
    assert where in str(e.value) and says in str(e.value)


def test_a_daughter_reusing_an_id_breaks_unique_ids():
    header = {"kind": "header", "scenario": "x", "election_timeout_ms": 1000,
              "nodes": {"1": {"cluster": 1}, "2": {"cluster": 1}}}
    ev = [
        {"kind": "node", "event": "node_added", "node": 3, "parent": 1, "cluster": 1, "mission_ns": 1},
        {"kind": "node", "event": "node_added", "node": 3, "parent": 2, "cluster": 1, "mission_ns": 2},
        {"kind": "node", "event": "node_added", "node": 2, "parent": 1, "cluster": 1, "mission_ns": 3},
        {"kind": "end", "mission_ns": 4, "frames": 0, "status": "ok", "reason": ""},
    ]
    rep = history.check_events(header, ev)
    broken = [v for v in rep.violations if v.invariant == "unique_ids"]
    assert len(broken) == 2, rep.violations
    assert "node 3, the id of an earlier daughter (line 2)" in broken[0].message
    assert "the id of a node of the header" in broken[1].message
    ok = history.check_events(header, ev[:1] + ev[3:])
    assert not [v for v in ok.violations if v.invariant == "unique_ids"]
