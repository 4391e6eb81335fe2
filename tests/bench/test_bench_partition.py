"""Bench: the coordinator is partitioned away from the other three, then the
partition heals.

The majority elects a new coordinator in a higher term; the old coordinator,
alone in the minority, steps down (it hears no majority within 3T/4) and
never claims a term it could not win; after the heal it follows, and the
pre-vote keeps it from disturbing the new term.
"""

import pytest

T_S = 4.0

SCENARIO = """\
name: bench-partition
description: the coordinator is cut off from the majority, then the partition heals
seed: 9
duration_s: 72
time_scale: 10
election_timeout_ms: 4000
clusters:
  - {id: 1, nodes: [1, 2, 3, 4], lineages: [0, 1]}
links:
  intra_cluster: {delay_ms: 300, jitter: uniform, jitter_ms: 20}
gates:
  split_brain: {max: 0}
  unfated_frames: {max: 0}
"""


@pytest.mark.boards(4)
def test_partition_minority_never_elects_and_heal_rejoins(harness, trace):
    with harness.start(SCENARIO) as live:
        old = live.wait_for(lambda fleet: fleet.agreed(1), timeout_s=3 * T_S, what="an agreed coordinator")
        term = live.fleet.node(old).term
        live.wait_s(T_S / 2)
        majority = [n for n in (1, 2, 3, 4) if n != old]
        cut_s = live.now_s
        live.step({"partition": [[old], majority]})
        new = live.wait_for(
            lambda fleet: fleet.agreed(1, nodes=majority) not in (None, old) and fleet.agreed(1, nodes=majority),
            timeout_s=4 * T_S, what="the majority electing a new coordinator")
        live.wait_for(lambda fleet: fleet.node(old).role != 2, timeout_s=T_S, what="the old coordinator stepping down")
        live.wait_s(2 * T_S)  # the minority stays cut off a while
        heal_s = live.now_s
        live.step({"heal": True})
        live.wait_for(lambda fleet: fleet.agreed(1) == new and fleet.node(old).coordinator == new, timeout_s=2 * T_S,
                      what="all four following the new coordinator")
        new_term = live.fleet.node(new).term
    res = live.result
    harness.check(res, overlap_count={"max": 0}, leader_changes={"max": 1})
    assert new_term > term
    # The minority never claimed past its term, and nobody raised the term after the heal.
    claims = [(e["src"], e["msg"]["term"], e["mission_ns"] / 1e9) for e in trace.frames()
              if e["type"] in ("heartbeat", "coordinator") and (e["type"] == "coordinator" or e["msg"].get("role") == 2)]
    assert not [x for x in claims if x[0] == old and x[1] > term], claims
    assert not [x for x in claims if x[2] > heal_s and x[1] > new_term], claims
    drops = [e for e in trace.events("frame", fate="dropped", reason="partition")]
    assert drops and all(cut_s <= e["mission_ns"] / 1e9 for e in drops)
