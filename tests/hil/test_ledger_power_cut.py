"""A holder keeps its leases through power cuts, on an emulated Pico.

One emulated Pico (the real firmware/main.py under the MicroPython unix port,
the .mpy image `hil flash` writes) is a holder in a region of three electors.
Its flash starts with a saved blob the CPython core wrote: its term/vote,
then the market section (node/durable.py) with two leases of its own. The
board must restore it: its journal carries the section byte for byte
(J_KEPT, what `ground replay-frames` rebuilds the boot from), its market
telemetry counts the two leases, and after a power cut and another the same
section is still on its flash (a term write never drops it) and restored
again.

Not an elector: on this 64-bit unix port an elector's market tier does not
boot in 192K at all (MemoryError in Market() on main before this change
too, even for a three-node region), so an elector's ledger through a board
power cut is not tested on an emulated Pico here. The same section through
the same main.py path carries it; tests/core/test_region_power*.py restore
electors' ledgers in-process and under MicroPython.
"""

import select
import time

import pytest

from ground import firmware
from hil import emulated_run
from hil import flash as flash_mod
from hil.emulated import EmulatedBoard
from node import durable
from node.config import Config, MarketConfig
from node.node import Node, restore_all
from runtime import store

wire = firmware.wire
msgs = firmware.msgs

pytestmark = pytest.mark.timeout(600)
WAIT_S = 30
J_KEPT = msgs.J_NAMES.index("kept")


class Line:
    """The test's end of the board's serial line: every frame it sent."""

    def __init__(self, board):
        self.board = board
        self.port, self.splitter, lines = board.open_port
        self.frames = []
        self._take(lines)

    def _take(self, lines):
        for line in lines:
            try:
                self.frames.append(wire.decode(line))
            except wire.ProtocolError:
                pass  # a boot banner: not a frame

    def expect(self, match, what, start=0, timeout_s=WAIT_S):
        deadline = time.monotonic() + timeout_s
        while True:
            for f in self.frames[start:]:
                if match(f):
                    return f
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("%s: no %s within %d s; board log ends %r"
                                     % (self.board.name, what, timeout_s, bytes(self.board.log[-400:])))
            r, _, _ = select.select([self.port.fileno()], [], [], min(left, 0.2))
            if r:
                self._take(self.splitter.feed(self.port.read(self.port.in_waiting or 1)))


def _start(tmp_path, cfg):
    built = flash_mod.build(str(tmp_path / ".image"))
    folder = tmp_path / ("node%d" % NODE)
    flash_mod.write_image(str(folder), version=(3, 0), label="3.0-ledger", board_config=cfg, built=built)
    board = EmulatedBoard(str(folder), name="node%d" % NODE).start()
    try:
        emulated_run.boot_and_wait_hello(board, cfg["node_id"])
    except BaseException:
        board.stop()
        raise
    return board, Line(board)


def _power_cut(board, line):
    start = len(line.frames)
    board.power_cut()
    board.power_on()
    line.expect(lambda f: f.type == msgs.HELLO and f.src == NODE and f.dst == wire.ADDR_GROUND, "HELLO", start)
    return start

UNITS = [1, 1, 1, 1, 1, 1, 1, 1]
NODE = 4
CFG = {"node_id": NODE, "cluster": 2, "members": [NODE], "election_timeout_ms": 2000, "seed": 7, "watchdog_ms": 0,
       "journal": True, "market": {"roster": [1, 2, 3, NODE], "electors": [1, 2, 3], "units": UNITS,
                                   "slot_ms": 24000}}


def _saved_blob():
    """What this holder wrote before the cut: term/vote, then its two
    leases (far ahead: still to come at any boot of the test)."""
    m = MarketConfig(roster=[1, 2, 3, NODE], electors=[1, 2, 3], units=UNITS, slot_ms=24000)
    n = Node(NODE, Config(cluster=2, members=[NODE], election_timeout_ms=2000, market=m), seed=7)
    assert n.region.market is None
    n.region.trader.leases = [[0, 600, 1, 1, 1, 0, False], [5, 800, 1, 1, 1, 2, True]]
    n.region.trader.awards = 2
    n.term = 4
    n._dirty = True
    return n.take_persist()


def _journal_kept(line, start):
    """The market section the board's journal says its Node was built with
    (the first boot after frame index `start`), or None."""
    entries = []
    for f in line.frames[start:]:
        if f.type == msgs.JOURNAL and f.src == NODE:
            entries.extend(msgs.unpack_journal(f.payload)[1])
    kinds = [e[0] for e in entries]
    if J_KEPT not in kinds:
        return None
    i = kinds.index(J_KEPT)
    n = entries[i][2]
    words = b"".join(e[2].to_bytes(4, "little") for e in entries[i + 1:i + 1 + (n + 3) // 4])
    return words[:n]


def _market_leases(line, start):
    f = line.expect(lambda f: f.type == msgs.MARKET_TEL and f.src == NODE, "MARKET_TEL", start)
    names = msgs.layout(msgs.MARKET_TEL, f.version)[2]
    return dict(zip(names, msgs.unpack(msgs.MARKET_TEL, f.payload, f.version)))["leases"]


def test_an_emulated_holder_restores_its_leases_after_every_power_cut(tmp_path):
    blob = _saved_blob()
    kept = durable.split(blob)[1]
    folder = tmp_path / ("node%d" % NODE) / "state"
    folder.mkdir(parents=True)
    (folder / ("node%d" % NODE)).write_bytes(store.encode(1, blob))
    board, line = _start(tmp_path, CFG)
    try:
        line.expect(lambda f: f.type == msgs.JOURNAL, "JOURNAL")
        assert _journal_kept(line, 0) == kept
        assert _market_leases(line, 0) == 2
        for _ in range(2):
            start = _power_cut(board, line)
            line.expect(lambda f: f.type == msgs.JOURNAL, "JOURNAL after the power cut", start)
            body, stocks = durable.stock_split(_journal_kept(line, start))
            assert body == kept and stocks is not None  # and the stocks it had (node/stocks.py) after it
            assert _market_leases(line, start) == 2
            on_flash = store.Store(str(folder), "node%d" % NODE).read()
            assert durable.stock_split(durable.split(on_flash)[1])[0] == kept and restore_all(on_flash)[0][0] >= 4
        assert b"market state" not in bytes(board.log) and b"stocks:" not in bytes(board.log)
        assert b"Traceback" not in bytes(board.log)
    finally:
        board.stop()
