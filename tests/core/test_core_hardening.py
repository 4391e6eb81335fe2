# The core under hostile and unlucky input: replay protection that survives
# reboots, per-source tables fixed at boot, refusal counters that do not
# saturate, the heap figures TELEMETRY carries. Runs under CPython and the
# MicroPython unix port (192K heap). docs/PROTOCOL.md "Authentication and
# replay" is what these tests hold the code to.
import gc

from mesh import Mesh
from node import msgs, wire
from node.replay import ReplayWindow
from node.config import Config
from node.node import Node, save

KEY = b"fleet-key-for-hardening-tests"
T = 1000
AUTH = wire.Auth(KEY)


def _joined(parts):
    return b"".join(bytes(p) for p in parts)


def _cfg(members=(1, 2, 3), **kw):
    return Config(members=members, election_timeout_ms=T, auth_key=KEY, require_auth=True, fw_version=(3, 0), **kw)


def _signed(type, src, dst, payload, counter, seq=0):
    return bytes(wire.encode(type, src, dst, payload, seq, AUTH, counter, 1)[:-1])


def _coordinator(src, term, counter):
    return _signed(msgs.COORDINATOR, src, wire.cluster_addr(1), msgs.pack(msgs.COORDINATOR, term, 0), counter)


def _telemetry(node, now_ms):
    node._next_tel_ms = now_ms
    for dst, line in node.poll(now_ms):
        f = wire.decode(line[:-1])
        if f.type == msgs.TELEMETRY:
            names = msgs.layout(msgs.TELEMETRY, f.version)[2]
            return dict(zip(names, msgs.unpack(msgs.TELEMETRY, f.payload, f.version)))
    raise AssertionError("no TELEMETRY")


# ---- the replay table ---------------------------------------------------------


def test_the_ceiling_of_a_roster_source_moves_once_per_block_and_the_grounds_per_ground_block():
    w = ReplayWindow((0, 4, 9))
    assert w.take() is None
    assert w.accept(1, 0) and w.ceiling[1] == wire.BLOCK
    first = _joined(w.take())
    assert first is not None and w.take() is None
    for c in range(1, wire.BLOCK):  # the rest of the block: no new write
        assert w.accept(1, c)
    assert w.take() is None
    assert w.accept(1, wire.BLOCK) and w.ceiling[1] == 2 * wire.BLOCK and w.take() is not None
    g = wire.GROUND_BLOCK
    assert w.accept(0, 5 * g + 3) and w.ceiling[0] == 6 * g and w.take() is not None  # the ground: its own blocks
    for c in range(5 * g + 4, 6 * g):
        assert w.accept(0, c)
    assert w.take() is None  # the rest of its block: no new write
    assert w.accept(0, 6 * g) and w.ceiling[0] == 7 * g and w.take() is not None


def test_a_ground_frame_accepted_before_a_reboot_is_refused_after_it():
    # CONFIG and INTENT come from the ground (source 0); their ceiling is kept
    # like a peer's, so a captured one replayed after a reset does nothing.
    n = Node(1, _cfg(), seed=1)
    n.poll(0)
    config = _signed(msgs.CONFIG, wire.ADDR_GROUND, 1, msgs.pack(msgs.CONFIG, 250, 0), 7)
    assert n.receive(config, 10) is not None and n.time_scale_milli == 250
    seen = _joined(n.take_seen())
    again = Node(1, _cfg(), seed=1, seen=seen)
    again.poll(0)
    assert again.receive(config, 10) is None and again.time_scale_milli == 1000
    assert again.errors[wire.ERR_REPLAY] == 1
    fresh = _signed(msgs.CONFIG, wire.ADDR_GROUND, 1, msgs.pack(msgs.CONFIG, 500, 0), wire.GROUND_BLOCK)
    assert again.receive(fresh, 20) is not None and again.time_scale_milli == 500  # the ground's next block: fresh


