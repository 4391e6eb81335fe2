"""Benchmarks for the regional market tier (issue #5).

Prints, with the machine it ran on:
  1. allocation quality of the clearing rule against a centralised greedy
     allocation of the same round, over seeded instances, and conflicts;
  2. production lost to coordination at 20, 100 and 1,000 nodes over ten
     mission days, in-process (tests/core/fedsim.py: the nodes' own trader,
     market and production code, roles fixed, no Tier-1 traffic), with the
     pauses by reason and the market frames per node per round (O(N) check);
  3. decision latency, need to award known at the node, in mission time and
     in one-way light times, against one round + 2 light times;
  4. coordinator crashes at random moments mid-round: does every node agree
     on the round's verdict, are there conflicting leases;
  5. production lost in conservative mode over a 30-day autonomy window, at
     three pre-allocation shares (the ground's cover_permille);
  6. a Pico-class regional coordinator: the market for 1,000 nodes in the
     MicroPython unix port's 192K heap (bench/mpy/heap_market.py).
Not a test: it asserts nothing. `python -m bench.bench_market [--quick]`.
"""

import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for p in ("ground/shims", "firmware", "tests/core"):
    sys.path.insert(0, os.path.join(ROOT, p))

from bench.machine_info import describe  # noqa: E402
from fedsim import FedSim  # noqa: E402
from greedy import instance, run_instance  # noqa: E402
from node import autonomy, catalog as cat, msgs, production as pr  # noqa: E402
from node.rng import Rng  # noqa: E402

MICROPYTHON = os.path.join(os.path.dirname(sys.executable), "micropython")
HOUR_MS = 3600 * 1000
DAY_MS = 24 * HOUR_MS
SLOT_MS = 6 * HOUR_MS  # one auction cycle: the design's 4-8 h
LIGHT_MS = 4000  # one-way light time across a region (the design's 0.5-8 s)
MARKET_TYPES = (msgs.BID, msgs.AWARD, msgs.PRICES, msgs.ROUND_ACK, msgs.RELEASE, msgs.RECONCILE, msgs.RECONCILE_ACK)


def gens_for(n):
    return [1 + (i * 7) % 3 for i in range(n)]


def units_for(n, gens, headroom=1.25):
    """Resources per class for n nodes: expected demand (each node's feedstock
    need split over the types it can process, logistics windows, the parts it
    does not make) times `headroom`, rounded up."""
    d = [0.0] * cat.N_CLASSES
    for g in gens:
        feed, make, rate = cat.GENS[g][0], cat.GENS[g][1], cat.GENS[g][2]
        types = [c for c in range(4) if feed & (1 << c)]
        for c in types:
            d[c] += 1.0 / pr.FEED_YIELD_SLOTS / len(types)
        d[cat.LOGISTICS] += cat.LOGISTICS_SPAN * 0.7 / pr.BUF_CAP_SLOTS
        for i in range(3):
            if not make & (1 << (cat.PART_A + i)):
                d[cat.PART_A + i] += rate * pr.PART_PERMILLE[i] / 1000.0 / pr.LOT_MP[i]
    return tuple(max(1, int(x * headroom + 0.999)) for x in d)


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def region(n, seed=1, **kw):
    gens = gens_for(n)
    return FedSim(n, units_for(n, gens), gens=gens, seed=seed, slot_ms=SLOT_MS, steps_per_slot=12,
                  delay_ms=LIGHT_MS, electors=(1, 2, 3), **kw)


def market_frames(sim):
    return sum(sim.sent_by_type.get(t, 0) for t in MARKET_TYPES)


# ---- 1. allocation quality ----------------------------------------------


def quality(instances, n_nodes):
    print("1. Allocation quality: the clearing rule vs a centralised greedy allocation of the same round"
          " (goal >= 95 %; CBBA's guarantee is 50 % of optimal)")
    for flexible in (False, True):
        qs, conflicts = [], 0
        for seed in range(1, instances + 1):
            rng = Rng(seed)
            gens = gens_for(n_nodes)
            units = units_for(n_nodes, gens, headroom=0.9)  # tighter than demand: someone must lose
            reqs = instance(rng, n_nodes, units, 10, 128)
            mine, greedy, conf = run_instance(reqs, units, 10, 128, 8, flexible)
            qs.append(mine / greedy)
            conflicts += conf
        print("   vs %-46s %d seeded rounds of %d nodes, supply 0.9x demand: min %.1f %%  median %.1f %%  mean %.1f %%;"
              " conflicting leases %d" % ("greedy at each bid's own first slot:" if not flexible else
                                          "greedy using each bid's declared flexibility:", instances, n_nodes,
                                          100 * min(qs), 100 * pct(qs, 0.5), 100 * sum(qs) / len(qs), conflicts))


