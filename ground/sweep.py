"""`ground sweep`: one fleet description run at several fleet sizes on the
lean path, and the coordination overhead of each size set beside the
design's overhead table (docs/FLEET.md "Overhead by fleet size",
docs/METRICS.md "Coordination overhead by resource").

    ground sweep FLEET.yaml --sizes 100,500,2000,10000 [--duration-s S] [--workers N] [--shard-python PY] [--out DIR]

Per size the description's `fleet.nodes` is replaced and the fleet runs on
the lean path (ground/fleetrun.py). From its counters (fleet.json: every
node's frames and bytes by tier, frames by type, core polls) and the traced
clusters' metrics (metrics.json) one row is made (`row`):

- messages and bytes per node per mission hour, by tier;
- the share of each node's link budget: the bits it sent and received over
  `fleet.radio_bps` times the mission time;
- the share of each node's CPU: its core calls by type times their measured
  cost under the MicroPython unix port (ground/core_costs.json, written by
  bench/core_costs.py), over the mission time;
- production lost against the uncoordinated ideal (market_lost_share of the
  traced nodes' MARKET_TEL);
- failover and auction decision latency p50/p99 (traced clusters).

The traced clusters are the first `traced` clusters and every cluster of
the first region's electors (so its auctions are seen from both ends). To
have failovers to measure, the sweep crashes the coordinator of each of the
first `traced` clusters once, at PROBE_AT of the mission, for PROBE_DOWN_S:
a probe, listed in the output. The tables and the plot are
ground/sweepreport.py's.
"""

import json
import os
import sys
import time

from ground import exitcodes, fleetdesc, fleetrun, machine, progress, scenario
from ground import sweepreport as rep
from ground.exitcodes import InputError, fresh_folder, readable
from ground.fleetcount import TIERS, USAGE_FIELDS
from ground.scenario import Fault
from ground.yamlfile import ConfigError, load

S = 1_000_000_000
COSTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "core_costs.json")
PROBE_AT = 0.4  # the probe crashes: at this share of the mission
PROBE_DOWN_S = 30.0
DEFAULT_TRACED = 4


def load_costs(path=COSTS):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def load_at(path, nodes, duration_s=None):
    """(scenario, radio_bps, note) for the fleet description at `path` with
    `nodes` nodes. A size too small for one region of the description's
    smallest region runs as one region of the clusters it has (the note
    says so)."""
    data, text = load(path)
    f = data.get("fleet") if hasattr(data, "get") else None
    if f is None or not hasattr(f, "key_lines"):
        raise ConfigError("%s:1: not a fleet description (no fleet: section; docs/FLEET.md)" % path)
    radio = fleetdesc.radio_bps(f)
    if radio is None:
        raise f.error(None, "fleet: no radio_bps: `ground sweep` shares out each node's radio rate (bit/s); add e.g."
                            " radio_bps: 250000 (docs/FLEET.md)")
    f["nodes"] = nodes
    if duration_s is not None:
        data["duration_s"] = duration_s
    try:
        return scenario.parse(data, text, path), radio, ""
    except ConfigError as e:
        if "clusters cannot be split" not in str(e) and "regions of" not in str(e):
            raise
    reg = f.get("regions") or {}
    electors = reg.get("electors", 3) if hasattr(reg, "get") else 3
    f["regions"] = fleetdesc._loc({"count": 1, "electors": electors}, path, fleetdesc._line(f, "regions"))
    f["allow_region_sizes"] = True
    f.key_lines["allow_region_sizes"] = fleetdesc._line(f, "regions")
    sc = scenario.parse(data, text, path)
    return sc, radio, "one region of %d clusters (fewer than a region of the description needs)" % len(sc.clusters)


def traced_clusters(sc, first):
    """The first `first` clusters and the clusters of the first region's electors."""
    return fleetrun.first_and_electors(sc, first)


