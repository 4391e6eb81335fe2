# mpy-heap: 256K (up to twenty real Nodes in one mesh in one process; a board holds one node. At 192K the file passed or failed by fragmentation alone: main failed at 191K and passed at 190K)
# The node core in a virtual-time mesh: election, failover, partitions,
# restarts, state sharing, determinism. Runs under CPython and MicroPython.
from mesh import Mesh
from node import elect
from node import election as el
from node import msgs, wire
from node.config import Config
from node.node import Node, restore, save

T = 1000  # election timeout, ms


def _settle(mesh, limit_ms=20 * T):
    ok = mesh.run_until(mesh.now + limit_ms, until=lambda m: m.agreed_coordinator() is not None)
    assert ok, "no agreed coordinator by %d ms: %r" % (mesh.now, mesh.coordinators())
    return mesh.agreed_coordinator()


def test_single_node_cluster_elects_itself():
    m = Mesh(1, seed=3)
    assert _settle(m) == 1
    assert m.nodes[1].term == 1


def test_twenty_nodes_elect_exactly_one_coordinator_per_term():
    m = Mesh(20, seed=11, delay_ms=5, jitter_ms=10, keep_ground=False)
    leader = _settle(m)
    m.run_for(10 * T)
    assert m.split_brains() == []
    assert m.agreed_coordinator() == leader
    # Everyone learned who the standby is, and it is somebody else.
    standby = m.nodes[leader].standby
    assert standby not in (msgs.NO_NODE, leader)
    assert all(m.nodes[i].standby == standby for i in m.ids)


def test_standby_takes_over_when_coordinator_crashes():
    m = Mesh(20, seed=5, delay_ms=5, jitter_ms=5, keep_ground=False)
    leader = _settle(m)
    m.run_for(3 * T)
    standby = m.nodes[leader].standby
    old_term = m.nodes[leader].term
    crash_ms = m.now
    m.crash(leader)
    new = _settle(m)
    assert new == standby
    assert m.nodes[new].term > old_term
    took_ms = [t for t, i, term in m.events if i == new][0] - crash_ms
    assert took_ms <= 2 * T, took_ms
    assert m.split_brains() == []


def test_no_leader_churn_without_faults():
    m = Mesh(7, seed=9, delay_ms=10, jitter_ms=20)
    _settle(m)
    changes = len(m.events)
    m.run_for(60 * T)
    assert len(m.events) == changes
    assert m.split_brains() == []


def test_minority_side_never_elects_and_old_coordinator_steps_down():
    m = Mesh(5, seed=21)
    leader = _settle(m)
    others = [i for i in m.ids if i != leader]
    minority = [leader, others[0]]
    majority = others[1:]
    m.partition(minority, majority)
    m.run_for(10 * T)
    coords = m.coordinators()
    assert len(coords) == 1 and coords[0][0] in majority
    assert m.nodes[leader].role != el.COORDINATOR
    assert m.split_brains() == []
    # Heal: everyone converges on the majority's coordinator, no new term churn.
    new = coords[0][0]
    term = coords[0][1]
    m.heal()
    m.run_for(5 * T)
    assert m.agreed_coordinator() == new
    assert m.nodes[new].term == term


def test_restart_keeps_term_and_vote():
    m = Mesh(5, seed=2)
    _settle(m)
    voter = [i for i in m.ids if m.nodes[i].role != el.COORDINATOR][0]
    before = (m.nodes[voter].term, m.nodes[voter].voted_for)
    m.crash(voter)
    m.restart(voter)
    assert (m.nodes[voter].term, m.nodes[voter].voted_for) == before
    m.run_for(5 * T)
    assert m.split_brains() == []


def test_whole_cluster_power_cycle_never_reuses_a_term():
    m = Mesh(5, seed=4)
    _settle(m)
    for i in m.ids:
        m.crash(i)
    for i in m.ids:
        m.restart(i)
    _settle(m)
    m.run_for(5 * T)
    assert m.split_brains() == []
    assert len(m.leaders) >= 2


def test_saved_state_round_trip_and_torn_blob_rejected():
    blob = save(7, 3, 4096)
    assert tuple(restore(blob)) == (7, 3, 4096)
    for cut in range(len(blob)):
        try:
            restore(blob[:cut])
        except ValueError:
            continue
        raise AssertionError("torn blob of %d bytes accepted" % cut)
    bad = bytearray(blob)
    bad[0] ^= 1
    try:
        restore(bytes(bad))
    except ValueError:
        return
    raise AssertionError("corrupt blob accepted")


