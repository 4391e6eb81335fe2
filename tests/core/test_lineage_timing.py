# The two independently written election timings (lineage A's in
# node/elect.py, lineage B's in node/timing_b.py; docs/CONTAINMENT.md
# "Election timing") give the same outputs for the same inputs: the same
# draws from the same Rng (and the Rng left in the same state), the same
# sticky, step-down and pre-vote decisions over seeded inputs that crowd
# every boundary, and a cluster run on B's timing elects, fails over and
# steps down at the same instants as one run on A's. CPython and
# MicroPython (make test-mpy, 192K heap).
from mesh import Mesh
from node import elect, timing_b
from node import election as el
from node.config import Config
from node.node import Node
from node.rng import Rng

N_ROUNDS = 4000  # seeded rounds per runtime (each both implementations)
A, B = elect, timing_b


def _t(rng):
    """An election timeout: tiny ones (the window's ends matter most), then typical."""
    return 1 + rng.below(6) if rng.below(3) == 0 else 4 + rng.below(5000)


def test_draws_are_the_same_and_leave_the_rng_in_step():
    pick = Rng(11)
    for i in range(N_ROUNDS):
        t = _t(pick)
        ra, rb = Rng(i), Rng(i)
        for _ in range(3):
            standby = pick.below(2) == 1
            a, b = A.cold_ms(ra, t), B.cold_ms(rb, t)
            assert a == b and t <= a <= 2 * t, (i, t, a, b)
            a, b = A.follower_ms(ra, t, standby), B.follower_ms(rb, t, standby)
            assert a == b, (i, t, standby, a, b)
            assert a == t if standby else 2 * t <= a <= 3 * t, (i, t, standby, a)
        assert ra.next32() == rb.next32(), i  # the same number of draws taken


def test_a_draw_covers_its_whole_window():
    # [T, 2T] and [2T, 3T] both ends included, on either lineage.
    for impl in (A, B):
        rng = Rng(3)
        cold = set(impl.cold_ms(rng, 2) for _ in range(200))
        follower = set(impl.follower_ms(rng, 2, False) for _ in range(200))
        assert cold == {2, 3, 4}, (impl, cold)
        assert follower == {4, 5, 6}, (impl, follower)


def test_decisions_are_the_same_at_and_around_every_boundary():
    rng = Rng(29)
    for i in range(N_ROUNDS):
        sticky = 1 + rng.below(3000)
        heard = rng.below(100000)
        near = heard + sticky + rng.below(5) - 2  # now - heard == sticky, one either side
        now = near if rng.below(4) else heard + rng.below(2 * sticky + 1)
        leading, known = rng.below(4) == 0, rng.below(5) != 0
        heard_ms = None if rng.below(8) == 0 else heard
        qa = A.quiet(leading, known, heard_ms, now, sticky)
        qb = B.quiet(leading, known, heard_ms, now, sticky)
        assert qa == qb, (i, leading, known, heard_ms, now, sticky)

        quorum = 1 + rng.below(5000)
        held = quorum + rng.below(5) - 2 if rng.below(2) else rng.below(3 * quorum)
        majority = 1 + rng.below(6)
        heard_n = majority + rng.below(5) - 2
        da, db = A.step_down(held, quorum, heard_n, majority), B.step_down(held, quorum, heard_n, majority)
        assert bool(da) == bool(db), (i, held, quorum, heard_n, majority)

        mine = rng.below(50)
        term = mine + rng.below(3) - 1
        is_quiet, electable = rng.below(3) != 0, rng.below(4) != 0
        pa, pb = A.prevote(term, mine, is_quiet, electable), B.prevote(term, mine, is_quiet, electable)
        assert bool(pa) == bool(pb), (i, term, mine, is_quiet, electable)


def test_the_rules_as_the_doc_states_them():
    # One case per sentence of the spec, so a rule both got wrong the same way fails too.
    for impl in (A, B):
        assert impl.quiet(False, True, 100, 100 + 499, 500) is False  # heard 499 ms ago: stands by
        assert impl.quiet(False, True, 100, 100 + 500, 500) is True  # sticky_ms ago: quiet
        assert impl.quiet(False, True, None, 0, 500) is True  # never heard one
        assert impl.quiet(False, False, 100, 100, 500) is True  # knows none
        assert impl.quiet(True, False, None, 10 ** 6, 500) is False  # leads itself
        assert not impl.step_down(999, 1000, 0, 3)  # too early, however few it hears
        assert impl.step_down(1000, 1000, 2, 3)
        assert not impl.step_down(1000, 1000, 3, 3)
        assert impl.prevote(6, 5, True, True)
        assert not impl.prevote(5, 5, True, True)
        assert not impl.prevote(6, 5, False, True)
        assert not impl.prevote(6, 5, True, False)


def test_a_node_runs_its_lineages_timing():
    for lineage, impl in ((0, A), (1, B), (2, A), (3, B)):
        n = Node(1, Config(cluster=1, members=(1, 2, 3), lineage=lineage), seed=1)
        assert n.timing is impl, lineage


def _story(lineage):
    """Elections, a coordinator crash, a minority partition and its healing,
    a restart: every coordinator change with its instant and term."""
    m = Mesh(7, seed=13, delay_ms=5, jitter_ms=7, loss_per_mille=20, lineage=lineage)
    m.run_for(10000)
    first = m.agreed_coordinator()
    m.crash(first)
    m.run_for(8000)
    second = m.agreed_coordinator()
    others = [i for i in m.ids if i not in (first, second)]
    m.partition([second, others[0], others[1]], others[2:])
    m.run_for(8000)
    m.heal()
    m.restart(first)
    m.run_for(10000)
    events, splits = list(m.events), m.split_brains()
    roles = [(i, m.nodes[i].role, m.nodes[i].term) for i in m.ids]
    return events, splits, roles, m.delivered


def test_a_cluster_on_b_timing_does_what_it_does_on_a():
    a = _story(0)
    b = _story(1)  # every node lineage 1: B's timing (the lineage byte in frames does not change their size)
    assert a == b
    events, splits, roles, _ = a
    assert splits == []
    assert len(events) >= 3, events  # elected, failed over, the majority side elected again
    assert sum(1 for _, role, _ in roles if role == el.COORDINATOR) == 1
