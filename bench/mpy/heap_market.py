# Run under the MicroPython unix port with -X heapsize=192K: a Pico-class
# regional coordinator's market for N nodes (argv[1], default 1000) in one
# heap. Builds the MarketConfig and Market (compact arrays), then runs
# rounds: each round every node bids for what a node of its generation needs
# (a spot bid most rounds, a pre-allocation now and then), the round clears,
# the ledger advances. Prints one JSON line: heap total, code, the market's
# structures, the live high-water mark, leases and bids held, and the
# MicroPython time per clearing on this host (not a Pico's). argv[3], if
# given, is a folder holding the .mpy image (hil/flash.py build + write_image,
# as `hil flash` writes a Pico): from .py source the market's modules are
# compiled on the heap, which a Pico with the image does not do, and at
# 1,000 nodes that no longer fits.
import gc
import sys
import time

sys.path.insert(0, sys.argv[3] if len(sys.argv) > 3 else "firmware")
N = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 12
gc.collect()
a0 = gc.mem_alloc()
from node import auction, catalog as cat  # noqa: E402
from node.config import MarketConfig  # noqa: E402
from node.market import Market  # noqa: E402
from node.rng import Rng  # noqa: E402
from node.strategy import Intent  # noqa: E402

gc.collect()
a_code = gc.mem_alloc()
gens = bytearray(N)
for i in range(N):
    gens[i] = 1 + (i * 7) % 3
# Resources for N nodes with ~25 % headroom (bench_market.py's units_for, fixed here).
units = (79 * N // 1000 + 1, 131 * N // 1000 + 1, 79 * N // 1000 + 1, 27 * N // 1000 + 1, 228 * N // 1000 + 1,
         70 * N // 1000 + 1, 53 * N // 1000 + 1, 209 * N // 1000 + 1)
mcfg = MarketConfig(roster=range(1, N + 1), electors=(1,), units=units, gens=gens)  # one elector: no replicas to wait for
gc.collect()
a_cfg = gc.mem_alloc()
sent = [0]


def send(dst, type, payload):
    sent[0] += 1  # frames are built and dropped: the network is not what we measure


m = Market(1, mcfg, Intent(), send)
m.led_round = 0  # a ledger that knows it is empty: no RESYNC first
gc.collect()
a_market = gc.mem_alloc()
m.lead(1, 0, 0, [1] * 8)  # a region of one elector: each round commits as it clears
rng = Rng(5)
high = gc.mem_alloc()
clear_ms = []
seq = 1
cover_due = bytearray(N)
for r in range(ROUNDS):
    now = r * mcfg.slot_ms
    m.poll(now)
    for i in range(N):
        g = gens[i]
        node = i + 1
        seq += 1
        if cover_due[i] == 0:  # a pre-allocation: every 4th slot for the window
            fields = (m.round, seq, m.round + 1, auction.NO_RESOURCE, 2, cat.GENS[g][0], 1, 4, 30,
                      auction.F_FLEX | auction.F_COVER, g)
            cover_due[i] = 30
        else:
            cover_due[i] -= 1
            if rng.below(3):
                continue
            c = cat.PART_EARTH if rng.below(2) else cat.LOGISTICS
            span = cat.LOGISTICS_SPAN if c == cat.LOGISTICS else 1
            fields = (m.round, seq, m.round + 1 + rng.below(3), auction.NO_RESOURCE, 8 + rng.below(32), 1 << c, span,
                      span + 2, 1, auction.F_FLEX, g)
        m.on_bid(node, fields, now)
    gc.collect()
    if gc.mem_alloc() > high:
        high = gc.mem_alloc()
    t0 = time.ticks_ms()
    t = m.close_ms(m.round)
    m.poll(t)
    while m.next_deadline_ms() == 0:  # the commit's awards go 16 per poll (node/market.py)
        m.poll(t)
    clear_ms.append(time.ticks_diff(time.ticks_ms(), t0))
    gc.collect()
    if gc.mem_alloc() > high:
        high = gc.mem_alloc()
clear_ms.sort()
print('{"nodes": %d, "heap_total": %d, "code_bytes": %d, "config_bytes": %d, "market_bytes": %d, '
      '"high_water": %d, "free_at_high_water": %d, "leases": %d, "lease_slots": %d, "max_bids": %d, '
      '"rounds": %d, "awarded": %d, "refused": %d, "ledger_conflicts": %d, "clear_ms_median": %d, "clear_ms_max": %d}'
      % (N, gc.mem_free() + gc.mem_alloc(), a_code - a0, a_cfg - a_code, a_market - a_cfg, high,
         gc.mem_free() + gc.mem_alloc() - high, m.ledger.n, m.ledger.max, mcfg.max_bids, m.rounds, m.awarded,
         sum(m.refused), m.ledger.conflicts(), clear_ms[len(clear_ms) // 2], clear_ms[-1]))
