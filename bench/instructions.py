"""Instructions per delivery, counted by valgrind's callgrind: the lean path
(`ground run --lean`) beside the `--sim` path, on bench_fleet's 1,000 nodes
(100 clusters of 10, delay 500 ms, normal jitter 40 ms, 1 % loss).

Why a count: CPU seconds on a shared 2-core machine move by ~10 % from run
to run (bench_lean's rounds), so a change worth 1-3 % cannot be told from
noise by timing. An instruction count is the same every time for the same
code, inputs and interpreter, whatever else the machine does (two runs of
one child here: 3 instructions apart in 7.5 billion). It is not
time: it does not see cache misses, which cost the lean path's cold
per-link objects more than their instructions (docs/FLEET_RUN.md "Shard
size"), nor the kernel's work (the Run path's trace writes), so its ratio
is not bench_lean's ratio of deliveries per CPU s.

How: each path runs in a child process under `valgrind --tool=callgrind` at
two mission lengths; the difference in instructions over the difference in
deliveries is the cost of a delivery with the start-up (imports, building
nodes and links, the first elections) taken out. The two paths' children
run at the same time, one per core: the counts do not depend on it.

Run: python -m bench.instructions [--short-s 5] [--long-s 15]
Needs valgrind (Debian: apt-get install valgrind); without it, prints a
skip line. About 7 minutes (the --sim path at 15 mission s under callgrind).
Not a test: it asserts nothing, it prints figures and the machine.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bench.machine_info import describe  # noqa: E402

PATHS = ("lean", "sim")
CHILD_TIMEOUT_S = 1800  # a child under callgrind runs ~30x slower than bare: the --sim path at 15 mission s ~6 min
_COLLECTED = re.compile(r"Collected : (\d+)")
_DELIVERED = re.compile(r"^deliveries (\d+)$", re.M)


def child(path, mission_s):
    """Run one path for mission_s and print its deliveries (under callgrind, in the parent's child)."""
    from bench.bench_fleet import fleet_text
    from bench.bench_lean import lean_path, run_path
    from ground import scenario

    sc = scenario.load_text(fleet_text(duration_s=mission_s), "<bench instructions %g s>" % mission_s)
    delivered = lean_path(sc)[2] if path == "lean" else run_path(sc)[2]
    print("deliveries %d" % delivered)


def _start(path, mission_s):
    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, "-m",
           "bench.instructions", "--child", path, str(mission_s)]
    env = dict(os.environ, PYTHONHASHSEED="0")  # str hashes, and so set and dict layouts, the same every run
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _read(proc, what):
    try:
        out, err = proc.communicate(timeout=CHILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise SystemExit("bench.instructions: %s took over %d s under callgrind; stopped" % (what, CHILD_TIMEOUT_S))
    ir, dl = _COLLECTED.search(err), _DELIVERED.search(out)
    if proc.returncode != 0 or ir is None or dl is None:
        raise SystemExit("bench.instructions: %s failed (exit %d):\n%s" % (what, proc.returncode, err[-2000:]))
    return int(ir.group(1)), int(dl.group(1))


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__.split("\n\n")[0])
    ap.add_argument("--short-s", type=float, default=5.0, help="the shorter mission, s (default 5)")
    ap.add_argument("--long-s", type=float, default=15.0, help="the longer mission, s (default 15)")
    ap.add_argument("--child", nargs=2, metavar=("PATH", "MISSION_S"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        child(a.child[0], float(a.child[1]))
        return 0
    if not 0 < a.short_s < a.long_s:
        ap.error("--short-s %g, --long-s %g: need 0 < short < long" % (a.short_s, a.long_s))
    if shutil.which("valgrind") is None:
        print("bench.instructions: skipped, valgrind not found (Debian: apt-get install valgrind)")
        return 0
    version = subprocess.run(["valgrind", "--version"], capture_output=True, text=True).stdout.strip()
    print("bench.instructions on %s, %s" % (describe(), version))
    print("bench_fleet's 1,000 nodes, %g and %g mission s, each path under callgrind (one child per core):"
          % (a.short_s, a.long_s))
    t0 = time.perf_counter()
    counts = {}
    for mission_s in (a.short_s, a.long_s):  # both paths at once, one length after the other
        procs = {p: _start(p, mission_s) for p in PATHS}
        for p, proc in procs.items():
            counts[p, mission_s] = _read(proc, "the %s path at %g mission s" % (p, mission_s))
            print("  %-4s %5g mission s: %15d instructions, %8d deliveries   (%.0f s elapsed)"
                  % (p, mission_s, counts[p, mission_s][0], counts[p, mission_s][1], time.perf_counter() - t0),
                  flush=True)
    per = {}
    for p in PATHS:
        (ir0, d0), (ir1, d1) = counts[p, a.short_s], counts[p, a.long_s]
        per[p] = (ir1 - ir0) / float(d1 - d0)
    print("  path                          instructions per delivery (the two lengths' difference)")
    print("  ground run --sim (Run path)   %12.0f" % per["sim"])
    print("  lean path (ground run --lean) %12.0f   %.2fx fewer than the Run path" % (per["lean"], per["sim"] / per["lean"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
