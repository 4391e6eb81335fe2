# mpy-heap: 320K (16 nodes in one process for the two splits; a board holds one)
# Replication that keeps going (node/join.py): a cluster made by a split
# splits again with the next number of its split block, and a node's roster
# (joins, a split's outcome, its cluster number) survives a power cut: it
# comes back from the roster section of its saved blob, not its boot config.
# Runs under CPython and MicroPython (make test-mpy).
import binascii
import struct

from mesh import Mesh
from node import durable, wire
from node.config import Config
from node.node import Node

T = 1000


def _settle(mesh, limit_ms=20 * T):
    ok = mesh.run_until(mesh.now + limit_ms, until=lambda m: m.agreed_coordinator() is not None)
    assert ok, "no agreed coordinator by %d ms: %r" % (mesh.now, mesh.coordinators())
    return mesh.agreed_coordinator()


def test_a_member_cut_off_after_a_join_still_counts_the_joiner():
    m = Mesh(5, seed=3, spares=(100, 8), split_cluster=2)
    leader = _settle(m)
    follower = 3 if leader != 3 else 4
    before = m.writes.get(follower, 0)
    m.add_daughter(100, parent=2)
    m.run_for(6 * T)
    assert m.nodes[follower].members.members == (1, 2, 3, 4, 5, 100)
    # One flash write for the membership change (a ROSTER sent again is no change).
    assert m.writes.get(follower, 0) == before + 1, (before, m.writes.get(follower))
    # Power cut: it boots from its boot config (members 1..5) and what it kept.
    m.crash(follower)
    m.run_for(T)
    m.restart(follower)
    n = m.nodes[follower]
    assert n.members.members == (1, 2, 3, 4, 5, 100) and n.members.majority == 4
    assert n.joins.parents == {100: 2} and not n.joins.joining
    m.run_for(4 * T)
    assert n.members.status(100, m.now) == 1  # heard alive again
    assert n.coordinator == m.agreed_coordinator() is not None
    # The daughter too: after a power cut it is a member, it does not JOIN again.
    m.crash(100)
    m.down.discard(100)  # back on with its own boot config (Mesh.restart's is the first nodes')
    m.nodes[100] = Node(100, _config_of(m, 100), 77, m.flash[100])
    assert not m.nodes[100].joins.joining and m.nodes[100].members.is_member(100)


def _config_of(mesh, nid):
    return Config(cluster=1, members=(1, 2, 3, 4, 5, nid), election_timeout_ms=mesh.config.election_timeout_ms,
                  spares=(100, 8), split_cluster=2, parent=2, lineage=2)


def test_a_damaged_roster_section_leaves_the_boot_config_and_says_so():
    m = Mesh(5, seed=5, spares=(100, 8), split_cluster=2)
    _settle(m)
    m.add_daughter(100, parent=1)
    m.run_for(6 * T)
    blob = bytearray(m.flash[4])
    rest, sec = durable.roster_split(bytes(blob))
    assert sec is not None and len(rest) == 14
    blob[len(rest) + 20] ^= 0x01  # a member id, under the crc
    n = Node(4, m.config, 9, bytes(blob))
    assert n.members.members == (1, 2, 3, 4, 5) and n.cluster_dst == wire.cluster_addr(1)
    assert n.term == 1 and any(b"roster: kept roster damaged" in x for x in n._early_logs), n._early_logs
    # A section that does not descend from this config (another cluster's spares).
    other = Config(cluster=1, members=(1, 2, 3, 4, 5), spares=(200, 8), split_cluster=2)
    n = Node(4, other, 9, m.flash[4])
    assert n.members.members == (1, 2, 3, 4, 5)
    assert any(b"roster:" in x for x in n._early_logs), n._early_logs


