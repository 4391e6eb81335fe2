"""How a lean shard's CPU per delivery grows with its size, and what the
default's small shards (ground/fleetrun.py SHARD_NODES, run one after the
other each window) and long windows (LONE_SYNC_S, where no frame crosses
units) save: docs/FLEET_RUN.md "Shard size".

Three tables, each cell run in a fresh process (one process's earlier runs
would leave its memory laid out differently):

- one shard of bench_fleet's clusters of 10 at 500..5,000 nodes, --mission-s
  mission s after a 2-s warm-up: CPU per delivery in `Shard.advance`;
- 5,000 nodes in one process (`LeanRun`, --workers 1) as 1..500 shards: CPU
  in the shards' windows, and in all (building the nodes included);
- the same at the default shards, in windows of 1..20 mission s.

Run: python -m bench.bench_shard_size [--mission-s 20] [--rounds 1]
Not a test: it asserts nothing; it prints figures and the machine.
"""

import argparse
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bench.machine_info import describe  # noqa: E402

SIZES = (500, 1000, 2000, 3000, 5000)
SHARDS = (1, 5, 10, 20, 40, 125, 250, 500)
WINDOWS_S = (1, 2, 5, 10, 20)
CELL_TIMEOUT_S = 600


def one_shard(nodes, mission_s):
    """(CPU s, deliveries) of one shard of `nodes` nodes after a 2-s warm-up."""
    from bench.bench_fleet import fleet_text
    from ground import fleetrun, scenario
    from ground.shard import Shard

    sc = scenario.load_text(fleet_text(nodes=nodes, duration_s=mission_s + 2), "<shard %d>" % nodes)
    sh = Shard(sc, sc.seed, 0, sorted(sc.clusters), fleetrun.units_of(sc))
    sh.advance(2 * 10 ** 9)

    d0, c0 = sh.counters.delivered(), time.process_time()
    sh.advance(int((mission_s + 2) * 1e9), last=True)
    return time.process_time() - c0, sh.counters.delivered() - d0


def sharded(nodes, mission_s, shards, window_s=None):
    """(CPU s in the windows, CPU s in all, shards) of a lean run in this
    process (window_s: its windows, fleetrun.LONE_SYNC_S, if not None)."""
    from bench.bench_fleet import fleet_text
    from bench.bench_lean import lean_path
    from ground import fleetrun, scenario

    if window_s is not None:
        fleetrun.LONE_SYNC_S = window_s
    sc = scenario.load_text(fleet_text(nodes=nodes, duration_s=mission_s), "<sharded %d>" % nodes)
    cpu, _, _, lean, _ = lean_path(sc, shards=shards)
    return sum(x for x in lean.stats["shard_cpu_s"] if x), cpu, len(lean.plan)


def _cell(args):
    """Run one cell in a fresh interpreter; its printed result."""
    cmd = [sys.executable, "-m", "bench.bench_shard_size", "--cell"] + [str(a) for a in args]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=CELL_TIMEOUT_S)
    if p.returncode != 0:
        raise RuntimeError("cell %s failed: %s" % (args, p.stderr.strip().splitlines()[-1:]))
    return [float(x) for x in p.stdout.split()]


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.bench_shard_size", description=__doc__.split("\n\n")[0])
    ap.add_argument("--mission-s", type=float, default=20.0, help="mission seconds measured (default 20)")
    ap.add_argument("--rounds", type=int, default=1, help="rounds of each table (default 1)")
    ap.add_argument("--cell", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.cell:
        kind, nodes, k = a.cell[0], int(a.cell[1]), int(a.cell[2])
        got = (one_shard(nodes, a.mission_s) if kind == "one" else sharded(nodes, a.mission_s, k) if kind == "sharded"
               else sharded(nodes, a.mission_s, None, k))
        print(" ".join(str(x) for x in got))
        return 0
    from ground import fleetrun

    print("bench_shard_size on " + describe())
    print("load average at start: %.2f %.2f %.2f" % os.getloadavg())
    cells = (len(SIZES) + len(SHARDS) + len(WINDOWS_S)) * a.rounds
    t0 = time.perf_counter()
    done = 0

    def table(values, args, fmt):
        """One row per round: each value's cell (args(value)) as fmt(value, result)."""
        nonlocal done
        for r in range(a.rounds):
            row = []
            for v in values:
                row.append(fmt(v, _cell(args(v) + ["--mission-s", a.mission_s])))
                done += 1
                _eta(done, cells, t0)
            print("  round %d: %s" % (r + 1, ", ".join(row)), flush=True)

    print("\nOne shard, clusters of 10, %g mission s after a 2-s warm-up: CPU per delivery" % a.mission_s)
    table(SIZES, lambda n: ["one", n, 0], lambda n, got: "%d nodes %.1f us" % (n, got[0] / got[1] * 1e6))
    print("\n5,000 nodes in one process, %g mission s, as N shards run in turn each window (default: %d,"
          " SHARD_NODES = %d): CPU s in the windows / in all" % (a.mission_s, 5000 // fleetrun.SHARD_NODES,
                                                                fleetrun.SHARD_NODES))
    table(SHARDS, lambda k: ["sharded", 5000, k], lambda k, got: "%d: %.1f / %.1f" % (got[2], got[0], got[1]))
    print("\n5,000 nodes in one process, %g mission s, the default shards, in windows of W mission s (default:"
          " LONE_SYNC_S = %g): CPU s in the windows / in all" % (a.mission_s, fleetrun.LONE_SYNC_S))
    table(WINDOWS_S, lambda w: ["window", 5000, w], lambda w, got: "%g s: %.1f / %.1f" % (w, got[0], got[1]))
    print("load average at end: %.2f %.2f %.2f" % os.getloadavg())
    return 0


def _eta(done, total, t0):
    el = time.perf_counter() - t0
    sys.stderr.write("  [%d/%d cells, %.0f s, ETA %.0f s]\n" % (done, total, el, el / done * (total - done)))
    sys.stderr.flush()


if __name__ == "__main__":
    sys.exit(main())
