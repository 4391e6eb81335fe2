# Tier 3: the ground's intent (node/strategy.py) and how the region honours
# it. Intent is numbered and checked, is never a per-node command, sets the
# replication share and the phase, and a manoeuvre campaign keeps every
# logistics window out of its time: nodes plan around it, the coordinator
# refuses what ignores it. CPython and MicroPython.
from fedsim import FedSim
from node import auction, catalog as cat, msgs, refusal, strategy
from node.strategy import Intent

SLOT = 60000
UNITS = (1, 1, 1, 1, 2, 1, 1, 2)


def _sim(seed=1):
    return FedSim(6, UNITS, seed=seed, slot_ms=SLOT, steps_per_slot=12, lead_ms=SLOT // 8, delay_ms=500,
                  horizon_slots=64, window_slots=40)


def test_intent_is_numbered_and_checked():
    i = Intent()
    assert i.apply(2, 100, 200, 400, 900, strategy.PHASE_GROWTH, 0) == 0
    assert i.apply(2, 0, 0, 300, 1000, 0, 0) == refusal.REPLAY  # not newer
    assert i.apply(1, 0, 0, 300, 1000, 0, 0) == refusal.REPLAY
    assert i.apply(3, 0, 0, 1001, 1000, 0, 0) == refusal.SHAPE  # more than all output
    assert i.apply(3, 0, 0, 300, 100, 0, 0) == refusal.SHAPE  # cover too small to be a plan
    assert i.apply(3, 0, 0, 300, 1000, 7, 0) == refusal.SHAPE  # unknown phase
    assert i.apply(3, 0, 0, 300, 1000, 0, 0x80) == refusal.SHAPE  # unknown action
    assert i.apply(3, 500, 100, 300, 1000, 0, 0) == refusal.HORIZON  # ends before it starts
    assert i.apply(3, 0, strategy.MAX_CAMPAIGN_S + 1, 300, 1000, 0, 0) == refusal.HORIZON
    assert (i.seq, i.growth_permille, i.cover_permille) == (2, 400, 900)
    assert i.blocks(150, 160) and i.blocks(50, 101) and not i.blocks(200, 300) and not i.blocks(0, 100)
    assert i.replication_permille() == 400
    assert i.apply(3, 0, 0, 400, 900, strategy.PHASE_CONSOLIDATE, 0) == 0
    assert i.replication_permille() == 0


def test_the_growth_target_and_phase_set_the_replication_share():
    sim = _sim(seed=2)
    sim.inject(msgs.INTENT, msgs.pack(msgs.INTENT, 1, 0, 0, 500, 1000, strategy.PHASE_GROWTH, 0))
    sim.run_until(4 * SLOT)
    p = sim.regions[4].trader.prod
    assert p.produced and abs(p.repl * 1000 // p.produced - 500) <= 5
    sim.inject(msgs.INTENT, msgs.pack(msgs.INTENT, 2, 0, 0, 500, 1000, strategy.PHASE_CONSOLIDATE, 0))
    sim.run_for(1000)
    repl = p.repl
    sim.run_for(2 * SLOT)
    assert p.repl == repl and p.produced > 0
    for tr in sim.traders():
        assert tr.intent.seq == 2


def test_a_manoeuvre_campaign_keeps_logistics_out_of_its_window():
    sim = _sim(seed=3)
    sim.run_until(3 * SLOT)
    start, end = 10, 16  # slots
    sim.inject(msgs.INTENT, msgs.pack(msgs.INTENT, 1, start * SLOT // 1000, end * SLOT // 1000, 300, 1000,
                                      strategy.PHASE_GROWTH, 0))
    awarded = []

    def hook(t, src, dst, type, p):
        if type == msgs.AWARD:
            f = msgs.unpack(msgs.AWARD, p)
            if cat.class_of(cat.starts(UNITS), f[4]) == cat.LOGISTICS and not f[10] & msgs.AWARD_SYNC:
                awarded.append(f)

    sim.on_frame = hook
    sim.run_for(1000)
    while sim.now < 20 * SLOT:
        sim.run_for(SLOT // 12)
        slot = sim.now // SLOT
        if start <= slot < end:
            for tr in sim.traders():
                assert not tr._logistics, (tr.id, slot)  # no window is used inside the campaign
    for f in awarded:  # and none was awarded inside it
        first, span, period, count = f[3], f[7], f[8], f[9]
        for k in range(count):
            s = first + k * period
            assert s + span <= start or s >= end, f
    assert sim.market().refused[refusal.BLOCKED] == 0  # the nodes planned around it themselves
    produced, ideal = sim.production()
    assert produced * 100 > 90 * ideal  # the campaign costs little: buffers were drained before it


def test_a_bid_that_ignores_the_campaign_is_refused():
    sim = _sim(seed=4)
    sim.run_until(2 * SLOT)
    m = sim.market()
    sim.inject(msgs.INTENT, msgs.pack(msgs.INTENT, 1, 20 * SLOT // 1000, 30 * SLOT // 1000, 300, 1000, 0, 0))
    sim.run_for(1000)
    bad = msgs.pack(msgs.BID, m.round, 1 << 30, 22, auction.NO_RESOURCE, 30, cat.LOGISTICS_MASK, 4, 4, 1, 0)
    sim.inject(msgs.BID, bad, dst=1, src=2)
    sim.run_for(1000)
    assert m.refused[refusal.BLOCKED] == 1