def add_probes(sc, clusters):
    """Crash each of these clusters' coordinators once (a failover to measure)."""
    at = round(sc.duration_s * PROBE_AT, 3)
    for c in clusters:
        sc.faults.append(Fault(at_s=at, action="crash", target="coordinator", cluster=c, duration_s=PROBE_DOWN_S,
                               where="%s: ground sweep probe" % sc.path))
    sc.faults.sort(key=lambda f: f.at_s)
    return at


def _pct(values, q):
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, int(q * (len(v) - 1) + 0.5))]


def cpu_us(row_types, polls, costs):
    """A node's core time in us: receives and sends by type times their
    cost, polls times an idle poll's. Types without a measured cost take the
    mean of the measured ones (listed in `unpriced`)."""
    rx, tx = costs["rx_us"], costs["tx_us"]
    rx_mean = sum(rx.values()) / len(rx)
    tx_mean = sum(tx.values()) / len(tx)
    us, unpriced = polls * costs["poll_us"], set()
    for name, cell in row_types.items():
        if cell["delivered"]:
            if name not in rx:
                unpriced.add(name)
            us += cell["delivered"] * rx.get(name, rx_mean)
        if cell["sent"]:
            if name not in tx:
                unpriced.add(name)
            us += cell["sent"] * tx.get(name, tx_mean)
    return us, unpriced


def row(sc, fleet, metrics, costs, radio_bps, mission_s):
    """One size's figures (see the module comment)."""
    hours = mission_s / 3600.0
    nodes = sorted(int(n) for n in sc.nodes)
    n = len(nodes)
    idx = {k: i for i, k in enumerate(USAGE_FIELDS)}
    usage = fleet["usage"]
    zero = [0] * len(USAGE_FIELDS)
    tiers = {}
    for t in TIERS:
        fr = sum(usage.get(str(k), zero)[idx[t + "_frames"]] for k in nodes)
        by = sum(usage.get(str(k), zero)[idx[t + "_bytes"]] for k in nodes)
        tiers[t] = {"messages_per_node_hour": fr / n / hours, "bytes_per_node_hour": by / n / hours}
    budget_bits = radio_bps * mission_s
    link, cpu, unpriced = [], [], set()
    for k in nodes:
        u = usage.get(str(k), zero)
        sent_bytes = sum(u[idx[t + "_bytes"]] for t in TIERS)
        link.append(8.0 * (sent_bytes + u[idx["rx_bytes"]]) / budget_bits)
        us, miss = cpu_us(fleet["nodes"].get(str(k), {}), u[idx["polls"]], costs)
        unpriced |= miss
        cpu.append(us / (mission_s * 1e6))
    flat = metrics.get("flat", {})
    auction = _auction_count(metrics)
    return {
        "nodes": n, "clusters": len(sc.clusters), "regions": len(sc.regions), "mission_s": mission_s,
        "tiers": tiers,
        "messages_per_node_hour": sum(t["messages_per_node_hour"] for t in tiers.values()),
        "bytes_per_node_hour": sum(t["bytes_per_node_hour"] for t in tiers.values()),
        "link_share": {"mean": sum(link) / n, "p50": _pct(link, 0.5), "p99": _pct(link, 0.99), "max": max(link)},
        "cpu_share": {"mean": sum(cpu) / n, "p50": _pct(cpu, 0.5), "p99": _pct(cpu, 0.99), "max": max(cpu)},
        "cpu_unpriced_types": sorted(unpriced),
        "production_lost_share": flat.get("market_lost_share"),
        "failover_s": {"count": flat.get("failover_count"), "p50": flat.get("failover_s_p50"),
                       "p99": flat.get("failover_s_p99")},
        "auction_decision_s": {"count": auction, "p50": flat.get("market_decision_s_p50"),
                               "p99": flat.get("market_decision_s_p99")},
        "frames": {"sent": fleet["fleet"]["sent"], "delivered": fleet["fleet"]["delivered"],
                   "dropped": fleet["fleet"]["dropped"]},
    }


def _auction_count(metrics):
    auction = ((metrics.get("market") or {}).get("auction") or {})
    return sum((a.get("decision") or {}).get("count", 0) for a in auction.values() if isinstance(a, dict))


