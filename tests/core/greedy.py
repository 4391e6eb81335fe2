# The baseline for allocation quality: a centralised greedy allocation of one
# round's requests, with full knowledge and no protocol, and a seeded
# generator of such rounds. Used by tests/core/test_region_clearing.py and
# bench/bench_market.py.
#
# Greedy, as the benchmark defines it: take requests by descending price per
# slot, give each the lowest-numbered resource of any class it accepts whose
# slots are all free at the request's own first slot (no phase shifting, no
# contention ordering, no partial fills); "flexible" greedy may also shift a
# request within the flexibility it declares. Quality is the value placed,
# sum of price x slots, relative to greedy's.
from node import catalog as cat
from node.auction import F_COVER, F_FLEX, F_WON, MAX_PRICE, NO_RESOURCE, BidBook, clear
from node.ledger import Ledger


def greedy_value(book, n, ledger, units, first_ids, flexible=False):
    """Value placed by greedy. With `flexible`, greedy also uses the
    flexibility each bid declares (any phase of a periodic bid, any slot of a
    spot bid's window), still lowest resource first, no contention ordering,
    no partial fills: the fairer baseline for the clearing rule."""
    keys = sorted(((MAX_PRICE - book.price[i]) << 12) | i for i in range(n))
    value = 0
    for key in keys:
        i = key & 0xFFF
        span, count = book.span[i], book.count[i]
        period = book.period[i] if count > 1 else span
        first = book.first[i] if book.first[i] >= ledger.base else ledger.base
        shifts = (book.period[i] or 1) if flexible and book.flags[i] & F_FLEX else 1
        done = False
        for c in range(cat.N_CLASSES):
            if done or not book.mask[i] & (1 << c):
                continue
            for r in range(first_ids[c], first_ids[c] + units[c]):
                for ph in range(shifts):
                    if ledger.add(r, book.node[i], first + ph, span, period, count) >= 0:
                        done = True
                        break
                if done:
                    break
        if done:
            value += book.price[i] * span * count
    return value


def market_value(book, n):
    v = 0
    for i in range(n):
        if book.flags[i] & F_WON:
            v += book.bid_price[i] * book.span[i] * book.count[i]
    return v


def instance(rng, n_nodes, units, base, horizon):
    """One round's requests, as (node, first, mask, span, period, count,
    price, flags) tuples: every node needs feedstock of the types its
    generation can process, some need a logistics window or parts, some
    renew a pre-allocation. Needs cluster on the next few slots, as when a
    fleet starts or a resource goes scarce."""
    reqs = []
    for node in range(n_nodes):
        gen = 1 + rng.below(3)
        feed = cat.GENS[gen][0]
        urgency = rng.below(5)
        reqs.append((node, base + rng.below(3), feed, 1, 3, 1, 8 * (2 + urgency), F_FLEX))
        if rng.below(3) == 0:
            reqs.append((node, base + rng.below(4), cat.LOGISTICS_MASK, cat.LOGISTICS_SPAN, cat.LOGISTICS_SPAN, 1,
                         6 * (2 + rng.below(5)), 0))
        if rng.below(2) == 0:
            c = cat.PART_A + rng.below(3)
            reqs.append((node, base + rng.below(3), 1 << c, 1, 2, 1, 8 * (2 + rng.below(5)), F_FLEX))
        if rng.below(4) == 0:
            period = 4 + rng.below(4)
            count = (horizon - 8) // period
            reqs.append((node, base + rng.below(period), feed, 1, period, count, 2, F_FLEX | F_COVER))
    return reqs


def run_instance(reqs, units, base, horizon, per_holder=8, flexible=False):
    """(market value, greedy value, market conflicts) for one round."""
    first_ids = cat.starts(units)
    n_res = first_ids[cat.N_CLASSES]
    holders = 1 + max(r[0] for r in reqs)
    results = []
    for which in ("market", "greedy"):
        led = None  # the first ledger goes before the second is made (a small heap)
        led = Ledger(n_res, horizon, per_holder, holders)
        led.advance(base)
        book = BidBook(max(1, len(reqs)))
        book.bid_price = []
        for node, first, mask, span, period, count, price, flags in reqs:
            book.add(node, 0, first, NO_RESOURCE, price, mask, span, period, count, flags)
            book.bid_price.append(price)
        if which == "market":
            prices = [0] * cat.N_CLASSES
            clear(book, book.n, led, units, first_ids, prices)
            results.append(market_value(book, book.n))
            results.append(led.conflicts())
        else:
            results.append(greedy_value(book, book.n, led, units, first_ids, flexible))
    return results[0], results[2], results[1]
