"""`ground run` on the lean fleet path (ground/fleetrun.py): the options,
one fixed-width progress line, the fleet summary, the exit code.

    ground run FLEET.yaml [--lean] [--workers N | --ray-address ADDR] [--shards N] [--trace-clusters 1,2]

Prints the traced clusters' metrics table (metrics.txt), then the fleet's
counters in a few lines (fleet.json has them all: per node and type, per
cluster and region in mission-time buckets).
"""

import os
import sys
import time

from ground import exitcodes
from ground.exitcodes import InputError
from ground.fleetrun import LeanRun
from ground.progress import WindowRate

S = 1_000_000_000


class FleetProgress:
    """One line of fixed width on stderr: mission time, share, rate, ETA, windows."""

    def __init__(self, stream, end_s, clock=time.monotonic):
        self.stream = stream
        self.end_s = end_s
        self.clock = clock
        self.t0 = clock()
        self.window = WindowRate()  # mission s per wall s since the first window: the setup not counted
        self.last = 0.0
        self.tty = stream.isatty()
        self.every = 0.2 if self.tty else 5.0  # a log: a line every 5 wall s

    def __call__(self, mission_ns, run):
        now = self.clock()
        m = mission_ns / S
        since_first = self.window.rate(now, m)
        if now - self.last < self.every and mission_ns < self.end_s * S:
            return
        self.last = now
        el = now - self.t0
        rate = since_first if since_first is not None else (m / el if el > 0 else 0.0)
        eta = (self.end_s - m) / rate if rate > 0 else 0.0
        line = ("mission %10.1f/%-8g s %3d%%  elapsed %7.1fs  rate %8.1fx  ETA %7.1fs  shards %3d"
                % (m, self.end_s, int(100 * m / self.end_s) if self.end_s else 100, el, rate, eta, len(run.plan)))
        self.stream.write(("\r" + line) if self.tty else line + "\n")
        self.stream.flush()

    def done(self):
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _traced(text, sc):
    if not text:
        return None
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError("--trace-clusters %s: want cluster ids separated by commas, e.g. 1,2,3" % text) from None


def summary(fleet):
    """The fleet's counters in a few lines."""
    f = fleet["fleet"]
    per = sorted(c["delivered"] for c in fleet["clusters"].values())
    lines = ["fleet: %d nodes in %d clusters, %g mission s, %d shard(s), window %g s"
             % (fleet["nodes_total"], fleet["clusters_total"], fleet["mission_s"], len(fleet["shards"]),
                fleet["window_s"]),
             "  frames sent %d, delivered %d, dropped %d (%s)" % (
                 f["sent"], f["delivered"], f["dropped"],
                 ", ".join("%s %d" % kv for kv in f["drop_reasons"].items()) or "none")]
    if per:
        lines.append("  deliveries per cluster: min %d, p50 %d, max %d" % (per[0], per[len(per) // 2], per[-1]))
    lines.append("  traced clusters: %s (trace.jsonl, metrics.txt); every node's counters: fleet.json"
                 % ", ".join(map(str, fleet["traced_clusters"])))
    return "\n".join(lines)


def rollout_summary(metrics):
    """A rollout's images, a line each (metrics.json's `rollout`, ground/metrics/rollout.py), or []."""
    out = []
    for i in metrics.get("rollout") or ():
        if i["complete_s"] is not None:
            end = "complete at %.1f s" % i["complete_s"]
        elif i["abort_s"] is not None:
            back = "%.1f s" % i["rolled_back_s"] if i["rolled_back_s"] is not None else "the end: not all"
            end = "aborted at %.1f s (%s), rolled back by %s" % (i["abort_s"], i["reason"], back)
        else:
            end = "still under way at the end"
        out.append("  rollout %s: from %.1f s, canary clusters %s (%d nodes), %d steps, ran on %d nodes; %s"
                   % (i["image"], i["start_s"], ", ".join(map(str, i["canaries"] or ())), i["canary_nodes"] or 0,
                      i["steps"] or 0, i["ran"], end))
    return out


def run(sc, out, args):
    traced = _traced(args.trace_clusters, sc)
    workers = args.workers if args.workers is not None else 1
    if workers < 1:
        raise InputError("--workers %d: want 1 or more" % workers)
    if args.shards is not None and args.shards < 1:
        raise InputError("--shards %d: want 1 or more" % args.shards)
    # a ValueError from here on is bad input (a refusal, a Ray address) or a bug: exitcodes.main_wrapper tells
    lean = LeanRun(sc, out, seed=args.seed, workers=workers, shards=args.shards, ray_address=args.ray_address,
                   traced=traced, progress=None, plot=not args.no_plot,
                   shard_python=args.shard_python or "auto")
    progress = None if args.quiet else FleetProgress(sys.stderr, sc.duration_s)
    lean.progress = progress
    if not args.quiet:
        print("ground run: %s (%d nodes, %d clusters, %g mission s, seed %d, lean, %d shard(s) on %s) -> %s"
              % (sc.name, len(sc.nodes), len(sc.clusters), sc.duration_s, lean.seed, len(lean.plan),
                 ("ray" if workers > 1 or args.ray_address else "this process")
                 + (", shards on %s" % lean.shard_python if lean.shard_python else ""), out), file=sys.stderr, flush=True)
    result = lean.execute()
    if progress:
        progress.done()
    if not args.quiet:
        with open(os.path.join(out, "metrics.txt"), encoding="utf-8") as f:
            print(f.read(), end="")
    print(summary(result.fleet))
    for line in rollout_summary(result.metrics):
        print(line)
    if args.verbose:
        st = lean.stats
        print("harness: %.1f s wall, %.1f s CPU in this process, %d windows, %d frames across units, backend %s"
              % (st["wall_s"], st["cpu_s"], st["windows"], st["crossed"], st["backend"]))
    if result.failures:
        for f in result.failures:
            print("FAIL: " + f)
        return exitcodes.INTERRUPTED if result.status == "interrupted" else exitcodes.FAILED
    print("PASS: %s (trace of clusters %s: %s)" % (sc.name, ", ".join(map(str, lean.traced_clusters)),
                                                  os.path.join(out, "trace.jsonl")))
    return exitcodes.OK
