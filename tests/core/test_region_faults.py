# No lease is ever sold twice, whoever is lost (issue #17): the reproducers
# of the runs that did, kept as regression tests. A coordinator re-elected
# rounds later keeps its ledger (it used to wipe it and ask holders, and a
# holder whose claim was lost found its slots sold again); an elector one
# round stale that wins the next term learns the committed round from the
# others instead of declaring it void. Leases are judged from the frames
# sent (tests/core/leasewatch.py), not from the ledger.
# tests/core/test_region_takeover.py loses coordinator and standby together;
# tests/core/test_region_chaos.py runs the seeded fault schedules that found
# these. CPython and MicroPython.
from leasewatch import watched_region
from node import msgs
from node.market import PREPARING, RECOVERING

SLOT = 60000
UNITS = (1, 1, 1, 1, 2, 1, 1, 2)


def _sim(seed):
    return watched_region(seed, UNITS, SLOT)


def test_a_coordinator_reelected_rounds_later_keeps_its_ledger():
    sim, tally = _sim(29)
    sim.run_until(4 * SLOT)
    boot_resyncs = tally.resyncs  # at boot nobody holds anything: the first coordinator asks
    sim.crash_coordinator()  # 1 hangs; 2 coordinates for more than two rounds
    sim.run_for(4 * SLOT)
    sim.resume(1)
    sim.cut.add(5)  # a holder that will not hear a call for claims, nor answer it
    sim.run_for(SLOT // 4)
    sim.crash_coordinator(successor=1)  # 2 hangs: 1 is coordinator again, 4 rounds on
    sim.run_for(SLOT)
    m = sim.market()
    assert m.state != RECOVERING and m.resync_until == 0  # no holder had to be asked
    assert sim.held_in_ledger(5) > 0  # what the cut-off holder holds stays its own
    sim.run_for(3 * SLOT)
    sim.cut.discard(5)
    sim.run_for(2 * SLOT)
    assert m.rounds >= 4 and tally.double == 0 and tally.resyncs == boot_resyncs
    assert sim.conflicts() == 0 and m.ledger.conflicts() == 0


def test_a_stale_elector_that_wins_never_voids_a_committed_round():
    sim, tally = _sim(31)
    sim.run_until(4 * SLOT)
    sim.cut.add(2)  # the standby misses what follows: its ledger goes a round stale
    sim.standby = 3
    for i in sim.ids:
        sim.regions[i].fixed = (1, sim.term, 3)  # the coordinator switches standby
    m = sim.market()
    while m.state != PREPARING or not [i for i in range(m.book.n) if m.book.node[i] != 0]:
        sim.run_for(100)
    rnd = m.round
    while m.state == PREPARING:
        sim.run_for(100)
    assert m._committed == rnd  # committed with 3's ack: 1 and 3 are a majority
    sim.cut.discard(2)
    sim.crash_coordinator(successor=2)  # a blackout: 1 and 3 are lost, 2 wins the next term
    sim.down.add(3)
    new = sim.market()
    sim.run_for(SLOT)
    assert new.state == RECOVERING and new.rounds == 0 and new.voided == 0  # 2 alone proves nothing: it waits
    sim.resume(3)
    sim.run_for(SLOT)
    assert new.state != RECOVERING and new.fetches >= 1  # it took 3's ledger, the more recent
    for tr in sim.traders():
        assert tr.round_status.get(rnd) != msgs.ROUND_VOID, (tr.id, tr.round_status)
    for i in (4, 5, 6):
        sim.held_in_ledger(i)
    sim.run_for(3 * SLOT)
    assert new.rounds >= 3 and tally.double == 0
    assert sim.conflicts() == 0 and new.ledger.conflicts() == 0