class SweepProgress:
    """One line: the size being run, its mission time, and the sweep's share
    done and ETA, counting work as nodes x mission seconds (a run's cost is
    about proportional to both)."""

    def __init__(self, stream, sizes, duration_s, clock=time.monotonic):
        self.stream = stream
        self.total = float(sum(sizes)) * duration_s
        self.sizes = sizes
        self.done = 0.0
        self.clock = clock
        self.t0 = clock()
        self.window = progress.WindowRate()
        self.last = None
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.size = self.k = 0

    def start(self, k, size):
        self.k, self.size = k, size
        self.window = progress.WindowRate()  # this size's rate from its first window, past its setup

    def finished(self, size, duration_s):
        self.done += size * duration_s

    def __call__(self, mission_ns, run):
        now = self.clock()
        work = self.done + self.size * mission_ns / S
        rate = self.window.rate(now, work)
        if self.last is not None and now - self.last < (0.2 if self.tty else 10.0):
            return
        self.last = now
        el = now - self.t0
        if rate is not None:  # this size's windows' rate (the sizes still to come: their setup not counted)
            eta = (self.total - work) / rate
        else:
            eta = el * (self.total - work) / work if work > 0 else None
        line = "  sweep %3.0f%%  size %6d (%d/%d)  mission %7.1f/%g s  elapsed %7s  ETA %7s" % (
            100.0 * work / self.total, self.size, self.k + 1, len(self.sizes), mission_ns / S, run.sc.duration_s,
            progress.clock_text(el), progress.clock_text(eta))
        self.stream.write(("\r" + line) if self.tty else line + "\n")
        self.stream.flush()

    def end_line(self):
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def sweep(path, sizes, out_dir, duration_s=None, workers=1, traced=DEFAULT_TRACED, costs=None, progress_stream=None,
          say=None, shard_python=None):
    """Run the description at each size into out_dir/N; return the sweep's JSON data.
    shard_python: --shard-python's value (ground/shard_host.py choose), chosen per size; None: this Python."""
    from ground.fleetrun import LeanRun

    costs = costs or load_costs()
    rows = []
    plans = []
    for size in sizes:  # every size loads before anything runs: bad input costs no run
        try:
            plans.append((size,) + load_at(path, size, duration_s))
        except ConfigError as e:  # the file says another fleet.nodes: name the size it was refused at
            raise ConfigError("%s (at fleet.nodes %d, from --sizes)" % (e, size)) from None
    dur = plans[0][1].duration_s
    prog = SweepProgress(progress_stream, sizes, dur) if progress_stream is not None else None
    for k, (size, sc, radio, note) in enumerate(plans):
        cl = traced_clusters(sc, traced)
        probe_at = add_probes(sc, sorted(sc.clusters)[:traced])
        w0, c0 = time.perf_counter(), time.process_time()
        lean = LeanRun(sc, os.path.join(out_dir, str(size)), workers=workers, traced=cl, shard_python=shard_python)
        if prog is not None:
            prog.start(k, size)
            lean.progress = prog
        result = lean.execute()
        if prog is not None:
            prog.finished(size, sc.duration_s)
        r = row(sc, result.fleet, result.metrics, costs, radio, result.fleet["mission_s"])
        worker_cpu = sum(c or 0.0 for c in lean.stats.get("shard_cpu_s") or ())
        r.update(note=note, traced_clusters=cl, probe={"crash_coordinator_at_s": probe_at, "down_s": PROBE_DOWN_S,
                                                       "clusters": sorted(sc.clusters)[:traced]},
                 status=result.status, failures=result.failures, wall_s=round(time.perf_counter() - w0, 1),
                 cpu_s=round(time.process_time() - c0 + (worker_cpu if lean.stats.get("backend") != "in-process" else 0),
                             1),
                 workers=workers, shards=len(lean.plan), shard_python=lean.shard_python, radio_bps=radio,
                 design=rep.design_band(size))
        rows.append(r)
        if say is not None:
            if prog is not None:
                prog.end_line()
            say(rep.row_line(r))
    return {
        "format": "fleetloop-sweep/1", "scenario": path, "seed": plans[0][1].seed, "duration_s": dur,
        "sizes": rows, "design_table": rep.DESIGN,
        "costs": {k: costs.get(k) for k in ("machine", "measured", "how", "micropython")},
        "machine": machine.describe(),
    }


