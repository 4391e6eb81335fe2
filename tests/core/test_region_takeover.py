# mpy-heap: 256K (a region of 6 real Nodes in one process; a board holds one node)
# Losing the regional coordinator and its standby together (issue #17):
# with both hung, the last elector alone is no majority and sells nothing
# until one is back, then goes on from the most recent ledger, no holder
# asked; with both power cut (their ledgers gone with their RAM), it falls
# back to the best ledger there is and the holders' claims. No lease is sold
# twice either way (tests/core/leasewatch.py judges from the frames sent).
# CPython and MicroPython.
from leasewatch import watched_region
from node.market import RECOVERING

SLOT = 60000
UNITS = (1, 1, 1, 1, 2, 1, 1, 2)


def _sim(seed):
    return watched_region(seed, UNITS, SLOT)


def test_losing_coordinator_and_standby_together_loses_no_lease():
    sim, tally = _sim(23)
    sim.run_until(6 * SLOT)
    sim.crash_coordinator()  # 1 hangs; 2 takes over ...
    sim.crash_coordinator()  # ... and hangs at once: 3 alone is no majority
    m = sim.market()
    assert sim.coordinator == 3
    sim.run_for(2 * SLOT)
    assert m.state == RECOVERING and m.rounds == 0  # sells nothing it cannot prove is free
    sim.resume(1)  # the old coordinator comes back as it was (a hang, not a power cut)
    sim.run_for(SLOT)
    assert m.state != RECOVERING and m.resync_until == 0 and m.claims == 0  # no holder was asked
    for i in (4, 5, 6):
        sim.held_in_ledger(i)
    sim.run_for(3 * SLOT)
    assert m.rounds >= 3 and tally.double == 0 and sim.conflicts() == 0 and m.ledger.conflicts() == 0


def test_a_majority_of_electors_power_cut_falls_back_to_the_best_ledger_and_claims():
    sim, tally = _sim(23)
    sim.run_until(6 * SLOT)
    sim.crash_coordinator()
    sim.crash_coordinator()
    m = sim.market()
    sim.run_for(SLOT)
    sim.restart(1)  # power cuts: both come back knowing nothing
    sim.restart(2)
    sim.run_for(SLOT)
    assert m.state != RECOVERING and m.resync_until > 0  # holders were asked (what 3 holds, they re-claim in vain)
    for i in (4, 5, 6):
        sim.held_in_ledger(i)  # 3's own replica, and the claims on top
    sim.run_for(3 * SLOT)
    assert m.rounds >= 3 and tally.double == 0 and sim.conflicts() == 0 and m.ledger.conflicts() == 0
