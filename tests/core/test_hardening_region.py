# A node holding a seat in a 1,000-node region: its per-source tables are
# sized from the rosters at boot and take signed frames from every roster
# node. Its own file, so under MicroPython it gets a fresh 192K heap for the
# market modules, as a board boots with (tests/mpy_runner.py).
import gc
import sys

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


def test_a_region_node_holds_a_table_for_every_roster_node_and_takes_their_signed_frames():
    # Node 6 is a trader of a 1,000-node region (not an elector: an elector's
    # market for 1,000 nodes does not fit the unix port's 192K heap from .py
    # source beside this test; bench/mpy/heap_market.py measures that one).
    # Under MicroPython 400: compiling the market modules from source on the
    # 64-bit unix port takes over half the heap; tests/hil/test_hardening.py
    # runs a 1,000-node region on an emulated board from the .mpy image.
    n_roster = 1000 if sys.implementation.name == "cpython" else 400
    roster = range(1, n_roster + 1)  # no list of a thousand ints: a board has the array only
    m = MarketConfig(roster=roster, electors=(1, 2, 3, 4, 5), units=(4, 4, 4, 4, 4, 4, 4, 4), leases_per_node=1)
    n = Node(6, _cfg(members=(6, 7, 8), market=m), seed=1)
    n.poll(0)
    assert len(n.sources) == n_roster + 1  # the ground and the roster (its cluster is in it)
    gc.collect()
    free = gc.mem_free() if hasattr(gc, "mem_free") else 0
    hello = msgs.pack(msgs.HELLO, 1, 3, 0, 0, 1, 3, 9)
    for src in roster:  # every roster node, signed, to the node's own address
        if src != 6:
            n.receive(_signed(msgs.HELLO, src, 6, hello, 3), 5)
    assert n.errors[wire.ERR_UNKNOWN_SRC] == 0 and n.errors[wire.ERR_REPLAY] == 0, n.errors
    assert n.frames_in == n_roster - 1 and len(n.sources) == n_roster + 1
    seen = n.replay.take()
    assert seen is not None and len(seen) == 8 + 6 * (n_roster - 1)  # a ceiling for each of them
    for src in range(n_roster + 1, n_roster + 2001):  # and a flood of ids outside the rosters
        n.receive(_signed(msgs.HELLO, src, 6, hello, 3), 6)
    assert n.errors[wire.ERR_UNKNOWN_SRC] == 2000
    gc.collect()
    if free:
        assert free - gc.mem_free() < 2048, (free, gc.mem_free())  # nothing kept per source
