# Lineage B's market clearing: a second, independently structured
# implementation of the rule in docs/MARKET.md ("The clearing rule", with the
# exact tie-breaks of "Lineages: what the clearing must do, exactly").
#
# Why two: a common-mode bug in the one clearing every coordinator runs would
# hand out wrong leases fleet-wide at once (Knight & Leveson: independently
# written versions still fail together, so docs/CONTAINMENT.md measures it).
# Nodes of lineage B run this one; auditors of another lineage re-run a round
# with theirs and compare digests. Same inputs, same outputs: the book's rows,
# the ledger's records and the class prices are identical to auction.clear()'s
# (tests/core/test_lineage_clearing.py checks it over seeded rounds on both
# runtimes).
#
# Where lineage A (auction.py) differs in structure:
#  - order: an in-place heapsort of row numbers by (price desc, row asc)
#    instead of a counting sort over prices (no 2 KB scratch table);
#  - class order: an insertion sort of classes on integer keys;
#  - placement: ONE pass over the candidates (class, resource, phase) that
#    remembers the first "careful" whole fit, the first whole fit and the
#    best prefix, instead of a careful pass followed by a careless pass;
#    occurrences are tested with Ledger.fits() one occurrence at a time
#    instead of slot by slot;
#  - shapes that found no room are remembered as packed integers in a set.
# Loaded only by nodes whose lineage selects it (node/market.py clearing()).

from micropython import const

from node import catalog as cat

MAX_PRICE = const(1000)
RESERVE_PRICE = const(1)
NO_RESOURCE = const(0xFFFF)
_HOLDER_FULL = const(-2)  # place(): no record slot for the holder (Ledger.add's -2), the shape may still fit
_KEEP_FOR_SPOT = const(2)  # record slots a holder's pre-allocations leave free
_SHORTEST_PREFIX = const(4)  # occurrences a partial pre-allocation needs to be worth a record
_LATE_PERIODS = const(3)  # periods a flexible pre-allocation may start late

_FLEX = const(1)
_ASAP = const(2)
_WON = const(0x80)
_MERGED = const(0x40)


def _before(book, a, b):
    """Row a is cleared before row b: dearer first, then earlier."""
    pa = book.price[a]
    pb = book.price[b]
    return pa > pb or (pa == pb and a < b)


def _sift(book, order, top, n):
    """Restore the heap below `top` (the root is the row cleared LAST)."""
    while True:
        c = 2 * top + 1
        if c >= n:
            return
        if c + 1 < n and _before(book, order[c], order[c + 1]):
            c += 1
        if not _before(book, order[top], order[c]):
            return
        order[top], order[c] = order[c], order[top]
        top = c


