# The production model: rates by generation and age, the three needs, pauses
# charged to the need that was missing, replication share. Runs under CPython
# and MicroPython.
from node import catalog as cat
from node import production as pr
from node.production import Production

SLOT_MS = 12000
STEPS = 12


def _slot(p, growth=300):
    paused = []
    for k in range(STEPS):
        paused.append(p.step(k, growth))
    return paused


def _stock_up(p):
    p.feed = p.cap(cat.KIND_FEED)
    for i in range(3):
        p.parts[i] = p.cap(cat.KIND_PART, i)
    p.buf = 0


def test_a_stocked_node_runs_at_its_generation_rate():
    for gen in (1, 2, 3):
        p = Production(gen, 0, STEPS, SLOT_MS)
        _stock_up(p)
        assert _slot(p) == [pr.P_NONE] * STEPS
        assert p.produced == p.ideal == cat.GENS[gen][2]
        assert p.lost() == 0 and p.paused_total_ms() == 0


def test_running_out_of_feed_pauses_and_charges_feed():
    p = Production(2, 0, STEPS, SLOT_MS)
    _stock_up(p)
    p.feed = p.rate // 2  # half a slot's worth
    out = _slot(p)
    assert out[: STEPS // 2] == [pr.P_NONE] * (STEPS // 2)
    assert out[STEPS // 2 :] == [pr.P_FEED] * (STEPS // 2)
    assert p.paused_ms[pr.P_FEED] == SLOT_MS // 2
    assert p.lost() == p.ideal - p.produced == p.rate // 2


def test_parts_matter_only_for_classes_the_node_does_not_make():
    # gen 3 makes A and B: with no A or B at all it still runs on Earth parts.
    p = Production(3, 0, STEPS, SLOT_MS)
    _stock_up(p)
    p.parts[0] = p.parts[1] = 0
    assert _slot(p) == [pr.P_NONE] * STEPS
    # gen 2 makes only B: without A it stops, and the pause is charged to parts.
    q = Production(2, 0, STEPS, SLOT_MS)
    _stock_up(q)
    q.parts[0] = 0
    assert _slot(q) == [pr.P_PARTS] * STEPS
    assert q.paused_ms[pr.P_PARTS] == SLOT_MS and q.produced == 0
    assert q.needs_mask() == (1 << cat.PART_A) | (1 << cat.PART_EARTH)


def test_a_full_output_buffer_pauses_until_a_logistics_window_drains_it():
    p = Production(1, 0, STEPS, SLOT_MS)
    _stock_up(p)
    p.buf = p.buf_cap()
    assert _slot(p) == [pr.P_LOGISTICS] * STEPS
    assert p.deliver(cat.KIND_LOGISTICS, 0) == p.buf_cap() and p.buf == 0
    assert _slot(p) == [pr.P_NONE] * STEPS


def test_replication_takes_its_share_and_a_daughter_costs_its_units():
    p = Production(3, 0, STEPS, SLOT_MS)
    _stock_up(p)
    _slot(p, growth=300)
    assert 0 <= p.repl - p.produced * 300 // 1000 <= STEPS  # rounding, per step, in milli-units
    assert p.buf == p.produced - p.repl
    p.repl = pr.DAUGHTER_MU
    assert p.daughter_ready()
    p.launch_daughter()
    assert p.repl == 0 and not p.daughter_ready()
    q = Production(3, 0, STEPS, SLOT_MS)
    _stock_up(q)
    _slot(q, growth=0)
    assert q.repl == 0 and q.buf == q.produced


def test_older_nodes_degrade_down_to_a_floor():
    new = cat.rate_mu(1, 0)
    assert cat.rate_mu(1, 1000) < new
    assert cat.rate_mu(1, 1000) == new * (1000 - cat.GENS[1][3]) // 1000
    assert cat.rate_mu(1, 10 ** 6) == new * cat.GENS[1][4] // 1000
    p = Production(1, 0, STEPS, SLOT_MS)
    p.start_slot(5000)
    assert p.rate == cat.rate_mu(1, 5000) < new
    assert cat.rate_mu(0, 0) == 0  # unknown generation makes nothing


def test_deliveries_stop_at_the_cap_and_the_rest_is_waste():
    p = Production(2, 0, STEPS, SLOT_MS)
    p.feed = p.cap(cat.KIND_FEED) - 10
    assert p.deliver(cat.KIND_FEED, 100) == 10
    assert p.wasted == 90 and p.feed == p.cap(cat.KIND_FEED)


def test_capabilities_by_generation():
    assert cat.may_bid(1, 0x03) and not cat.may_bid(1, 0x04)  # gen 1 cannot process volatiles
    assert cat.may_bid(3, 0x0F)
    assert not cat.may_bid(2, 0x01 | cat.LOGISTICS_MASK)  # one kind per bid
    assert not cat.may_bid(0, cat.LOGISTICS_MASK)
    assert cat.kind_of_mask(0) == -1 and cat.kind_of_mask(0x100) == -1
    ids = cat.starts((2, 0, 1, 0, 3, 0, 0, 1))
    assert [cat.class_of(ids, r) for r in range(7)] == [0, 0, 2, 4, 4, 4, 7]
    assert cat.class_of(ids, 7) == -1 and cat.class_of(ids, -1) == -1
