"""Benchmark of the lean fleet path (ground/fleetrun.py) against today's
`ground run --sim` path (ground/run.py) and a SimPy event loop, side by side
in one run, on bench_fleet's 1,000-node scenario (100 clusters of 10, 60
mission s, delay 500 ms, normal jitter 40 ms, 1 % loss):

- deliveries per CPU second (one core: each path runs in this process) of
  the Run path (trace of every frame, metrics fed per event, reports), the
  lean path (counters, three traced clusters), and the same nodes, link
  pipelines and counters driven by a SimPy 4 Environment instead of the
  shard's heap (SimPyShard below: only the event loop differs);

and, with --big (or FLEET_BENCH_BIG=1), what needs both cores for minutes:

- the shard size: 5,000 nodes in one process as one shard and as the
  default's shards of fleetrun.SHARD_NODES nodes, CPU per delivery;
- parallel efficiency at 5,000 nodes in 4 regions (fleet-sweep.yaml's
  description, each region its market: frames cross shards), and at 5,000
  nodes (500 clusters, no regions): wall time with
  --workers 1 (in-process) and --workers 2 (a local Ray), E = T1 / (2 T2);
  the per-shard rate and the cost of a window, and from them the projected
  wall time of 100,000 nodes over one auction cycle (the market's slot,
  6 mission hours by default) on 64 cores, with its arithmetic;
- 10,000 nodes with --workers 2 for --big-mission-s mission seconds (default
  120; 3600 is the issue's hour): wall time and peak RSS (this process plus
  each Ray worker; Ray's own daemons not counted), and the hour projected.

- one fleet (fleet-sweep.yaml, 2,000 nodes, 4 regions, 30 mission s)
  numbered fleet-wide and per region on the wire (`addressing: region`,
  ground/wireids.py): deliveries per CPU second both ways (two runs each,
  in ABBA order), and whether every node's frame counts agree;
- the shards on PyPy (ground/shard_host.py, `make pypy`) beside this
  Python's: 1,000 nodes for --pypy-mission-s (default 600: PyPy's JIT
  needs a few minutes of mission to pay for its warm-up), one core; with
  --big the 10,000 nodes on 2 workers both ways too.

Run: python -m bench.bench_lean [--quick] [--big | --big-only] [--big-mission-s S] [--pypy-mission-s S]
Not a test: it asserts nothing, it prints figures and the machine.
"""

import functools
import os
import resource
import shutil
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bench.bench_fleet import fleet_text  # noqa: E402
from bench.machine_info import describe  # noqa: E402
from ground import fleetrun, gcpolicy, run, scenario, shard_host  # noqa: E402
from ground.shard import Shard  # noqa: E402

S = 1_000_000_000
AUCTION_CYCLE_S = 6 * 3600  # node/config.py MarketConfig: slot_ms default 6 h


class SimPyShard(Shard):
    """The same nodes, pipelines and counters as a Shard, driven by a SimPy
    Environment (each timer and delivery a simpy Timeout with a callback)
    instead of the shard's own heap (and the cyclic GC's thresholds as
    Shard.advance sets them)."""

    def __init__(self, *a, **kw):
        import simpy

        self.env = simpy.Environment()
        super().__init__(*a, **kw)

    def _call(self, t, fn, *args):
        env = self.env
        ev = env.timeout(t - env.now if t > env.now else 0)
        ev.callbacks.append(functools.partial(self._fire, fn, args))

    def _send(self, src, line):
        # Shard._send pushes deliveries onto its heap directly (its _call
        # inlined): hand them to the Environment, in the order pushed
        super()._send(src, line)
        if self._heap:
            pushed, self._heap = sorted(self._heap, key=lambda e: e[1]), []
            for t, _, fn, args in pushed:
                self._call(t, fn, *args)

    def _fire(self, fn, args, _ev):
        self.now = self.env.now
        fn(*args)

    def run_to(self, end_ns):
        with gcpolicy.during_run():  # the collector as in Shard.advance: only the loop differs
            self.env.run(until=end_ns + 1)  # events at end_ns too, as the lean path's last window
        self.now = end_ns


def _tmp():
    return tempfile.mkdtemp(prefix="bench_lean_")


