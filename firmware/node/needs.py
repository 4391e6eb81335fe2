# A node's needs: projecting its stocks, and shaping the bids that cover them.
#
# Per group (feedstock, logistics, each component class the node does not
# make), at every slot start and after every market event (Trader._check):
#   spot   project the stock LOOKAHEAD slots ahead, counting the deliveries
#          of the leases held. A shortfall d slots ahead is a spot need: one
#          bid for any slot from the earliest in which a delivery would not
#          spill over the cap to the one it runs short in, priced by urgency.
#   cover  keep a pre-allocation for an autonomy window: periodic leases
#          reaching at least window_slots ahead at the share of the need the
#          ground's intent asks for (cover_permille), topped up to the ledger's
#          horizon on the same resource and phase (so the ledger merges them
#          into one record) whenever less than a window is left. One cover bid
#          at a time.
# Prices: a need that is not urgent and is worth less than the last-known
# price of its classes waits a round (deferred_bids): others need it more.
# Cut off, the node does exactly the same on the prices it last heard.
# Functions of the Trader (`tr`) rather than methods, so trader.py stays small.

from micropython import const

from node import auction, catalog as cat, msgs
from node.ledger import last_slot

LOOKAHEAD = const(4)  # slots ahead a projected shortfall becomes a need
G_FEED = const(0)
G_LOGISTICS = const(1)
G_PART_A = const(2)  # G_PART_A + i: component class PART_A + i
N_GROUPS = const(5)
GROUP_NAMES = ("feed", "logistics", "part_a", "part_b", "part_earth")
_SPOT_VALUE = (8, 6, 8, 8, 10)  # price per slot at the lowest urgency
_COVER_VALUE = const(2)  # a pre-allocation is worth less than a shortfall now

# A held lease: [res, first, span, period, count, group, cover]
L_RES = const(0)
L_FIRST = const(1)
L_SPAN = const(2)
L_PERIOD = const(3)
L_COUNT = const(4)
L_GROUP = const(5)
L_COVER = const(6)


def group_of(cls):
    if cls <= cat.FEED_3:
        return G_FEED
    if cls == cat.LOGISTICS:
        return G_LOGISTICS
    return G_PART_A + cls - cat.PART_A


def kind_of(g):
    if g == G_FEED:
        return cat.KIND_FEED
    if g == G_LOGISTICS:
        return cat.KIND_LOGISTICS
    return cat.KIND_PART


def occurs(lease, slot):
    """Offset of `slot` into the lease occurrence covering it, or -1."""
    d = slot - lease[L_FIRST]
    if d < 0:
        return -1
    p = lease[L_PERIOD]
    if d // p >= lease[L_COUNT]:
        return -1
    off = d % p
    return off if off < lease[L_SPAN] else -1


def mask_of(tr, g):
    if g == G_FEED:
        return tr.prod.feed_mask
    if g == G_LOGISTICS:
        return cat.LOGISTICS_MASK
    return 1 << (cat.PART_A + g - G_PART_A)


def groups_of(tr):
    need = tr.prod.needs_mask()
    out = [G_FEED, G_LOGISTICS]
    for i in range(3):
        if need & (1 << (cat.PART_A + i)):
            out.append(G_PART_A + i)
    return out


def min_price(tr, mask):
    p = auction.MAX_PRICE
    for c in range(cat.N_CLASSES):
        if mask & (1 << c) and tr.prices[c] < p:
            p = tr.prices[c]
    return p


def part_of(tr, g):
    return g - G_PART_A if g >= G_PART_A else 0