# ---- 2 + 3. production lost, latency, messages ---------------------------


def production_run(n, days, keep_latency):
    t0 = time.time()
    sim = region(n)
    lat = []
    if keep_latency:
        for tr in sim.traders():
            tr.latencies = lat
    warm = 2
    sim.run_until(warm * DAY_MS)
    p0, i0 = sim.production()
    f0 = market_frames(sim)
    r0 = sim.market().rounds
    sim.run_until(days * DAY_MS)
    p1, i1 = sim.production()
    paused = [0, 0, 0, 0]
    for tr in sim.traders():
        for k in range(4):
            paused[k] += tr.prod.paused_ms[k]
    m = sim.market()
    rounds = m.rounds - r0
    per_node_round = (market_frames(sim) - f0) / n / max(1, rounds)
    led_conf = m.ledger.conflicts()
    node_conf = sim.conflicts()
    total_ms = sum(paused) or 1
    refused = sum(m.refused)
    return dict(n=n, lost_all=100.0 * (i1 - p1) / i1, lost_steady=100.0 * ((i1 - i0) - (p1 - p0)) / (i1 - i0),
                paused=[100.0 * paused[k] / total_ms for k in (1, 2, 3)], frames=per_node_round,
                conflicts=led_conf + node_conf, refused=refused, wall=time.time() - t0, lat=lat,
                leases=m.ledger.n, bids=m.bids_in, rounds=m.rounds)


