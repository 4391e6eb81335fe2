"""Heap of a board holding an elector seat with the market tier, and the
largest region one board coordinates (issue #14.5), on a 64-bit and a 32-bit
MicroPython side by side. Not a test: it asserts nothing; it prints figures
and the machine.

For each region size it builds the firmware image as `hil flash` does
(main.py and boot.py as source, every other module mpy-cross -march=armv6m),
writes a board folder (signed, the board the region's only elector, one-hour
market slots; or with --role trader node 6 of a region of five electors, as
tests/hil/test_hardening.py runs one) in each code layout, and runs
bench/mpy/heap_seat.py over the given mission hours with 192K for Python
objects, on each runtime:

- unix64: the MicroPython unix port (64-bit: objects about twice a Pico's,
  32-byte GC blocks; a fixed heap that raises MemoryError). For "romfs" the
  ROM image is read into the heap first and the heap is 192K plus the image.
- wasm32: the official WebAssembly port (bench/mpy/wasm32_port.py; 32-bit,
  16-byte GC blocks as an RP2040). For "romfs" the image is its ROM
  partition, outside the heap, as on a Pico. Its heap grows instead of
  raising MemoryError and it collects only between the runner's calls, so
  its figure is the live heap (after a collection, every 64 shell steps) and
  fragmentation is not emulated: the unix port stays the pessimistic side.

Layouts: "romfs" (the modules in a ROM image mounted at /rom and run in
place, as on a Pico built with ROMFS) and "files" (.mpy files: their
bytecode copied onto the heap). Free is the GC area less the live bytes at
the lowest sample; percentages are of 192K.

    .venv/bin/python -m bench.mpy.heap_seat_run [--hours 4] [--sizes 10,100,175] [--code romfs,files]
        [--runtime unix64,wasm32] [--role elector|trader] [--sample-steps 64] [--tables]
        [--leases-per-node N] [--max-bids N]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from bench.machine_info import describe  # noqa: E402
from bench.mpy import wasm32_port  # noqa: E402
from hil import flash as flash_mod  # noqa: E402
from hil.emulated import heap_bytes_for  # noqa: E402

MICROPYTHON = os.path.join(os.path.dirname(sys.executable), "micropython")
HEAP = 192 * 1024
SCRIPT = os.path.join(ROOT, "bench", "mpy", "heap_seat.py")
BOARD_LIB = os.path.join(ROOT, "hil", "board_lib")
RUNTIMES = ("unix64", "wasm32")


def board_cfg(n, role="elector", market=None):
    units = [79 * n // 1000 + 1, 131 * n // 1000 + 1, 79 * n // 1000 + 1, 27 * n // 1000 + 1,
             228 * n // 1000 + 1, 70 * n // 1000 + 1, 53 * n // 1000 + 1, 209 * n // 1000 + 1]
    cfg = {"node_id": 1, "cluster": 1, "members": [1], "election_timeout_ms": 2000, "seed": 7,
           "auth_key": "5a" * 32, "require_auth": True, "watchdog_ms": 0, "led_pin": None,
           "time_scale_milli": 1000,
           "market": {"roster": list(range(1, n + 1)), "electors": [1], "units": units,
                      "slot_ms": 3600 * 1000, "region_timeout_ms": 2000}}
    cfg["market"].update(market or {})  # e.g. leases_per_node, max_bids (MarketConfig's defaults otherwise)
    if role == "trader":  # node 6 of cluster [6, 7, 8], five electors (tests/hil/test_hardening.py _region_cfg)
        cfg.update(node_id=6, members=[6, 7, 8])
        cfg["market"]["electors"] = [1, 2, 3, 4, 5]
    return cfg


def board_folder(folder, name, cfg, built, code):
    """A board folder written as `hil flash` would for the layout `code`
    ("romfs": modules in rom/romfs.img; "files": .mpy files), and its ROM
    image's path (None for "files")."""
    bdir = os.path.join(folder, "%s-%s" % (name, code))
    flash_mod.write_image(bdir, version=(3, 0), label="3.0-bench", board_config=cfg, built=built, code=code)
    rom = os.path.join(bdir, flash_mod.EMU_ROM_IMAGE)
    return bdir, (rom if os.path.exists(rom) else None)


def run(n, hours, bidders, built, folder, code="romfs", runtime="unix64", role="elector", strangers=2000,
        sample_steps=64, market=None):
    """One board over `hours` on `runtime`: heap_seat.py's dict plus
    "lowest_free" (bytes) and "nodes"; {"booted": False, "error": ...} if it
    does not run."""
    bdir, rom = board_folder(folder, "%s%d-%s" % (role, n, runtime), board_cfg(n, role, market), built, code)
    args = [hours, bidders, role, strangers, sample_steps]
    if runtime == "wasm32":
        try:
            r = wasm32_port.run(bdir, SCRIPT, args, heap=HEAP, romfs=rom, libs=[BOARD_LIB], timeout_s=1800)
        except wasm32_port.Wasm32Error as e:
            return {"booted": False, "nodes": n, "error": str(e)}
    else:
        heap = heap_bytes_for(HEAP, os.path.getsize(rom) if rom else 0)
        env = dict(os.environ, MICROPYPATH=".:" + BOARD_LIB)
        out = subprocess.run([MICROPYTHON, "-X", "heapsize=%d" % heap, SCRIPT, *[str(a) for a in args]], cwd=bdir,
                             env=env, capture_output=True, text=True, timeout=1800)
        lines = out.stdout.strip().splitlines()
        if out.returncode != 0 or not lines:
            return {"booted": False, "nodes": n, "error": (out.stdout + out.stderr).strip().splitlines()[-1:]}
        r = json.loads(lines[-1])
        if r.get("booted"):
            r["lowest_free"] = r["lowest_sampled"]
    r["nodes"] = n
    return r


