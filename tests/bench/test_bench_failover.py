"""Bench: the coordinator crashes mid-term and its hot standby takes over.

The standby's election timeout is T, everyone else's 2T..3T (firmware/node/
election.py), so the standby, and only it, claims the next term.
"""

import pytest

T_S = 4.0

SCENARIO = """\
name: bench-failover
description: the coordinator crashes mid-term; the standby takes over
seed: 5
duration_s: 60
time_scale: 10
election_timeout_ms: 4000
clusters:
  - {id: 1, nodes: [1, 2, 3, 4], lineages: [0, 1, 2]}
links:
  intra_cluster: {delay_ms: 300, jitter: uniform, jitter_ms: 20}
gates:
  split_brain: {max: 0}
  unfated_frames: {max: 0}
"""


@pytest.mark.boards(4)
def test_coordinator_crash_standby_takes_over(harness):
    with harness.start(SCENARIO) as live:
        c = live.wait_for(lambda fleet: fleet.agreed(1), timeout_s=3 * T_S, what="an agreed coordinator")
        standby = live.wait_for(lambda fleet: fleet.standby(1), timeout_s=T_S, what="a standby")
        term = live.fleet.node(c).term
        live.wait_s(T_S)  # mid-term
        live.step({"crash": c})
        rest = [n for n in (1, 2, 3, 4) if n != c]
        new = live.wait_for(lambda fleet: fleet.agreed(1, nodes=rest) not in (None, c) and fleet.agreed(1, nodes=rest),
                            timeout_s=3 * T_S, what="the three survivors naming a new coordinator")
        new_term = live.fleet.node(new).term
    res = live.result
    harness.check(res, failover_count={"min": 1}, failover_incomplete={"max": 0}, failover_T_max={"max": 2.5},
                  decision_incomplete={"max": 0}, overlap_count={"max": 0}, leader_changes={"max": 1})
    assert new == standby, "the hot standby %d should take over, %d did" % (standby, new)
    assert new_term > term
    assert live.fleet.agreed(1, nodes=rest) == new  # stable to the end
