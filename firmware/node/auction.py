# One auction round's bids and the clearing rule (docs/MARKET.md says why).
#
# Sealed bids, cleared once per round by the regional coordinator:
#  1. Every accepted bid asks for one lease shape (first slot, span, period,
#     count) on any resource of the classes in its mask, at a price per slot.
#  2. Bids are taken in descending price; equal prices in arrival order.
#  3. Each bid gets the first resource, in the order below, whose slots are
#     all free in the ledger; if it is flexible (F_FLEX) any phase within the
#     period will do (for a spot bid, count 1, the period is the window of
#     slots it accepts), if F_ASAP its first slot moves up to the first on
#     sale. A pre-allocation that fits nowhere whole gets its longest free
#     prefix (_place says why).
#     A bid naming a resource (an extension of a lease it holds) tries that
#     resource first, at exactly its first slot, and the ledger merges it
#     into the lease it extends: one record per need, however long it runs.
#  4. Classes are tried least-contested first (demand over units, this
#     round): a node that can process several feedstock types is steered to
#     the type fewer others can use, so specialists are not crowded out. That
#     is the one place this beats the plain greedy baseline.
#  5. The price of a class is the highest price among the bids that could
#     have used it and got nothing (uniform, "k+1-th" price), or the reserve
#     price if every such bid was served. A winner pays its class's price,
#     never more than it bid.
# The ledger refuses any slot already held, so no clearing can give one
# resource to two nodes for overlapping time, whatever order bids come in.
#
# Compact arrays sized once (max_bids): a round of 1,000 nodes is a few
# thousand bids, and on a Pico nothing here may allocate per bid.

from array import array

from micropython import const

from node import catalog as cat
from node.ledger import last_slot

MAX_PRICE = const(1000)  # credits per slot; a bid above is absurd
RESERVE_PRICE = const(1)
NO_RESOURCE = const(0xFFFF)
_NO_RECORD = const(-2)  # _place: the holder's record slots are full (Ledger.add's -2): its own, not its shape's
_MAX_BIDS = const(4095)  # a round's bids (the book's order array is u16)
_SPOT_RESERVE = const(2)  # record slots per holder pre-allocations may not take
_MIN_PREFIX = const(4)  # a partial pre-allocation shorter than this is not worth a record
_COVER_DELAY = const(3)  # periods a flexible pre-allocation may start late

# Bid flags.
F_FLEX = const(1)  # periodic: any phase within the period will do
F_ASAP = const(2)  # move the first slot up to the first slot on sale
F_COVER = const(4)  # pre-allocation for an autonomy window (reported, not priced)
F_ALL = const(7)  # the flags a bid may carry
F_WON = const(0x80)  # set by clear() on a row that won
F_MERGED = const(0x40)  # set by clear(): won through its hint, the ledger merged it
F_ADDED = const(0x20)  # a standby's replica row that its ledger took