def describe_run(r):
    """One runtime's figures for one size, or why there are none."""
    if not r.get("booted"):
        return "does not boot in 192K: %s" % (r.get("error"),)
    if r["out_of_memory"] != 0:
        return ("boots, then runs out of heap (%d MemoryErrors survived by %d mission s; the watchdog would reset a"
                " board that stops feeding it)" % (r["out_of_memory"], r["mission_ms"] // 1000))
    text = "low-water %d B free (%.0f %% of 192K; peak use %.0f %%)" % (
        r["lowest_free"], 100.0 * r["lowest_free"] / HEAP, 100.0 - 100.0 * r["lowest_free"] / HEAP)
    if r.get("runtime") == "wasm32":
        text += ", live peak %d B, GC area %d B at the start%s" % (
            r["live_peak"], r["gc_total_start"],
            ", grew to %d B (no collection inside a call: garbage, not live)" % r["gc_total_end"] if r["grew"] else "")
    else:
        text += ", the shell's TELEMETRY low-water %d B" % r["heap_min"]
    return text


def fits(r, free_fraction):
    return bool(r.get("booted")) and r["out_of_memory"] == 0 and r["lowest_free"] >= free_fraction * HEAP


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=4)
    ap.add_argument("--bidders", type=int, default=200, help="roster nodes bidding each slot")
    ap.add_argument("--sizes", default="10,20,30,40,50,75,100,200")
    ap.add_argument("--code", default="romfs,files", help="layouts to measure, side by side: romfs, files")
    ap.add_argument("--runtime", default="unix64,wasm32", help="runtimes, side by side: unix64, wasm32")
    ap.add_argument("--role", default="elector", choices=("elector", "trader"))
    ap.add_argument("--strangers", type=int, default=2000, help="a trader's HELLOs from outside the roster")
    ap.add_argument("--tables", action="store_true", help="also print the board's byte-array tables at the end")
    ap.add_argument("--leases-per-node", type=int, help="the market's ledger record slots per node (default: MarketConfig's, 6; 1 above 700 nodes)")
    ap.add_argument("--max-bids", type=int, help="the market's bid book rows (default: MarketConfig's, roster nodes + 16, at least 64; 256 above 700 nodes)")
    ap.add_argument("--sample-steps", type=int, default=64,
                    help="shell steps between two heap samples (1: every step; slow on wasm32)")
    a = ap.parse_args(argv)
    runtimes = a.runtime.split(",")
    for rt in runtimes:
        if rt not in RUNTIMES:
            ap.error("--runtime: %r is not one of %s" % (rt, ", ".join(RUNTIMES)))
    if "wasm32" in runtimes:
        try:
            wasm32_port.install()
        except wasm32_port.Wasm32Error as e:
            ap.error(str(e))
    print("machine:", describe())
    sizes = [int(x) for x in a.sizes.split(",")]
    market = {k: v for k, v in (("leases_per_node", a.leases_per_node), ("max_bids", a.max_bids)) if v is not None}
    if market:
        print("market config: %s (not the defaults)" % ", ".join("%s %d" % kv for kv in sorted(market.items())))
    with tempfile.TemporaryDirectory() as folder:
        built = flash_mod.build(os.path.join(folder, ".image"))
        for code in a.code.split(","):
            results = {rt: {} for rt in runtimes}
            for n in sizes:
                print("[%s] %s of a %d-node region, %g mission h:" % (code, a.role, n, a.hours), flush=True)
                for rt in runtimes:
                    r = results[rt][n] = run(n, a.hours, a.bidders, built, folder, code, rt, a.role, a.strangers,
                                                  a.sample_steps, market)
                    extra = ""
                    if r.get("booted"):
                        extra = "; %d rounds, %d awarded, %d refused" % (r["rounds"], r["awarded"], r["refused"])
                        if a.role == "elector":
                            extra += ("; market %d bid rows, %d lease(s) a node: %d bids in, %d refused as full,"
                                      " %d awards without a record slot" % (r["max_bids"], r["leases_per_node"],
                                                                           r["bids_in"], r["bids_full"], r["no_room"]))
                    print("    %-6s %s%s" % (rt, describe_run(r), extra), flush=True)
                    if a.tables and r.get("tables"):
                        total = sum(b for _, b in r["tables"])
                        print("           tables (arrays of 256 B and more): %d B, %.1f B per roster node: %s"
                              % (total, total / n, ", ".join("%s %d" % (p, b) for p, b in r["tables"])), flush=True)
            for rt in runtimes:
                quarter = [n for n in sizes if fits(results[rt][n], 0.25)]
                half = [n for n in sizes if fits(results[rt][n], 0.50)]
                print("[%s] %s: largest region measured with >= 25 %% of 192K free: %s; under 50 %% use: %s"
                      % (code, rt, max(quarter) if quarter else "none", max(half) if half else "none"), flush=True)


if __name__ == "__main__":
    main()
