"""The lean shard's hot path (ground/shard_land.py): the polls it skips as
idle are polls that would have done nothing (checked by polling anyway), on
a fleet with elections, crashes, a power cut, a partition and a reset, and
on a market's fleet (every node runs the region tier: never skipped); and the skips do
not change what the nodes do (the lean path against the Run path,
tests/ground/test_fleetrun.py, runs the same code)."""

from ground import fleetrun, scenario, shard_land
from ground.shard import Shard

from tests.ground.test_fleetrun import FAULTS, fleet_text

ROOT = __file__.rsplit("/tests/", 1)[0]


def _shard(sc):
    sh = Shard(sc, sc.seed, 0, sorted(sc.clusters), fleetrun.units_of(sc))
    sh.advance(int(sc.duration_s * 1e9), last=True)
    return sh


def test_skipped_polls_would_have_done_nothing(monkeypatch):
    monkeypatch.setattr(shard_land.Landing, "check_idle", True)  # each skip polls anyway: fails if it did anything
    sc = scenario.load_text(fleet_text(100, duration_s=18, faults=FAULTS), "<land100>")
    sh = _shard(sc)
    landing = sh._land.__self__
    delivered = sh.counters.delivered()
    assert delivered > 10000
    assert landing.skipped > delivered // 2  # most deliveries reach a follower with nothing due


def test_idle_reads_the_nodes_own_state():
    sc = scenario.load_text(fleet_text(20, duration_s=6), "<land20>")
    sh = _shard(sc)
    coord = [n for n, link in sh.links.items() if link.node.role == shard_land._COORDINATOR]
    assert coord, "an election in 6 s"
    for nid, link in sh.links.items():
        node = link.node
        now_ms = sh.now // shard_land.MS
        d = node.next_deadline_ms()
        assert not shard_land.idle(node, d, d)  # due at its deadline
        if nid in coord:
            assert not shard_land.idle(node, d - 1, d)  # a coordinator always polls
        elif now_ms < d:
            assert shard_land.idle(node, now_ms, d)
            node._dirty = True  # something to persist: the poll's take_persist has work
            assert not shard_land.idle(node, now_ms, d)
            node._dirty = False


def test_market_nodes_are_always_polled(monkeypatch):
    # with a market every node runs the region tier (its poll has the market's timers), electors a seat too
    monkeypatch.setattr(shard_land.Landing, "check_idle", True)
    sc = scenario.load(ROOT + "/scenarios/market-clusters.yaml")
    sh = _shard(sc)
    nodes = [link.node for link in sh.links.values()]
    assert all(n.region is not None for n in nodes) and any(n.seat is not None for n in nodes)
    assert not any(shard_land.idle(n, 0, 1 << 40) for n in nodes)
    assert sh._land.__self__.skipped == 0


def test_a_node_with_update_slots_lands_the_general_way(monkeypatch):
    # A rollout's nodes have update slots (ground/shard_rollout.py): a delivery
    # to one must go through Shard._deliver and SimLink.poll (installs,
    # restarts, reverts), never the hot path's inlined poll.
    from tests.ground.test_fleetrun_rollout import TEXT

    sc = scenario.load_text(TEXT.replace("duration_s: 160", "duration_s: 60"), "<land-rollout>")  # nobody traced
    general = {}
    real = Shard._deliver

    def counted(self, dst, *a):
        general[dst] = general.get(dst, 0) + 1
        return real(self, dst, *a)

    monkeypatch.setattr(Shard, "_deliver", counted)
    sh = _shard(sc)
    with_slots = [n for n, link in sh.links.items() if link.updates is not None]
    assert with_slots and sh.rollout is not None
    delivered = {n: sum(c[1] for c in sh.counters.nodes.get(n, {}).values()) for n in with_slots}
    assert sum(delivered.values()) > 1000
    assert all(general.get(n, 0) == delivered[n] for n in with_slots), [
        (n, general.get(n, 0), delivered[n]) for n in with_slots if general.get(n, 0) != delivered[n]][:5]
