"""Airtime figures of the LoRa scenario (scenarios/lora.yaml, ground/airtime.py):
per node, its time on air, duty over the run and over its busiest sliding
hour, the share of its airtime coordination takes, and the share per
message type; then the cost of the Airtime stage. Run:
python -m bench.bench_airtime [SCENARIO]

The airtime figures are a run's metrics (virtual time: the same on any
machine for a seed); the cost figures are CPU time on this machine (median
of 5 rounds). Not a test: it asserts nothing, it prints figures and the
machine.
"""

import os
import statistics
import sys
import tempfile
import time

from bench.machine_info import describe
from ground import airtime, run, scenario
from ground.pipeline import build_pipeline

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def airtime_table(path):
    sc = scenario.load(path)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.process_time()
        res = run.run(sc, os.path.join(tmp, "run"), plot=False)
        cpu_s = time.process_time() - t0
    m = res.metrics
    flat = m["flat"]
    print("scenario %s: %s (%d nodes, %.0f mission s, seed %d), run in %.1f CPU s, gates %s"
          % (os.path.relpath(path, ROOT), sc.links["default"].get("radio"), len(sc.nodes), sc.duration_s, sc.seed,
             cpu_s, "pass" if res.ok else "FAIL: %s" % res.failures))
    print("%4s %7s %9s %8s %10s %10s %10s  %s" % ("node", "frames", "airtime s", "duty", "hour duty", "coord share",
                                              "wait s max", "airtime share by type"))
    for nid, row in sorted(m["airtime"]["nodes"].items(), key=lambda kv: int(kv[0])):
        types = " ".join("%s %.1f%%" % (t, 100 * r["share"]) for t, r in
                         sorted(row["types"].items(), key=lambda kv: -kv[1]["airtime_s"]))
        print("%4s %7d %9.2f %7.3f%% %9.3f%% %10.1f%% %10.2f  %s" % (
            nid, row["frames"], row["airtime_s"], 100 * row["duty"], 100 * row["hour_duty_max"],
            100 * row["coordination_share"], row["wait_s_max"], types))
    print("fleet: coordination share of airtime %.1f%%, busiest hour %.3f%% of an hour, longest wait %.2f s,"
          " radio drops %d" % (100 * flat["airtime_coordination_share"], 100 * flat["airtime_hour_duty_max"],
                               flat["airtime_wait_s_max"], flat["radio_drops"]))


def stage_cost(rounds=5, frames=200_000):
    data = b"x" * 34
    rows = []
    for name, spec in (("delay only", {"delay_ms": 1}),
                       ("radio, no budget", {"delay_ms": 1, "radio": {"sf": 8}}),
                       ("radio, 1 % budget", {"delay_ms": 1, "radio": {"sf": 8, "duty_cycle": 0.01}})):
        samples = []
        for _ in range(rounds):
            p = build_pipeline(spec, 1, radios=airtime.Radios(), src=1)
            route = p.route
            t0 = time.process_time()
            for i in range(frames):
                route(i, data, i * 1_000_000_000)  # one a second: under SF8's 1 % (~70 ms a frame)
            samples.append(time.process_time() - t0)
        rows.append((name, frames / statistics.median(samples), frames / max(samples), frames / min(samples)))
    print("pipeline.route, %d frames of 34 B, one a mission second:" % frames)
    for name, med, lo, hi in rows:
        print("  %-18s %6.2fM frames/s (%.2f..%.2f)" % (name, med / 1e6, lo / 1e6, hi / 1e6))


def main(argv):
    print("machine: %s" % describe())
    airtime_table(argv[0] if argv else os.path.join(ROOT, "scenarios", "lora.yaml"))
    stage_cost()


if __name__ == "__main__":
    main(sys.argv[1:])