def slot_blocked(tr, slot, span=1):
    ms = tr.cfg.slot_ms
    return tr.intent.blocks(slot * ms // 1000, (slot + span) * ms // 1000)


def short_in(tr, g, cur, skip=None, lo=0):
    """(d, e): group g's stock runs short d slots from now (0..LOOKAHEAD,
    -1 if it does not), and e >= lo is the earliest of those slots in
    which one more delivery would fit without spilling over the cap (a
    spot bid may take any slot from e to d)."""
    prod = tr.prod
    kind = kind_of(g)
    part = part_of(tr, g)
    growth = tr.intent.replication_permille()
    use = prod.use_per_slot(kind, part, growth)
    cap = prod.cap(kind, part)
    add = prod.delivery(kind, part)
    level = prod.level(kind, part)
    if kind == cat.KIND_LOGISTICS and tr._logistics:
        level = cap
    early = -1
    for d in range(LOOKAHEAD + 1):
        j = cur + d
        if d:
            for lease in tr.leases:
                if lease is skip or lease[L_GROUP] != g:
                    continue
                off = occurs(lease, j)
                if off < 0 or (kind != cat.KIND_LOGISTICS and off):
                    continue
                if kind == cat.KIND_LOGISTICS:
                    if not slot_blocked(tr, j):
                        level = cap
                else:
                    level += add
                    if level > cap:
                        level = cap
        if early < 0 and d >= lo and (kind == cat.KIND_LOGISTICS or level + add <= cap):
            early = d
        if level < use:
            return d, (early if 0 <= early <= d else d)
        level -= use
    return -1, -1


def has_pending(tr, g, cover):
    for b in tr.pending:
        if b[1] == g and b[2] == cover:
            return True
    return False


def send_bid(tr, now_ms, g, cover, rnd, first, span, period, count, price, flags, hint):
    seq = tr._next_seq(now_ms)
    mask = mask_of(tr, g)
    p = msgs.pack(msgs.BID, rnd, seq, first, hint, price, mask, span, period, count, flags, tr.prod.gen,
                  version=msgs.VERSION)
    tr.send(tr.coord, msgs.BID, p)
    if tr.cfg.auditors:  # held for its receipt, then copied to the auditors (node/bidcopy.py: only where there are any)
        from node import bidcopy

        bidcopy.hold(tr, now_ms, p, rnd, seq, first, hint, price, mask, span, period, count, flags)
    tr.bids += 1
    k = g + (N_GROUPS if cover else 0)
    if tr.need_since[k] < 0:
        tr.need_since[k] = now_ms  # the need's first bid: decision latency runs from here to its award
    expire = (rnd + 1) * tr.cfg.slot_ms  # its awards are due before the slot it sells
    tr.pending.append([seq, g, cover, tr.need_since[k], expire + tr.cfg.lead_ms, rnd,
                       last_slot(first, span, period, count), now_ms])


def spot_bid(tr, now_ms, g, cur):
    if has_pending(tr, g, False):
        return
    rnd, on_sale = tr._round_for(now_ms)
    d, e = short_in(tr, g, cur, None, on_sale - cur)
    if d < 0:
        tr.need_since[g] = -1  # no need (any more): nothing is waiting for a decision
        return
    first = cur + e
    window = d - e + 1  # any slot from the earliest useful one to the last moment
    flags = auction.F_FLEX
    if cur + d < on_sale:
        first = on_sale
        window = 1
        flags = auction.F_ASAP
    span = cat.LOGISTICS_SPAN if g == G_LOGISTICS else 1
    if g == G_LOGISTICS and slot_blocked(tr, first, span):
        # Honour the campaign: move the window before it if there is time, else after.
        ms = tr.cfg.slot_ms
        before = tr.intent.campaign_start_s * 1000 // ms - span
        if before >= on_sale:
            first = before
        else:
            first = (tr.intent.campaign_end_s * 1000 + ms - 1) // ms
        flags = 0
        window = 1
    price = _SPOT_VALUE[g] * (LOOKAHEAD + 2 - d)
    if d > 1 and price < min_price(tr, mask_of(tr, g)):
        tr.deferred_bids += 1  # not urgent, and the last-known price says others need it more
        return
    send_bid(tr, now_ms, g, False, rnd, first, span, window if flags & auction.F_FLEX else span, 1, price, flags,
             auction.NO_RESOURCE)


def cover_period(tr, g):
    """Slots between pre-allocated deliveries for group g, at the cover the
    intent asks for."""
    prod = tr.prod
    kind = kind_of(g)
    part = part_of(tr, g)
    use = prod.use_per_slot(kind, part, tr.intent.replication_permille()) or 1
    nominal = prod.delivery(kind, part) // use
    p = nominal * 1000 // tr.intent.cover_permille
    span = cat.LOGISTICS_SPAN if g == G_LOGISTICS else 1
    if p < span:
        p = span
    return p if p < 255 else 255


def cover_end(tr, g):
    """(last covered occurrence start, its lease) for group g, or (-1, None)."""
    end = -1
    lease_of = None
    for lease in tr.leases:
        if lease[L_GROUP] == g and lease[L_COVER]:
            e = lease[L_FIRST] + (lease[L_COUNT] - 1) * lease[L_PERIOD]
            if e > end:
                end, lease_of = e, lease
    return end, lease_of


def cover_bid(tr, now_ms, g, cur):
    """Bid to extend group g's pre-allocation if it runs short; True if
    a pre-allocation bid for g is outstanding."""
    if has_pending(tr, g, True):
        return True
    w = tr.cfg.window_slots
    end, lease = cover_end(tr, g)
    if end >= cur + w:
        return False  # a whole window ahead is covered
    rnd, on_sale = tr._round_for(now_ms)
    period = cover_period(tr, g)
    span = cat.LOGISTICS_SPAN if g == G_LOGISTICS else 1
    hint = auction.NO_RESOURCE
    flags = auction.F_COVER | auction.F_FLEX
    first = on_sale
    if lease is not None and lease[L_PERIOD] == period and end + period >= on_sale:
        first = end + period
        hint = lease[L_RES]  # tried first, exactly here, so the ledger merges
    elif end >= on_sale:
        first = end + 1
    limit = on_sale + tr.cfg.horizon_slots - 1  # top up as far as the ledger reaches
    count = (limit - first) // period + 1
    while count > 0 and last_slot(first, span, period, count) > limit:
        count -= 1
    if count > 255:
        count = 255
    if g == G_LOGISTICS:
        k = 0
        while k < count and not slot_blocked(tr, first + k * period, span):
            k += 1
        count = k  # stop before the campaign; the next renewal starts after it
    if count < 1:
        return False
    if _COVER_VALUE < min_price(tr, mask_of(tr, g)):
        tr.deferred_bids += 1
        return False
    send_bid(tr, now_ms, g, True, rnd, first, span, period, count, _COVER_VALUE, flags, hint)
    return True


def check(tr, now_ms):
    tr._check = False
    if tr.coord == msgs.NO_NODE:
        return  # nobody to bid to yet
    if not tr.auto.may_bid():
        tr.deferred_bids += 1
        return
    cur = now_ms // tr.cfg.slot_ms
    covering = False
    for g in groups_of(tr):
        spot_bid(tr, now_ms, g, cur)
        if not covering:
            covering = cover_bid(tr, now_ms, g, cur)  # one pre-allocation bid at a time