# ---- the command line ------------------------------------------------------------

def add_arguments(p):
    p.add_argument("fleet", metavar="FLEET.yaml", help="a fleet description with fleet.radio_bps (docs/FLEET.md)")
    p.add_argument("--sizes", required=True, metavar="N,N,...", help="fleet sizes in nodes, e.g. 100,500,2000,10000")
    p.add_argument("--duration-s", type=float, metavar="S", help="mission seconds per size (default: the file's)")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="lean path on N cores: N shards on a local Ray (1: in-process, the default)")
    p.add_argument("--shard-python", metavar="PY", help="run the shards under this Python, in a process of their own"
                   " per worker; `this`: in this one; default `auto`: .venv-pypy's PyPy (`make pypy`) for sizes of"
                   " 200,000 node-mission-s and more (docs/FLEET_RUN.md \"Shards on PyPy\")")
    p.add_argument("--traced", type=int, default=DEFAULT_TRACED, metavar="K",
                   help="trace (and probe with a coordinator crash) the first K clusters (default %d)" % DEFAULT_TRACED)
    p.add_argument("--out", metavar="DIR", help="where the runs, sweep.json, sweep.txt, sweep.png go"
                                                " (default: runs/sweep-NAME-DATE-TIME)")
    p.add_argument("--force", action="store_true", help="write into an --out folder that already has files")
    p.add_argument("--no-plot", action="store_true", help="skip sweep.png")


def _sizes(text):
    try:
        sizes = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError("--sizes %s: want node counts separated by commas, e.g. 100,500,2000" % text) from None
    if not sizes or any(s < 1 for s in sizes):
        raise InputError("--sizes %s: want node counts of 1 or more" % text)
    return sorted(set(sizes))


def main(args):
    sizes = _sizes(args.sizes)
    if args.workers < 1:
        raise InputError("--workers %d: want 1 or more" % args.workers)
    if args.traced < 1:
        raise InputError("--traced %d: want 1 or more" % args.traced)
    path = readable(args.fleet)
    out = args.out or os.path.join("runs", "sweep-%s-%s" % (os.path.splitext(os.path.basename(path))[0],
                                                            time.strftime("%Y%m%d-%H%M%S")))
    fresh_folder(out, args.force)
    try:
        costs = load_costs()
    except (OSError, ValueError) as e:  # the data file shipped with ground/: not the user's input
        raise RuntimeError("%s: cannot read the core call costs (%s); `python -m bench.core_costs --write` measures"
                           " them" % (COSTS, e)) from None
    quiet = args.quiet

    def say(text):
        print(text, flush=True)

    if not quiet:
        print("ground sweep: %s at %s nodes -> %s" % (path, ", ".join(map(str, sizes)), out), file=sys.stderr,
              flush=True)
        say(rep.HEADER)
    # a ValueError here (ConfigError included) is bad input, named, or a bug: exitcodes.main_wrapper tells
    data = sweep(path, sizes, out, duration_s=args.duration_s, workers=args.workers, traced=args.traced,
                 costs=costs, progress_stream=None if quiet else sys.stderr, say=None if quiet else say,
                 shard_python=args.shard_python or "auto")
    written = rep.write(out, data, plot=not args.no_plot)
    if quiet:
        print(rep.table(data))
    else:
        print()
        print(rep.beside_design(data))
        print("wrote %s" % ", ".join(written))
    failed = [r for r in data["sizes"] if r["status"] != "ok"]
    for r in failed:
        print("FAIL: size %d: run %s: %s" % (r["nodes"], r["status"], "; ".join(r["failures"])))
    return exitcodes.FAILED if failed else exitcodes.OK
