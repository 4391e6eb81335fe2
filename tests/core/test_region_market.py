# mpy-heap: 256K (a region of up to 8 traders at the market tier in one process; a board holds one)
# The regional market over many rounds, at the market tier (tests/core/fedsim.py:
# the nodes' own trader/market/production code, roles fixed, no Tier 1): every
# node hears every round, production runs, decisions come within a round and
# a few light times, no resource is ever held twice, bad input never touches
# the ledger, messages grow O(N), and a coordinator that dies mid-round leaves
# a round every node agrees on. CPython and MicroPython.
from fedsim import FedSim
from node import auction, msgs, refusal
from node.market import PREPARING

SLOT = 60000  # one auction cycle (short, so tests run many rounds)
DELAY = 500  # one-way light time between any two nodes
UNITS = (1, 1, 1, 1, 2, 1, 1, 2)


def _sim(n=6, seed=1, units=UNITS, **kw):
    return FedSim(n, units, seed=seed, slot_ms=SLOT, steps_per_slot=12, lead_ms=SLOT // 8, delay_ms=DELAY,
                  horizon_slots=64, window_slots=40, **kw)


def _lease_in_ledger(sim, node, lease):
    led = sim.market().ledger
    idx = sim.mcfg.index(node)
    res, first, span, period, count = lease[0], lease[1], lease[2], lease[3], lease[4]
    for k in range(count):
        s = first + k * period
        if s >= led.base and led.find(res, idx, s, span)[0] < 0:
            return False
    return True


def test_every_node_hears_every_round_and_production_runs():
    sim = _sim()
    sim.run_until(12 * SLOT)
    m = sim.market()
    assert m.rounds == 12
    for tr in sim.traders():
        assert tr.coord == 1 and tr.term == 1
        assert tr.round_status.get(10) == msgs.ROUND_COMPLETE, (tr.id, tr.round_status)
        assert tr.price_round == 11
        assert tr.awards > 0 and len(tr.leases) > 0
    produced, ideal = sim.production()
    assert (ideal - produced) * 100 < 2 * ideal  # under 2 % lost to coordination
    assert sim.conflicts() == 0 and m.ledger.conflicts() == 0


def test_a_region_that_names_its_clusters_announces_each_round_to_each_of_them():
    # MarketConfig.clusters: a region of a fleet of several announces a
    # round to its own clusters' addresses (one frame each), so no other
    # region hears it; every trader, the coordinator's own included, still
    # hears every round.
    sim = _sim(cluster_of=lambda i: 4 + i % 2, clusters=(4, 5))
    seen = {}  # round -> the addresses its PRICES complete went to

    def frame(t, src, dst, type, payload):
        if type == msgs.PRICES:
            f = msgs.unpack(msgs.PRICES, payload)
            if f[6] == msgs.ROUND_COMPLETE:
                seen.setdefault(f[1], []).append(dst)

    sim.on_frame = frame
    sim.run_until(6 * SLOT)
    assert sim.market().rounds == 6
    assert len(seen) >= 5 and all(sorted(d) == [0xF004, 0xF005] for d in seen.values()), seen
    for tr in sim.traders():
        assert tr.round_status.get(4) == msgs.ROUND_COMPLETE, (tr.id, tr.round_status)


def test_decisions_arrive_within_one_round_and_four_light_times():
    # Enough of everything that no bid has to lose: then every need is
    # decided by the first round that can hear it.
    sim = _sim(seed=3, units=(2, 2, 2, 1, 3, 2, 2, 3))
    lat = []
    for tr in sim.traders():
        tr.latencies = lat
    sim.run_until(16 * SLOT)
    assert len(lat) > 30
    # bid up to the coordinator (1 light time), the standby's ack (2), the award down (1)
    bound = SLOT + 4 * DELAY
    assert max(b for n, b, cover in lat) <= bound  # every bid: decided in its round
    assert max(n for n, b, cover in lat if not cover) <= bound  # every spot need: by its first bid's round