def test_vote_is_persisted_before_it_is_sent():
    cfg = Config(members=[1, 2, 3])
    n = Node(2, cfg, seed=1)
    n.poll(0)
    n.take_persist()
    req = wire.encode(msgs.VOTE_REQUEST, 1, wire.cluster_addr(1), msgs.pack(msgs.VOTE_REQUEST, 1))
    n.receive(req[:-1], 5)
    out = n.poll(5)
    votes = [l for d, l in out if wire.decode(l[:-1]).type == msgs.VOTE]
    assert votes and msgs.unpack(msgs.VOTE, wire.decode(votes[0][:-1]).payload) == (1, 1, 1)
    assert tuple(restore(n.take_persist())) == (1, 1, 0)


def test_records_converge_to_one_digest():
    m = Mesh(8, seed=6, delay_ms=3, jitter_ms=7, loss_per_mille=100)
    _settle(m)
    for i in m.ids:
        m.nodes[i].set_record(i * 1000 + 7)
    m.run_for(10 * T)
    assert len(m.digests()) == 1
    leader = m.agreed_coordinator()
    assert m.nodes[leader].records.get(3) == (m.nodes[3].rec_version, 3007)


def test_late_joiner_repairs_state_from_coordinator():
    m = Mesh(5, seed=8)
    _settle(m)
    m.crash(5)
    m.nodes[4].set_record(44)
    m.run_for(3 * T)
    m.crash(4)  # 4's record now lives only in the others' tables
    m.restart(5)
    m.run_for(5 * T)
    assert m.nodes[5].records.get(4)[1] == 44
    live = [m.nodes[i].records.digest() for i in (1, 2, 3, 5)]
    assert len(set(live)) == 1


def test_same_inputs_same_outputs():
    def run():
        m = Mesh(6, seed=42, delay_ms=4, jitter_ms=9, loss_per_mille=50, keep_ground=True)
        _settle(m)
        m.crash(m.agreed_coordinator())
        _settle(m)
        return m.events, [l for t, s, l in m.to_ground]
    assert run() == run()


def test_a_frame_decoded_once_for_all_its_recipients_leaves_every_node_as_bytes_do():
    # Node.receive_decoded (what the ground's lean path calls, the payload's
    # values parsed once too: Frame.values) against Node.receive: the same elections, frames to the ground and counters,
    # with auth, loss, a crash and restart, a replayed frame, one from an
    # unknown source and one that does not decode (it goes as bytes).
    key = b"fleet-key-0006"

    def run(once):
        m = Mesh(6, seed=21, delay_ms=4, jitter_ms=9, loss_per_mille=50, keep_ground=True, auth_key=key,
                 require_auth=True)
        m.decode_once = once
        leader = _settle(m)
        old = wire.encode(msgs.HEARTBEAT, leader, wire.cluster_addr(1),
                          msgs.pack(msgs.HEARTBEAT, m.nodes[leader].term, leader, 0, msgs.ROLE_COORDINATOR, 0, 1, 0, 0),
                          auth=wire.Auth(key), counter=1)[:-1]  # a counter the leader used long ago: a replay
        stranger = wire.encode(msgs.HEARTBEAT, 77, wire.cluster_addr(1),
                               msgs.pack(msgs.HEARTBEAT, 1, 77, 0, msgs.ROLE_FOLLOWER, 0, 1, 0, 0),
                               auth=wire.Auth(key), counter=1)[:-1]
        for n, line in enumerate((old, stranger, old[:-2])):
            m._queue.append((m.now + 1, -1 - n, leader, wire.cluster_addr(1), line))
        m._queue.sort()
        m.crash(leader)
        _settle(m)
        m.restart(leader)
        m.run_for(5 * T)
        nodes = [(i, list(n.errors), n.frames_in, n.ignored, n.term, n.role, n.coordinator) for i, n in m.nodes.items()]
        return m.events, [l for t, s, l in m.to_ground], nodes, m.decoded

    bytes_way, once_way = run(False), run(True)
    assert bytes_way[:3] == once_way[:3]
    assert bytes_way[3] == 0 and once_way[3] > 500
    errors = [sum(n[1][c] for n in once_way[2]) for c in (wire.ERR_REPLAY, wire.ERR_UNKNOWN_SRC, wire.ERR_COBS)]
    assert min(errors) >= 3, errors  # each refused frame reached most of the 5 others (5 % loss)


def test_node_counts_bad_frames_and_carries_on():
    cfg = Config(members=[1])
    n = Node(1, cfg, seed=1)
    n.poll(0)
    for junk in (b"", b"\x01", b"\x05abc", b"\x03", b"\xff" * 600):
        n.receive(junk, 1)
    assert sum(n.errors) == 5
    n.poll(3 * T)
    assert n.role == el.COORDINATOR


