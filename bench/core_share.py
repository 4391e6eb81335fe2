"""How much of a lean shard's CPU per delivery is the real core's own, and
so how fast any harness around it could be: the floor under the issue's
performance goals (docs/FLEET_RUN.md "What bounds a lean run").

bench_fleet's 1,000-node scenario (100 clusters of 10) runs as `ground run
--lean --workers 1` runs it (its default shards, each window one shard
after the other), and every call the shards make into a node's core is
logged in order (receive_decoded, receive, poll, take_persist,
next_deadline_ms, with their arguments: the Frames the shard decoded once
are kept and handed over again). Then the same calls are made, in the same
order, on fresh nodes built as the shard builds them (the same config and
seeds), shard by shard and window by window as they came: the core is pure,
so they do the same work, and that loop's CPU is the core alone. The replay checks that it is the same work: every node
ends with the same term, role, frame counters and frames sent.

Printed: the shards' CPU per delivery (unlogged run), the core's per
delivery (the replay, less the cost of the replay's own loop, measured by
the same loop over a do-nothing function), the harness's (the difference),
and what the core alone would need for the issue's 10,000-node mission
hour on 2 cores (that scenario's deliveries, counted in bench_lean --big).

Run: python -m bench.core_share [--mission-s 60]
Not a test: it asserts the replay's faithfulness only; the figures move by
~10 % on a shared machine.
"""

import argparse
import gc
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bench.bench_fleet import fleet_text  # noqa: E402
from bench.machine_info import describe  # noqa: E402
from ground import fleetrun, gcpolicy, scenario  # noqa: E402
from ground.shard import Shard  # noqa: E402

S = 1_000_000_000
CALLS = ("receive_decoded", "receive", "poll", "take_persist", "next_deadline_ms")
HOUR_10K_DELIVERIES = 277_000_000  # 10,000 nodes, one mission hour: 9,237,610 in 120 s x 30 (bench_lean --big)


def _shards(mission_s):
    """The shards a lean run of the scenario makes on one worker, and its window (ns)."""
    sc = scenario.load_text(fleet_text(duration_s=mission_s), "<core_share 1000>")
    unit_of = fleetrun.units_of(sc)
    plan = fleetrun.plan_shards(sc, fleetrun.default_shards(sc, 1))
    return [Shard(sc, sc.seed, k, cl, unit_of) for k, cl in enumerate(plan)], fleetrun.window_ns(sc, unit_of)


def _run(shards, window_ns, end_ns):
    """Each window, each shard in turn (fleetrun.InProcess); deliveries."""
    t = 0
    while t < end_ns:
        t = min(t + window_ns, end_ns)
        for sh in shards:
            sh.advance(t, last=t == end_ns)
    return sum(sh.counters.delivered() for sh in shards)


def _links(shards):
    return {nid: link for sh in shards for nid, link in sh.links.items()}


def _logged(node, nid, log):
    """node with each core entry point wrapped (instance attributes) to log
    (nid, call index, args) before the call."""
    append = log.append
    for k, name in enumerate(CALLS):
        method = getattr(node, name)

        def wrapped(*args, _m=method, _k=k):
            append((nid, _k, args))
            return _m(*args)

        setattr(node, name, wrapped)


def _fingerprint(node):
    return (node.term, node.role, node.frames_in, node.frames_out, node.ignored, sum(node.errors))


def _replay(log, nodes):
    """CPU s of making the logged calls on `nodes` ({nid: [bound methods in CALLS order]})."""
    gc.collect()
    with gcpolicy.during_run():
        c0 = time.process_time()
        for nid, k, args in log:
            nodes[nid][k](*args)
        return time.process_time() - c0


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.core_share", description=__doc__.split("\n\n")[0])
    ap.add_argument("--mission-s", type=float, default=60.0, help="mission seconds (default 60)")
    a = ap.parse_args(argv)
    print("core_share on " + describe())
    print("load average: %.2f %.2f %.2f" % os.getloadavg())
    end_ns = int(a.mission_s * S)

    shards, window = _shards(a.mission_s)  # the shards as a lean run has them: their CPU per delivery
    gc.collect()
    c0 = time.process_time()
    deliveries = _run(shards, window, end_ns)
    run_cpu = time.process_time() - c0

    shards, window = _shards(a.mission_s)  # again, logging the calls into the cores
    log = []
    for nid, link in _links(shards).items():
        _logged(link.node, nid, log)
    if _run(shards, window, end_ns) != deliveries:
        raise SystemExit("the logged run did not deliver the plain run's %d frames" % deliveries)
    want = {nid: _fingerprint(link.node) for nid, link in _links(shards).items()}

    fresh, _ = _shards(a.mission_s)  # new nodes, built as the shards build them (boot 1)
    links = _links(fresh)
    nodes = {nid: [getattr(link.node, name) for name in CALLS] for nid, link in links.items()}
    core_cpu = _replay(log, nodes)
    got = {nid: _fingerprint(link.node) for nid, link in links.items()}
    bad = [nid for nid in want if want[nid] != got[nid]]
    if bad:
        raise SystemExit("the replay is not the run: node %d ended %r, the run's %r" % (bad[0], got[bad[0]], want[bad[0]]))

    def nothing(*args):
        return None

    idle = {nid: [nothing] * len(CALLS) for nid in nodes}
    loop_cpu = _replay(log, idle)
    core = max(0.0, core_cpu - loop_cpu)
    per = {name: 0 for name in CALLS}
    for _, k, _ in log:
        per[CALLS[k]] += 1

    us = 1e6 / deliveries
    print("1,000 nodes in 100 clusters, %g mission s, %d shards in windows of %g s (one worker): %d deliveries, %d"
          " calls into the cores (%s)" % (a.mission_s, len(shards), window / S, deliveries, len(log),
                                          ", ".join("%s %d" % kv for kv in per.items())))
    print("  the shards, as a lean run:     %6.2f CPU s  %5.2f us per delivery" % (run_cpu, run_cpu * us))
    print("  the cores alone (replayed):    %6.2f CPU s  %5.2f us per delivery  (replay %.2f s less its loop %.2f s)"
          % (core, core * us, core_cpu, loop_cpu))
    print("  the harness (the difference):  %6.2f CPU s  %5.2f us per delivery  (%.0f %% of the shard)"
          % (run_cpu - core, (run_cpu - core) * us, 100.0 * (run_cpu - core) / run_cpu))
    floor_s = HOUR_10K_DELIVERIES * core * us / 1e6 / 2
    print("  10,000 nodes for a mission hour (%d M deliveries) on 2 cores, the cores alone: %d x %.2f us / 2 ="
          " %.0f s (%.1f min); the goal is 15 min for the whole run"
          % (HOUR_10K_DELIVERIES // 1_000_000, HOUR_10K_DELIVERIES, core * us, floor_s, floor_s / 60))
    print("  the replay ran the same work: %d nodes ended with the same term, role, frame counters and errors"
          % len(want))
    return 0


if __name__ == "__main__":
    sys.exit(main())
