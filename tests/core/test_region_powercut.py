# cpython-only
# Four real Nodes with a region each outgrow a 192K heap when
# their source is compiled there (tests/core/test_region_power.py has the
# MicroPython half: one Node's blob through a power cut).
#
# Electors' ledgers and holders' leases survive power loss (issue #17 item
# 3): the market section of a node's saved blob (node/durable.py). Every
# elector of the region loses power within a round; the region comes back
# from flash alone, knows every committed round, and never has to ask holders
# (ROUND_RESYNC) nor sells a slot twice. Seed 92 of tests/core/faultsched.py,
# the schedule that leased slots twice this way, is kept as a regression.
# Leases are judged from the frames sent (tests/core/leasewatch.py).
import gc

import faultsched
from faultsched import CLUSTERS, LEAD, SLOT, UNITS
from federation import Federation
from leasewatch import Leases, Tally
from node import durable, msgs
from node.node import Node, restore_all

ELECTORS = (1, 3, 4)


def _fed(seed):
    f = Federation([list(c) for c in CLUSTERS], UNITS, seed=seed, slot_ms=SLOT, steps_per_slot=6, lead_ms=LEAD,
                   horizon_slots=32, window_slots=16, delay_ms=5, jitter_ms=20, election_timeout_ms=1000)
    tally = Tally()
    f.on_sent = Leases(tally, sum(UNITS)).sent
    return f, tally


def _market(f, i):
    return f.nodes[i].region.market


def test_seed_92_all_electors_lose_power_and_no_slot_is_sold_twice():
    gc.collect()
    r = faultsched.run_schedule(92)
    assert r.double == 0, (r.first_double, r.log)
    assert r.split == [], r.split
    assert r.completes > 0  # the market went on selling


def test_every_elector_loses_power_and_the_region_restarts_from_flash():
    gc.collect()
    f, tally = _fed(5)
    f.run_until(6 * SLOT)
    before = {}
    for e in ELECTORS:
        m = _market(f, e)
        before[e] = (m.led_term, m.led_round, m.ledger.digest(), m.ledger.n)
    assert max(b[1] for b in before.values()) >= 3  # rounds were committed
    assert max(b[3] for b in before.values()) > 0  # with leases in them
    held = {i: [list(x[:5]) for x in f.nodes[i].region.trader.leases] for i in f.ids}
    assert sum(len(v) for v in held.values()) > 0
    resyncs = tally.resyncs
    # All three electors lose power a few ms apart, between two rounds.
    for e in ELECTORS:
        f.crash(e)
        f.run_for(7)
    for e in ELECTORS:
        f.restart(e)
    for e in ELECTORS:  # back from flash, before any frame: the ledger each last held
        m = _market(f, e)
        assert (m.led_term, m.led_round, m.ledger.digest(), m.ledger.n) == before[e], e
    for i in (1, 3, 4):  # and each holder its leases (those since past, too: pruned at the next slot)
        kept = [list(x[:5]) for x in f.nodes[i].region.trader.leases]
        assert [x for x in held[i] if x not in kept] == [], i
    f.run_for(6 * SLOT)
    assert tally.double == 0, tally.first_double
    assert tally.resyncs == resyncs  # a majority still knew: no holder had to be asked
    c = f.region_coordinator()
    assert c is not None and _market(f, c).round > max(b[1] for b in before.values()) + 3
    assert _market(f, c).ledger.conflicts() == 0


def test_a_rebooted_holder_claims_what_it_holds():
    gc.collect()
    f, tally = _fed(7)
    f.run_until(6 * SLOT)
    node = f.nodes[2]  # a holder that is not an elector
    assert node.region.market is None
    leases = [list(x) for x in node.region.trader.leases]
    assert leases
    f.crash(2)
    f.restart(2)
    kept = [list(x) for x in f.nodes[2].region.trader.leases]
    assert [x for x in leases if x not in kept] == []


def test_the_blob_round_trips_and_is_written_once_per_round():
    gc.collect()
    f, tally = _fed(11)
    writes = {}
    poll = f._poll

    def counting(node, t):
        old = f.flash.get(node.id)
        poll(node, t)
        if f.flash.get(node.id) is not old:
            writes[node.id] = writes.get(node.id, 0) + 1

    f._poll = counting
    f.run_until(10 * SLOT)
    for e in ELECTORS:
        m = _market(f, e)
        blob = f.flash[e]
        terms, kept = durable.split(blob)
        assert kept is not None and len(terms) == 28  # the node's and its seat's term/vote, then the ledger
        assert len(restore_all(blob)) == 2
        n2 = Node(e, f.nodes[e].cfg, 1, blob)
        m2 = n2.region.market
        assert (m2.led_term, m2.led_round, m2.ledger.digest()) == (m.led_term, m.led_round, m.ledger.digest())
        # Elections at boot and one write a round (and an award or two), not one per frame.
        assert writes[e] <= 3 * 10 + 6, (e, writes[e])


def test_a_damaged_market_section_is_reported_and_nothing_of_it_kept():
    gc.collect()
    f, tally = _fed(13)
    f.run_until(5 * SLOT)
    blob = bytearray(f.flash[1])
    terms, kept = durable.split(bytes(blob))
    assert kept is not None
    blob[len(terms) + durable.HEAD_LEN] ^= 0x40  # a bit flips in the first record
    n = Node(1, f.nodes[1].cfg, 1, bytes(blob))
    m = n.region.market
    assert m.led_round == -1 and m.ledger.n == 0 and n.region.trader.leases == []
    assert n.term == f.nodes[1].term  # the term/vote part is intact and kept
    out = n.poll(0)
    logs = [line for _dst, line in out if b"market state: bad crc" in line]
    assert logs
    try:
        durable.check(durable.stock_split(bytes(blob[len(terms):]))[0])  # (its stocks follow it: node/stocks.py)
        raise AssertionError("a damaged section passed")
    except ValueError as e:
        assert "bad crc" in str(e)