def test_authenticated_cluster_elects_and_refuses_replays():
    key = b"fleet-key-0001"
    m = Mesh(3, seed=12, auth_key=key, require_auth=True)
    _settle(m)
    leader = m.agreed_coordinator()
    follower = [i for i in m.ids if i != leader][0]
    n = m.nodes[follower]
    hb = wire.encode(msgs.HEARTBEAT, leader, wire.cluster_addr(1),
                     msgs.pack(msgs.HEARTBEAT, n.term, leader, 0, msgs.ROLE_COORDINATOR, 0, 1, 0, 0),
                     auth=wire.Auth(key), counter=5)
    before = n.errors[wire.ERR_REPLAY]
    n.receive(hb[:-1], m.now)  # counter 5 was used long ago by the leader
    assert n.errors[wire.ERR_REPLAY] == before + 1
    plain = wire.encode(msgs.HEARTBEAT, leader, wire.cluster_addr(1), b"")
    n.receive(plain[:-1], m.now)
    assert n.errors[wire.ERR_NO_AUTH] == 1


def test_restarted_authenticated_node_never_reuses_a_counter():
    m = Mesh(3, seed=13, auth_key=b"k")
    _settle(m)
    used = m.nodes[2]._counter
    m.crash(2)
    m.restart(2)
    assert m.nodes[2]._counter >= used


def test_absurd_term_is_refused_not_adopted():
    cfg = Config(members=[1, 2, 3])
    n = Node(2, cfg, seed=1)
    n.poll(0)
    hb = wire.encode(msgs.HEARTBEAT, 1, wire.cluster_addr(1),
                     msgs.pack(msgs.HEARTBEAT, 0xFFFFFFFF, 1, 0, msgs.ROLE_COORDINATOR, 0, 1, 0, 0))
    n.receive(hb[:-1], 1)
    assert n.term == 0 and n.errors[wire.ERR_PAYLOAD] == 1
    assert n.members.last_heard_ms(1) is None  # malformed is not a sign of life
    n.poll(10 * T)  # must not overflow packing term + 1
    assert n.role != el.COORDINATOR


def test_log_text_goes_to_the_ground():
    n = Node(1, Config(members=[1]), seed=1)
    n.log("watchdog reset")
    out = n.poll(0)
    logs = [wire.decode(l[:-1]) for d, l in out if d == wire.ADDR_GROUND]
    texts = [msgs.unpack_log(f.payload) for f in logs if f.type == msgs.LOG]
    assert texts == ["watchdog reset"]


def test_no_step_down_for_one_lost_heartbeat_in_a_bare_majority():
    # 4 members, one down: the coordinator's quorum is exactly the 3 left, so
    # any single lost heartbeat must not make it step down.
    m = Mesh(4, seed=31, delay_ms=50, jitter_ms=20, loss_per_mille=30)
    leader = _settle(m)
    other = [i for i in m.ids if i != leader][0]
    m.crash(other)
    m.run_for(3 * T)
    terms = len(m.leaders)
    m.run_for(120 * T)
    assert len(m.leaders) == terms, m.events


def test_hello_comes_before_logs_written_at_boot():
    n = Node(1, Config(members=[1]), seed=1)
    n.log("booted")
    types = [wire.decode(l[:-1]).type for d, l in n.poll(0)]
    assert types[0] == msgs.HELLO and msgs.LOG in types


# ---- protocol versions (docs/PROTOCOL.md "Versions") ------------------------


def _hb(src, term, role, version, alive=3, coordinator=None):
    values = (term, src if coordinator is None else coordinator, 0, role, 0, 1, 0, 0, alive)
    return wire.encode(msgs.HEARTBEAT, src, wire.cluster_addr(1), msgs.pack_as(msgs.HEARTBEAT, values, version),
                       0, None, 0, version)[:-1]


def test_the_firmware_version_picks_the_protocols_from_one_table():
    from node import config

    assert config.protocols((0, 9)) == (1, 1) and config.protocols((1, 4)) == (1, 1)
    assert config.protocols((2, 0)) == (1, 2) and config.protocols((2, 9)) == (1, 2)
    assert config.protocols((3, 0)) == (1, 3) and config.protocols((3, 9)) == (1, 3)
    assert config.protocols((4, 0)) == (1, 4) and config.protocols((7, 3)) == (1, 4)
    assert max(hi for _, _, hi in config.PROTOCOLS) == wire.VERSION
    assert min(lo for _, lo, _ in config.PROTOCOLS) >= wire.VERSION_MIN
    for fw, want in (((1, 4), (1, 1)), ((2, 0), (1, 2))):
        n = Node(1, Config(members=[1], fw_version=fw), seed=1)
        assert (n.cfg.proto_min, n.cfg.proto_max) == want
        hello = [wire.decode(l[:-1]) for d, l in n.poll(0) if d == wire.ADDR_GROUND][0]
        assert hello.type == msgs.HELLO and hello.version == want[1]  # sent at its newest
        assert msgs.unpack(msgs.HELLO, hello.payload)[1:] == (fw[0], fw[1], 0, want[0], want[1], 1)


