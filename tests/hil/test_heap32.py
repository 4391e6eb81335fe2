"""The heap goals of issue #14 (item 5) and #17, measured on a 32-bit
MicroPython: the official WebAssembly port (bench/mpy/wasm32_port.py; 4-byte
words and 16-byte GC blocks, as an RP2040), the firmware's modules in its
ROM partition as on a Pico built with ROMFS, 192K of heap for Python
objects. bench/mpy/heap_seat.py runs the whole board; the figure is its live
heap at the highest shell step boundary (bench/mpy/wasm32/run.mjs; that port
grows its heap instead of raising MemoryError: docs/HEAP.md). The 64-bit unix port's
figures (bench/mpy/heap_seat_run.py) are the pessimistic side."""

import os
import shutil

import pytest

from bench.mpy import heap_seat_run, wasm32_port
from hil import flash as flash_mod

HEAP = 192 * 1024

pytestmark = pytest.mark.skipif(shutil.which("node") is None,
                                reason="node not found: the 32-bit MicroPython (WebAssembly port) runs under Node.js")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    wasm32_port.install()  # make test has done it; a fresh clone's pytest alone does it here
    return flash_mod.build(str(tmp_path_factory.mktemp("image")))


def _run(tmp_path, built, n, hours, role, strangers=0):
    return heap_seat_run.run(n, hours, 200, built, str(tmp_path), "romfs", "wasm32", role, strangers)


def test_an_elector_seat_with_the_market_over_4_mission_hours_uses_under_half_of_192k(tmp_path, built):
    r = _run(tmp_path, built, 10, 4, "elector")
    print("wasm32 elector of a 10-node region, 4 mission h:", r)
    assert r["booted"] and r["out_of_memory"] == 0, r
    assert r["coordinator"] == 1 and r["rounds"] >= 4 and r["awarded"] > 0, r  # the market ran every slot
    assert r["mission_ms"] >= 4 * 3600 * 1000, r
    assert r["live_peak"] < HEAP // 2, r  # issue #14.5: peak under 50 % of 192K


def test_a_trader_of_a_1000_node_region_keeps_a_quarter_of_192k_free(tmp_path, built):
    r = _run(tmp_path, built, 1000, 0.25, "trader", strangers=2000)  # the frames come in its first mission seconds
    print("wasm32 trader of a 1,000-node region, 15 mission min, 2,000 strangers:", r)
    assert r["booted"] and r["out_of_memory"] == 0 and r["mission_ms"] >= 900 * 1000, r
    # it heard every other roster node and the strangers: all but its cluster and the electors refused
    assert r["refused"] == (999 - 7) + 2000, r
    assert r["lowest_free"] >= HEAP // 4, r  # issue #17: low-water above 25 % of 192K


def test_an_elector_of_a_1000_node_region_keeps_a_quarter_of_192k_free(tmp_path, built):
    # the market's defaults for a region above 700 nodes: the compact market (docs/MARKET.md "Capacity")
    r = _run(tmp_path, built, 1000, 1, "elector")
    print("wasm32 elector of a 1,000-node region, 1 mission h:", r)
    assert r["booted"] and r["out_of_memory"] == 0 and r["mission_ms"] >= 3600 * 1000, r
    assert (r["max_bids"], r["leases_per_node"]) == (256, 1), r
    assert r["coordinator"] == 1 and r["rounds"] >= 1 and r["awarded"] > 100, r  # it cleared a round of 200 bidders
    assert r["lowest_free"] >= HEAP // 4, r  # issue #17: low-water above 25 % of 192K


def test_a_script_that_fails_on_the_32_bit_port_says_so(tmp_path):
    wasm32_port.install()
    board = tmp_path / "board"
    board.mkdir()
    script = tmp_path / "broken.py"
    script.write_text("def setup():\n    raise ValueError('no board here')\n")
    with pytest.raises(wasm32_port.Wasm32Error, match="ValueError.*no board here"):
        wasm32_port.run(str(board), str(script), heap=HEAP, timeout_s=60)
    assert os.listdir(str(board)) == []  # nothing written back into the board folder
