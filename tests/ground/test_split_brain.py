"""Split brain has one definition (ground/claims.py): the `split_brain` metric
(ground/metrics/) and the history checker's `one_coordinator` invariant
(ground/history_election.py) find the same (cluster, term) pairs on any trace.

Doctored traces put every kind of frame that is, or is not, a claim through
both; a real chaos schedule (seed 81 over scenarios/bench.yaml) where they used
to disagree runs in virtual time."""

import json
import os

from ground import history, metrics, trace
from ground.chaos import judge

HERE = os.path.dirname(os.path.abspath(__file__))
HEADER = {"kind": "header", "scenario": "s", "election_timeout_ms": 1000, "heartbeat_ms": 250, "mission_ns": 0,
          "nodes": {"1": {"cluster": 1}, "2": {"cluster": 1}, "3": {"cluster": 1}, "6": {"cluster": 2},
                    "7": {"cluster": 2}}}
REGION = 0xF000 | 0xE01  # a market region's address (docs/MARKET.md)


def _frame(fid, src, type_, term, dst=0xF001, role=2, rewritten=False):
    if type_ == "coordinator":
        msg = {"term": term, "standby": 0}
    elif type_ == "heartbeat":
        msg = {"term": term, "role": role, "coordinator": src if role == 2 else 0}
    else:
        msg = {"role": role, "term": term, "coordinator": src, "standby": 0, "digest": 0, "alive": 3, "suspect": 0,
               "bad_frames": 0}
    e = {"kind": "frame", "fate": "sent", "id": fid, "src": src, "dst": dst, "type": type_, "msg": msg, "len": 20,
         "mission_ns": fid * 1_000_000, "wall_ns": 0}
    if rewritten:
        e["orig_hex"] = "00"
    return [e, {"kind": "frame", "fate": "dropped", "id": fid, "to": None, "reason": "loss",
                "mission_ns": fid * 1_000_000, "wall_ns": 0}]


def _both(events):
    """(metric's split (cluster, term) pairs, checker's) over one trace."""
    events = events + [{"kind": "end", "mission_ns": 10**9, "wall_ns": 0}]
    m = metrics.compute(HEADER, events)
    by_metric = {(int(c), ev["term"]) for c, cl in m["clusters"].items() for ev in cl["split_brain"]["events"]}
    assert m["flat"]["split_brain"] == len(by_metric)
    r = history.check_events(HEADER, events)
    by_checker = set()
    for v in r.by_invariant("one_coordinator"):
        words = v.message.split()  # "cluster C term T has N coordinators: ..."
        by_checker.add((int(words[1]), int(words[3])))
    return by_metric, by_checker


def test_every_kind_of_claim_is_split_brain_to_both():
    # Term 3 of cluster 1: a COORDINATOR by node 1, a coordinator's HEARTBEAT by node 2.
    # Term 5 of cluster 1: a HEARTBEAT to the cluster by node 1, a TELEMETRY to the ground by node 3.
    # Term 4 of cluster 2: a broadcast HEARTBEAT by node 6, a COORDINATOR by node 7.
    events = (_frame(1, 1, "coordinator", 3) + _frame(2, 2, "heartbeat", 3)
              + _frame(3, 1, "heartbeat", 5) + _frame(4, 3, "telemetry", 5, dst=0)
              + _frame(5, 6, "heartbeat", 4, dst=0xFFFF) + _frame(6, 7, "coordinator", 4, dst=0xF002))
    by_metric, by_checker = _both(events)
    assert by_metric == by_checker == {(1, 3), (1, 5), (2, 4)}


def test_what_is_not_a_claim_is_split_brain_to_neither():
    events = (_frame(1, 1, "coordinator", 3)
              + _frame(2, 2, "heartbeat", 3, rewritten=True)  # a byzantine rewrite: not node 2's words
              + _frame(3, 3, "coordinator", 3, rewritten=True)
              + _frame(4, 2, "heartbeat", 3, dst=REGION)  # a regional seat's claim: the region's, not the cluster's
              + _frame(5, 3, "heartbeat", 3, role=1)  # a follower of term 3
              + _frame(6, 2, "telemetry", 3, dst=0, role=3)  # a standby of term 3
              + _frame(7, 6, "heartbeat", 3, dst=0xF002))  # term 3 of another cluster
    by_metric, by_checker = _both(events)
    assert by_metric == by_checker == set()
    # Different terms at once (a cut-off old coordinator) is overlap, not split brain.
    m = metrics.compute(HEADER, _frame(1, 1, "heartbeat", 3) + _frame(2, 2, "heartbeat", 4)
                        + _frame(3, 1, "heartbeat", 3) + [{"kind": "end", "mission_ns": 10**9, "wall_ns": 0}])
    assert m["flat"]["split_brain"] == 0 and m["flat"]["overlap_count"] == 1


def test_schedule_81_a_rewritten_heartbeat_is_not_split_brain(tmp_path):
    # tests/ground/scenarios/chaos_bench_seed81.yaml says what it was: the
    # metric counted split_brain 1, the checker found no term with two coordinators.
    path = os.path.join(HERE, "scenarios", "chaos_bench_seed81.yaml")
    run_dir = str(tmp_path / "run")
    with open(path) as f:
        kind, violations, gates, error = judge(f.read(), path, run_dir)
    assert kind != "crash", error
    assert "one_coordinator" not in violations
    with open(os.path.join(run_dir, "metrics.json")) as f:
        m = json.load(f)
    assert m["flat"]["split_brain"] == 0, m["clusters"]
    assert not any(g.startswith("split_brain") for g in gates), gates
    # The frame that used to count: node 8's heartbeat, rewritten in flight to
    # claim the term node 6 had claimed.
    events = trace.read(os.path.join(run_dir, "trace.jsonl"))[1]
    sent = [e for e in events if e.get("kind") == "frame" and e.get("fate") == "sent"]
    claimed_by_6 = {e["msg"]["term"] for e in sent if e["src"] == 6 and e["type"] == "coordinator"}
    assert any("orig_hex" in e and e["src"] == 8 and e["type"] == "heartbeat" and e["msg"]["role"] == 2
               and e["msg"]["term"] in claimed_by_6 for e in sent)
