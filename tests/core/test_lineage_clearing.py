# The two independently written clearings (node/auction.py, lineage A;
# node/auction_b.py, lineage B) give the same outputs for the same inputs:
# the book's rows after clearing, the ledger's records and digest, the class
# prices and the award count, over seeded rounds that exercise every rule
# (scarce classes, flexible phases, ASAP, bids in the past, extensions of a
# held lease, full holders, partial pre-allocations, repeated hopeless
# shapes). CPython and MicroPython (make test-mpy, 192K heap).
from node import auction, auction_b, catalog as cat
from node.audit import clearing_impl
from node.market import clearing
from node.auction import F_ASAP, F_COVER, F_FLEX, NO_RESOURCE, BidBook
from node.ledger import Ledger
from node.rng import Rng

H = 64
N_ROUNDS = 3000  # seeded rounds per runtime (each both implementations)


def _units(rng):
    return tuple(rng.below(4) for _ in range(cat.N_CLASSES))


def _prefill(led, rng, ids, holders):
    """Some leases already held: the market's ledger after earlier rounds."""
    n_res = ids[cat.N_CLASSES]
    if not n_res:
        return
    for _ in range(rng.below(3 * holders)):
        r = rng.below(n_res)
        h = rng.below(holders)
        if rng.below(3) == 0:
            p = 2 + rng.below(5)
            led.add(r, h, led.base + rng.below(p), 1, p, 2 + rng.below(8))
        else:
            span = 1 + rng.below(3)
            led.add(r, h, led.base + rng.below(20), span, span, 1)


def _bids(rng, led, ids, holders, base):
    n_res = ids[cat.N_CLASSES]
    out = []
    for _ in range(rng.below(24)):
        node = rng.below(holders)
        mask = rng.below(256) & (rng.below(256) | 1) or 1
        hint = NO_RESOURCE
        kind = rng.below(6)
        flags = 0
        if kind <= 2:  # spot, maybe flexible within a window
            span = 1 + rng.below(3)
            period = 1 + rng.below(4) if rng.below(2) else span
            count = 1
            flags = F_FLEX if rng.below(2) else 0
        elif kind <= 4:  # pre-allocation
            span = 1
            period = 2 + rng.below(5)
            count = 2 + rng.below(12)
            flags = F_COVER | (F_FLEX if rng.below(3) else 0)
        else:  # an extension of something held (or of nothing)
            recs = led.records(node)
            span = 1
            period = 1
            count = 1 + rng.below(4)
            if recs and rng.below(4):
                j = recs[rng.below(len(recs))]
                res, _, f, span, period, c = led.lease(j)
                hint = res
                mask = 1 << cat.class_of(ids, res) if rng.below(5) else mask
                first = f + c * period
                if c == 1:
                    period = span
                out.append((node, first, hint, 1 + rng.below(60), mask, span, period, count, 0))
                continue
            if n_res:
                hint = rng.below(n_res + 2)
        if rng.below(8) == 0:
            flags |= F_ASAP
        first = base - 3 + rng.below(14)
        price = 1 + rng.below(60) if rng.below(4) else 10  # many equal prices: arrival order matters
        out.append((node, first, hint, price, mask, span, period, count, flags))
    # the same hopeless shape from several holders, and duplicates
    if out and rng.below(3) == 0:
        for _ in range(1 + rng.below(3)):
            b = out[rng.below(len(out))]
            out.append((rng.below(holders),) + b[1:])
    return out


def _run(clear_fn, units, seed, per_holder):
    rng = Rng(seed)
    ids = cat.starts(units)
    holders = 6
    base = 10
    led = Ledger(ids[cat.N_CLASSES], H, per_holder, holders)
    led.advance(base)
    _prefill(led, rng, ids, holders)
    bids = _bids(rng, led, ids, holders, base)
    book = BidBook(max(1, len(bids)))
    for node, first, hint, price, mask, span, period, count, flags in bids:
        book.add(node, 0, first, hint, price, mask, span, period, count, flags)
    prices = [0] * cat.N_CLASSES
    won = clear_fn(book, book.n, led, units, ids, prices)
    rows = []
    for i in range(book.n):
        rows.append((book.flags[i], book.hint[i], book.first[i], book.period[i], book.count[i], book.price[i]))
    recs = [led.lease(i) for i in range(led.max) if led.count[i]]
    return won, tuple(prices), rows, recs, led.digest(), led.conflicts()


def test_both_clearings_agree_on_seeded_rounds():
    rng = Rng(2026)
    awarded = 0
    for k in range(N_ROUNDS):
        units = _units(rng)
        per_holder = 3 + rng.below(5)
        a = _run(auction.clear, units, k, per_holder)
        b = _run(auction_b.clear, units, k, per_holder)
        if a != b:
            raise AssertionError("round %d units %r: A %r != B %r" % (k, units, a, b))
        assert a[5] == 0
        awarded += a[0]
    assert awarded > N_ROUNDS  # the rounds award something: the comparison is not of empty books


def test_the_order_is_price_then_arrival():
    book = BidBook(8)
    for p in (5, 9, 5, 1, 9, 7):
        book.add(0, 0, 0, NO_RESOURCE, p, 1, 1, 1, 1, 0)
    auction_b.rank(book, book.n)
    assert list(book.order[:6]) == [1, 4, 5, 0, 2, 3]
    auction.sort_by_price(book, book.n)
    assert list(book.order[:6]) == [1, 4, 5, 0, 2, 3]


def test_a_defect_in_one_clearing_shows_as_a_different_digest():
    # What an auditor relies on: a wrong clearing (here, B handing out the
    # cheapest bid first) gives a different ledger digest from A's.
    units = (2, 1, 0, 0, 1, 0, 0, 0)

    def wrong(book, n, led, units, ids, prices):
        for i in range(n):
            book.price[i] = 61 - book.price[i] if book.price[i] <= 60 else book.price[i]
        return auction_b.clear(book, n, led, units, ids, prices)

    differ = 0
    for seed in range(40):
        if _run(auction.clear, units, seed, 6)[4] != _run(wrong, units, seed, 6)[4]:
            differ += 1
    assert differ >= 20


def test_lineages_select_implementations_by_the_table():
    assert clearing(0) is auction.clear
    assert clearing(1) is auction_b.clear
    assert clearing(2) is auction.clear
    assert clearing(3) is auction_b.clear
    assert clearing_impl(0) != clearing_impl(1)
