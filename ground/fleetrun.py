"""The lean run path for fleets: a scenario's in-process nodes in virtual
time, sharded, with counters instead of a full trace (docs/FLEET_RUN.md).

    result = LeanRun(sc, out_dir, workers=1).execute()        # in-process shards
    result = LeanRun(sc, out_dir, workers=2).execute()        # a local Ray, one actor per worker
    result = LeanRun(sc, out_dir, workers=4, ray_address="ray://head:10001").execute()

What it plans and drives (each shard is a ground/shard.py Shard):

- units: a region (when the scenario has a market: its one region holds
  every node) or else a cluster; a shard is a run of whole units, balanced
  by node count, so a region is never split. By default a shard holds
  about SHARD_NODES nodes, and a worker runs its shards one after the
  other each window: a window's work then touches one shard's memory at a
  time and stays in the processor's caches (docs/FLEET_RUN.md "Shard
  size": 5,000 nodes cost about 60 % less CPU as 125 shards in windows of
  10 s than as one shard);
- windows: every shard runs the same mission window, then the frames that
  cross units are gathered, sorted by (deliver ns, src, src's frame number,
  dst, copy) and handed to the recipients' shards. The window is the
  smallest light delay between units (a lower bound of the link models);
  where no frame can cross units (no market: a node only addresses its own
  cluster and the ground), it is SYNC_S of mission time, the cadence of
  progress and of noticing a dead worker, when the exchange still carries
  something (a rollout's records and orders, ground/fleet_rollout.py, or
  the nodes' new protocol ranges, ground/shard_skew.py, which every shard
  applies as the next window opens), and LONE_SYNC_S when it carries
  nothing: a shard then runs that long at a time, over memory still in the
  processor's caches (docs/FLEET_RUN.md "Shard size"); the same exchange
  carries the ground's orders (ground/shard_contain.py) where regions are;
- since every link's draws come from (seed, src, dst) and every cross-unit
  frame goes through the window exchange whatever shard holds its
  recipient, the counters are the same for any number of shards;
- the trace: only the clusters named (`traced=`, `ground run --trace-clusters`,
  or a scenario's `trace: {clusters: [...]}`, ground/scenario.py's
  sc.trace); by default every cluster of a small scenario (up to
  FULL_TRACE_NODES nodes), and of a fleet the first DEFAULT_TRACED clusters
  and the clusters of the first region's electors (so its market rounds,
  which the default gate counts, are in the trace).
  Its metrics families (ground/metrics/) are computed over that trace;
  fleet-wide figures come from the counters (fleet.json).

A worker that dies ends the run with its shard named; the counters of the
shards still alive and the trace written so far are kept and written.
"""

import heapq
import json
import os
import time

from ground import firmware, fleet_contain, shard_skew
from ground import metrics as metrics_mod
from ground import report
from ground import run as run_mod
from ground.fleet_rollout import LeanRollout
from ground.fleetcount import Counters
from ground.run import RunResult
from ground.shard import GLOBAL_FAULTS, NODE_FAULTS, Shard, ShardFailed, advance_all, finish_all
from ground.shard_contain import ORDER, STEPS as CONTAIN_STEPS
from ground.shard_rollout import RECORD
from ground.shard_skew import RANGE

S = 1_000_000_000
MS = 1_000_000
SYNC_S = 1.0  # mission seconds per window where no frame crosses units but a rollout or protocol ranges do
LONE_SYNC_S = 10.0  # ... where nothing crosses units: each shard runs 10 mission s at a time
FULL_TRACE_NODES = 200  # up to this many nodes, a lean run traces every cluster
DEFAULT_TRACED = 3  # clusters traced by default above that
LEAN_AUTO_NODES = 2000  # `ground run --sim` takes the lean path above this many nodes
JITTER_SIGMAS = 6  # a normal jitter's lower bound, for the window
SHARD_NODES = 40  # by default, a shard of about this many nodes (whole units: a region may be more)


class ShardDied(RuntimeError):
    """A shard's worker died: names the shard (index and clusters)."""


