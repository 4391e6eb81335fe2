"""Bench: one node of the cluster runs an older firmware version (1.4 among
2.0s: protocol 1 among protocol 2, so the harness down-converts its peers'
frames for it). The versions interoperate: the old node votes and follows, a
failover needs its vote, and the history shows at most 3 major versions, each
node running the version the scenario flashed.
"""

import pytest

T_S = 4.0

SCENARIO = """\
name: bench-version-skew
description: node 4 runs firmware 1.4 (protocol 1) in a cluster of 2.0 (protocol 2); a failover needs its vote
seed: 17
duration_s: 60
time_scale: 10
election_timeout_ms: 4000
clusters:
  - {id: 1, nodes: [1, 2, 3, 4], firmware: "2.0", lineages: [0, 1, 2]}
nodes:
  4: {firmware: "1.4"}
links:
  intra_cluster: {delay_ms: 300, jitter: uniform, jitter_ms: 20}
gates:
  split_brain: {max: 0}
  unfated_frames: {max: 0}
"""

OLD = 4


@pytest.mark.boards(4)
def test_node_on_older_firmware_takes_part(harness):
    with harness.start(SCENARIO) as live:
        live.wait_for(lambda fleet: all(fleet.node(n).hello for n in (1, 2, 3, 4)), timeout_s=T_S, what="four HELLOs")
        versions = {n: (live.fleet.node(n).hello["fw_major"], live.fleet.node(n).hello["fw_minor"]) for n in (1, 2, 3, 4)}
        c = live.wait_for(lambda fleet: fleet.agreed(1), timeout_s=3 * T_S, what="all four naming one coordinator")
        # With one of four down, a majority (3) is every survivor: if the old
        # node is not the coordinator, the next election needs its vote.
        live.step({"crash": c})
        rest = [n for n in (1, 2, 3, 4) if n != c]
        new = live.wait_for(lambda fleet: fleet.agreed(1, nodes=rest) not in (None, c) and fleet.agreed(1, nodes=rest),
                            timeout_s=3 * T_S, what="the survivors, old firmware included, naming a new coordinator")
    res = live.result
    harness.check(res, failover_count={"min": 1}, failover_incomplete={"max": 0}, overlap_count={"max": 0},
                  frames_converted={"min": 1})
    assert versions == {1: (2, 0), 2: (2, 0), 3: (2, 0), 4: (1, 4)}
    assert res.history.checked.count("major_versions") == 1 and res.history.checked.count("firmware_declared") == 1
    assert OLD in rest or c == OLD  # the old node was coordinator, or voted for its successor
    assert new != c