def test_a_version_2_node_heartbeats_how_many_members_it_hears():
    n = Node(1, Config(members=[1, 2, 3], election_timeout_ms=T, fw_version=(2, 0)), seed=1)

    def heartbeats(out):
        return [wire.decode(l[:-1]) for d, l in out if wire.decode(l[:-1]).type == msgs.HEARTBEAT]

    first = heartbeats(n.poll(0))
    assert [f.version for f in first] == [2]
    assert msgs.unpack(msgs.HEARTBEAT, first[0].payload, 2)[8] == 1  # only itself so far
    n.receive(_hb(2, 0, msgs.ROLE_FOLLOWER, 1), 10)  # a version-1 member counts as alive too
    n.receive(_hb(3, 0, msgs.ROLE_FOLLOWER, 2), 10)
    later = heartbeats(n.poll(n.cfg.heartbeat_ms))
    assert msgs.unpack(msgs.HEARTBEAT, later[0].payload, 2)[8] == 3


def test_a_version_2_node_reads_a_version_1_heartbeat_with_the_default():
    n = Node(3, Config(members=[1, 2, 3], fw_version=(2, 0)), seed=1)
    n.poll(0)
    n.receive(_hb(2, 1, msgs.ROLE_COORDINATOR, 1), 5)
    assert sum(n.errors) == 0 and (n.term, n.coordinator) == (1, 2)  # follows it
    assert n.members.reach[2] == msgs.ALIVE_UNKNOWN
    n.receive(_hb(1, 1, msgs.ROLE_FOLLOWER, 2, alive=3, coordinator=2), 6)
    assert sum(n.errors) == 0 and n.members.reach[1] == 3


def test_a_version_1_node_refuses_version_2_frames_by_the_header():
    n = Node(3, Config(members=[1, 2, 3], fw_version=(1, 4)), seed=1)
    n.poll(0)
    n.receive(_hb(2, 1, msgs.ROLE_COORDINATOR, 2), 5)
    assert n.errors[wire.ERR_VERSION] == 1 and sum(n.errors) == 1
    assert (n.term, n.coordinator) == (0, msgs.NO_NODE)
    assert n.members.last_heard_ms(2) is None  # refused is not a sign of life
    n.receive(_hb(2, 1, msgs.ROLE_COORDINATOR, 1), 6)  # the same heartbeat at version 1
    assert (n.term, n.coordinator) == (1, 2)


def test_a_version_1_node_among_version_2_peers_hears_none_of_them_unconverted():
    # No down-converter between them (that is the ground's, ground/downconvert.py):
    # the version-1 node refuses every peer frame, so it never follows anyone,
    # while its peers hear it and elect among themselves.
    m = Mesh(4, seed=21, fw_version=(2, 0))
    m.nodes[4] = Node(4, Config(cluster=1, members=m.ids, fw_version=(1, 4)), seed=21 * 1000 + 4)
    m.run_for(30 * T)
    old = m.nodes[4]
    assert old.errors[wire.ERR_VERSION] > 0 and old.coordinator == msgs.NO_NODE and old.role != el.COORDINATOR
    leaders = [i for i, _ in m.coordinators() if i != 4]
    assert len(leaders) == 1 and all(m.nodes[i].coordinator == leaders[0] for i in (1, 2, 3))
    assert all(m.nodes[i].errors[wire.ERR_VERSION] == 0 for i in (1, 2, 3))


def test_the_standby_is_the_member_that_hears_the_most():
    n = Node(1, Config(members=[1, 2, 3, 4], fw_version=(2, 0)), seed=1)
    n.poll(0)
    for src, version, alive in ((2, 2, 2), (3, 2, 4), (4, 1, 0)):
        n.receive(_hb(src, 0, msgs.ROLE_FOLLOWER, version, alive=alive), 10)
    assert elect.pick_standby(n, 20) == 3
    n.receive(_hb(3, 0, msgs.ROLE_FOLLOWER, 1), 30)  # now says nothing: ranks as hearing nobody
    assert elect.pick_standby(n, 40) == 2