def run_path(sc):
    out = _tmp()
    try:
        c0, w0 = time.process_time(), time.perf_counter()
        r = run.run(sc, out, plot=False)
        return time.process_time() - c0, time.perf_counter() - w0, r.metrics["frames"]["delivered"]
    finally:
        shutil.rmtree(out, ignore_errors=True)


def lean_path(sc, workers=1, shards=None, shard_python=None):
    """(CPU s: this process's, and the shards' where they ran in a child, wall s, deliveries, LeanRun, result)."""
    out = _tmp()
    try:
        c0, w0 = time.process_time(), time.perf_counter()
        lean = fleetrun.LeanRun(sc, out, workers=workers, shards=shards, shard_python=shard_python)
        r = lean.execute()
        if r.status != "ok":
            raise RuntimeError("lean run: %s" % r.failures)
        cpu = time.process_time() - c0
        if lean.stats.get("child_cpu_s") is not None:  # the shards' process: its start, setup and windows
            cpu += lean.stats["child_cpu_s"]
        return cpu, time.perf_counter() - w0, r.fleet["fleet"]["delivered"], lean, r
    finally:
        shutil.rmtree(out, ignore_errors=True)


def simpy_path(sc):
    unit_of = fleetrun.units_of(sc)
    c0 = time.process_time()
    sh = SimPyShard(sc, sc.seed, 0, sorted(sc.clusters), unit_of)
    sh.run_to(int(sc.duration_s * S))
    cpu = time.process_time() - c0
    return cpu, sh.counters.delivered()


def part_one(rounds):
    sc = scenario.load_text(fleet_text(), "<bench_lean 1000>")
    print("1,000 nodes in 100 clusters, %g mission s; deliveries per CPU second (one core), %d round(s):"
          % (sc.duration_s, rounds))
    best = {}
    for k in range(rounds):
        cpu_r, _, d_r = run_path(sc)
        cpu_l, _, d_l, lean, _ = lean_path(sc)
        cpu_1, _, d_1, _, _ = lean_path(sc, shards=1)
        cpu_s, d_s = simpy_path(sc)
        for name, cpu, d in (("run", cpu_r, d_r), ("lean", cpu_l, d_l), ("lean1", cpu_1, d_1), ("simpy", cpu_s, d_s)):
            if name not in best or d / cpu > best[name][1] / best[name][0]:
                best[name] = (cpu, d)
        print("  round %d: Run path %.1f CPU s %d deliveries; lean %.1f CPU s %d (%d shards), %.1f CPU s as one shard;"
              " SimPy loop %.1f CPU s %d" % (k + 1, cpu_r, d_r, cpu_l, d_l, len(lean.plan), cpu_1, cpu_s, d_s), flush=True)
    rate = {n: d / cpu for n, (cpu, d) in best.items()}
    print("  %-38s %12s" % ("path (best round)", "deliveries/s"))
    print("  %-38s %12.0f" % ("ground run --sim (Run path)", rate["run"]))
    print("  %-38s %12.0f   %.1fx the Run path, %.2fx SimPy" % ("lean path (ground run --lean)", rate["lean"],
                                                                rate["lean"] / rate["run"], rate["lean"] / rate["simpy"]))
    print("  %-38s %12.0f   %.1fx the Run path, %.2fx SimPy" % ("lean path as one shard (--shards 1)", rate["lean1"],
                                                                rate["lean1"] / rate["run"], rate["lean1"] / rate["simpy"]))
    print("  %-38s %12.0f   (one Environment for the 1,000 nodes)" % ("same nodes on a SimPy 4 loop", rate["simpy"]))
    print("  (deliveries include those to the ground; the SimPy loop has the lean path's counters, no trace;"
          " same deliveries: %s)" % ("yes" if best["lean"][1] == best["simpy"][1] else "NO"))
    return rate["run"]


