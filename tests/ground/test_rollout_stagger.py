"""Staggered install within a cluster (the plan's `stagger`, default on,
ground/rollout_run.py): one node of a cluster installs at a time, the next
once it confirmed, and the cluster's coordinator last, so the cluster keeps
a quorum and changes coordinator once. Judged from the nodes' own frames:
each node's trial runs from its first HELLO on the new version to its
UPD_ACK saying confirmed; COORDINATOR claims say who led."""

from ground import protocol as P
from ground import run, scenario, trace

S = 1e9
SC = """
name: stagger
seed: 4
duration_s: 3000
election_timeout_ms: 10000
clusters:
  - {id: 1, nodes: [1, 2, 3]}
  - {id: 2, nodes: [4, 5, 6]}
  - {id: 3, nodes: [7, 8, 9]}
links:
  ground: {delay_ms: 100}
rollout:
  start_s: 300
  canaries: [1]
  window_s: 1000
  step_percent: 100
  confirm_after_s: 120
  %(stagger)s
  images:
    - version: "1.1"
gates:
  split_brain: {max: 0}
"""


def _run(tmp_path, stagger):
    sc = scenario.load_text(SC % {"stagger": "stagger: %s" % ("true" if stagger else "false")}, "stagger.yaml")
    assert sc.rollout.stagger is stagger
    out = tmp_path / ("on" if stagger else "off")
    res = run.run(sc, str(out), plot=False)
    assert res.ok, res.failures
    _, events, _ = trace.read(str(out / "trace.jsonl"))
    return sc, events


def _trials(sc, events):
    """node -> (start_s, end_s): its first HELLO on 1.1 to its first ACK saying confirmed."""
    start, end = {}, {}
    for e in events:
        if e["kind"] != "frame" or e["fate"] != "sent":
            continue
        t, src = e["mission_ns"] / S, e["src"]
        if e["type"] == "hello" and (e["msg"]["fw_major"], e["msg"]["fw_minor"]) == (1, 1):
            start.setdefault(src, t)
        elif e["type"] == "upd_ack" and src not in end:
            f = P.parse_line(bytes.fromhex(e["hex"]), key=sc.auth_key)
            if f.msg["state"] == 6:  # confirmed (firmware/node/update.py CONFIRMED)
                end[src] = t
    assert set(start) == set(end) == set(sc.nodes), (start, end)
    return {n: (start[n], end[n]) for n in sc.nodes}


def _leaders_before(events, t_s):
    """cluster -> node of the last COORDINATOR claim before t_s."""
    out = {}
    for e in events:
        if e["kind"] == "frame" and e["fate"] == "sent" and e["type"] == "coordinator" and e["mission_ns"] / S < t_s:
            out[(e["src"] - 1) // 3 + 1] = e["src"]
    return out


def test_a_cluster_installs_one_node_at_a_time_its_coordinator_last(tmp_path):
    sc, events = _run(tmp_path, True)
    trials = _trials(sc, events)
    steps = {tuple(e["clusters"]): e["mission_ns"] / S for e in events if e["kind"] == "rollout" and e["event"] == "step"}
    for c, ids in sc.clusters.items():
        order = sorted(ids, key=lambda n: trials[n][0])
        for a, b in zip(order, order[1:]):
            assert trials[b][0] >= trials[a][1], (c, a, trials[a], b, trials[b])  # the next after the last confirmed
        step_at = next(t for cl, t in steps.items() if c in cl)
        assert order[-1] == _leaders_before(events, step_at)[c], (c, order)  # the coordinator last
        # the cluster changed coordinator at most once while it installed (when its coordinator did)
        claimants = [e["src"] for e in events if e["kind"] == "frame" and e["fate"] == "sent"
                     and e["type"] == "coordinator" and e["src"] in ids
                     and step_at <= e["mission_ns"] / S <= trials[order[-1]][1]]
        changes = sum(1 for a, b in zip(claimants, claimants[1:]) if a != b)
        assert changes <= 1, (c, claimants)


def test_without_stagger_a_cluster_installs_all_at_once(tmp_path):
    sc, events = _run(tmp_path, False)
    trials = _trials(sc, events)
    for c, ids in sc.clusters.items():
        order = sorted(ids, key=lambda n: trials[n][0])
        assert any(trials[b][0] < trials[a][1] for a, b in zip(order, order[1:])), (c, trials)  # trials overlap