def lean_refusal(sc):
    """Why the lean path cannot run sc (a one-line message naming file:line), or None."""
    steps = NODE_FAULTS + GLOBAL_FAULTS + CONTAIN_STEPS + (("rollout",) if sc.rollout is not None else ())
    for f in sc.faults:
        if f.action not in steps:
            return "%s: step %s: not supported on the lean path (it supports %s)" % (f.where, f.action, ", ".join(steps))
    if sc.replication is not None:  # its nodes would never join or split there: the gates would fail for nothing
        return "%s: replication: not supported on the lean path (it adds no nodes)" % sc.replication.where
    return None


def units_of(sc):
    """cluster id -> unit key: its region where the scenario has markets
    (sc.regions, ground/regions.py: `market:` is one region over every
    node, `regions:` several), else the cluster itself."""
    out = {}
    for r in getattr(sc, "regions", None) or ():
        for c in r.clusters:
            out[c] = ("region", r.region)
    for c in sc.clusters:
        out.setdefault(c, ("cluster", c))
    return out


def plan_shards(sc, n):
    """[[cluster ids]] for n shards: whole units in unit order, each shard
    about the same number of nodes; fewer shards if there are fewer units."""
    unit_of = units_of(sc)
    units = {}
    for c in sorted(sc.clusters):
        units.setdefault(unit_of[c], []).append(c)
    order = sorted(units, key=lambda u: min(units[u]))
    runs = _balanced_runs([sum(len(sc.clusters[c]) for c in units[u]) for u in order], n)
    return [[c for i in run for c in units[order[i]]] for run in runs]


def _balanced_runs(sizes, n):
    """[[indices]]: sizes cut into at most n runs of consecutive items, about
    the same total each, none empty (fewer runs if there are fewer items)."""
    n = max(1, min(n, len(sizes)))
    total = sum(sizes)
    runs, acc, k = [[] for _ in range(n)], 0, 0
    for i, size in enumerate(sizes):
        # move on once this run has its share, keeping an item for every run still empty
        if runs[k] and k < n - 1 and (acc >= total * (k + 1) / n or len(sizes) - i <= n - 1 - k):
            k += 1
        runs[k].append(i)
        acc += size
    return [r for r in runs if r]


