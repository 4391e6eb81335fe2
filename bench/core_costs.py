"""The cost of each core call type under the MicroPython unix port, measured
once and stored as ground/core_costs.json (the data `ground sweep` turns
counts into a share of each node's CPU, docs/METRICS.md).

    .venv/bin/python -m bench.core_costs [--nodes 600] [--duration-s 60] [--write]

How: the sweep's fleet description (scenarios/fleet-sweep.yaml) at --nodes
runs on the lean path under CPython (one ground/shard.py Shard, every event
in mission order) while every core call of the recorded nodes (cluster 1's
nodes and every region's electors, first life only) is written down: each
Node.receive with its line, each Node.poll with the types of the frames it
returned. bench/mpy/core_costs.py then rebuilds those nodes under the
MicroPython unix port as a board would (runtime/boardcfg.py, same seeds)
and replays the calls in order, timing each. The core is deterministic, so
the replayed nodes do what they did in the run. Prints the per-call costs;
--write stores them with this machine's description in ground/core_costs.json.
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
import time

from bench.machine_info import describe
from ground import board_json, fleetrun, scenario
from ground.shard import Shard
from ground.shard_route import frame_header
from ground.yamlfile import load

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MPY = os.path.join(ROOT, ".venv", "bin", "micropython")
OUT = os.path.join(ROOT, "ground", "core_costs.json")
S = 1_000_000_000


class Recorder:
    """A core whose receive and poll calls are written down (in `calls`)."""

    def __init__(self, node, calls):
        self._node = node
        self._calls = calls

    def receive(self, line, now_ms):
        self._calls.append([now_ms, "r", bytes(line).hex(), frame_header(line)[1]])
        return self._node.receive(line, now_ms)

    def poll(self, now_ms):
        out = self._node.poll(now_ms)
        self._calls.append([now_ms, "p", [frame_header(bytes(ln[:-1]))[1] for _, ln in out]])
        return out

    def __getattr__(self, name):
        return getattr(self._node, name)


class RecordingShard(Shard):
    def __init__(self, record, **kw):
        self.record = {n: [] for n in record}
        self.seeds = {}
        super().__init__(**kw)
        self._key = None  # every receive as bytes (Node.receive, recorded), never the shared decode's Frame

    def _factory(self, nid):
        make = super()._factory(nid)
        calls = self.record.get(nid)
        if calls is None:
            return make

        def wrapped(saved, boots):
            node = make(saved, boots)
            if boots == 1:  # the first life only: a reboot's saved state is not replayed
                self.seeds[nid] = self.seed * 100_003 + nid * 7 + boots
                return Recorder(node, calls)
            return node

        return wrapped


def record(nodes, duration_s, path):
    data, text = load(os.path.join(ROOT, "scenarios", "fleet-sweep.yaml"))
    data["fleet"]["nodes"] = nodes
    data["duration_s"] = duration_s
    sc = scenario.parse(data, text, "scenarios/fleet-sweep.yaml")
    first = sorted(sc.clusters)[0]
    rec = sorted(set(sc.clusters[first]) | {e for r in sc.regions for e in r.electors})
    unit_of = fleetrun.units_of(sc)
    sh = RecordingShard(rec, sc=sc, seed=sc.seed, index=0, clusters=sorted(sc.clusters), unit_of=unit_of)
    win = fleetrun.window_ns(sc, unit_of)
    t, end, inbox = 0, int(duration_s * S), []
    c0 = time.process_time()
    while True:
        until = min(t + win, end)
        out = sh.advance(until, inbox, until == end)
        inbox = sorted(out, key=lambda f: (f[0], f[1], f[2], f[3], f[4]))
        t = until
        if until == end:
            break
    sh.finish(inbox)
    cpu = time.process_time() - c0
    with open(path, "w", encoding="utf-8") as f:
        for nid in rec:
            spec = sc.nodes[nid]
            board = board_json.board_config(sc, nid)
            f.write(json.dumps({"node": nid, "seed": sh.seeds[nid], "board": board, "age_slots": spec.age_slots,
                                "fw_version": list(spec.fw_version), "calls": sh.record[nid]}) + "\n")
    return sc, rec, sum(len(c) for c in sh.record.values()), cpu


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.core_costs", description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=600)
    ap.add_argument("--duration-s", type=float, default=60.0)
    ap.add_argument("--write", action="store_true", help="store the costs in ground/core_costs.json")
    args = ap.parse_args(argv)
    os.makedirs(os.path.join(ROOT, "build"), exist_ok=True)
    path = os.path.join(ROOT, "build", "core_calls.jsonl")
    print("machine: %s" % describe(), flush=True)
    sc, rec, n_calls, cpu = record(args.nodes, args.duration_s, path)
    print("recorded %d core calls of %d nodes (cluster %d and the electors) in a %d-node, %g mission s lean run"
          " (%.1f s CPU)" % (n_calls, len(rec), sorted(sc.clusters)[0], len(sc.nodes), args.duration_s, cpu),
          flush=True)
    p = subprocess.run([MPY, "-X", "heapsize=64M", os.path.join(ROOT, "bench", "mpy", "core_costs.py"), path,
                        os.path.join(ROOT, "firmware")], capture_output=True, text=True, timeout=1800, cwd=ROOT)
    if p.returncode != 0:
        sys.exit("bench/mpy/core_costs.py failed (exit %d): %s" % (p.returncode, p.stderr.strip()[-2000:]))
    costs = json.loads(p.stdout.strip().splitlines()[-1])
    from ground import firmware

    name = firmware.msgs.name
    print("medians (means in brackets); poll (idle): %.1f us [%.1f] over %d polls"
          % (costs["poll_us"], costs["poll_mean_us"], costs["polls_idle"]))
    for t in sorted(costs["rx_us"], key=int):
        print("  %-15s receive %7.1f us [%7.1f] (n %6d)   send %7.1f us (n %6d)" % (
            name(int(t)), costs["rx_us"][t], costs["rx_mean_us"][t], costs["rx_n"][t], costs["tx_us"].get(t, 0.0),
            costs["tx_n"].get(t, 0)))
    for t in sorted(set(costs["tx_us"]) - set(costs["rx_us"]), key=int):
        print("  %-15s send %7.1f us (n %d)" % (name(int(t)), costs["tx_us"][t], costs["tx_n"][t]))
    if args.write:
        doc = {
            "what": "median cost of each core call type in us: Node.receive per frame type (rx_us), an idle"
                    " Node.poll (poll_us), and per frame type what a poll spends per frame it returns beyond an"
                    " idle poll (tx_us); the means beside them (*_mean_us, inflated when the shared host"
                    " preempts a call)",
            "how": "bench/core_costs.py: the core calls of %d nodes (cluster %d and every region's electors)"
                   " recorded in a %d-node, %g mission s lean run of scenarios/fleet-sweep.yaml under CPython,"
                   " replayed in order under the MicroPython unix port (bench/mpy/core_costs.py, -X heapsize=64M),"
                   " each call timed with time.ticks_us" % (len(rec), sorted(sc.clusters)[0], len(sc.nodes),
                                                          args.duration_s),
            "machine": describe(), "micropython": costs["implementation"], "platform": costs["platform"],
            "measured": datetime.date.today().isoformat(), "calls": costs["calls"],
            "poll_us": round(costs["poll_us"], 2),
            "rx_us": {name(int(t)): round(v, 2) for t, v in sorted(costs["rx_us"].items(), key=lambda kv: int(kv[0]))},
            "tx_us": {name(int(t)): round(v, 2) for t, v in sorted(costs["tx_us"].items(), key=lambda kv: int(kv[0]))},
            "poll_mean_us": round(costs["poll_mean_us"], 2),
            "rx_mean_us": {name(int(t)): round(v, 2) for t, v in sorted(costs["rx_mean_us"].items(),
                                                                        key=lambda kv: int(kv[0]))},
            "tx_mean_us": {name(int(t)): round(v, 2) for t, v in sorted(costs["tx_mean_us"].items(),
                                                                        key=lambda kv: int(kv[0]))},
            "rx_n": {name(int(t)): v for t, v in sorted(costs["rx_n"].items(), key=lambda kv: int(kv[0]))},
            "tx_n": {name(int(t)): v for t, v in sorted(costs["tx_n"].items(), key=lambda kv: int(kv[0]))},
        }
        with open(OUT, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
        print("wrote %s" % OUT)


if __name__ == "__main__":
    main()