def part_pypy(mission_s, python, run_rate):
    """The lean path's shards in this Python and on PyPy (ground/shard_host.py), one core, side by side."""
    sc = scenario.load_text(fleet_text(duration_s=mission_s), "<bench_lean pypy>")
    print("\nShards on PyPy: 1,000 nodes in 100 clusters, %g mission s, --workers 1, deliveries per CPU second"
          " (shards and this process):" % mission_s)
    if python is None:
        print("  skipped: no PyPy (apt-get install pypy3; make pypy)")
        return
    rows = []
    for name, py in (("this Python (%s %s)" % (sys.implementation.name, sys.version.split()[0]), None),
                     ("PyPy (%s, a child process)" % os.path.relpath(python, ROOT), python)):
        cpu, wall, d, lean, _ = lean_path(sc, shard_python=py)
        rows.append((name, cpu, wall, d))
        print("  %-44s %6.1f CPU s, %6.1f s wall, %d deliveries, %8.0f per CPU s"
              % (name, cpu, wall, d, d / cpu), flush=True)
    (_, c1, _, d1), (_, c2, _, d2) = rows
    print("  PyPy: %.2fx this Python's rate, %.1fx the Run path's (%.0f per CPU s, 60 mission s, above);"
          " same deliveries: %s" % ((d2 / c2) / (d1 / c1), (d2 / c2) / run_rate if run_rate else float("nan"),
                                    run_rate or float("nan"), "yes" if d1 == d2 else "NO"))


def _rss_mb(lean):
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    workers = [k / 1024 for k in lean.stats.get("worker_peak_rss_kb") or [] if k]
    return own, workers