def default_shards(sc, workers):
    """How many shards by default: one per SHARD_NODES nodes, at least one per worker."""
    return max(workers, -(-len(sc.nodes) // SHARD_NODES))


def plan_workers(sc, plan, workers):
    """[[shard indices]] for each worker: runs of consecutive shards, about
    the same number of nodes each; fewer workers if there are fewer shards."""
    return _balanced_runs([sum(len(sc.clusters[c]) for c in cl) for cl in plan], workers)


def _lower_bound_ns(spec):
    """The shortest delay a link model can give a frame (its light delay)."""
    fixed = float(spec.get("delay_ms") or 0)
    jit = float(spec.get("jitter_ms") or 0)
    kind = spec.get("jitter", "uniform" if jit else "none")
    low = fixed - (jit if kind == "uniform" else JITTER_SIGMAS * jit if kind == "normal" else 0)
    for seg in spec.get("delay_schedule") or ():
        low = min(low, float(seg[2]))
    return max(0, int(low * MS))


def window_ns(sc, unit_of):
    """The synchronisation window: where no frame can cross units, SYNC_S
    (LONE_SYNC_S when nothing else crosses either: no rollout, no protocol
    ranges), else the smallest light delay between units (ValueError if
    that is zero)."""
    if len(set(unit_of.values())) <= 1 or (sc.market is None and not getattr(sc, "regions", None)):
        lone = sc.rollout is None and not shard_skew.needed(sc)
        return int((LONE_SYNC_S if lone else SYNC_S) * S)
    best = None
    by_unit = {}
    for nid in sorted(sc.nodes):
        by_unit.setdefault(unit_of[sc.nodes[nid].cluster], nid)
    reps = sorted(by_unit.values())
    for a in reps:
        for b in reps:
            if a != b:
                low = _lower_bound_ns(sc.link_spec(a, b))
                best = low if best is None else min(best, low)
    for pair in sc.links.get("pairs", ()):
        s, d = pair["src"], pair["dst"]
        if s in sc.nodes and d in sc.nodes and unit_of[sc.nodes[s].cluster] != unit_of[sc.nodes[d].cluster]:
            best = min(best, _lower_bound_ns(pair))
    if not best:
        raise ValueError("%s: frames cross regions but the links between them have no light delay (the smallest"
                         " is 0 ms): shards cannot run apart; give links.inter_cluster a delay_ms > 0 or run with"
                         " --workers 1" % sc.path)
    return min(best, int(SYNC_S * S))


def default_traced(sc):
    """The clusters traced when nothing names them."""
    named = getattr(sc, "trace", None)
    if isinstance(named, dict) and named.get("clusters") is not None:
        return sorted(named["clusters"])
    out = sorted(sc.clusters) if len(sc.nodes) <= FULL_TRACE_NODES else first_and_electors(sc, DEFAULT_TRACED)
    return [c for c in out if traceable(sc, c)]


def traceable(sc, c):
    """Cluster c's frames can be traced: with addressing: region (ground/wireids.py), the trace names nodes and
    clusters fleet-wide in the wire's 16 bits, so its id must be below 0xE00 and its nodes' at most 0xEFFF."""
    return sc.wire_ids is None or (c <= 0xDFF and max(sc.clusters[c]) <= 0xEFFF)


def first_and_electors(sc, first):
    """The first `first` clusters and the clusters of the first region's electors."""
    out = set(sorted(sc.clusters)[:first])
    if sc.regions:
        out |= {sc.nodes[e].cluster for e in sc.regions[0].electors}
    return sorted(out)


class InProcess:
    """The shards as objects in this process (--workers 1), each window run
    one after the other."""

    name = "in-process"

    def __init__(self, specs):
        self.shards = [Shard(**kw) for kw in specs]
        self.last_cpu_s = [0.0]  # per worker (this process): its shards' CPU in the last window

    def advance(self, until_ns, inboxes, last):
        try:
            out, self.last_cpu_s[0] = advance_all(self.shards, until_ns, inboxes, last)
        except ShardFailed as f:
            raise shard_failed(f.index, self.shards[f.index].clusters, f.now_ns, f) from f.error
        return out

    def finish(self, inboxes, status, reason):
        return finish_all(self.shards, inboxes, status, reason)

    def close(self):
        pass


def shard_failed(k, clusters, now_ns, what):
    """The ShardDied for shard k (of `clusters`) that raised at now_ns."""
    return ShardDied("shard %d (clusters %s) failed at mission %.3f s: %s" % (k, _span(clusters), now_ns / S, what))


def _span(clusters):
    return "%s..%s" % (clusters[0], clusters[-1]) if len(clusters) > 1 else str(clusters[0])


class LeanRun:
    """One lean run of scenario sc into out_dir. workers: processes that run
    shards at once (1: in-process, no Ray); shards: how many shards (default:
    default_shards); ray_address: join that Ray cluster instead of starting
    one; shard_python: the shards' interpreter (ground/shard_host.py choose:
    "auto", "this", a path), None: this one."""

    def __init__(self, sc, out_dir, seed=None, workers=1, shards=None, ray_address=None, traced=None,
                 progress=None, die=None, plot=True, shard_python=None):
        why = lean_refusal(sc)
        if why:
            raise ValueError(why + "; run this scenario without --lean/--workers")
        self.sc = sc
        self.out_dir = out_dir
        self.seed = sc.seed if seed is None else seed
        self.workers = max(1, int(workers))
        self.ray_address = ray_address
        self.progress = progress  # fn(mission_ns, run) every window, or None
        self.die = die  # (shard index, mission s): that shard's worker dies then (tests of a dying worker)
        self.plot = plot  # a rollout's rollout.png (no timeline.png on this path); False: ground run --no-plot
        self.unit_of = units_of(sc)
        self.window_ns = window_ns(sc, self.unit_of)
        # the shards' interpreter when not this one (ground/shard_host.py): shard_python is --shard-python's
        # value ("auto", "this", a path or a command), None: this one
        self.shard_python = None
        if shard_python is not None:
            from ground.shard_host import choose

            self.shard_python = choose(shard_python, len(sc.nodes), sc.duration_s, self.window_ns / S)
        self.plan = plan_shards(sc, shards or default_shards(sc, self.workers))
        self.groups = plan_workers(sc, self.plan, self.workers)  # each worker's shards (Ray)
        traced = default_traced(sc) if traced is None else sorted(traced)
        for c in traced:
            if c not in sc.clusters:
                raise ValueError("%s: trace: cluster %r is not in the scenario (clusters %s)"
                                 % (sc.path, c, _span(sorted(sc.clusters))))
            if not traceable(sc, c):
                raise ValueError("%s: trace: cluster %d: with addressing: region a traced cluster's id must be"
                                 " at most 3583 and its nodes' at most 61439 (the trace's addresses)" % (sc.path, c))
        self.traced_clusters = traced
        self.traced = sorted(n for c in traced for n in sc.clusters[c])
        self.trace_path = os.path.join(out_dir, "trace.jsonl")
        self.counters = None
        self.stats = {}
        self.rollout = None  # ground/fleet_rollout.py's LeanRollout, while the run goes

    def addressing(self):
        """addressing: region (ground/wireids.py): the traced nodes' ids on the wire, which a frame's hex carries
        (the trace's src, dst, to and msg fields are the scenario's)."""
        ids = self.sc.wire_ids
        return {"mode": "region", "traced_wire_ids": {str(n): ids.node(n) for n in self.traced}}

    def header(self):
        sc = self.sc
        nodes = {str(n): {"cluster": sc.nodes[n].cluster, "firmware": sc.nodes[n].firmware,
                          "hw_gen": sc.nodes[n].hw_gen, "lineage": sc.nodes[n].lineage, "link": "sim"}
                 for n in self.traced}
        return {
            "kind": "header", "format": "fleetloop-trace/1", "scenario": sc.name, "scenario_path": sc.path,
            "scenario_text": sc.text, "seed": self.seed, "time_scale": sc.time_scale, "mode": "sim",
            "election_timeout_ms": sc.election_timeout_ms, "duration_s": sc.duration_s,
            **({"market": {"region": sc.market.region, "electors": list(sc.regions[0].electors),
                           "slot_ms": sc.market.slot_ms}} if sc.market else {}),
            **(run_mod.regions_header(sc) if len(getattr(sc, "regions", ())) > 1 else {}),
            "nodes": nodes, "links": {k: (list(v) if isinstance(v, list) else dict(v)) for k, v in sc.links.items()},
            "lean": {"traced_clusters": self.traced_clusters, "fleet_nodes": len(sc.nodes),
                     "fleet_clusters": len(sc.clusters)},
            **({"addressing": self.addressing()} if sc.wire_ids is not None else {}),
            "mission_ns": 0, "wall_ns": 0,
        }

    def _specs(self):
        watch = sorted({f.cluster for f in self.sc.faults if f.target == "coordinator"})
        parts = os.path.join(self.out_dir, ".parts")
        os.makedirs(parts, exist_ok=True)
        specs = []
        sever = len(getattr(self.sc, "regions", None) or ()) > 1  # a shard may record its region's sever events
        cluster_of = {nid: spec.cluster for nid, spec in self.sc.nodes.items()}  # one for every shard
        for k, clusters in enumerate(self.plan):
            mine = set(clusters)
            traced = [n for n in self.traced if self.sc.nodes[n].cluster in mine]
            die_at = int(self.die[1] * S) if self.die is not None and self.die[0] == k else None
            specs.append(dict(sc=self.sc, seed=self.seed, index=k, clusters=clusters, unit_of=self.unit_of,
                              traced=self.traced, coordinator_watch=watch, die_at_ns=die_at, cluster_of=cluster_of,
                              trace_path=os.path.join(parts, "part-%03d.jsonl" % k) if (traced or k == 0 or sever)
                              else None))
        return specs

    def _backend(self):
        specs = self._specs()
        if self.workers == 1 and self.ray_address is None:
            if self.shard_python is not None:
                from ground.shard_host import ChildShards

                return ChildShards(specs, self.shard_python)
            return InProcess(specs)
        from ground.fleetray import RayShards

        return RayShards(specs, self.groups, self.ray_address, self.shard_python)

    def _route(self, outs, n, until):
        """Cross-unit frames, sorted, into each recipient shard's inbox; the
        ground's orders (ground/shard_contain.py) into every shard's; the
        rollout's records (ground/shard_rollout.py) to its orchestrator, and
        its orders after the rest; the nodes' new protocol ranges
        (ground/shard_skew.py) at the head of every shard's, in this order."""
        shard_of = self._shard_of
        frames = [f for out in outs for f in out]
        frames.sort(key=lambda f: (f[0], f[1], f[2], f[3], f[4]))
        inboxes = [[] for _ in range(n)]
        records = []
        ranges = []
        for f in frames:
            if f[3] == RECORD:
                records.append(f)
            elif f[3] == RANGE:
                ranges.append(f)
            elif f[3] == ORDER:
                for box in inboxes:
                    box.append(f)
            else:
                inboxes[shard_of[f[3]]].append(f)
        if self.rollout is not None:
            for f in self.rollout.window(until, records):
                for box in inboxes:
                    box.append(f)
        if ranges:
            inboxes = [ranges + box for box in inboxes]
        return inboxes, len(frames) - len(records) - len(ranges)

    def execute(self):
        sc = self.sc
        os.makedirs(self.out_dir, exist_ok=True)
        self._shard_of = {0: 0}
        for k, clusters in enumerate(self.plan):
            for c in clusters:
                for nid in sc.clusters[c]:
                    self._shard_of[nid] = k
        n = len(self.plan)
        status, reason = "ok", ""
        end_ns = int(sc.duration_s * S)
        t = 0
        inboxes = [[] for _ in range(n)]
        w0, c0 = time.perf_counter(), time.process_time()
        windows = crossed = 0
        exchange_s = advance_s = busiest_s = 0.0
        backend = None
        states = []
        try:
            if sc.rollout is not None:  # one orchestrator for the fleet, in the driver (ground/fleet_rollout.py)
                os.makedirs(os.path.join(self.out_dir, ".parts"), exist_ok=True)
                self.rollout = LeanRollout(sc, self.seed, os.path.join(self.out_dir, ".parts", "part-rollout.jsonl"))
            backend = self._backend()
            self.stats["backend"] = backend.name
            self.stats["setup_s"] = time.perf_counter() - w0
            while True:
                until = min(t + self.window_ns, end_ns)
                last = until == end_ns
                a0 = time.perf_counter()
                outs = backend.advance(until, inboxes, last)
                x0 = time.perf_counter()
                advance_s += x0 - a0
                busiest_s += max(backend.last_cpu_s)  # the busiest worker's CPU in this window
                inboxes, k = self._route(outs, n, until)
                exchange_s += time.perf_counter() - x0
                crossed += k
                windows += 1
                t = until
                if self.progress is not None:
                    self.progress(t, self)
                if last:
                    break
        except ShardDied as e:
            status, reason = "failed", str(e)
        except KeyboardInterrupt:
            status, reason = "interrupted", "interrupted by the user"
        finally:
            if backend is not None:
                states = backend.finish(inboxes, status, reason)
                peaks = getattr(backend, "peak_rss_kb", None)
                self.stats["worker_peak_rss_kb"] = peaks() if peaks else []
                self.stats["child_cpu_s"] = getattr(backend, "child_cpu_s", None)  # shards in a child (--shard-python)
                backend.close()
            if self.rollout is not None:
                self.rollout.close()
        # the cost of synchronising: a window's wall time beyond its busiest shard's CPU time
        self.stats.update(windows=windows, crossed=crossed, exchange_s=exchange_s, mission_ns=t, advance_s=advance_s,
                          busiest_cpu_s=busiest_s, shard_cpu_s=[s.get("cpu_s") if s else None for s in states],
                          wall_s=time.perf_counter() - w0, cpu_s=time.process_time() - c0)
        return self._finish(states, status, reason, t)

    def _finish(self, states, status, reason, t):
        sc = self.sc
        counters = Counters({nid: s.cluster for nid, s in sc.nodes.items()}, sorted(sc.clusters), sc.duration_s)
        lost = []
        for k, st in enumerate(states):
            if st is None:
                lost.append(k)
            else:
                counters.merge(st)
        self.counters = counters
        self._merge_trace(status, reason, t, counters)
        m, _ = metrics_mod.from_trace(self.trace_path)
        m = m.result()
        failures = metrics_mod.evaluate(m, sc.gates)
        if status != "ok":
            failures.append("run %s: %s" % (status, reason))
        report.write_reports(self.out_dir, self.header(), m, None, plot=False)
        regions = {}
        for c, u in sorted(self.unit_of.items()):
            regions.setdefault(u[1] if u[0] == "region" else "fleet", []).append(c)
        fleet = counters.to_json(firmware.msgs.name, regions)
        fleet.update({
            "format": "fleetloop-fleet/1", "scenario": sc.name, "seed": self.seed, "status": status,
            "reason": reason, "mission_s": t / S, "nodes_total": len(sc.nodes), "clusters_total": len(sc.clusters),
            "shards": [{"index": k, "clusters": cl, "nodes": sum(len(sc.clusters[c]) for c in cl),
                        "counters": "lost (the worker died)" if k in lost else "kept"}
                       for k, cl in enumerate(self.plan)],
            "window_s": self.window_ns / S, "traced_clusters": self.traced_clusters,
            **({"addressing": self.addressing()} if sc.wire_ids is not None else {}),
            "containment": fleet_contain.to_json([st.get("contain") for st in states if st is not None], sc),
        })
        with open(os.path.join(self.out_dir, "fleet.json"), "w", encoding="utf-8") as f:
            json.dump(fleet, f, indent=1, sort_keys=True)
            f.write("\n")
        m["fleet"] = fleet["fleet"]
        if self.plot and self.rollout is not None and m.get("rollout"):  # last: a missing matplotlib costs only it
            self.rollout.draw(os.path.join(self.out_dir, "rollout.png"), t, "%s (seed %s)" % (sc.name, self.seed))
        self.result = RunResult(self.out_dir, m, failures, status)
        self.result.fleet = fleet
        return self.result

    def _merge_trace(self, status, reason, t, counters):
        """The shards' trace parts, merged by mission time (stable), between
        the header and the end line."""
        parts_dir = os.path.join(self.out_dir, ".parts")
        names = sorted(os.listdir(parts_dir)) if os.path.isdir(parts_dir) else []
        files = [open(os.path.join(parts_dir, nm), encoding="utf-8") for nm in names]

        def keyed(k, f):
            for line in f:
                if not line.endswith("\n"):
                    return  # a torn line from a worker that died mid-write
                i = line.index('"mission_ns":') + 13
                j = line.index(",", i)
                yield int(line[i:j]), k, line

        with open(self.trace_path, "w", encoding="utf-8") as out:
            out.write(json.dumps(self.header(), separators=(",", ":"), sort_keys=True) + "\n")
            for _, _, line in heapq.merge(*(keyed(k, f) for k, f in enumerate(files))):
                out.write(line)
            fl = counters.to_json(firmware.msgs.name, {})["fleet"]
            end = {"kind": "end", "frames": fl["sent"], "status": status, "reason": reason, "mission_ns": t,
                   "wall_ns": int(t / self.sc.time_scale)}
            out.write(json.dumps(end, separators=(",", ":"), sort_keys=True) + "\n")
        for f in files:
            f.close()
        for nm in names:
            os.remove(os.path.join(parts_dir, nm))
        if os.path.isdir(parts_dir):
            os.rmdir(parts_dir)


def run(sc, out_dir, **kw):
    return LeanRun(sc, out_dir, **kw).execute()