def production(sizes, days):
    print("2. Production lost to coordination (vs the uncoordinated ideal: every node at its rate, never paused),"
          " %d mission days, 6 h rounds, %d s light time; source estimate < 2 %% at 100-500 nodes"
          % (days, LIGHT_MS // 1000))
    out = {}
    for n in sizes:
        r = production_run(n, days, n == 100)
        out[n] = r
        print("   %5d nodes: lost %.2f %% (whole run) / %.2f %% (after day 2); pauses feed/parts/logistics"
              " %.0f/%.0f/%.0f %% of paused time; market frames per node per round %.2f; bids %d,"
              " leases held %d, refused %d; conflicting leases %d; wall %.1f s"
              % (n, r["lost_all"], r["lost_steady"], r["paused"][0], r["paused"][1], r["paused"][2], r["frames"],
                 r["bids"], r["leases"], r["refused"], r["conflicts"], r["wall"]))
    return out


def latency(r):
    lat = r["lat"]
    bound = SLOT_MS + 2 * LIGHT_MS
    print("3. Decision latency, %d nodes, goal <= one round + 2 light times = %.4f h (a round is %d light times):"
          % (r["n"], bound / HOUR_MS, SLOT_MS // LIGHT_MS))
    rows = (("each bid to its award", [b for n, b, c in lat]),
            ("spot need (first bid) to award", [n for n, b, c in lat if not c]),
            ("pre-allocation renewal to award", [n for n, b, c in lat if c]))
    for name, xs in rows:
        if not xs:
            continue
        over = sum(1 for v in xs if v > bound)
        print("   %-34s n=%-5d p50 %7.3f h  p99 %7.3f h  max %7.3f h  (max = %.3f rounds + %.1f light times);"
              " over the goal: %d" % (name, len(xs), pct(xs, 0.5) / HOUR_MS, pct(xs, 0.99) / HOUR_MS,
                                      max(xs) / HOUR_MS, max(xs) // SLOT_MS, (max(xs) % SLOT_MS) / LIGHT_MS, over))


# ---- 4. crashes mid-round ------------------------------------------------


def crashes(trials, n):
    agree = conflicts = 0
    verdicts = {msgs.ROUND_COMPLETE: 0, msgs.ROUND_VOID: 0}
    for seed in range(1, trials + 1):
        sim = region(n, seed=seed)
        rng = Rng(seed)
        sim.run_until(2 * DAY_MS)
        m = sim.market()
        # a random moment around the close: collecting, preparing or just committed
        sim.run_until(m.close_ms(m.round) - 2 * LIGHT_MS + rng.below(6 * LIGHT_MS))
        rnd = m.round
        sim.crash_coordinator(lose_in_flight=rng.below(2) == 1)
        sim.run_for(SLOT_MS + HOUR_MS)  # past the next close, and its verdict's way down
        seen = set(tr.round_status.get(rnd) for tr in sim.traders())
        if len(seen) == 1:
            agree += 1
            v = seen.pop()
            if v in verdicts:
                verdicts[v] += 1
        sim.run_for(2 * SLOT_MS)
        conflicts += sim.conflicts() + sim.market().ledger.conflicts()
    print("4. Regional coordinator crashes at a random moment around a round's close (%d trials, %d nodes, in-flight"
          " frames lost in half): every node agreed on the round's verdict in %d; completed %d, voided %d;"
          " conflicting leases %d" % (trials, n, agree, verdicts[msgs.ROUND_COMPLETE], verdicts[msgs.ROUND_VOID],
                                      conflicts))


# ---- 5. conservative mode ------------------------------------------------


def conservative(n, cut, days, covers):
    print("5. Production lost in conservative mode over a %d-day autonomy window (%d of %d nodes cut off after 5 days;"
          " source estimate 10-15 %%):" % (days, cut, n))
    for cover in covers:
        sim = region(n)
        sim.inject(msgs.INTENT, msgs.pack(msgs.INTENT, 1, 0, 0, 300, cover, 0, 0))
        sim.run_until(5 * DAY_MS)
        cut_ids = [i for i in sim.ids if i > 3][:cut]
        inside = [sim.regions[i].trader for i in cut_ids]
        outside = [sim.regions[i].trader for i in sim.ids if i not in cut_ids]
        before = [(t.prod.produced, t.prod.ideal) for t in inside + outside]
        sim.cut.update(cut_ids)
        sim.run_until((5 + days) * DAY_MS)
        modes = [t.auto.mode for t in inside]
        conservative_ms = sum(t.auto.time_in(autonomy.CONSERVATIVE, sim.now) for t in inside) / len(inside)
        deltas = [(t.prod.produced - b[0], t.prod.ideal - b[1]) for t, b in zip(inside + outside, before)]
        din = deltas[: len(inside)]
        dout = deltas[len(inside):]
        lost_in = 100.0 * (sum(d[1] for d in din) - sum(d[0] for d in din)) / sum(d[1] for d in din)
        lost_out = 100.0 * (sum(d[1] for d in dout) - sum(d[0] for d in dout)) / sum(d[1] for d in dout)
        print("   cover %4d permille: cut-off nodes lost %.1f %% of their ideal (%.1f days conservative on average,"
              " all conservative at the end: %s); the nodes still in contact lost %.2f %%; conflicts %d"
              % (cover, lost_in, conservative_ms / DAY_MS, all(m == autonomy.CONSERVATIVE for m in modes), lost_out,
                 sim.conflicts()))


# ---- 6. a Pico-class coordinator's heap -----------------------------------


def heap(n):
    """The market alone for n nodes in one 192K heap, its modules from the
    .mpy image as a board holds them (from .py source they are compiled on
    the heap, which a board never does). A whole board holding the elector
    seat is bench/mpy/heap_seat_run.py (docs/HEAP.md)."""
    import tempfile

    from hil import image

    with tempfile.TemporaryDirectory() as folder:
        image.build(folder)
        out = subprocess.run([MICROPYTHON, "-X", "heapsize=192K", "bench/mpy/heap_market.py", str(n), "40", folder],
                             cwd=ROOT, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        print("6. A regional coordinator's market for %d nodes in 192K: FAILED\n%s" % (n, out.stderr[-800:]))
        return
    r = json.loads(out.stdout.strip().splitlines()[-1])
    print("6. A regional coordinator's market alone for %d nodes in one MicroPython unix-port heap (-X heapsize=192K;"
          " 64-bit port; modules from the .mpy image; not a whole board: docs/HEAP.md):" % n)
    print("   heap %d B: code %d B, config (roster, generations) %d B, market structures %d B (ledger %d lease slots,"
          " book %d bids); live high-water over %d rounds %d B, %d B free; leases held %d, awarded %d, conflicts %d;"
          " clearing a round here: median %d ms, max %d ms"
          % (r["heap_total"], r["code_bytes"], r["config_bytes"], r["market_bytes"], r["lease_slots"], r["max_bids"],
             r["rounds"], r["high_water"], r["free_at_high_water"], r["leases"], r["awarded"], r["ledger_conflicts"],
             r["clear_ms_median"], r["clear_ms_max"]))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    quick = "--quick" in argv
    print("bench_market on " + describe())
    quality(30 if quick else 120, 100)
    runs = production((20, 100) if quick else (20, 100, 1000), 10)
    latency(runs[100])
    crashes(10 if quick else 40, 20)
    conservative(100, 20, 30, (1000, 900, 800) if not quick else (1000,))
    heap(1000)
    return 0


if __name__ == "__main__":
    sys.exit(main())