def test_no_resource_is_held_twice_under_loss_and_jitter():
    sim = _sim(n=7, seed=5, jitter_ms=400, loss_per_mille=50, units=(2, 1, 1, 1, 3, 2, 2, 3))
    for _ in range(20):
        sim.run_for(SLOT)
        assert sim.conflicts() == 0
        assert sim.market().ledger.conflicts() == 0
    # Whatever a node believes it holds, the ledger holds for it: no node ever
    # assumes a lease it was not awarded (even with awards and releases lost).
    for i in sim.ids:
        for lease in sim.regions[i].trader.leases:
            assert _lease_in_ledger(sim, i, lease), (i, lease)
    assert sim.dropped > 0


def test_bad_input_is_refused_counted_and_never_changes_the_ledger():
    sim = _sim(seed=7)
    bids = []
    sim.on_frame = lambda t, src, dst, type, p: bids.append(p) if type == msgs.BID and src == 5 else None
    sim.run_until(3 * SLOT + 1000)
    m = sim.market()
    digest = m.ledger.digest()
    replay = bids[-1]
    rnd = m.round
    good = msgs.pack(msgs.BID, rnd, 1 << 30, rnd + 2, auction.NO_RESOURCE, 10, 0x02, 1, 1, 1, 0)
    sim.inject(msgs.BID, replay, dst=1, src=5)  # replayed
    sim.inject(msgs.BID, good, dst=1, src=99)  # unknown node
    sim.inject(msgs.BID, good[:-1], dst=1, src=5)  # malformed: one byte short
    sim.inject(msgs.BID, msgs.pack(msgs.BID, rnd, 1 << 30, rnd + 2, 999, 10, 0x02, 1, 1, 1, 0), dst=1, src=5)
    sim.inject(msgs.BID, msgs.pack(msgs.BID, rnd, (1 << 30) + 1, rnd + 2, auction.NO_RESOURCE, 0, 0x02, 1, 1, 1, 0),
               dst=1, src=5)  # price 0
    sim.inject(msgs.BID, msgs.pack(msgs.BID, rnd, (1 << 30) + 2, rnd + 5000, auction.NO_RESOURCE, 9, 0x02, 1, 1, 1,
                                   0), dst=1, src=5)  # past any horizon
    sim.inject(msgs.RELEASE, msgs.pack(msgs.RELEASE, (1 << 30) + 3, rnd + 2, rnd + 2, 0, 6, 1, 1, 1), dst=1, src=5)
    sim.inject(msgs.AWARD, msgs.pack(msgs.AWARD, 9, rnd, 0, rnd + 2, 0, 5, 1, 1, 1, 1, 0), dst=5, src=99)
    sim.run_for(2 * DELAY)
    assert m.ledger.digest() == digest
    for why in (refusal.REPLAY, refusal.UNKNOWN_NODE, refusal.RESOURCE, refusal.PRICE, refusal.HORIZON,
                refusal.NOT_HOLDER):
        assert m.refused[why] >= 1, refusal.NAMES[why]
    assert sim.regions[1].refused[refusal.MALFORMED] == 1
    assert sim.regions[5].trader.refused[refusal.UNKNOWN_NODE] == 1  # the forged award
    for i in range(m.book.n):
        assert m.book.seq[i] < 1 << 30  # none of it reached the book either
    sim.run_for(3 * SLOT)
    assert sim.conflicts() == 0 and m.ledger.conflicts() == 0


def _market_frames(sim):
    n = 0
    for t in (msgs.BID, msgs.AWARD, msgs.PRICES, msgs.ROUND_ACK, msgs.RELEASE):
        n += sim.sent_by_type.get(t, 0)
    return n


def _frames_per_node_round(n, units):
    sim = _sim(n=n, seed=11, units=units)
    sim.run_until(10 * SLOT)
    before = _market_frames(sim)
    sim.run_until(20 * SLOT)
    return (_market_frames(sim) - before) * 100 // n


def test_messages_per_round_grow_linearly_with_the_region():
    per_node = []
    for n, units in ((2, (1, 1, 1, 1, 1, 1, 1, 1)), (4, (1, 1, 1, 1, 1, 1, 1, 1)), (8, (2, 1, 2, 1, 3, 2, 2, 3))):
        per_node.append(_frames_per_node_round(n, units))  # one region in memory at a time
    # Per node, a round costs no more in a bigger region (fixed costs, a
    # PRICES broadcast and the standby's PREPARE and ack, are shared): O(N) in all.
    for small, big in zip(per_node, per_node[1:]):
        assert big * 2 <= small * 3, per_node