class BidBook:
    """The bids of the open round: parallel arrays, one row per bid. After
    clear(), a row that won has F_WON set, `hint` holds the resource it got,
    `first` its first slot and `price` the price it pays; the standby keeps
    the awards it replicates in the same rows."""

    def __init__(self, max_bids):
        if not 0 < max_bids <= _MAX_BIDS:
            raise ValueError("bid book: 1..%d bids" % _MAX_BIDS)
        self.max = max_bids
        z = bytes(4 * max_bids)  # shared zero buffers (a small heap fragments on temporaries)
        self.seq = array("I", z)
        self.first = array("I", z)
        z = bytes(2 * max_bids)
        self.node = array("H", z)  # roster index of the bidder
        self.hint = array("H", z)
        self.price = array("H", z)
        self.order = array("H", z)  # the clearing order, by a counting sort on price: no per-round list
        del z  # the buffer goes before the next arrays are made
        self.mask = bytearray(max_bids)
        self.span = bytearray(max_bids)
        self.period = bytearray(max_bids)
        self.count = bytearray(max_bids)
        self.flags = bytearray(max_bids)
        self.n = 0

    def add(self, node, seq, first, hint, price, mask, span, period, count, flags, keep=0):
        """Append a bid: its row, or -1. A full book gives the row of its
        cheapest bid (at or after row `keep`) to a dearer one: when more is
        asked than the book holds, the urgent needs stay and the cheap ones
        (pre-allocations) wait a round."""
        i = self.n
        if i >= self.max:
            i = -1
            for j in range(keep, self.n):
                if self.price[j] < price and (i < 0 or self.price[j] < self.price[i]):
                    i = j
            if i < 0:
                return -1
        else:
            self.n = i + 1
        self.node[i] = node
        self.seq[i] = seq
        self.first[i] = first
        self.hint[i] = hint
        self.price[i] = price
        self.mask[i] = mask
        self.span[i] = span
        self.period[i] = period
        self.count[i] = count
        self.flags[i] = flags
        return i

    def reset(self):
        self.n = 0

    def drop_first(self, k):
        """Forget rows 0..k-1 (a committed round), keeping later ones."""
        self.drop(0, k)

    def drop(self, i, k=1):
        """Forget rows i..i+k-1; the later rows move up k."""
        n = self.n
        for j in range(i + k, n):
            d = j - k
            self.node[d] = self.node[j]
            self.seq[d] = self.seq[j]
            self.first[d] = self.first[j]
            self.hint[d] = self.hint[j]
            self.price[d] = self.price[j]
            self.mask[d] = self.mask[j]
            self.span[d] = self.span[j]
            self.period[d] = self.period[j]
            self.count[d] = self.count[j]
            self.flags[d] = self.flags[j]
        self.n = n - k if n > i + k else min(n, i)


def shape_ok(span, period, count, max_span):
    """A lease shape that makes sense: occurrences that do not overlap."""
    if span < 1 or span > max_span or count < 1:
        return False
    return count == 1 or period >= span


def in_horizon(first, span, period, count, on_sale, horizon):
    """First slot on sale or later, last slot before the horizon ends."""
    return first >= on_sale and last_slot(first, span, period, count) < on_sale + horizon


