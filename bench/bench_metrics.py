"""Benchmark of the streaming metrics (ground/metrics/): what a consumer of
trace events costs per event, and how its state grows with the mission.

Prints, with the machine it ran on:
  1. events per CPU second fed through metrics.Metrics (every family, no
     timeline), over the traces of scenarios/bench.yaml and of a market run
     (tests/ground/test_run_market.py's scenario), in virtual time: median of
     5 rounds, min..max beside it; and through from_trace (the file read and
     parsed too);
  2. the composer's retained memory (tracemalloc, after feeding every event,
     the events themselves not counted) for the bench scenario run for 1x, 4x
     and 16x its mission length: it should follow the frame ids the fleet
     state keeps (the one per-frame set, docs/METRICS.md), not more.
Not a test: it asserts nothing. `python -m bench.bench_metrics [--quick]`.
"""

import os
import sys
import tempfile
import time
import tracemalloc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests", "ground"))

from bench.machine_info import describe  # noqa: E402
from ground import metrics, run, scenario, trace  # noqa: E402


def _trace(sc, out):
    run.run(sc, out)
    path = os.path.join(out, "trace.jsonl")
    header, events, _ = trace.read(path)
    return path, header, events


def _cpu(fn, rounds):
    times = []
    for _ in range(rounds):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    times.sort()
    return times[len(times) // 2], times[0], times[-1]


def throughput(traces, rounds):
    print("1. Events per CPU second through the metrics (every family, no timeline), median of %d rounds (min..max):"
          % rounds)
    for name, (path, header, events) in traces.items():
        def feed():
            m = metrics.Metrics(header)
            for e in events:
                m.feed(e)
            m.result()

        med, lo, hi = _cpu(feed, rounds)
        fmed, flo, fhi = _cpu(lambda: metrics.from_trace(path)[0].result(), rounds)
        print("   %-10s %7d events: fed %9.0f ev/s (%.0f..%.0f), %.2f us/event; from the file (read + parse + feed)"
              " %9.0f ev/s (%.0f..%.0f)"
              % (name, len(events), len(events) / med, len(events) / hi, len(events) / lo, 1e6 * med / len(events),
                 len(events) / fmed, len(events) / fhi, len(events) / flo))


def memory(tmp, factors):
    print("2. Retained memory of the composer after a whole trace (tracemalloc; the events themselves not counted),"
          " scenarios/bench.yaml for longer missions:")
    for k in factors:
        sc = scenario.load(os.path.join(ROOT, "scenarios", "bench.yaml"))
        sc.duration_s = sc.duration_s * k
        _, header, events = _trace(sc, os.path.join(tmp, "bench_x%d" % k))
        sent = sum(1 for e in events if e.get("fate") == "sent")
        tracemalloc.start()
        m = metrics.Metrics(header)
        for e in events:
            m.feed(e)
        retained = tracemalloc.get_traced_memory()[0]
        ids = sys.getsizeof(m.fleet.known_ids)  # the set's table; the id ints are the events' own
        tracemalloc.stop()
        print("   mission %6.0f s: %7d events, %6d frames sent; composer %8d B, of which the set of frame ids' table"
              " %8d B; the rest %7d B" % (sc.duration_s, len(events), sent, retained, ids, retained - ids))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    quick = "--quick" in argv
    print("bench_metrics on " + describe())
    from test_run_market import SCENARIO

    with tempfile.TemporaryDirectory() as tmp:
        traces = {
            "bench": _trace(scenario.load(os.path.join(ROOT, "scenarios", "bench.yaml")), os.path.join(tmp, "b")),
            "market": _trace(scenario.load_text(SCENARIO, "market.yaml"), os.path.join(tmp, "m")),
        }
        throughput(traces, 3 if quick else 5)
        memory(tmp, (1, 4) if quick else (1, 4, 16))
    return 0


if __name__ == "__main__":
    sys.exit(main())
