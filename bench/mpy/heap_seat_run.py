"""Heap of a board holding an elector seat with the market tier, and the
largest region one board coordinates (issue #14.5). Not a test: it asserts
nothing; it prints figures and the machine.

For each region size it builds the firmware image as `hil flash` does
(main.py and boot.py as source, every other module mpy-cross -march=armv6m),
writes a board folder (signed, the board the region's only elector, one-hour
market slots) in each code layout, and runs bench/mpy/heap_seat.py in the
MicroPython unix port over the given mission hours with 192K for Python
objects. Layouts: "romfs" (the modules in a ROM image mounted at /rom and run
in place, as on a Pico built with ROMFS; the interpreter's heap is 192K plus
the image, read into one block first) and "files" (.mpy files: their
bytecode copied onto the heap). The unix port is 64-bit: its objects take
about twice a Pico's heap, so these figures are an upper bound on a Pico's.

    .venv/bin/python -m bench.mpy.heap_seat_run [--hours 4] [--sizes 10,20,30,50,100] [--code romfs,files]
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
from hil import flash as flash_mod  # noqa: E402
from hil.emulated import heap_bytes_for  # noqa: E402

MICROPYTHON = os.path.join(os.path.dirname(sys.executable), "micropython")
HEAP = 192 * 1024


def board_cfg(n):
    units = [79 * n // 1000 + 1, 131 * n // 1000 + 1, 79 * n // 1000 + 1, 27 * n // 1000 + 1,
             228 * n // 1000 + 1, 70 * n // 1000 + 1, 53 * n // 1000 + 1, 209 * n // 1000 + 1]
    return {"node_id": 1, "cluster": 1, "members": [1], "election_timeout_ms": 2000, "seed": 7,
            "auth_key": "5a" * 32, "require_auth": True, "watchdog_ms": 0, "led_pin": None,
            "time_scale_milli": 1000,
            "market": {"roster": list(range(1, n + 1)), "electors": [1], "units": units,
                       "slot_ms": 3600 * 1000, "region_timeout_ms": 2000}}


def board_folder(folder, name, cfg, built, code):
    """A board folder written as `hil flash` would for the layout `code`
    ("romfs": modules in rom/romfs.img; "files": .mpy files), and the
    heapsize that leaves HEAP to Python objects (heap_bytes_for)."""
    bdir = os.path.join(folder, "%s-%s" % (name, code))
    flash_mod.write_image(bdir, version=(3, 0), label="3.0-bench", board_config=cfg, built=built, code=code)
    rom = os.path.join(bdir, flash_mod.EMU_ROM_IMAGE)
    return bdir, heap_bytes_for(HEAP, os.path.getsize(rom) if os.path.exists(rom) else 0)


def run(n, hours, bidders, built, folder, code="romfs"):
    bdir, heap = board_folder(folder, "n%d" % n, board_cfg(n), built, code)
    env = dict(os.environ, MICROPYPATH=".:" + os.path.join(ROOT, "hil", "board_lib"))
    out = subprocess.run([MICROPYTHON, "-X", "heapsize=%d" % heap, os.path.join(ROOT, "bench", "mpy", "heap_seat.py"),
                          str(hours), str(bidders)], cwd=bdir, env=env, capture_output=True, text=True, timeout=1800)
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines:
        return {"booted": False, "nodes": n, "error": (out.stdout + out.stderr).strip().splitlines()[-1:]}
    r = json.loads(lines[-1])
    r["nodes"] = n
    return r


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=int, default=4)
    ap.add_argument("--bidders", type=int, default=200, help="roster nodes bidding each slot")
    ap.add_argument("--sizes", default="10,20,30,40,50,75,100,200")
    ap.add_argument("--code", default="romfs,files", help="layouts to measure, side by side: romfs, files")
    a = ap.parse_args(argv)
    print("machine:", describe())
    with tempfile.TemporaryDirectory() as folder:
        built = flash_mod.build(os.path.join(folder, ".image"))
        for code in a.code.split(","):
            largest = None
            for n in [int(x) for x in a.sizes.split(",")]:
                r = run(n, a.hours, a.bidders, built, folder, code)
                what = "[%s] region of %4d nodes, elector seat" % (code, n)
                if not r.get("booted"):
                    print("%s: does not boot in 192K: %s" % (what, r.get("error")), flush=True)
                    continue
                if r["out_of_memory"] != 0:
                    print("%s: boots, then runs out of heap (%d MemoryErrors survived by %d mission s; the watchdog"
                          " would reset a board that stops feeding it)"
                          % (what, r["out_of_memory"], r["mission_ms"] // 1000), flush=True)
                    continue
                largest = n
                print("%s, %d mission h, %d rounds, %d awarded: heap free %d B, low-water %d B (%.0f %% of 192K;"
                      " peak use %.0f %%), lowest sampled %d B, MemoryErrors survived %d"
                      % (what, r["hours"], r["rounds"], r["awarded"], r["heap_free"], r["heap_min"],
                         100.0 * r["heap_min"] / HEAP, 100.0 - 100.0 * r["heap_min"] / HEAP, r["lowest_sampled"],
                         r["out_of_memory"]), flush=True)
            print("[%s] largest region one board coordinated here (elector seat, no MemoryError): %s nodes"
                  % (code, largest), flush=True)


if __name__ == "__main__":
    main()
