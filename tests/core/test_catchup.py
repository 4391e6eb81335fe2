# mpy-heap: 320K (up to 16 nodes in one process for the two splits; a board holds one)
# A node a split passed by (off while its cluster split, or cut before it
# saved it) comes back into the right cluster (node/catchup.py): the
# coordinator that hears it answers with one CATCHUP, the node applies it,
# keeps it on flash, and its new cluster counts it, its old one does not.
# Runs under CPython and MicroPython (make test-mpy).
import struct

from mesh import Mesh
from node import durable, msgs, wire
from node.catchup import CATCHUP
from node.join import R_FOREIGN, R_NOT_COORDINATOR, R_STALE

T = 1000


def _settle(mesh, limit_ms=20 * T):
    ok = mesh.run_until(mesh.now + limit_ms, until=lambda m: m.agreed_coordinator() is not None)
    assert ok, "no agreed coordinator by %d ms: %r" % (mesh.now, mesh.coordinators())


def _mesh():
    # Ten members at most: the daughter 100 splits cluster 1 (ids 6.. go to
    # cluster 2, the first number of the split block 2..4).
    m = Mesh(10, seed=17, spares=(100, 16), split_cluster=(2, 3), max_members=10, min_members=5)
    _settle(m)
    return m


def _split_while_off(nid):
    """A settled mesh in which daughter 100 split cluster 1 while node nid was off."""
    m = _mesh()
    m.crash(nid)
    m.add_daughter(100, parent=7)
    m.run_for(20 * T)
    return m


def _roster(m, i):
    n = m.nodes[i]
    return n.cluster_dst & 0xFFF, n.members.members


def _refusals(m, i):
    return sum(m.nodes[i].joins.refused) if m.nodes[i].joins is not None else 0


def test_a_node_off_across_the_split_that_moved_it_comes_back_in_the_new_cluster():
    m = _split_while_off(8)
    low, high = (1, 2, 3, 4, 5), (6, 7, 8, 9, 10, 100)
    assert _roster(m, 1) == (1, low) and _roster(m, 6) == (2, high)
    splits = {i: m.nodes[i].joins.split for i in m.ids if i != 8}
    # It boots with its boot config (cluster 1, members 1..10) and a blob
    # from before the split: it heartbeats a roster that no longer exists.
    m.restart(8)
    assert _roster(m, 8) == (1, tuple(range(1, 11)))
    m.run_for(20 * T)
    n = m.nodes[8]
    assert _roster(m, 8) == (2, high) and n.joins.split == (4, 1), (_roster(m, 8), n.joins.split)
    assert (n.joins.first, n.joins.count) == (108, 8) and n.joins.parents == {100: 7}
    assert n.joins.catchups == 1
    # Its new cluster counts it, its old one does not; no split was redone.
    for i in low:
        assert _roster(m, i) == (1, low), i
    for i in high:
        assert _roster(m, i) == (2, high) and m.nodes[i].members.status(8, m.now) == 1, i
    assert {i: m.nodes[i].joins.split for i in m.ids if i != 8} == splits
    coords = m.coordinators_by_cluster()
    assert sorted(coords) == [1, 2] and all(len(v) == 1 for v in coords.values()), coords
    assert n.coordinator == coords[2][0] and sum(_refusals(m, i) for i in m.ids) == 0
    # It kept the catch-up on flash: another power cut, it boots in cluster 2.
    assert durable.roster_split(m.flash[8])[1] is not None
    m.crash(8)
    m.run_for(T)
    m.restart(8)
    assert _roster(m, 8) == (2, high)
    m.run_for(10 * T)
    assert m.nodes[8].joins.catchups == 0 and m.nodes[8].coordinator == m.coordinators_by_cluster()[2][0]


def test_a_node_off_across_a_split_it_stayed_through_drops_the_side_that_left():
    m = _split_while_off(3)
    m.restart(3)
    m.run_for(20 * T)
    n = m.nodes[3]
    assert _roster(m, 3) == (1, (1, 2, 3, 4, 5)) and n.joins.split == (3, 1) and n.joins.catchups == 1
    assert n.members.majority == 3
    coords = m.coordinators_by_cluster()
    assert sorted(coords) == [1, 2] and all(len(v) == 1 for v in coords.values()), coords
    assert n.coordinator == coords[1][0] and sum(_refusals(m, i) for i in m.ids) == 0


def test_a_boot_no_coordinator_heard_is_caught_up_at_the_next_election():
    # Node 3 comes back while cluster 1 has no coordinator (it is off too):
    # nobody answers its HELLO. The next coordinator sends each member one
    # CATCHUP at its first heartbeat in the new term: node 3 takes it.
    m = _split_while_off(3)
    (c,) = m.coordinators_by_cluster()[1]
    m.crash(c)
    m.restart(3)
    m.run_for(30 * T)
    n = m.nodes[3]
    assert _roster(m, 3) == (1, (1, 2, 3, 4, 5)), _roster(m, 3)
    assert n.joins.catchups == 1 and n.coordinator not in (c, 0) and n.coordinator == m.coordinators_by_cluster()[1][0]
    # The other members got theirs too, and took nothing from it.
    assert all(m.nodes[i].joins.catchups == 0 for i in (1, 2, 4, 5) if i != c)
    assert sum(_refusals(m, i) for i in m.ids) == 0


