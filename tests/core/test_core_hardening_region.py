# A node holding a seat in a 1,000-node region: its per-source tables are
# sized from the rosters at boot and take signed frames from every roster
# node. Its own file, so under MicroPython it gets a fresh 192K heap for the
# market modules, as a board boots with (tests/mpy_runner.py).
import gc
import sys
from array import array

from node import msgs, wire
from node.config import Config, MarketConfig
from node.node import Node
from node import replay  # noqa: F401  (compiled before the big tables, as a board imports at boot)

KEY = b"fleet-key-for-hardening-tests"
AUTH = wire.Auth(KEY)


def _signed(type, src, dst, payload, counter, seq=0):
    return bytes(wire.encode(type, src, dst, payload, seq, AUTH, counter, 1)[:-1])


def _cfg(members, **kw):
    return Config(members=members, election_timeout_ms=1000, auth_key=KEY, require_auth=True, fw_version=(3, 0), **kw)


def test_a_trader_keeps_tables_for_who_can_send_to_it_and_refuses_the_rest():
    # Node 6 is a trader of a 1,000-node region: only its cluster, the
    # electors (the coordinator and standby are electors) and the ground send
    # to it, so its tables hold those 9 and nothing for the 1,000 others.
    m = MarketConfig(roster=range(1, 1001), electors=(1, 2, 3, 4, 5), units=(4, 4, 4, 4, 4, 4, 4, 4), leases_per_node=1)
    n = Node(6, _cfg(members=(6, 7, 8), market=m), seed=1)
    n.poll(0)
    assert list(n.sources) == [0, 1, 2, 3, 4, 5, 6, 7, 8]
    hello = msgs.pack(msgs.HELLO, 1, 3, 0, 0, 1, 3, 9)
    for src in (1, 2, 3, 4, 5, 7, 8):
        n.receive(_signed(msgs.HELLO, src, 6, hello, 3), 5)
    assert n.frames_in == 7 and sum(n.errors) == 0, n.errors
    gc.collect()
    free = gc.mem_free() if hasattr(gc, "mem_free") else 0
    for src in range(9, 3009):  # the other roster nodes and 2,000 ids outside it
        n.receive(_signed(msgs.HELLO, src, 6, hello, 3), 6)
    assert n.errors[wire.ERR_UNKNOWN_SRC] == 3000 and n.frames_in == 7
    gc.collect()
    if free:
        assert free - gc.mem_free() < 2048, (free, gc.mem_free())  # nothing kept per source


def test_an_elector_keeps_a_table_for_every_roster_node_and_takes_their_signed_frames():
    # Under MicroPython 100 nodes: an elector's market for 1,000 does not fit
    # the unix port's 192K heap from .py source beside this test (64-bit
    # objects, bytecode compiled on the heap); bench/mpy/heap_market.py
    # measures the largest region a board holds from the .mpy image.
    n_roster = 1000 if sys.implementation.name == "cpython" else 100
    m = MarketConfig(roster=range(1, n_roster + 1), electors=(1, 2, 3, 4, 5), units=(4, 4, 4, 4, 4, 4, 4, 4),
                     leases_per_node=1)
    n = Node(1, _cfg(members=(1, 2, 3, 4, 5), market=m), seed=1)
    n.poll(0)
    assert len(n.sources) == n_roster + 1  # the ground and the roster (its cluster is in it)
    hello = msgs.pack(msgs.HELLO, 1, 3, 0, 0, 1, 3, 9)
    for src in range(2, n_roster + 1):  # every roster node, signed, to the elector
        n.receive(_signed(msgs.HELLO, src, 1, hello, 3), 5)
    assert n.errors[wire.ERR_UNKNOWN_SRC] == 0 and n.errors[wire.ERR_REPLAY] == 0, n.errors
    assert n.frames_in == n_roster - 1
    seen = n.take_seen()
    assert seen is not None and sum(len(bytes(p)) for p in seen) == 8 + 6 * (n_roster + 1)  # every source, the ground too
    for src in range(n_roster + 1, n_roster + 2001):  # and a flood of ids outside the rosters
        n.receive(_signed(msgs.HELLO, src, 1, hello, 3), 6)
    assert n.errors[wire.ERR_UNKNOWN_SRC] == 2000 and len(n.sources) == n_roster + 1


def test_an_electors_tables_take_what_docs_heap_says_per_roster_node():
    # docs/HEAP.md: a ledger record slot is 6 bytes (6 per roster node by
    # default up to 700 nodes, 1 above: docs/MARKET.md "Capacity"), a replay
    # source 16 (its window 8, ceiling 4, top and flags 2, id 2): what a
    # 1,000-node elector's 6 B (36 B at the full sizes) + 16 B a node come from.
    n_roster = 1000 if sys.implementation.name == "cpython" else 100
    m = MarketConfig(roster=range(1, n_roster + 1), electors=(1, 2, 3, 4, 5), units=(4, 4, 4, 4, 4, 4, 4, 4))
    n = Node(1, _cfg(members=(1, 2, 3, 4, 5), market=m), seed=1)
    n.poll(0)
    led = n.region.market.ledger
    arrays = [v for v in led.__dict__.values() if isinstance(v, (array, bytearray))]
    assert led.max == (1 if n_roster > 700 else 6) * n_roster
    assert n.region.market.book.max == (256 if n_roster > 700 else n_roster + 16)
    assert sum(len(bytes(a)) for a in arrays) == 6 * led.max + len(led.busy) + 11  # + the digest's record buffer
    rw = n.replay
    arrays = [v for v in rw.__dict__.values() if isinstance(v, (array, bytearray))]
    assert sum(len(bytes(a)) for a in arrays) == 16 * (n_roster + 1)  # the ground and the roster
