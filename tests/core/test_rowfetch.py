# cpython-only
# (A region of four auditing electors does not fit the unix port's 192K heap
# when node/audit.py compiles from source: tests/core/test_containment_region.py
# says why. node/rowfetch.py's ask and resend run under MicroPython through
# test_rowfetch_unit.py.)
# Auditing over loss (node/rowfetch.py, docs/CONTAINMENT.md "Loss and
# auditing"): AUDIT_BID rows lost on their way to the auditors are asked for
# again (AUDIT_MISS) and resent by the coordinator, so a round with rows lost
# is still judged: a defective clearing is accused and quarantined, and an
# honest coordinator under the same seeded loss is never accused.
from federation import Federation
from node import audit, msgs, wire
from node.audit import defective
from node.rng import Rng

SLOT = 12000
FED_UNITS = (1, 1, 1, 1, 2, 1, 1, 2)
FED_ELECTORS = (3, 4, 6, 7)
LOSS_PCT = 30  # of the AUDIT_BID rows (originals and resends) each auditor gets: no round arrives whole


def _fed(seed):
    return Federation([[3], [4], [6], [7]], FED_UNITS, max_bids=24, seed=seed, electors=FED_ELECTORS, slot_ms=SLOT,
                      steps_per_slot=12, lead_ms=3000, horizon_slots=32, window_slots=16, delay_ms=5, jitter_ms=5,
                      keep_ground=True, auditors=FED_ELECTORS)


def _lose_rows(f, seed):
    """Drop LOSS_PCT % of the AUDIT_BID frames each elector receives (seeded):
    loss on the coordinator -> auditor links, where a lost row stopped the
    audit of its round."""
    rng = Rng(seed)
    lost = set()  # (auditor, round) that lost a row
    for e in FED_ELECTORS:
        node = f.nodes[e]

        def receive(line, t, real=node.receive, e=e):
            fr = wire.decode(line)
            if fr.type == msgs.AUDIT_BID and rng.below(100) < LOSS_PCT:
                lost.add((e, msgs.unpack(msgs.AUDIT_BID, fr.payload)[0]))
                return None
            return real(line, t)

        node.receive = receive
    return lost


def _record_judged(f):
    """(auditor, round) of every round an auditor re-ran."""
    judged = set()
    for e in FED_ELECTORS:
        a = f.nodes[e].region.auditor

        def check(term, rnd, *args, real=a.check, e=e):
            judged.add((e, rnd))
            return real(term, rnd, *args)

        a.check = check
    return judged


def _auditors(f):
    return [f.nodes[e].region.auditor for e in FED_ELECTORS]


def test_rows_lost_are_resent_and_a_defective_clearing_is_accused():
    f = _fed(5)
    lost = _lose_rows(f, 11)
    judged = _record_judged(f)
    assert f.run_until(f.now + 30000, until=lambda x: x.region_coordinator() is not None)
    bad = f.region_coordinator()
    f.nodes[bad].region.market.clear = defective(f.nodes[bad].region.market.clear)
    f.run_for(8 * SLOT)
    assert judged & lost  # rounds with rows lost were judged (after the resend)
    accusers = set()
    for src, fields in f.accusations():
        assert fields[2] == bad and audit.has_evidence(fields)
        accusers.add(src)
    assert len(accusers) == 2, accusers  # both auditors of the other clearing judged a round with rows lost
    assert sum(a.asked for a in _auditors(f)) > 0
    assert f.nodes[bad].region.market.kept.resent > 0
    for e in FED_ELECTORS:
        assert f.nodes[e].region.quarantine.is_quarantined(bad), e


def test_an_honest_coordinator_under_loss_is_never_accused():
    for seed in (6, 7):
        f = _fed(seed)
        lost = _lose_rows(f, seed * 13)
        judged = _record_judged(f)
        assert f.run_until(f.now + 30000, until=lambda x: x.region_coordinator() is not None)
        f.run_for(20 * SLOT)
        assert len(lost) > 5
        assert f.accusations() == []
        assert judged & lost  # rounds with rows lost, judged after the resend
        assert sum(a.asked for a in _auditors(f)) > 0
        for e in FED_ELECTORS:
            assert not f.nodes[e].region.quarantine.is_quarantined(f.region_coordinator() or e)