def test_a_side_made_by_a_split_splits_again_and_keeps_it_through_a_power_cut():
    # Cluster 1 holds the split block 2..4: its split takes 2 and leaves 3 to
    # the side that stays, 4 to the side that goes.
    m = Mesh(10, seed=17, spares=(100, 16), split_cluster=(2, 3), max_members=10, min_members=5)
    _settle(m)
    m.add_daughter(100, parent=7)
    m.run_for(20 * T)
    assert m.nodes[1].members.members == (1, 2, 3, 4, 5) and m.nodes[1].joins.split == (3, 1)
    assert m.nodes[6].members.members == (6, 7, 8, 9, 10, 100) and m.nodes[6].joins.split == (4, 1)
    assert (m.nodes[6].joins.first, m.nodes[6].joins.count) == (108, 8)
    assert sorted(m.coordinators_by_cluster()) == [1, 2]
    # Cluster 2 grows past 10 again: it splits with number 4.
    for k, nid in enumerate(range(108, 113)):
        m.add_daughter(nid, parent=6 + k % 5)
        m.run_for(6 * T)
    m.run_for(20 * T)
    low, high = (6, 7, 8, 9, 10), (100, 108, 109, 110, 111, 112)
    for i in low:
        assert m.nodes[i].members.members == low and m.nodes[i].cluster_dst == wire.cluster_addr(2), i
    for i in high:
        n = m.nodes[i]
        assert n.members.members == high and n.cluster_dst == wire.cluster_addr(4), (i, n.members.members)
        assert n.joins.split[1] == 0  # its block is spent: a join past 10 is refused as full
    coords = m.coordinators_by_cluster()
    assert sorted(coords) == [1, 2, 4] and all(len(v) == 1 for v in coords.values()), coords
    # A node of the twice-split side power-cut: its boot config says cluster
    # 1, members 1..10; it comes back in cluster 4 with its five peers.
    m.crash(9)
    m.crash(110)
    m.run_for(T)
    m.restart(9)
    m.nodes[110] = Node(110, Config(cluster=2, members=(6, 7, 8, 9, 10, 100, 110), spares=(108, 8),
                                    split_cluster=(4, 1), max_members=10, min_members=5, parent=8, lineage=2),
                        55, m.flash[110])
    m.down.discard(110)
    assert m.nodes[9].members.members == low and m.nodes[9].cluster_dst == wire.cluster_addr(2)
    assert m.nodes[110].members.members == high and m.nodes[110].cluster_dst == wire.cluster_addr(4)
    m.run_for(10 * T)
    coords = m.coordinators_by_cluster()
    assert sorted(coords) == [1, 2, 4] and all(len(v) == 1 for v in coords.values()), coords
    assert m.nodes[110].coordinator == coords[4][0] and m.nodes[9].coordinator == coords[2][0]


class _Holder:
    """A trader with no leases: all durable.with_leases reads of one."""

    leases = []


def test_the_roster_section_follows_a_seat_and_a_market_section_and_the_shell_reads_past_it():
    from node.node import restore_all, save

    m = Mesh(5, seed=3, spares=(100, 8), split_cluster=2)
    _settle(m)
    m.add_daughter(100, parent=2)
    m.run_for(6 * T)
    rest, sec = durable.roster_split(m.flash[3])
    assert len(rest) == 14 and sec[-2:] == b"RS" and len(sec) == 18 + 2 * 6 + 4 * 1 + 8
    # As an elector's blob would be: its term/vote, its seat's, the market section, then the roster.
    market = bytes(durable.with_leases(b"", _Holder()))
    blob = rest + save(7, 2, 0) + market + sec
    assert [p[0] for p in restore_all(blob)] == [m.nodes[3].term, 7]  # the board shell's read (runtime/start.py)
    assert durable.split(blob) == (rest + save(7, 2, 0), market)
    # An auditing elector's quarantine table (node/quarantine.py) sits between the market section and the roster.
    table = b"QT\x01\x00\x01\x00" + struct.pack("<HB", 4, 2)
    table += struct.pack("<I", binascii.crc32(table))
    blob = rest + save(7, 2, 0) + market + table + sec
    assert [p[0] for p in restore_all(blob)] == [m.nodes[3].term, 7]
    assert durable.split(blob) == (rest + save(7, 2, 0), market + table)
    n = Node(3, m.config, 5, rest + sec)
    assert n.members.members == (1, 2, 3, 4, 5, 100) and n.term == m.nodes[3].term


def test_a_split_block_is_checked_at_boot():
    for block in ((1, 3), (0xDFF, 2), (5, -1), (2, 3, 4)):
        try:
            Config(cluster=1, members=(1, 2, 3, 4, 5), spares=(100, 8), split_cluster=block)
        except ValueError as e:
            assert "split_cluster" in str(e)
        else:
            raise AssertionError("split block %r taken" % (block,))
    c = Config(cluster=1, members=(1, 2, 3, 4, 5), spares=(100, 8), split_cluster=[2, 7])
    assert c.replication[4] == (2, 7)
