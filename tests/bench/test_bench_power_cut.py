"""Bench: the coordinator loses power mid-term and comes back.

The standby takes over; the old coordinator boots from flash, remembers the
term it had persisted (firmware/node/node.py: term and vote are written
before any frame leaves), learns the new term and follows. Needs boards
whose power the harness controls: emulated boards, or a rig with a relay or
a per-port power switching hub.
"""

import pytest

T_S = 4.0

SCENARIO = """\
name: bench-power-cut
description: the coordinator loses power mid-term, then power comes back
seed: 13
duration_s: 80
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
@pytest.mark.needs("power_control")
def test_coordinator_power_cut_mid_term(harness, trace):
    with harness.start(SCENARIO) as live:
        old = live.wait_for(lambda fleet: fleet.agreed(1), timeout_s=3 * T_S, what="an agreed coordinator")
        term = live.fleet.node(old).term
        live.wait_s(T_S)  # mid-term
        live.step({"power_cut": old, "duration_s": 4 * T_S})
        rest = [n for n in (1, 2, 3, 4) if n != old]
        new = live.wait_for(lambda fleet: fleet.agreed(1, nodes=rest) not in (None, old) and fleet.agreed(1, nodes=rest),
                            timeout_s=3 * T_S, what="the survivors naming a new coordinator")
        live.wait_for(lambda fleet: fleet.node(old).boots >= 2 and fleet.agreed(1) == new, timeout_s=6 * T_S,
                      what="the old coordinator booted again and following the new one")
        new_term = live.fleet.node(new).term
    res = live.result
    harness.check(res, failover_count={"min": 1}, failover_incomplete={"max": 0}, failover_T_max={"max": 2.5},
                  overlap_count={"max": 0}, leader_changes={"max": 1})
    assert new_term > term
    # Back from the power cut, its first heartbeat carries at least the term it
    # had persisted: a board never forgets a term (or a vote) across a power cut.
    hellos = [e["mission_ns"] for e in trace.frames(type="hello", src=old)]
    assert len(hellos) >= 2
    after = [e["msg"]["term"] for e in trace.frames(type="heartbeat", src=old) if e["mission_ns"] > hellos[-1]]
    assert after and after[0] >= term and after[-1] == new_term