def rank(book, n):
    """book.order[0:n]: rows in clearing order, by a heapsort in place."""
    order = book.order
    for i in range(n):
        order[i] = i
    for top in range(n // 2 - 1, -1, -1):
        _sift(book, order, top, n)
    for end in range(n - 1, 0, -1):
        order[0], order[end] = order[end], order[0]
        _sift(book, order, 0, end)


def contest(book, n, units):
    """Class ids, least contested first: floor(1024 x slots asked / units)
    (a class of no units counts as one unit), ties to the lower class."""
    asked = [0] * cat.N_CLASSES
    for i in range(n):
        slots = book.span[i] * book.count[i]
        m = book.mask[i]
        c = 0
        while m:
            if m & 1:
                asked[c] += slots
            m >>= 1
            c += 1
    keys = [asked[c] * 1024 // (units[c] if units[c] else 1) for c in range(cat.N_CLASSES)]
    out = list(range(cat.N_CLASSES))
    for j in range(1, cat.N_CLASSES):  # insertion sort: stable, so ties keep the lower class first
        c = out[j]
        while j > 0 and keys[out[j - 1]] > keys[c]:
            out[j] = out[j - 1]
            j -= 1
        out[j] = c
    return out


def _run(ledger, res, first, span, step, count):
    """Leading occurrences of the shape free on `res` (each tested whole)."""
    if first < ledger.base:
        return 0
    k = 0
    while k < count and ledger.fits(res, first + k * step, span, 1, 1):
        k += 1
    return k


def place(ledger, book, i, first_ids, units, classes):
    """Give row i a resource: (res, first) with the lease recorded, or (-1, 0),
    or (_HOLDER_FULL, 0) when a resource was there but not a record slot."""
    span = book.span[i]
    period = book.period[i]
    count = book.count[i]
    flags = book.flags[i]
    holder = book.node[i]
    mask = book.mask[i]
    first = book.first[i]
    if flags & _ASAP and first < ledger.base:
        first = ledger.base
    periodic = count > 1
    may_add = True
    if periodic:
        free, held = ledger.free_slots(holder)
        may_add = free > 0 and held < ledger.per_holder - _KEEP_FOR_SPOT
    named = book.hint[i]
    if named != NO_RESOURCE:
        c = cat.class_of(first_ids, named)
        if c >= 0 and (mask >> c) & 1:
            if ledger.add(named, holder, first, span, period, count, True, False, may_add) >= 0:
                book.flags[i] = flags | _MERGED
                return named, first
    if not may_add:
        ledger.no_room += 1  # an award its holder's records cannot hold: not made
        return _HOLDER_FULL, 0
    if periodic:
        step = period
        shifts = (period or 1) * _LATE_PERIODS if flags & _FLEX else 1
    else:
        step = span
        shifts = (period or 1) if flags & _FLEX else 1
    limit = ledger.base + ledger.horizon
    whole_r = whole_f = -1  # first whole fit, careful or not
    pre_r = pre_f = -1  # best prefix: most occurrences, a careful one first
    pre_k = 0
    pre_careful = False
    for c in classes:
        if not (mask >> c) & 1:
            continue
        lo = first_ids[c]
        top = lo + units[c] - 1
        for j in range(units[c]):
            r = lo + j if periodic else top - j
            f = first
            while f < first + shifts and f + span <= limit:
                k = _run(ledger, r, f, span, step, count)
                careful = periodic and not ledger.is_busy(r, f - step)
                if k == count:
                    if careful or not periodic:
                        return _take(ledger, r, holder, f, span, step, count)
                    if whole_r < 0:
                        whole_r, whole_f = r, f
                elif periodic and k > 0:
                    better = k > pre_k or (k == pre_k and careful and not pre_careful)
                    if better:
                        pre_r, pre_f, pre_k, pre_careful = r, f, k, careful
                f += 1
    if whole_r >= 0:
        return _take(ledger, whole_r, holder, whole_f, span, step, count)
    if periodic and pre_k >= _SHORTEST_PREFIX and ledger.add(pre_r, holder, pre_f, span, step, pre_k) >= 0:
        book.count[i] = pre_k
        return pre_r, pre_f
    return -1, 0


def _take(ledger, r, holder, f, span, step, count):
    got = ledger.add(r, holder, f, span, step, count)
    if got >= 0:
        return r, f
    return got, 0  # _HOLDER_FULL: the holder has no record slot left


def _shape(book, i):
    """A row's asked shape as one integer (the set of shapes that failed)."""
    return ((((book.first[i] * 256 + book.mask[i]) * 256 + book.span[i]) * 256 + book.period[i]) * 256
            + book.count[i]) * 256 + book.flags[i]


def clear(book, n, ledger, units, first_ids, prices):
    """Clear rows 0..n-1 against the ledger (base = first slot on sale):
    winners get F_WON, their resource in `hint`, first slot and price paid;
    `prices` one price per class. Returns the number of awards."""
    classes = contest(book, n, units)
    rank(book, n)
    unmet = [0] * cat.N_CLASSES  # highest price among bids of each class that got nothing
    hopeless = set()
    awards = 0
    for k in range(n):
        i = book.order[k]
        named = book.hint[i] != NO_RESOURCE
        key = _shape(book, i)
        r = -1
        f = 0
        if named or key not in hopeless:
            r, f = place(ledger, book, i, first_ids, units, classes)
        if r < 0:
            if not named and r != _HOLDER_FULL:  # only a shape that found no resource is hopeless
                hopeless.add(key)
            for c in range(cat.N_CLASSES):
                if (book.mask[i] >> c) & 1 and unmet[c] < book.price[i]:
                    unmet[c] = book.price[i]
            continue
        book.flags[i] |= _WON
        book.hint[i] = r
        book.first[i] = f
        if book.count[i] == 1 and not book.flags[i] & _MERGED:
            book.period[i] = book.span[i]
        awards += 1
    for c in range(cat.N_CLASSES):
        prices[c] = max(unmet[c], RESERVE_PRICE)
    for i in range(n):
        if book.flags[i] & _WON:
            pay = prices[cat.class_of(first_ids, book.hint[i])]
            if pay < book.price[i]:
                book.price[i] = pay
    return awards
