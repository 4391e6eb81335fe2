"""Bench: a cluster of four boards elects one coordinator from a cold start.

Mission time is scaled (time_scale 10: the 48 s mission takes about 5 s of
wall time on emulated boards); every bound below is in mission time.
"""

import pytest

T_S = 4.0  # election timeout T, mission seconds

SCENARIO = """\
name: bench-election
description: four boards boot together and elect one coordinator
seed: 11
duration_s: 48
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
def test_election_from_cold_start(harness):
    with harness.start(SCENARIO) as live:
        # A cold start: each node waits T..2T, then pre-vote and vote round trips.
        c = live.wait_for(lambda fleet: fleet.agreed(1), timeout_s=3 * T_S, what="all four naming one coordinator")
        s = live.wait_for(lambda fleet: fleet.standby(1), timeout_s=T_S, what="the coordinator naming a standby")
    res = live.result
    harness.check(res, split_brain={"max": 0}, overlap_count={"max": 0}, leader_changes={"max": 0},
                  anomalies={"max": 0}, no_coordinator_share_max={"max": 0.5})
    fleet = live.fleet
    assert s != c and s in (1, 2, 3, 4)
    assert all(fleet.node(n).boots == 1 for n in (1, 2, 3, 4)), fleet  # every board said HELLO once
    assert fleet.agreed(1) == c  # and the coordinator held to the end
    assert res.metrics["clusters"]["1"]["leader"]["max_term"] == fleet.node(c).term
