"""Where a `ground run --sim` of a large fleet spends its CPU: a sampling
profile of bench_fleet's run (1,000 nodes, 100 clusters of 10, ground.run.run
as the CLI runs it: core, router, trace, streaming metrics, history checker,
reports), with SIGPROF every 0.5 ms of this process's CPU: a stack walk per
sample, not cProfile's hook on every call (which doubles the time of small
calls and skews the shares toward them).

Prints the CPU time, and per function the share of samples in it with what it
calls (inclusive) and in it alone (self); --by-file adds the self share per
source file.

Run: python -m bench.profile_sim [--mission-s 60] [--top 40] [--by-file]
Not a test: it asserts nothing; a shared machine moves the figures by ~10 %.
"""

import argparse
import os
import shutil
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bench.bench_fleet import fleet_text  # noqa: E402
from bench.machine_info import describe  # noqa: E402
from bench.sampling import Sampler  # noqa: E402
from ground import run, scenario  # noqa: E402

def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.profile_sim", description=__doc__.split("\n\n")[0])
    ap.add_argument("--mission-s", type=float, default=60.0, help="mission seconds to run (default 60)")
    ap.add_argument("--top", type=int, default=40, help="functions to list (default 40)")
    ap.add_argument("--by-file", action="store_true", help="also list the self share per source file")
    a = ap.parse_args(argv)
    sc = scenario.load_text(fleet_text(duration_s=a.mission_s), "<profile_sim 1000>")
    out = tempfile.mkdtemp(prefix="profile_sim_")
    c0 = time.process_time()
    try:
        with Sampler(ROOT) as prof:
            res = run.run(sc, out, plot=False)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    cpu = time.process_time() - c0
    d = res.metrics["frames"]["delivered"]
    print("profile_sim on " + describe())
    print("load average: %.2f %.2f %.2f" % os.getloadavg())
    print("1,000 nodes, %g mission s, --sim (no timeline.png): %.2f CPU s, %d deliveries, %.1f us per delivery,"
          " %d samples" % (a.mission_s, cpu, d, cpu / d * 1e6, prof.total))
    prof.print_table(a.top, a.by_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
