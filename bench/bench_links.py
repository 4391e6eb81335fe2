"""Benchmarks for the link pipeline (ground/pipeline.py) and the real-time
scheduler (ground/realtime.py). Run: python -m bench.bench_links [--quick]
(--virtual: only (a); --real: only (b)).

(a) Routing throughput in virtual time, frames per second on one core (CPU
    time of this process; each figure the median of several rounds, the
    rounds of all rows interleaved so a busy shared host skews them alike;
    the spread min..max is printed beside it). Side by side in one run:
      - the peer: a bare heapq delay line (push each frame, pop what is due);
      - pipeline.send alone: delay only, typical (delay + normal jitter +
        loss: the shape of scenarios/bench.yaml's links) and every stage on;
      - routing as ground/router.py does it per recipient (a Packet, send(),
        a heapq delivery line), and the same through pipeline.route (no
        Packet unless something happens to the frame);
      - the real thing: ground/router.py's Router on a VirtualClock, a
        cluster frame from_node -> _send_one -> pipeline -> clock.call_at ->
        _deliver, per recipient, trace records discarded (the same workload
        across versions of the code: python -m bench.bench_router_trees).
(b) Injected-delay accuracy in real time: frames produced at 1k, 5k and 20k
    frames/s, each scheduled for delivery at send time + a link delay; the
    lateness of each delivery against its due time (p50/p99/max, and min: a
    negative one would be early) for the Scheduler as it comes (polite:
    select with microsecond timeouts, spin up to 1 ms before a timer but at
    most POLITE_SPIN_SHARE of the wall time) with an idle descriptor
    registered, as in the harness; precise (ground run --precise-time: spin
    1 ms before every timer); polite with no descriptor (nanosleep); precise
    with a 250 us spin; polite on epoll (whole-ms timeouts); and plain asyncio
    loop.call_at, side by side in the same run, with the CPU each used (CPU
    time over wall time) and the share of the wall time spent spinning.
Not a test: it asserts nothing, it prints figures and the machine.
"""

import asyncio
import heapq
import os
import selectors
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bench.machine_info import describe  # noqa: E402
from ground.realtime import PRECISE_SPIN_SHARE, POLITE_SPIN_SHARE, Scheduler  # noqa: E402
from ground.pipeline import build_pipeline  # noqa: E402
from ground.stages import Packet  # noqa: E402
from bench.bench_router_trees import real_router  # noqa: E402 (one workload, compared across versions there)

MS = 1_000_000
FULL = {
    "delay_ms": 1300, "jitter": "normal", "jitter_ms": 50, "reorder": False, "loss": 0.01,
    "gilbert": {"p_good_to_bad": 0.001, "p_bad_to_good": 0.3}, "duplicate": 0.001,
    "corrupt": {"bitflip": 0.001, "drop_bytes": 0.0005, "garbage": 0.0005},
    "rate_bps": 10_000_000, "queue_bytes": None,
}
TYPICAL = {"delay_ms": 1300, "jitter": "normal", "jitter_ms": 50, "reorder": False, "loss": 0.01}
DELAY_ONLY = {"delay_ms": 1300}
GAP_NS = 100_000  # 10,000 frames/s of virtual time on the link: ~13,000 in flight at 1.3 s
DATA = bytes(range(1, 61))  # a 60-byte line frame
GOAL = 1_000_000


def _pct(sorted_vals, q):
    return sorted_vals[min(len(sorted_vals) - 1, int(round(q * (len(sorted_vals) - 1))))]


# -- (a) virtual time -------------------------------------------------------------
# Each case takes n and returns frames per CPU second.

def bare_delay_line(n):
    """Push every frame with a fixed delay, pop what is due: the floor."""
    pkts = [Packet(i, DATA) for i in range(1024)]
    heap, push, pop = [], heapq.heappush, heapq.heappop
    delay = 1300 * MS
    now = 0
    delivered = 0
    t0 = time.process_time()
    for i in range(n):
        now += GAP_NS
        push(heap, (now + delay, i, pkts[i & 1023]))
        while heap[0][0] <= now:
            pop(heap)
            delivered += 1
    while heap:
        pop(heap)
        delivered += 1
    return n / (time.process_time() - t0)


def pipeline_only(n, spec):
    """pipe.send() on prepared packets, outcomes discarded."""
    pipe = build_pipeline(spec, 1)
    pkts = [Packet(i, DATA) for i in range(1024)]
    send = pipe.send
    now = 0
    t0 = time.process_time()
    for i in range(n):
        now += GAP_NS
        p = pkts[i & 1023]
        p.data = DATA
        send(p, now)
    return n / (time.process_time() - t0)