def _others_won(m):
    b = m.book
    return any(b.flags[i] & auction.F_WON and b.node[i] for i in range(m._n_round))


def _run_to_close(sim):
    """Run to the moment a round with awards for other nodes has just closed."""
    m = sim.market()
    while m.state != PREPARING or not _others_won(m):
        sim.run_for(100)
    return m.round


def test_a_standby_that_acked_completes_the_round_after_the_coordinator_dies():
    sim = _sim(seed=13, electors=(1, 2, 3))
    replicas_to = set()

    def hook(t, src, dst, type, p):
        if type == msgs.AWARD and src == 1 and msgs.unpack(msgs.AWARD, p)[10] & msgs.AWARD_REPLICA:
            replicas_to.add(dst)

    sim.on_frame = hook
    sim.run_until(5 * SLOT)
    rnd = _run_to_close(sim)
    standby = sim.regions[2].market
    while not (standby._rep_key == (1, rnd) and standby._rep_acked):
        sim.run_for(50)
    winners = sorted(replicas_to)
    sim.crash_coordinator(lose_in_flight=True)  # the ack and every award still on the way are lost
    sim.run_for(SLOT // 2)
    assert standby.completed == 1
    for tr in sim.traders():
        assert tr.round_status.get(rnd) == msgs.ROUND_COMPLETE, (tr.id, tr.round_status)
        assert tr.coord == 2 and tr.term == 2
    assert winners == [2, 3]  # replicas go to every other elector
    sim.run_for(3 * SLOT)
    assert sim.conflicts() == 0 and sim.market().ledger.conflicts() == 0


def test_a_standby_without_the_replica_voids_the_round_and_everyone_bids_again():
    sim = _sim(seed=17, electors=(1, 2, 3))
    told = []
    sim.run_until(5 * SLOT)
    rnd = _run_to_close(sim)

    def hook(t, src, dst, type, p):
        if type == msgs.AWARD:
            f = msgs.unpack(msgs.AWARD, p)
            if f[1] == rnd and not f[10] & msgs.AWARD_REPLICA:
                told.append(dst)

    sim.on_frame = hook
    sim.crash_coordinator(lose_in_flight=True)  # died with the replica still on the way
    sim.run_for(SLOT // 2)
    assert sim.regions[2].market.voided == 1
    for tr in sim.traders():
        assert tr.round_status.get(rnd) == msgs.ROUND_VOID, (tr.id, tr.round_status)
        assert not [b for b in tr.pending if b[5] == rnd]
    assert told == []  # no holder was ever told of a lease in the void round
    before = sum(tr.awards for tr in sim.traders())
    sim.run_for(3 * SLOT)
    assert sum(tr.awards for tr in sim.traders()) > before  # the next rounds serve them
    assert sim.conflicts() == 0 and sim.market().ledger.conflicts() == 0


def test_a_coordinator_dying_mid_commit_leaves_no_half_awarded_round():
    sim = _sim(seed=19, electors=(1, 2, 3))
    winners = {}
    sim.run_until(5 * SLOT)
    rnd = _run_to_close(sim)
    m = sim.market()

    def hook(t, src, dst, type, p):
        if type == msgs.AWARD and src == 1:
            f = msgs.unpack(msgs.AWARD, p)
            if f[1] == rnd and not f[10] & msgs.AWARD_REPLICA:
                winners[f[5]] = winners.get(f[5], 0) + 1

    sim.on_frame = hook
    while m.state == PREPARING:
        sim.run_for(20)
    # Committed: the awards are on their way. Half of them are lost with the coordinator.
    toggle = [0]

    def keep(e):
        toggle[0] += 1
        return toggle[0] % 2 == 0

    sim.crash_coordinator(lose_in_flight=True, keep=keep)
    sim.run_for(SLOT // 2)
    assert winners
    for node in winners:
        tr = sim.regions[node].trader
        assert tr.round_status.get(rnd) == msgs.ROUND_COMPLETE
    led = sim.market().ledger
    for i in sim.ids:
        for lease in sim.regions[i].trader.leases:
            assert _lease_in_ledger(sim, i, lease)
    assert sim.conflicts() == 0 and led.conflicts() == 0