def _class_order(book, n, units):
    """Classes least-contested first: slots demanded per unit, this round."""
    demand = [0] * cat.N_CLASSES
    for i in range(n):
        m = book.mask[i]
        slots = book.span[i] * book.count[i]
        for c in range(cat.N_CLASSES):
            if m & (1 << c):
                demand[c] += slots
    keys = []
    for c in range(cat.N_CLASSES):
        keys.append((demand[c] * 1024 // (units[c] or 1), c))
    keys.sort()
    return [c for _, c in keys]


def _prefix(ledger, res, first, span, period, count):
    """How many leading occurrences of a lease shape are free on `res`."""
    end = ledger.base + ledger.horizon
    if first < ledger.base:
        return 0
    for k in range(count):
        s0 = first + k * period
        if s0 + span > end:
            return k
        for s in range(s0, s0 + span):
            if ledger.is_busy(res, s):
                return k
    return count


def _place(ledger, book, i, first_ids, units, order):
    """Find and record a resource for bid i: (res, first), or (-1, 0).

    (_NO_RECORD, 0) when the holder's record slots cannot hold it: the
    resource was there, so its shape is not hopeless for other holders.

    Pre-allocations (count > 1) search resources from the lowest id up, spot
    leases from the highest down, so spot leases do not fragment the regular
    patterns pre-allocations need. A pre-allocation that fits nowhere whole
    gets its longest free prefix (the row's count shrinks): a shorter cover
    now beats none, and the holder extends it later; but not under
    _MIN_PREFIX occurrences, and pre-allocations never hold more than all but
    _SPOT_RESERVE of a holder's record slots: those stay for spot needs,
    which are urgent."""
    span, period, count, flags = book.span[i], book.period[i], book.count[i], book.flags[i]
    on_sale = ledger.base
    first = book.first[i]
    if first < on_sale and flags & F_ASAP:
        first = on_sale
    holder = book.node[i]
    hint = book.hint[i]
    mask = book.mask[i]
    periodic = count > 1
    room = True
    if periodic:
        free, held = ledger.free_slots(holder)
        room = free > 0 and held < ledger.per_holder - _SPOT_RESERVE
    if hint != NO_RESOURCE:
        c = cat.class_of(first_ids, hint)
        if c >= 0 and mask & (1 << c) and ledger.add(hint, holder, first, span, period, count, True, False,
                                                     room) >= 0:
            book.flags[i] |= F_MERGED
            return hint, first
    if not room:
        ledger.no_room += 1  # an award its holder's records cannot hold: not made
        return _NO_RECORD, 0
    # A spot bid's period is its window; a flexible pre-allocation may also
    # start up to _COVER_DELAY periods late (better late than never).
    phases = (period or 1) * (_COVER_DELAY if periodic else 1) if flags & F_FLEX else 1
    step = period if periodic else span
    end = on_sale + ledger.horizon
    best_k = 0
    best_r = best_f = -1
    # A new pre-allocation first avoids starting right where another one
    # (same phase) ends: that holder will want to extend there.
    for careful in ((True, False) if periodic else (False,)):
        for c in order:
            if not mask & (1 << c):
                continue
            lo = first_ids[c]
            n = units[c]
            for j in range(n):
                r = lo + j if periodic else lo + n - 1 - j
                for ph in range(phases):
                    f = first + ph
                    if f + span > end:
                        break
                    if careful and ledger.is_busy(r, f - step):
                        continue
                    k = _prefix(ledger, r, f, span, step, count)
                    if k == count:
                        got = ledger.add(r, holder, f, span, step, count)
                        if got >= 0:
                            return r, f
                        return got, 0  # _NO_RECORD: no record slot left for this holder
                    if k > best_k:
                        best_k, best_r, best_f = k, r, f
    if periodic and best_k >= _MIN_PREFIX and ledger.add(best_r, holder, best_f, span, step, best_k) >= 0:
        book.count[i] = best_k
        return best_r, best_f
    return -1, 0


# Counting-sort scratch, one per process (one clearing runs at a time).
# Allocated at import, while the heap is still whole: allocated lazily at the
# first clearing, its 2 KB could find no contiguous block in a fragmented heap.
_at = array("H", bytes(2 * (MAX_PRICE + 2)))


def sort_by_price(book, n):
    """Fill book.order[0:n] with rows 0..n-1 by descending price, equal
    prices in arrival order (a stable counting sort: prices are 1..MAX_PRICE)."""
    at = _at
    for p in range(len(at)):
        at[p] = 0
    for i in range(n):
        at[MAX_PRICE - book.price[i] + 1] += 1
    for p in range(1, len(at)):
        at[p] += at[p - 1]
    order = book.order
    for i in range(n):
        k = MAX_PRICE - book.price[i]
        order[at[k]] = i
        at[k] += 1


def clear(book, n, ledger, units, first_ids, prices):
    """Clear rows 0..n-1 of the book against the ledger (whose base must
    already be the first slot on sale): winners get F_WON and their resource,
    first slot and price in their row; `prices` gets one price per class.
    Returns the number of awards."""
    order = _class_order(book, n, units)
    sort_by_price(book, n)
    top_loser = [0] * cat.N_CLASSES
    failed = {}  # shapes that found no resource: the ledger only fills, so they fail again
    won = 0
    for k in range(n):
        i = book.order[k]
        hinted = book.hint[i] != NO_RESOURCE
        shape = (book.mask[i], book.first[i], book.span[i], book.period[i], book.count[i], book.flags[i])
        res = -1
        f = 0
        if hinted or shape not in failed:
            res, f = _place(ledger, book, i, first_ids, units, order)
        if res < 0:
            if not hinted and res != _NO_RECORD:  # a full holder's loss says nothing of the shape
                failed[shape] = 1
            m = book.mask[i]
            for c in range(cat.N_CLASSES):
                if m & (1 << c) and book.price[i] > top_loser[c]:
                    top_loser[c] = book.price[i]
            continue
        book.flags[i] |= F_WON
        book.hint[i] = res
        book.first[i] = f
        if book.count[i] == 1 and not book.flags[i] & F_MERGED:
            book.period[i] = book.span[i]  # a spot bid's window is spent
        won += 1
    for c in range(cat.N_CLASSES):
        prices[c] = top_loser[c] if top_loser[c] > RESERVE_PRICE else RESERVE_PRICE
    for i in range(n):
        if book.flags[i] & F_WON:
            p = prices[cat.class_of(first_ids, book.hint[i])]
            if p < book.price[i]:
                book.price[i] = p
    return won
