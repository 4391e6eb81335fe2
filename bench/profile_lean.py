"""Where a lean shard's CPU goes: a sampling profile of one ground/shard.py
Shard running bench_fleet's 1,000-node scenario (100 clusters of 10) in one
window, with SIGPROF every 0.5 ms of this process's CPU: a stack walk per
sample, not cProfile's hook on every call (which doubles the time of the
core's many small calls and skews the shares toward them).

Prints the CPU per delivery and, per function, the share of samples in it
with what it calls (inclusive) and in it alone (self).

Run: python -m bench.profile_lean [--mission-s 30] [--top 30]
Not a test: it asserts nothing; a shared machine moves the figures by ~10 %.
"""

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bench.bench_fleet import fleet_text  # noqa: E402
from bench.machine_info import describe  # noqa: E402
from bench.sampling import Sampler  # noqa: E402
from ground import fleetrun, scenario  # noqa: E402
from ground.shard import Shard  # noqa: E402

def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.profile_lean", description=__doc__.split("\n\n")[0])
    ap.add_argument("--mission-s", type=float, default=30.0, help="mission seconds to run (default 30)")
    ap.add_argument("--top", type=int, default=30, help="functions to list (default 30)")
    a = ap.parse_args(argv)
    sc = scenario.load_text(fleet_text(duration_s=a.mission_s), "<profile_lean 1000>")
    sh = Shard(sc, sc.seed, 0, sorted(sc.clusters), fleetrun.units_of(sc))
    c0 = time.process_time()
    with Sampler(ROOT) as prof:
        sh.advance(int(a.mission_s * 1e9), last=True)
    cpu = time.process_time() - c0
    d = sh.counters.delivered()
    print("profile_lean on " + describe())
    print("load average: %.2f %.2f %.2f" % os.getloadavg())
    print("1,000 nodes, %g mission s, one shard: %.2f CPU s, %d deliveries, %.1f us per delivery, %d samples"
          % (a.mission_s, cpu, d, cpu / d * 1e6, prof.total))
    prof.print_table(a.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