def routing(n, spec):
    """What the router does per frame and recipient: make a Packet, send it
    through the link, put deliveries on the heap, pop what is due."""
    pipe = build_pipeline(spec, 1)
    send = pipe.send
    heap, push, pop = [], heapq.heappush, heapq.heappop
    now = 0
    seq = 0
    delivered = dropped = 0
    t0 = time.process_time()
    for i in range(n):
        now += GAP_NS
        for when, p in send(Packet(i, DATA, now), now):
            if when.__class__ is int:
                seq += 1
                push(heap, (when, seq, p))
            else:
                dropped += 1
        while heap and heap[0][0] <= now:
            pop(heap)
            delivered += 1
    while heap:
        pop(heap)
        delivered += 1
    return n / (time.process_time() - t0)


def routing_route(n, spec):
    """The same through pipeline.route(): an int (delivered untouched) or a
    str (dropped untouched) needs no Packet; anything else is send()'s list."""
    pipe = build_pipeline(spec, 1)
    route = pipe.route
    heap, push, pop = [], heapq.heappush, heapq.heappop
    now = 0
    seq = 0
    delivered = dropped = 0
    t0 = time.process_time()
    for i in range(n):
        now += GAP_NS
        out = route(i, DATA, now)
        if out.__class__ is int:
            seq += 1
            push(heap, (out, seq, DATA))
        elif out.__class__ is str:
            dropped += 1
        else:
            for when, p in out:
                if when.__class__ is int:
                    seq += 1
                    push(heap, (when, seq, p.data))
                else:
                    dropped += 1
        while heap and heap[0][0] <= now:
            pop(heap)
            delivered += 1
    while heap:
        pop(heap)
        delivered += 1
    return n / (time.process_time() - t0)


CASES = [
    # (name, function, kwargs, share of n: the slow rows get fewer frames)
    ("bare heapq delay line (fixed 1.3 s)", bare_delay_line, {}, 1),
    ("pipeline.send, delay only", pipeline_only, {"spec": DELAY_ONLY}, 1),
    ("pipeline.send, typical: delay+jitter+loss", pipeline_only, {"spec": TYPICAL}, 1),
    ("pipeline.send, all stages", pipeline_only, {"spec": FULL}, 1),
    ("routing: Packet+send+heapq, typical", routing, {"spec": TYPICAL}, 1),
    ("routing: Packet+send+heapq, all stages", routing, {"spec": FULL}, 1),
    ("routing: route+heapq, typical", routing_route, {"spec": TYPICAL}, 1),
    ("routing: route+heapq, all stages", routing_route, {"spec": FULL}, 1),
    ("Router from_node..._deliver, typical", real_router, {"spec": TYPICAL}, 0.25),
    ("Router from_node..._deliver, all stages", real_router, {"spec": FULL}, 0.25),
]


