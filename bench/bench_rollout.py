"""A bad build given to a 1,000-node fleet in simulation: how far it gets.

A scenario of CLUSTERS clusters of 4 in-process nodes (mixed hardware
generations and lineages) rolls out a test build that crashes on becoming
coordinator (ground/rollout_run.py, the real update agent in each node). The
figures: the nodes that ran the bad build against the canary share of the
fleet (the rollout should stop at the canaries), and the time from the
canaries' start to the last node rolled back, in validation windows
(detection waits for the first analysis, window / 7 after the step starts).
Virtual time; the machine and the CPU time are printed with the figures.

    .venv/bin/python -m bench.bench_rollout [--clusters 250] [--window-h 6] [--seed 1]
"""

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.machine_info import describe  # noqa: E402
from ground import run as run_mod  # noqa: E402
from ground import scenario  # noqa: E402


def fleet_text(clusters, window_s, seed):
    """The scenario: the fleet on 1.0, a bad 1.1 from mission hour 1."""
    rows = []
    for c in range(1, clusters + 1):
        ids = ", ".join(str((c - 1) * 4 + i) for i in range(1, 5))
        rows.append("  - {id: %d, nodes: [%s], hw_gen: %d, lineages: [%d]}" % (c, ids, 1 + c % 2, (c // 2) % 2))
    return """name: bench-rollout
description: a bad test build rolled out to a 1,000-node fleet
seed: %d
duration_s: %d
election_timeout_ms: 3600000
clusters:
%s
rollout:
  start_s: 3600
  window_s: %d
  canary_percent: 2
  step_percent: 10
  confirm_after_s: 1800
  images:
    - {version: "1.1", test_build: true, defects: {crash_on_coordinator: true}}
gates: {rollout_aborted: {min: 1}}
""" % (seed, 3600 + 2 * window_s, "\n".join(rows), window_s)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clusters", type=int, default=250, help="clusters of 4 nodes (default 250: 1,000 nodes)")
    ap.add_argument("--window-h", type=float, default=6.0, help="validation window, mission hours (default 6)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    window_s = int(args.window_h * 3600)
    sc = scenario.load_text(fleet_text(args.clusters, window_s, args.seed), "bench-rollout.yaml")
    print("machine:", describe())
    print("fleet: %d nodes in %d clusters; validation window %g mission h; election timeout 1 h"
          % (len(sc.nodes), len(sc.clusters), args.window_h))
    cpu = time.process_time()
    with tempfile.TemporaryDirectory() as d:
        res = run_mod.run(sc, os.path.join(d, "run"), plot=False)
    cpu = time.process_time() - cpu
    f = res.metrics["flat"]
    img = (res.metrics.get("rollout") or [{}])[0]
    print("aborted: %s; canary clusters %s" % (f["rollout_aborted"], img.get("canaries")))
    print("nodes that ran the bad build: %s of %d (%.2f %%); canary share %.2f %%"
          % (f["rollout_bad_nodes"], len(sc.nodes), 100 * (f["rollout_bad_share"] or 0),
             100 * (f["rollout_canary_share"] or 0)))
    if f["rollout_detect_s"] is not None and f["rollout_rollback_s"] is not None:
        total = f["rollout_detect_s"] + f["rollout_rollback_s"]
        print("canary start -> abort: %.0f s; abort -> rolled back: %.0f s; total %.0f s = %.3f validation windows"
              % (f["rollout_detect_s"], f["rollout_rollback_s"], total, total / window_s))
    else:
        print("not rolled back by the end: detect %s s, rollback %s s" % (f["rollout_detect_s"], f["rollout_rollback_s"]))
    print("CPU: %.1f s for %.0f mission h" % (cpu, sc.duration_s / 3600))
    return 0 if res.ok else 1


if __name__ == "__main__":
    sys.exit(main())
