"""What a region's market awards a round at its capacity limits (docs/MARKET.md
"Capacity"), in-process on CPython: the elector's own market core
(firmware/node/market.py, the lineage-A clearing) fed the bids
bench/mpy/heap_seat.py feeds a board holding the seat of a 1,000-node region
(one elector, one-hour slots, --bidders roster nodes bid each slot, one bid
per shell step between polls, the same sources, prices, classes and shapes),
at the compact sizes (256 bid rows, 1 ledger record a node), the compact
book with 6 records a node, and the full sizes. Per round: the book's rows,
awards per class (4 and 5, the classes the bids ask for), bids lost for want
of a record slot (no_room) and the class prices; then the totals. Seconds,
where heap_seat_run on the wasm32 port takes minutes; the figures are the
core's, not a board's heap. Not a test: it asserts nothing.

    .venv/bin/python -m bench.market_book [--bidders 600] [--hours 4] [--nodes 1000]
"""

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for p in ("ground/shims", "firmware"):
    sys.path.insert(0, os.path.join(ROOT, p))

from bench.machine_info import describe  # noqa: E402
from node import auction, refusal  # noqa: E402
from node.config import MarketConfig  # noqa: E402
from node.market import OPEN, Market  # noqa: E402
from node.strategy import Intent  # noqa: E402

SLOT_MS = 3600 * 1000
SIZES = (("compact (defaults above 700 nodes)", {}), ("compact book, 6 records a node", {"leases_per_node": 6}),
         ("full sizes", {"max_bids": 1016, "leases_per_node": 6}))


def units_of(n):
    """bench/mpy/heap_seat_run.py board_cfg's units for a region of n nodes."""
    return [79 * n // 1000 + 1, 131 * n // 1000 + 1, 79 * n // 1000 + 1, 27 * n // 1000 + 1,
            228 * n // 1000 + 1, 70 * n // 1000 + 1, 53 * n // 1000 + 1, 209 * n // 1000 + 1]


def run(n, bidders, hours, market):
    """One elector's market over `hours`: (market, [per-round dict])."""
    cfg = MarketConfig(roster=range(1, n + 1), electors=[1], units=units_of(n), slot_ms=SLOT_MS,
                       region_timeout_ms=2000, **market)
    m = Market(1, cfg, Intent(), lambda dst, t, p: None)
    rounds = []
    clear = m.clear

    def counted(book, rows, ledger, units, first_ids, prices):
        before = ledger.no_room
        won = clear(book, rows, ledger, units, first_ids, prices)
        by = [sum(1 for i in range(rows) if book.mask[i] == 1 << c and book.flags[i] & auction.F_WON) for c in (4, 5)]
        rounds.append({"round": m.round, "rows": rows, "won": won, "won_c4": by[0], "won_c5": by[1],
                       "no_room": ledger.no_room - before, "price_c4": prices[4], "price_c5": prices[5]})
        return won

    m.clear = counted
    m.lead(1, 0, 0, [1] * 8)
    t = 0
    last = -1
    seq = 1
    todo = []
    while t < hours * 3600 * 1000:
        m.poll(t)
        if m.state == OPEN and m.round != last:  # a round opened: its bids, as heap_seat.py makes them
            last = rnd = m.round
            todo = [(2 + (k * 7919 + rnd) % (n - 1), k, rnd) for k in range(min(bidders, n - 1))][::-1]
        if todo:
            src, k, rnd = todo.pop()
            seq += 1
            m.on_bid(src, (rnd, seq, rnd + 1, auction.NO_RESOURCE, 8 + k % 32, 1 << (4 + k % 2), 1, 3, 1,
                           auction.F_FLEX, 0), t)
            t += 1  # a shell step
        else:
            t += 1000  # no input: the board's wait times out
    return m, rounds


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--bidders", type=int, default=600, help="roster nodes bidding each slot")
    ap.add_argument("--hours", type=float, default=4)
    a = ap.parse_args(argv)
    print("machine:", describe())
    u = units_of(a.nodes)
    print("%d nodes, %d bidders a slot (half class 4: %d units, half class 5: %d units; a spot slot in a window of 3),"
          " %g mission h" % (a.nodes, a.bidders, u[4], u[5], a.hours))
    for name, market in SIZES:
        m, rounds = run(a.nodes, a.bidders, a.hours, market)
        print("%s: %d bid rows, %d record(s) a node" % (name, m.book.max, m.ledger.per_holder))
        for r in rounds:
            print("    round %(round)d: %(rows)d rows, %(won)d awards (class 4: %(won_c4)d, class 5: %(won_c5)d),"
                  " %(no_room)d lost for want of a record slot, prices %(price_c4)d/%(price_c5)d" % r)
        print("    total: %d rounds, %d awards (%.0f a round), %d bids taken, %d refused as full, %d no_room"
              % (m.rounds, m.awarded, m.awarded / max(1, m.rounds), m.bids_in, m.refused[refusal.FULL],
                 m.ledger.no_room))


if __name__ == "__main__":
    main()