def test_ceilings_come_back_as_floors_and_refuse_everything_below():
    w = ReplayWindow((0, 4, 9))
    w.accept(2, 70000)
    blob = _joined(w.take())
    again = ReplayWindow((0, 4, 9))
    again.load(blob)
    assert again.ceiling[2] == (70000 // wire.BLOCK + 1) * wire.BLOCK
    assert not again.accept(2, 70000) and not again.accept(2, 0) and not again.accept(2, again.ceiling[2] - 1)
    floor = again.ceiling[2]
    assert again.accept(2, floor)
    assert not again.accept(2, floor - 1)  # below the floor, inside the window now: still refused
    assert not again.accept(2, floor - 63) and again.accept(2, floor + 3) and again.accept(2, floor + 1)
    assert not again.accept(2, floor - 1) and not again.accept(2, floor + 3)
    assert again.accept(1, 0)  # another source: untouched
    moved = ReplayWindow((0, 9, 11))  # the roster changed: 4 left, 11 came
    moved.load(blob)
    assert moved.ceiling[1] == floor and moved.ceiling[2] == 0


def test_damaged_ceilings_are_refused_not_half_read():
    w = ReplayWindow((0, 4))
    w.accept(1, 3)
    blob = bytearray(_joined(w.take()))
    blob[5] ^= 1
    for bad in (bytes(blob), bytes(blob[:-1]), b""):
        try:
            ReplayWindow((0, 4)).load(bad)
        except ValueError:
            continue
        raise AssertionError("accepted damaged ceilings %r" % bad)


# ---- rosters: unknown sources --------------------------------------------------


def test_a_frame_from_outside_the_rosters_is_refused_and_counted_by_reason():
    n = Node(1, _cfg(), seed=1)
    n.poll(0)
    n.receive(_coordinator(77, 5, 1), 10)
    assert n.errors[wire.ERR_UNKNOWN_SRC] == 1 and n.term == 0
    n.receive(_coordinator(2, 5, 1), 11)  # a member: followed
    assert n.term == 5 and n.coordinator == 2
    unsigned = Node(1, Config(members=(1, 2)), seed=1)  # no auth: still refused
    unsigned.receive(bytes(wire.encode(msgs.HEARTBEAT, 9, wire.cluster_addr(1), bytes(20))[:-1]), 0)
    assert unsigned.errors[wire.ERR_UNKNOWN_SRC] == 1


def test_a_flood_of_unknown_ids_allocates_nothing_per_source():
    n = Node(1, _cfg(), seed=1)
    n.poll(0)
    lines = [_coordinator(src, 5, 1) for src in range(100, 110)]
    for line in lines:  # warm up: anything allocated once is allocated now
        n.receive(line, 1)
    sizes = (len(n.sources), len(n.replay.ceiling), len(n.members.last_ms), len(n.members.lineage))
    gc.collect()
    before = gc.mem_free() if hasattr(gc, "mem_free") else 0
    for src in range(200, 1200):
        n.receive(_coordinator(src, 5, 1), 2)
    gc.collect()
    after = gc.mem_free() if hasattr(gc, "mem_free") else 0
    assert n.errors[wire.ERR_UNKNOWN_SRC] == 1010
    assert (len(n.sources), len(n.replay.ceiling), len(n.members.last_ms), len(n.members.lineage)) == sizes
    assert before - after < 1024, (before, after)  # nothing kept for 1000 strangers (MicroPython says)


# ---- replay across reboots ------------------------------------------------------


def test_a_frame_accepted_before_a_reboot_is_refused_after_it():
    n = Node(1, _cfg(), seed=1)
    n.poll(0)
    captured = _coordinator(2, 5, 40)
    n.receive(captured, 10)
    assert n.coordinator == 2
    seen = _joined(n.take_seen())
    saved = n.take_persist()
    assert seen is not None
    for boots in range(3):  # power cut, reboot, power cut, ...: the floor stays
        n = Node(1, _cfg(), seed=2 + boots, saved=saved, seen=seen)
        n.poll(0)
        n.receive(captured, 10)
        assert n.errors[wire.ERR_REPLAY] == 1 and n.coordinator == msgs.NO_NODE
        n.receive(_coordinator(2, 5, 39), 10)  # older, never seen: still below the floor
        assert n.errors[wire.ERR_REPLAY] == 2
        got = n.take_seen()
        seen = _joined(got) if got is not None else seen
        saved = n.take_persist() or saved


def test_after_a_reboot_a_sender_that_hears_the_hello_is_accepted_at_its_next_frame():
    m = Mesh(3, seed=4, auth_key=KEY, require_auth=True, election_timeout_ms=T, fw_version=(3, 0))
    m.run_for(5 * T)
    leader = m.agreed_coordinator()
    assert leader is not None
    victim = [i for i in m.ids if i != leader][0]
    m.crash(victim)
    m.run_for(T // 2)
    m.restart(victim)
    node = m.nodes[victim]
    assert node.replay.ceiling[wire.index_of(node.replay.sources, leader)] > 0  # it remembers what it took before
    m.run_for(m.config.heartbeat_ms + 20)  # one heartbeat interval and the links' delay
    assert node.replay.heard(wire.index_of(node.replay.sources, leader))
    assert node.coordinator == leader
    # refused at most: what its two peers had in flight before the HELLO reached them
    assert node.errors[wire.ERR_REPLAY] <= 2, node.errors


def test_a_sender_that_missed_the_hello_is_told_once_and_moves_on():
    n = Node(1, _cfg(), seed=1)
    n.poll(0)
    n.receive(_coordinator(2, 5, 40), 10)
    seen, saved = _joined(n.take_seen()), n.take_persist()
    n = Node(1, _cfg(), seed=3, saved=saved, seen=seen)
    n.poll(0)
    for c in (41, 42, 43):  # frames the sender had sent after ours, below the floor
        n.receive(_coordinator(2, 5, c), 20)
    to_sender = [l[:-1] for d, l in n.poll(30) if d == 2]
    assert [wire.decode(l).type for l in to_sender] == [msgs.HELLO]  # one, however many were refused
    assert n.errors[wire.ERR_REPLAY] == 3
    sender = Node(2, _cfg(), seed=9)
    sender.poll(0)
    sender._counter = 44  # it had sent up to 43 in its first block
    sender.receive(to_sender[0], 31)
    assert sender._counter == wire.BLOCK  # the next block: clears the rebooted node's floor
    out = [l for d, l in sender.poll(sender.next_deadline_ms()) if d != wire.ADDR_GROUND]
    assert out and sender.take_persist() is not None  # the jump reserves one more block: one write
    for line in out:
        n.receive(line[:-1], 50)
    assert n.errors[wire.ERR_REPLAY] == 3 and n.replay.heard(wire.index_of(n.replay.sources, 2))


def test_a_sender_reserves_block_aligned_counters_and_jumps_once_per_used_block():
    n = Node(2, _cfg(), seed=1, saved=save(0, 0, 1500))  # an old, unaligned reservation
    n.poll(0)
    assert n._counter > 1500 and n._reserved == 2048
    n._peer_booted()
    assert n._counter == 2048
    n._peer_booted()  # nothing of the new block used: no second jump
    assert n._counter == 2048


def test_flash_writes_per_hour_of_a_signed_five_node_cluster():
    # One mission hour at T = 1 s (a heartbeat every 250 ms): each node's
    # writes are its own counter blocks, its peers' ceilings (one per peer
    # per 1024 of its frames) and term/vote changes; never one per frame.
    m = Mesh(5, seed=2, auth_key=KEY, require_auth=True, election_timeout_ms=T, fw_version=(3, 0))
    hour_ms = 3600 * 1000
    m.run_for(hour_ms)
    frames = m.nodes[1].frames_in
    writes = [m.writes.get(i, 0) for i in m.ids]
    print("flash writes per node in one mission hour:", writes, "frames received by node 1:", frames)
    assert frames > 40000  # it did run: 4 peers x 4 heartbeats a second and more
    assert max(writes) < frames // 200  # bounded by blocks, not frames
    assert min(writes) > 4 * (frames // 4) // wire.BLOCK // 2  # and the ceilings did move


# ---- counters and heap in TELEMETRY ------------------------------------------------


def test_telemetry_counters_do_not_saturate_and_carry_the_heap():
    n = Node(1, _cfg(), seed=1)
    n.poll(0)
    n.count_reject(wire.ERR_TOO_LONG, 70000)
    n.receive(_coordinator(77, 5, 1), 1)
    n.receive(_coordinator(2, 5, 9), 1)
    n.receive(_coordinator(2, 5, 9), 1)
    n.set_heap(150000, 98000)
    t = _telemetry(n, 5)
    assert t["bad_frames"] == 0xFFFF  # the version-1 field still saturates
    assert (t["rejects"], t["long_lines"], t["unknown_src"], t["replayed"]) == (70002, 70000, 1, 1)
    assert (t["heap_free"], t["heap_min"]) == (150000, 98000)
    old = Node(1, Config(members=(1, 2), fw_version=(2, 0)), seed=1)
    old.poll(0)
    assert set(_telemetry(old, 5)) == set(msgs.LAYOUTS[msgs.TELEMETRY][2])  # a version-2 node: 17 bytes
