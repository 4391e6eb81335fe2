"""Heap of a board holding an elector seat with the market tier, and the
largest region one board coordinates (issue #14.5). Not a test: it asserts
nothing; it prints figures and the machine.

For each region size it builds the firmware image as `hil flash` does
(main.py and boot.py as source, every other module mpy-cross -march=armv6m),
writes a board folder (signed, the board the region's only elector, one-hour
market slots), and runs bench/mpy/heap_seat.py in the MicroPython unix port
with -X heapsize=192K over the given mission hours. The unix port is 64-bit:
its objects take about twice a Pico's heap, and the .mpy bytecode sits in the
heap as it does on a Pico without frozen modules, so these figures are an
upper bound on a Pico's use.

    .venv/bin/python -m bench.mpy.heap_seat_run [--hours 4] [--sizes 10,20,30,50,100]
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


def run(n, hours, bidders, built, folder):
    bdir = os.path.join(folder, "n%d" % n)
    flash_mod.write_image(bdir, version=(3, 0), label="3.0-bench", board_config=board_cfg(n), built=built)
    env = dict(os.environ, MICROPYPATH=".:" + os.path.join(ROOT, "hil", "board_lib"))
    out = subprocess.run([MICROPYTHON, "-X", "heapsize=192K", os.path.join(ROOT, "bench", "mpy", "heap_seat.py"),
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
    a = ap.parse_args(argv)
    print("machine:", describe())
    with tempfile.TemporaryDirectory() as folder:
        built = flash_mod.build(os.path.join(folder, ".image"))
        largest = None
        for n in [int(x) for x in a.sizes.split(",")]:
            r = run(n, a.hours, a.bidders, built, folder)
            if not r.get("booted"):
                print("region of %4d nodes, elector seat: does not boot in 192K: %s" % (n, r.get("error")))
                continue
            ok = r["out_of_memory"] == 0
            if ok:
                largest = n
            else:
                print("region of %4d nodes, elector seat: boots, then runs out of heap (%d MemoryErrors survived by"
                      " %d mission s; the watchdog would reset a board that stops feeding it)"
                      % (n, r["out_of_memory"], r["mission_ms"] // 1000))
                continue
            print("region of %4d nodes, elector seat, %d mission h, %d rounds, %d awarded: heap free %d B, "
                  "low-water %d B (%.0f %% of 192K; peak use %.0f %%), lowest sampled %d B, MemoryErrors survived %d"
                  % (n, r["hours"], r["rounds"], r["awarded"], r["heap_free"], r["heap_min"], 100.0 * r["heap_min"] / HEAP,
                     100.0 - 100.0 * r["heap_min"] / HEAP, r["lowest_sampled"], r["out_of_memory"]))
        print("largest region one board coordinated here (elector seat, no MemoryError): %s nodes" % largest)


if __name__ == "__main__":
    main()
