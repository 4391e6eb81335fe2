"""End-to-end benchmark of a large fleet in virtual time: `ground run --sim`
of a generated 1,000-node scenario (100 clusters of 10, 60 mission s, the
bench links: delay 500 ms, normal jitter 40 ms, FIFO, 1 % loss), run
in-process through ground.run.run exactly as the CLI runs it (core, router,
link pipelines, trace writer, metrics, reports), output in a temporary
directory that is removed afterwards.

Prints the wall time and CPU time of each run and their medians over a few
rounds, the deliveries (frames_delivered), deliveries per wall second and
per CPU second (on a shared host the CPU figure is the steadier one), with
the machine. Run: python -m bench.bench_fleet [--quick] [--rounds N]
(--quick: one round). About 21 CPU s per round on a 2-core Xeon VM.
Not a test: it asserts nothing, it prints figures and the machine.
"""

import os
import shutil
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bench.machine_info import describe  # noqa: E402
from ground import run, scenario  # noqa: E402

NODES = 1000
CLUSTER_SIZE = 10
DURATION_S = 60
LINK = "{delay_ms: 500, jitter: normal, jitter_ms: 40, reorder: false, loss: 0.01}"


def fleet_text(nodes=NODES, cluster_size=CLUSTER_SIZE, duration_s=DURATION_S):
    """The scenario: nodes // cluster_size clusters of consecutive node ids."""
    clusters = "\n".join(
        "  - {id: %d, nodes: [%s]}" % (c + 1, ", ".join(str(c * cluster_size + i + 1) for i in range(cluster_size)))
        for c in range(nodes // cluster_size))
    return ("name: fleet%d\nseed: 1\nduration_s: %d\nelection_timeout_ms: 5000\nclusters:\n%s\n"
            "links:\n  intra_cluster: %s\n" % (nodes, duration_s, clusters, LINK))


def one_run(sc):
    """(wall s, CPU s, deliveries) of one --sim run of sc."""
    out = tempfile.mkdtemp(prefix="bench_fleet_")
    try:
        w0, c0 = time.perf_counter(), time.process_time()
        res = run.run(sc, out)
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    finally:
        shutil.rmtree(out, ignore_errors=True)
    if res.status != "ok":
        raise RuntimeError("the fleet run did not finish: %s" % (res.failures,))
    return wall, cpu, res.metrics["frames"]["delivered"]


def _median(vals):
    vals = sorted(vals)
    k = len(vals) // 2
    return vals[k] if len(vals) % 2 else (vals[k - 1] + vals[k]) / 2


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    rounds = 1 if "--quick" in argv else 3
    if "--rounds" in argv:
        rounds = int(argv[argv.index("--rounds") + 1])
    print("bench_fleet on " + describe())
    try:
        print("load average at start: %.2f %.2f %.2f" % os.getloadavg())
    except OSError:
        pass
    sc = scenario.load_text(fleet_text(), "<bench_fleet>")
    print("End to end, `ground run --sim` of %d nodes in %d clusters, %d mission s, links %s (%d rounds):"
          % (NODES, NODES // CLUSTER_SIZE, DURATION_S, LINK, rounds))
    walls, cpus, rates, cpu_rates = [], [], [], []
    for k in range(rounds):
        wall, cpu, delivered = one_run(sc)
        walls.append(wall)
        cpus.append(cpu)
        rates.append(delivered / wall)
        cpu_rates.append(delivered / cpu)
        print("  round %d: wall %.2f s, CPU %.2f s, %d deliveries, %.0f deliveries/s (%.0f per CPU s)" % (
            k + 1, wall, cpu, delivered, delivered / wall, delivered / cpu), flush=True)
    print("  median: wall %.2f s (%.2f..%.2f), CPU %.2f s (%.2f..%.2f), %.0f deliveries/s (%.0f..%.0f),"
          " %.0f per CPU s" % (_median(walls), min(walls), max(walls), _median(cpus), min(cpus), max(cpus),
                               _median(rates), min(rates), max(rates), _median(cpu_rates)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