def part_shard_size(sc5, n5):
    """The same fleet in one process as one shard and as the default's shards."""
    print("\nShard size: %d nodes in %d clusters, %g mission s, --workers 1 (shards run in turn each window):"
          % (n5, n5 // 10, sc5.duration_s))
    rows = []
    for shards in (1, None):
        cpu, _, d, lean, _ = lean_path(sc5, shards=shards)
        win = sum(x for x in lean.stats["shard_cpu_s"] if x)
        rows.append((len(lean.plan), cpu, win, d))
        print("  %3d shard(s) of ~%d nodes: %.1f CPU s (%.1f s in the windows), %d deliveries, %.1f us per delivery"
              % (len(lean.plan), n5 / len(lean.plan), cpu, win, d, win / d * 1e6), flush=True)
    print("  the default (fleetrun.SHARD_NODES = %d) takes %.2fx the CPU of one shard in the windows"
          % (fleetrun.SHARD_NODES, rows[1][2] / rows[0][2]))


def part_big(mission_s, python):
    n5 = 5000
    sc5 = scenario.load_text(fleet_text(nodes=n5, duration_s=20), "<bench_lean 5000>")
    part_shard_size(sc5, n5)
    print("\nParallel efficiency: %d nodes in %d clusters, %g mission s:" % (n5, n5 // 10, sc5.duration_s))
    _, w1, d1, l1, _ = lean_path(sc5, workers=1)
    _, w2, d2, l2, _ = lean_path(sc5, workers=2)
    run1, run2 = l1.stats["advance_s"], l2.stats["advance_s"]  # the windows only: no setup, no reports
    print("  load average now: %.2f %.2f %.2f (2 cores: above 2, other work shares them)" % os.getloadavg())
    print("  --workers 1: wall %.1f s, windows %.1f s, %d deliveries" % (w1, run1, d1))
    print("  --workers 2: wall %.1f s (%.1f s starting Ray and building nodes), windows %.1f s, %d deliveries,"
          " %d windows" % (w2, l2.stats["setup_s"], run2, d2, l2.stats["windows"]))
    print("  parallel efficiency E = T1 / (2 T2) = %.1f / (2 x %.1f) = %.2f (with setup and reports: %.2f)"
          % (run1, run2, run1 / (2 * run2), w1 / (2 * w2)))
    shard_cpu = sum(x for x in l1.stats["shard_cpu_s"] if x)
    rate = n5 * sc5.duration_s / shard_cpu  # node-mission-seconds per CPU second of a shard
    window_cost = max(0.0, run2 - l2.stats["busiest_cpu_s"]) / l2.stats["windows"]
    # the window cost alone: a small fleet on 2 Ray workers, many windows with little work in each
    sct = scenario.load_text(fleet_text(nodes=20, cluster_size=10, duration_s=300), "<bench_lean windows>")
    _, _, _, lt, _ = lean_path(sct, workers=2)
    small_cost = max(0.0, lt.stats["advance_s"] - lt.stats["busiest_cpu_s"]) / lt.stats["windows"]
    print("  window cost on 2 Ray workers: in this run (wall beyond the busiest shard's CPU, waiting for a core"
          " included) %.0f ms; alone (20 nodes, %d windows) %.1f ms" % (window_cost * 1e3, lt.stats["windows"],
                                                                      small_cost * 1e3))
    ideal = shard_cpu / (2 * (l2.stats["busiest_cpu_s"] + l2.stats["windows"] * small_cost))
    print("  efficiency with a core each (busiest shard's CPU + the window cost alone): %.1f / (2 x (%.1f + %d x"
          " %.4f)) = %.2f" % (shard_cpu, l2.stats["busiest_cpu_s"], l2.stats["windows"], small_cost, ideal))
    window_cost = small_cost
    nodes, cores, cycle = 100_000, 64, AUCTION_CYCLE_S
    compute = nodes * cycle / (cores * rate)
    windows = cycle / (l2.window_ns / S)
    print("\nProjection: 100,000 nodes, one auction cycle (%d mission s), 64 cores:" % cycle)
    print("  rate per core r = %d nodes x %g s / %.1f CPU s in shards = %.0f node-mission-s per CPU s"
          % (n5, sc5.duration_s, shard_cpu, rate))
    print("  window cost c = %.1f ms (alone, above)" % (window_cost * 1e3))
    print("  wall = N x cycle / (cores x r) + (cycle / window) x c = %d x %d / (%d x %.0f) + %d x %.4f s"
          " = %.0f s + %.0f s = %.2f h" % (nodes, cycle, cores, rate, windows, window_cost, compute,
                                             windows * window_cost, (compute + windows * window_cost) / 3600))
    print("  (assumes this scenario's load per node, 1,563 nodes on each core in shards of ~%d, and this"
          " window cost; a Ray round trip to 64 actors costs more than to 2)" % fleetrun.SHARD_NODES)

    if mission_s <= 0:
        return  # --big-mission-s 0: not the 10,000 nodes
    n10 = 10_000
    sc10 = scenario.load_text(fleet_text(nodes=n10, duration_s=mission_s), "<bench_lean 10000>")
    ways = [("shards in the Ray workers' CPython", None)] + ([("shards on PyPy", python)] if python else [])
    for name, py in ways:
        print("\n%d nodes, %g mission s, --workers 2, %s:" % (n10, mission_s, name), flush=True)
        _, w, d, lean, _ = lean_path(sc10, workers=2, shard_python=py)
        own, workers = _rss_mb(lean)
        print("  wall %.1f s (%.1f s setup), %d deliveries; peak RSS: this process %.0f MB, workers %s MB, sum %.0f MB"
              % (w, lean.stats["setup_s"], d, own, " + ".join("%.0f" % x for x in workers), own + sum(workers)))
        if mission_s < 3600:
            per = (w - lean.stats["setup_s"]) / mission_s
            print("  one mission hour projected: %.1f s setup + 3600 x %.3f s = %.0f s (%.1f min)%s"
                  % (lean.stats["setup_s"], per, lean.stats["setup_s"] + 3600 * per,
                     (lean.stats["setup_s"] + 3600 * per) / 60,
                     "; PyPy's warm-up is in it, so an hour takes less" if py else ""))
    if python is None:
        print("\n(%d nodes with shards on PyPy: no PyPy; apt-get install pypy3, make pypy)" % n10)


def regions_text(nodes=5000, regions=4, duration_s=20):
    """scenarios/fleet-sweep.yaml with `nodes` nodes in `regions` equal regions (each its own market)."""
    text = open(os.path.join(ROOT, "scenarios", "fleet-sweep.yaml"), encoding="utf-8").read()
    for old, new in (("\nduration_s: 120\n", "\nduration_s: %d\n" % duration_s),
                     ("\n  nodes: 2000\n", "\n  nodes: %d\n  allow_region_sizes: true\n" % nodes),
                     ("regions: {clusters: {min: 20, max: 50}, electors: 3}", "regions: {count: %d, electors: 3}" % regions)):
        if old not in text:
            raise RuntimeError("scenarios/fleet-sweep.yaml changed: %r not found" % old)
        text = text.replace(old, new)
    return text


def part_regions():
    """The issue's case for the efficiency: 5,000 nodes in 4 regions (regions are never split: 4 shards)."""
    sc = scenario.load_text(regions_text(), os.path.join(ROOT, "scenarios", "fleet-sweep.yaml"))
    print("\nParallel efficiency with markets: fleet-sweep.yaml at %d nodes in %d clusters and %d regions"
          " (a shard per region), %g mission s:" % (len(sc.nodes), len(sc.clusters), len(sc.regions), sc.duration_s))
    _, w1, d1, l1, _ = lean_path(sc, workers=1)
    _, w2, d2, l2, _ = lean_path(sc, workers=2)
    run1, run2 = l1.stats["advance_s"], l2.stats["advance_s"]
    print("  load average now: %.2f %.2f %.2f" % os.getloadavg())
    print("  --workers 1: wall %.1f s, windows %.1f s, %d deliveries, %d frames across shards"
          % (w1, run1, d1, l1.stats["crossed"]))
    print("  --workers 2: wall %.1f s (%.1f s setup), windows %.1f s, %d deliveries, %d windows of %.3f s"
          % (w2, l2.stats["setup_s"], run2, d2, l2.stats["windows"], l2.window_ns / S))
    print("  parallel efficiency E = T1 / (2 T2) = %.1f / (2 x %.1f) = %.2f (with setup and reports: %.2f)"
          % (run1, run2, run1 / (2 * run2), w1 / (2 * w2)))


def part_addressing():
    """One fleet numbered fleet-wide and per region on the wire (ground/wireids.py), side by side, one core."""
    text = regions_text(nodes=2000, regions=4, duration_s=30)
    print("\nAddressing: fleet-sweep.yaml at 2,000 nodes in 4 regions, 30 mission s, --workers 1, numbered"
          " fleet-wide and per region (addressing: region, what fleets past 61,439 nodes take):")
    rows = {}
    # ABBA: this process gets slower from one run to the next (about 5 % over four, its heap), so each numbering
    # takes one early and one late place, and their CPU is summed
    for mode in ("fleet", "region", "region", "fleet"):
        sc = scenario.load_text("addressing: %s\n" % mode + text, os.path.join(ROOT, "scenarios", "fleet-sweep.yaml"))
        cpu, wall, d, _, r = lean_path(sc)
        f = r.fleet
        keep = [i for i, k in enumerate(f["usage_fields"]) if not k.endswith("_bytes")]
        cpu0, d0, _, _ = rows.get(mode, (0.0, 0, None, None))
        rows[mode] = (cpu0 + cpu, d0 + d, f["nodes"], {n: [u[i] for i in keep] for n, u in f["usage"].items()})
        print("  addressing: %-7s %6.1f CPU s, %6.1f s wall, %d deliveries, %8.0f per CPU s"
              % (mode, cpu, wall, d, d / cpu), flush=True)
    (c1, d1, n1, u1), (c2, d2, n2, u2) = rows["fleet"], rows["region"]
    print("  per region / fleet-wide (two runs each, ABBA): %.3f of the rate; every node's frames by type, tier and"
          " polls the same: %s" % ((d2 / c2) / (d1 / c1), "yes" if (n1, u1) == (n2, u2) else "NO"))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    rounds = 1 if "--quick" in argv else 2
    big = "--big" in argv or "--big-only" in argv or os.environ.get("FLEET_BENCH_BIG") == "1"
    mission_s = 120.0
    if "--big-mission-s" in argv:
        mission_s = float(argv[argv.index("--big-mission-s") + 1])
    print("bench_lean on " + describe())
    try:
        print("load average at start: %.2f %.2f %.2f" % os.getloadavg())
    except OSError:
        pass
    python = shard_host.project_pypy()  # .venv-pypy (make pypy) or FLEETLOOP_SHARD_PYTHON, if there
    python = shard_host.resolve(python) if python else None
    run_rate = None
    if "--big-only" not in argv:
        run_rate = part_one(rounds)
        part_pypy(float(argv[argv.index("--pypy-mission-s") + 1]) if "--pypy-mission-s" in argv else 600.0,
                  python, run_rate)
        part_addressing()
    if big:
        part_regions()
        part_big(mission_s, python)
    else:
        print("\n(5,000-node efficiency, the 100,000-node projection and 10,000 nodes on 2 workers: "
              "python -m bench.bench_lean --big [--big-mission-s 3600], or FLEET_BENCH_BIG=1 make bench)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