def virtual_time(n, rounds):
    runs = [[] for _ in CASES]
    failed = {}
    for _ in range(rounds):
        for k, (_, fn, kw, share) in enumerate(CASES):
            if k in failed:
                continue
            try:
                runs[k].append(fn(max(1000, int(n * share)), **kw))
            except Exception as e:  # e.g. router.py mid-change: say so, keep the other rows
                failed[k] = "%s: %s" % (e.__class__.__name__, e)
    print("(a) Virtual-time throughput, frames/s on one core (CPU time, median of %d interleaved rounds of"
          " %d frames, router rows a quarter of that; 60-byte frames every %d us of virtual time per link,"
          " ~%d in flight):" % (rounds, n, GAP_NS // 1000, 1300 * MS // GAP_NS))
    print("    typical = %s" % (TYPICAL,))
    print("    all stages = %s" % (FULL,))
    print("  %-44s %10s %9s %8s   %s" % ("", "median /s", "ns/frame", "x bare", "min..max /s"))
    bare = None
    for (name, _, _, _), vals, k in zip(CASES, runs, range(len(CASES))):
        if k in failed or not vals:
            print("  %-44s    n/a (%s)" % (name, failed.get(k)))
            continue
        vals.sort()
        med = vals[len(vals) // 2] if len(vals) % 2 else (vals[len(vals) // 2 - 1] + vals[len(vals) // 2]) / 2
        bare = bare or med  # the first row is the peer
        print("  %-44s %10.0f %9.0f %8.2f   %.0f..%.0f%s" % (name, med, 1e9 / med, med / bare, vals[0], vals[-1],
                                                           "   >= goal" if med >= GOAL and k else ""))
    print("  goal >= %s /s routing through the full pipeline (the bare delay line is the peer)" % format(GOAL, ","))


# -- (b) real time ------------------------------------------------------------------

def _link_delays(n, delay_ms):
    """Per-frame delays from a real pipeline (fixed + normal jitter, FIFO)."""
    pipe = build_pipeline({"delay_ms": delay_ms, "jitter": "normal", "jitter_ms": 1}, 3)
    out = []
    for i in range(n):
        (when, _), = pipe.send(Packet(i, DATA, i * 1000), i * 1000)
        out.append(when - i * 1000)
    return out


def run_scheduler(rate, seconds, delays, with_fd, **kw):
    s = Scheduler(**kw)
    if with_fd:
        # the harness always watches serial ports: an idle pipe puts the
        # scheduler on its select path, not nanosleep
        r, w = os.pipe()
        s.add_reader(r, os.read, r, 100)
    clock = s.clock
    period = 1_000_000_000 // rate
    n = rate * seconds
    late = []
    rec = late.append

    def deliver(due):
        rec(clock() - due)

    def produce(k):
        now = clock()  # the frame "arrives" now; it is due a link delay later
        s.call_at(now + delays[k], deliver, now + delays[k])
        if k + 1 < n:
            s.call_at(start + (k + 1) * period, produce, k + 1)

    start = clock() + 20 * MS
    s.call_at(start, produce, 0)
    c0, w0 = time.process_time(), time.monotonic()
    s.run_until(lambda: len(late) == n)
    wall = time.monotonic() - w0
    cpu = (time.process_time() - c0) / wall
    s.close()
    if with_fd:
        os.close(r)
        os.close(w)
    return late, cpu, s.spun_ns / 1e9 / wall


def run_asyncio(rate, seconds, delays):
    loop = asyncio.new_event_loop()
    clock = time.monotonic_ns
    period = 1_000_000_000 // rate
    n = rate * seconds
    late = []
    rec = late.append
    done = loop.create_future()

    def deliver(due):
        rec(clock() - due)
        if len(late) == n:
            done.set_result(None)

    def produce(k):
        now = clock()
        due = now + delays[k]
        loop.call_at(due / 1e9, deliver, due)  # loop.time() is time.monotonic()
        if k + 1 < n:
            loop.call_at((start + (k + 1) * period) / 1e9, produce, k + 1)

    start = clock() + 20 * MS
    loop.call_at(start / 1e9, produce, 0)
    c0, w0 = time.process_time(), time.monotonic()
    loop.run_until_complete(done)
    cpu = (time.process_time() - c0) / (time.monotonic() - w0)
    loop.close()
    return late, cpu, None


def real_time(seconds, rates, delay_ms=5):
    print("(b) Injected-delay accuracy in real time: lateness of each delivery vs its due time, ms"
          " (%d s per row; link delay %d ms + normal jitter 1 ms; goal p99 <= 0.5 ms;"
          " asyncio measured earlier here: p50 0.58 / p99 2.03):" % (seconds, delay_ms))
    print("  polite: spin at most %d %% of the wall time (the default); precise: spin 1 ms before every timer"
          % (100 * POLITE_SPIN_SHARE))
    print("  %-8s %-30s %8s %8s %8s %8s %8s %7s %6s %6s" % ("rate/s", "", "min", "p50", "p90", "p99", "max", "frames",
                                                          "CPU", "spin"))
    for rate in rates:
        delays = _link_delays(rate * seconds, delay_ms)
        for name, fn in (("polite (default) + fd", lambda: run_scheduler(rate, seconds, delays, True)),
                         ("precise (--precise-time) + fd", lambda: run_scheduler(
                             rate, seconds, delays, True, spin_share=PRECISE_SPIN_SHARE)),
                         ("polite, no fd", lambda: run_scheduler(rate, seconds, delays, False)),
                         ("precise, spin 250us + fd", lambda: run_scheduler(
                             rate, seconds, delays, True, spin_ns=250_000, spin_share=PRECISE_SPIN_SHARE)),
                         ("polite + fd, epoll", lambda: run_scheduler(
                             rate, seconds, delays, True, selector=selectors.EpollSelector())),
                         ("asyncio loop.call_at", lambda: run_asyncio(rate, seconds, delays))):
            late, cpu, spin = fn()
            late.sort()
            print("  %-8d %-30s %8.3f %8.3f %8.3f %8.3f %8.3f %7d %5.0f%% %5s" % (
                rate, name, late[0] / 1e6, _pct(late, 0.5) / 1e6, _pct(late, 0.9) / 1e6, _pct(late, 0.99) / 1e6,
                late[-1] / 1e6, len(late), cpu * 100, "-" if spin is None else "%.0f%%" % (spin * 100)))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    quick = "--quick" in argv
    print("bench_links on " + describe())
    try:
        print("load average at start: %.2f %.2f %.2f" % os.getloadavg())
    except OSError:
        pass
    if "--real" not in argv:
        virtual_time(30_000 if quick else 100_000, 5 if quick else 15)
    if "--virtual" not in argv:
        real_time(1 if quick else 3, (200, 1000, 5000, 20000))
    try:
        print("load average at end: %.2f %.2f %.2f" % os.getloadavg())
    except OSError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
