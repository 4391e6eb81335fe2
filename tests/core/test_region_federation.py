# mpy-heap: 384K (a region of 9 real Nodes in one process; a board holds one node)
# The whole node: Tier-1 clusters, the regional election among the electors,
# and the market, all through wire frames (tests/core/federation.py). The
# regional coordinator is elected by the Tier-1 machinery run a second time,
# its records are the clusters' digests, a failover mid-round leaves a round
# every node agrees on, a seat's vote survives a restart, and market frames a
# node must not act on are counted. CPython and MicroPython.
from federation import Federation
from node import durable
from node import election as el
from node import auction_b, market, msgs, refusal, region, wire  # noqa: F401 (compiled while the heap is whole)
from node.config import Config
from node.node import Node, restore

SLOT = 12000
UNITS = (1, 1, 1, 1, 2, 1, 1, 2)


ELECTORS = (1, 3, 4)  # the first member of each cluster


def _fed(seed=1, **kw):
    # Small, to fit the MicroPython unix port's 192K heap next to the code:
    # three clusters (one of two nodes), one elector each.
    return Federation([[1, 2], [3], [4]], UNITS, seed=seed, slot_ms=SLOT, steps_per_slot=12, lead_ms=3000,
                      horizon_slots=32, window_slots=16, delay_ms=5, jitter_ms=5, **kw)


def _settle(f, limit_ms=20000):
    assert f.run_until(f.now + limit_ms, until=lambda x: x.region_coordinator() is not None), f.now
    return f.region_coordinator()


def test_the_electors_elect_one_regional_coordinator_with_a_standby():
    f = _fed(seed=2)
    rc = _settle(f)
    f.run_for(3 * SLOT)
    assert f.region_coordinator() == rc and f.split_brains() == []
    seat = f.nodes[rc].seat
    assert seat.standby in ELECTORS and seat.standby != rc
    for i in f.ids:  # every node learned who it is from the market's own frames
        assert f.nodes[i].region.trader.coord == rc
    for c in f.clusters:  # Tier 1 is untouched: each cluster has its own coordinator
        coords = [i for i in c if f.nodes[i].role == el.COORDINATOR]
        assert len(coords) == 1 and all(f.nodes[i].coordinator == coords[0] for i in c)


def test_the_regional_records_are_the_clusters_digests():
    f = _fed(seed=3)
    rc = _settle(f)
    f.nodes[2].set_record(1234)
    f.run_for(2 * SLOT)
    table = f.nodes[rc].seat.records
    for e in ELECTORS:
        assert table.get(e)[1] == f.nodes[e].records.digest()
    assert len(set(f.nodes[e].seat.records.digest() for e in ELECTORS)) == 1


def test_the_market_runs_over_real_frames():
    f = _fed(seed=4)
    produced = [0]

    def ground(t, src, line):
        fr = wire.decode(line)
        if fr.type == msgs.MARKET_TEL:
            produced[0] = max(produced[0], msgs.unpack(msgs.MARKET_TEL, fr.payload)[3])

    f.on_ground = ground
    rc = _settle(f)
    f.run_for(6 * SLOT)
    m = f.market()
    assert m.rounds >= 5
    for tr in f.traders():
        assert tr.awards > 0 and tr.refused[refusal.STALE_TERM] == 0
    assert f.conflicts() == 0 and m.ledger.conflicts() == 0
    assert sum(sum(f.nodes[i].errors) for i in f.ids) == 0
    assert produced[0] > 0  # units produced, as the ground sees them in MARKET_TEL
    assert rc == f.region_coordinator()


def test_a_regional_failover_mid_round_leaves_one_verdict_everywhere():
    f = _fed(seed=5)
    rc = _settle(f)
    f.run_for(2 * SLOT)
    m = f.market()
    standby = f.nodes[rc].seat.standby
    while m.state != 2 or not m._won:  # PREPARING a round with awards in it
        f.run_for(50)
    rnd = m.round
    f.crash(rc, lose_in_flight=True)  # dies before the standby's ack is back
    new = _settle(f)
    assert new == standby  # the hot standby takes over, as in Tier 1
    f.run_for(SLOT)
    verdicts = set(f.nodes[i].region.trader.round_status.get(rnd) for i in f.ids if i != rc)
    assert len(verdicts) == 1 and verdicts.pop() in (msgs.ROUND_COMPLETE, msgs.ROUND_VOID)
    f.run_for(2 * SLOT)
    assert f.market().rounds >= 2 and f.conflicts() == 0 and f.market().ledger.conflicts() == 0
    assert f.split_brains() == []


def test_an_electors_seat_vote_survives_a_restart():
    f = _fed(seed=6)
    rc = _settle(f)
    voter = [e for e in ELECTORS if e != rc][0]
    blob = durable.split(f.flash[voter])[0]
    assert len(blob) == 28  # the node's own term and vote, then its seat's (then its market section: its stocks)
    seat_term = f.nodes[voter].seat.term
    assert tuple(restore(blob[14:]))[:2] == (seat_term, f.nodes[voter].seat.voted_for)
    f.crash(voter)
    f.restart(voter)
    assert f.nodes[voter].seat.term == seat_term
    f.run_for(2 * SLOT)
    assert f.split_brains() == []


def test_market_frames_a_node_must_not_act_on_are_counted():
    f = _fed(seed=7)
    rc = _settle(f)
    other = 2
    tr = f.nodes[other].region.trader
    f.inject(msgs.INTENT, msgs.pack(msgs.INTENT, 5, 0, 0, 0, 1000, 1, 0), dst=other)  # aimed at one node
    f.inject(msgs.BID, b"\x01\x02\x03", dst=rc)  # malformed
    f.run_for(100)
    assert tr.refused[refusal.UNICAST] == 1 and tr.intent.seq == 0
    assert f.nodes[rc].errors[wire.ERR_PAYLOAD] == 1
    line = wire.encode(msgs.BID, other, other, msgs.pack(msgs.BID, 0, 99, 3, 0xFFFF, 5, 0x02, 1, 1, 1, 0))
    f.nodes[other].receive(line[:-1], f.now)  # a bid to a node that is no coordinator
    assert sum(f.nodes[i].region.refused[refusal.NOT_COORDINATOR] for i in f.ids) == 1


def test_a_node_without_a_market_ignores_market_frames():
    n = Node(1, Config(members=[1]), seed=1)
    n.poll(0)
    for t, p in ((msgs.BID, msgs.pack(msgs.BID, 0, 1, 1, 0xFFFF, 5, 1, 1, 1, 1, 0)),
                 (msgs.INTENT, msgs.pack(msgs.INTENT, 1, 0, 0, 300, 1000, 0, 0))):
        n.receive(wire.encode(t, 0, wire.ADDR_BROADCAST, p)[:-1], 1)
    assert n.ignored == 2 and sum(n.errors) == 0 and n.region is None