def test_a_node_off_across_two_splits_is_led_through_both():
    m = _split_while_off(9)
    # Cluster 2 grows past 10 again: it splits with number 4 (6..10 stay).
    for k, nid in enumerate(range(108, 113)):
        m.add_daughter(nid, parent=(6, 7, 8, 10)[k % 4])  # (9 is off: its roster is old)
        m.run_for(6 * T)
    m.run_for(20 * T)
    low, high = (6, 7, 8, 10), (100, 108, 109, 110, 111, 112)
    assert _roster(m, 6)[0] == 2 and _roster(m, 100) == (4, high), (_roster(m, 6), _roster(m, 100))
    m.restart(9)
    m.run_for(30 * T)
    n = m.nodes[9]
    # Cluster 1's coordinator sends it cluster 2 as the first split left it;
    # there, cluster 2's coordinator sends it cluster 2 now.
    assert _roster(m, 9) == (2, low[:3] + (9,) + low[3:]) and n.joins.catchups == 2, (_roster(m, 9), n.joins.catchups)
    assert n.joins.split == (5, 0)
    for i in (6, 7, 8, 10):
        assert _roster(m, i) == (2, (6, 7, 8, 9, 10)), i
    coords = m.coordinators_by_cluster()
    assert sorted(coords) == [1, 2, 4] and all(len(v) == 1 for v in coords.values()), coords
    assert n.coordinator == coords[2][0] and sum(_refusals(m, i) for i in m.ids) == 0


def _catchup(term, epoch, cluster, spares, block, entries):
    return struct.pack("<IHHHHHH", term, epoch, cluster, spares[0], spares[1], block[0], block[1]) + b"".join(
        struct.pack("<HH", k, p) for k, p in entries)


def test_a_forged_or_stale_catchup_is_refused_with_its_reason():
    m = _split_while_off(8)
    m.restart(8)
    n = m.nodes[8]  # stale: cluster 1, members 1..10, not booted yet
    term = n.term
    high = [(6, 0), (7, 0), (8, 0), (9, 0), (10, 0), (100, 7)]

    def send(src, payload):
        n.receive(wire.encode(CATCHUP, src, 8, payload)[:-1], m.now)

    send(100, _catchup(term, 1, 2, (108, 8), (4, 1), high))  # 100 is not a member of its roster
    send(6, _catchup(term - 1, 1, 2, (108, 8), (4, 1), high))  # an older term
    assert n.joins.refused[R_NOT_COORDINATOR] == 2
    send(6, _catchup(term, 1, 2, (200, 8), (4, 1), high))  # spares outside its config's
    send(6, _catchup(term, 1, 2, (108, 8), (4, 1), high[:2] + high[3:]))  # a roster without it
    send(6, _catchup(term, 1, 2, (108, 8), (4, 1), high + [(300, 7)]))  # a member it cannot know
    assert n.joins.refused[R_FOREIGN] == 3
    send(6, _catchup(term, 0, 1, (100, 16), (2, 3), [(i, 0) for i in range(1, 11)]))  # what it holds: nothing new
    send(6, _catchup(term, 1, 9, (108, 8), (9, 1), high))  # a cluster and block not made from its own
    send(6, _catchup(term, 1, 2, (108, 8), (2, 3), high))  # its own block, not past it: no split in it
    assert n.joins.refused[R_STALE] == 2 and n.ignored >= 1
    assert _roster(m, 8) == (1, tuple(range(1, 11))) and n.joins.catchups == 0
    # Each refusal went to the ground as JOIN_REFUSED, its reason said.
    out = n.poll(m.now)
    reasons = [msgs.unpack(msgs.JOIN_REFUSED, wire.decode(line[:-1]).payload)[0] for dst, line in out
               if dst == wire.ADDR_GROUND and wire.decode(line[:-1]).type == msgs.JOIN_REFUSED]
    assert sorted(reasons) == [R_NOT_COORDINATOR] * 2 + [R_STALE] * 2 + [R_FOREIGN] * 3, reasons
    # The true one, from a member in its term, is taken.
    send(6, _catchup(term, 1, 2, (108, 8), (4, 1), high))
    assert _roster(m, 8) == (2, (6, 7, 8, 9, 10, 100)) and n.joins.catchups == 1


def test_a_coordinator_answers_a_node_at_most_once_per_four_election_timeouts():
    m = _split_while_off(8)
    sent = []
    route = m._route

    def spy(src, dst, line, t):
        if wire.decode(line).type == CATCHUP:
            sent.append(t if dst == 8 else (dst, t))
        route(src, dst, line, t)  # (to a node that is off: dropped)

    m._route = spy
    t0 = m.now
    for k in range(120):  # node 8's heartbeats on cluster 1 for 30 s, T/4 apart; what it is sent never reaches it
        c = m.nodes[m.coordinators_by_cluster()[1][0]]
        c.joins.heard(c, 8, msgs.HEARTBEAT, m.now)
        c.joins.heard(c, 2, msgs.HEARTBEAT, m.now)  # a member's heartbeat is no reason to answer
        c.joins.heard(c, 11, msgs.HEARTBEAT, m.now)  # nor one from a node no split of its moved
        m.run_for(T // 4)
    quiet = 4 * m.config.election_timeout_ms
    assert sent and sent[0] - t0 < T and len(sent) == (30 * T - 1) // quiet + 1, sent
    assert all(b - a >= quiet for a, b in zip(sent, sent[1:])), sent
