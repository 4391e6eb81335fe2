# An auditor's check of one round (docs/CONTAINMENT.md): re-run the clearing
# with this node's own lineage's implementation on the same inputs (the
# ledger as it was before the round, the round's bids) and compare with what
# the coordinator prepared and published: the ledger digest, the award count,
# each award, the class prices. A difference becomes the fields of an ACCUSE
# frame with its evidence (round, both digests, the first award and the first
# price that differ); agreement is None.
#
# PeerReview's witness, in the market's terms: the clearing is a
# deterministic function of (ledger, bids), so any node that has them can
# replay it. An auditor of another lineage replays it with code written
# independently (market.clearing), so a defect in one implementation shows
# as a disagreement rather than being repeated by every checker.
#
# Pure: no I/O, no clock. The scratch ledger and book are sized once (the
# region's dimensions) and reused round after round.

from micropython import const

from node import catalog as cat, msgs, refusal, wire
from node.market import CLEARING, clearing
from node.auction import F_ALL, F_WON, NO_RESOURCE, BidBook
from node.ledger import Ledger
from node.quarantine import STATE_NAMES

_MISSING = const(0xFF)  # an AUDIT_BID row not received yet
_AUDIT_MISS = const(0x97)  # msgs_tiers.AUDIT_MISS
_QUARANTINED = const(2)  # quarantine.QUARANTINED (PROBATION is 3)
_AGAIN = const(3)  # lead_ms ticks a HELD release, or an elector's boot (HELD node 0), is said again

# ACCUSE `reason` bits: what differs (the evidence fields carry both sides).
REASON_DIGEST = const(1)  # the ledger digest the coordinator prepared differs from the auditor's re-run
REASON_PRICES = const(2)  # a published class price differs (price_class, claimed_price, own_price)
REASON_AWARDS = const(4)  # the award count differs; holder/res/first name the first award that differs
REASON_BID = const(8)  # a bid the auditor saw (node/bidcopy.py) is altered in or missing from the rows: holder the
#                        bidder, own_first its seq, own_digest its digest, claimed_digest its row's (0: no row)
REASON_ALL = const(15)


def clearing_impl(lineage):
    """The clearing lineage runs: "A" or "B" (node/market.py CLEARING)."""
    return CLEARING[lineage % 2]


def defective(clear_fn):
    """A clearing with a planted defect (MarketConfig.defect_lineage, for
    containment runs only): it forgets the last bid of the book."""

    def clear(book, n, ledger, units, first_ids, prices):
        return clear_fn(book, n - 1 if n else 0, ledger, units, first_ids, prices)

    return clear


def copy_ledger(dst, src):
    """Make dst (same dimensions) hold exactly what src holds."""
    dst.base = src.base
    dst.n = src.n
    dst.busy[:] = src.busy
    dst._rfs[:] = src._rfs
    dst.period[:] = src.period
    dst.count[:] = src.count


def copy_rows(dst, src, n):
    """Rows 0..n-1 of book src into book dst, as bid (no clearing marks)."""
    dst.reset()
    for i in range(n):
        dst.add(src.node[i], src.seq[i], src.first[i], src.hint[i], src.price[i], src.mask[i], src.span[i],
                src.period[i], src.count[i], src.flags[i] & F_ALL)


class Auditor:
    """One auditor's re-run of rounds. `lineage_id`: this node's lineage
    (its clearing); ledger dimensions as the region's Ledger; max_bids as
    the region's book."""

    def __init__(self, node_id, lineage_id, n_res, horizon, per_holder, n_holders, max_bids, roster=None):
        self.id = node_id
        self.roster = roster  # roster index -> node id, for the evidence (None: indices)
        self.lineage = lineage_id
        self.clear = clearing(lineage_id)
        self.ledger = Ledger(n_res, horizon, per_holder, n_holders)
        self.book = BidBook(max_bids)
        self.prices = [0] * cat.N_CLASSES
        self.audited = 0  # rounds re-run
        self.disagreed = 0  # rounds that gave an accusation
        self.skipped = 0  # rounds not audited: our ledger did not start where the coordinator's did
        self.unjudged = 0  # rounds whose PREPARE came but whose rows stayed missing (node/rowfetch.py)
        self.asks = 0  # asks for the missing rows of the round being collected
        self.asked = 0  # AUDIT_MISS frames sent
        # The round being collected from AUDIT_BID rows and its PREPARE.
        self.before = Ledger(n_res, horizon, per_holder, n_holders)  # our replica as the round began
        self.bids = BidBook(max_bids)
        self._key = (-1, -1)  # (term, round) being collected
        self._rows = -1  # rows the round has
        self._have = 0
        self._before_digest = 0
        self._claim = (0, 0, (0,))  # (digest, awards, prices) from the PREPARE
        self._claimed = False
        self._done = False

    def on_bid_copy(self, term, fields, idx, replica):
        """One AUDIT_BID row (idx: the bidder's roster index). The first row
        of a round snapshots our replica ledger, which the round's awards
        have not touched yet (they follow on the same link)."""
        rnd, rows, row, holder, before, seq, first, res, price, mask, span, period, count, flags = fields
        if self._key != (term, rnd):
            if term == self._key[0] and rnd < self._key[1]:
                return False  # a row resent late: that round was left unjudged
            if self._claimed and not self._done:
                self.unjudged += 1
            self._key = (term, rnd)
            self.asks = 0
            self._rows = rows
            self._have = 0
            self._claimed = False
            self._done = False
            self._before_digest = before
            copy_ledger(self.before, replica)
            self.bids.n = 0
        if rows != self._rows or not 0 <= row < rows or row >= self.bids.max or idx < 0:
            return False
        b = self.bids
        while b.n <= row:  # rows may arrive out of order: a gap is a row not here yet
            b.add(0, 0, 0, NO_RESOURCE, 1, 1, 1, 1, 1, 0)
            b.flags[b.n - 1] = _MISSING
        if b.flags[row] == _MISSING:
            self._have += 1
        b.node[row] = idx
        b.seq[row] = seq
        b.first[row] = first
        b.hint[row] = res
        b.price[row] = price
        b.mask[row] = mask
        b.span[row] = span
        b.period[row] = period
        b.count[row] = count
        b.flags[row] = flags & F_ALL
        return True

    def on_prepare(self, term, rnd, digest, awards, prices):
        if self._key == (term, rnd):
            self._claim = (digest, awards, tuple(prices))
            self._claimed = True

    def ready(self):
        return (self._key[1] >= 0 and not self._done and self._claimed and self._rows >= 0
                and self.bids.n == self._rows and self._have == self._rows)

    def run(self, accused, region, units, first_ids, replica_book):
        """The collected round, re-run: ACCUSE fields, or None (agreement,
        or not auditable: then `skipped` counts it)."""
        self._done = True
        term, rnd = self._key
        probe = self.ledger
        copy_ledger(probe, self.before)
        probe.advance(rnd + 1)
        if probe.digest() != self._before_digest:
            self.skipped += 1  # we did not hold the ledger the coordinator started from: no verdict
            return None
        digest, awards, prices = self._claim
        return self.check(term, rnd, accused, region, self.before, self.bids, self._rows, units, first_ids, digest,
                          awards, prices, None, replica_book)

    def check(self, term, rnd, accused, region, before, bids, n, units, first_ids, claimed_digest,
              claimed_awards, claimed_prices, claimed_book=None, replica_book=None):
        """Re-run round `rnd` from the ledger `before` (base not yet moved to
        rnd + 1) and the n bid rows of `bids` (as bid, uncleared). The
        claimed result: the ledger digest and award count the coordinator
        prepared, its eight class prices and, when known, its cleared book
        (its awards, row for row). Returns ACCUSE field values, or None."""
        led = self.ledger
        copy_ledger(led, before)
        led.advance(rnd + 1)
        book = self.book
        copy_rows(book, bids, n)
        won = self.clear(book, n, led, units, first_ids, self.prices)
        self.audited += 1
        own_digest = led.digest()
        reason = 0
        if own_digest != claimed_digest:
            reason |= REASON_DIGEST
        pc = 0
        for c in range(cat.N_CLASSES):
            if self.prices[c] != claimed_prices[c]:
                reason |= REASON_PRICES
                pc = c
                break
        if won != claimed_awards:
            reason |= REASON_AWARDS
        holder = 0
        c_res = o_res = NO_RESOURCE
        c_first = o_first = 0
        if claimed_book is not None:
            for i in range(n):
                mine = book.flags[i] & F_WON
                theirs = claimed_book.flags[i] & F_WON
                r_mine = book.hint[i] if mine else NO_RESOURCE
                r_theirs = claimed_book.hint[i] if theirs else NO_RESOURCE
                f_mine = book.first[i] if mine else 0
                f_theirs = claimed_book.first[i] if theirs else 0
                if r_mine != r_theirs or f_mine != f_theirs:
                    holder = book.node[i]
                    c_res, o_res, c_first, o_first = r_theirs, r_mine, f_theirs, f_mine
                    if not reason:
                        reason = REASON_AWARDS
                    break
        elif replica_book is not None and reason:
            # The awards the coordinator replicated to us (holder, res,
            # first): name the first of ours it lacks, or of its we lack.
            rb = replica_book
            for i in range(n):
                if book.flags[i] & F_WON and not _has(rb, rb.n, book.node[i], book.hint[i], book.first[i]):
                    holder, o_res, o_first = book.node[i], book.hint[i], book.first[i]
                    break
            else:
                for j in range(rb.n):
                    if not _has_won(book, n, rb.node[j], rb.hint[j], rb.first[j]):
                        holder, c_res, c_first = rb.node[j], rb.hint[j], rb.first[j]
                        break
        if not reason:
            return None
        self.disagreed += 1
        if self.roster is not None:
            holder = self.roster[holder]
        return (term, rnd & 0xFFFFFFFF, accused, region, reason, self.lineage, claimed_digest & 0xFFFFFFFF,
                own_digest & 0xFFFFFFFF, min(claimed_awards, 0xFFFF), min(won, 0xFFFF), holder, c_res, o_res,
                c_first & 0xFFFFFFFF, o_first & 0xFFFFFFFF, pc, claimed_prices[pc], self.prices[pc])


def send_round(m, n):
    """The coordinator's side (Market m at close, base moved, not cleared
    yet): the round's n book rows, as bid, to each auditor. Returns the rows
    it will clear: n, or with a planted bid drop (MarketConfig.defect_kind
    1, containment runs only) one fewer: the last bid of another node gone
    from the book before the auditors see the rows."""
    b = m.book
    if m.drops:
        own = m.cfg.index(m.id)
        for i in range(n - 1, -1, -1):
            if b.node[i] != own:
                b.drop(i)
                n -= 1
                break
    from node import rowfetch

    before = m.ledger.digest()
    rowfetch.keep(m, n, before)  # for the rows an auditor misses
    for a in m.cfg.auditors:
        if a == m.id:
            continue
        for i in range(n):
            rowfetch.row(m, a, m.round, n, i, before, b)
    return n


def _has(b, n, node, res, first):
    for j in range(n):
        if b.node[j] == node and b.hint[j] == res and b.first[j] == first:
            return True
    return False


def _has_won(b, n, node, res, first):
    for j in range(n):
        if b.flags[j] & F_WON and b.node[j] == node and b.hint[j] == res and b.first[j] == first:
            return True
    return False


def has_evidence(fields):
    """An ACCUSE's fields show a difference for every reason it gives: an
    accusation that does not is refused (refusal.EVIDENCE)."""
    reason = fields[4]
    if not reason or reason & ~REASON_ALL:
        return False
    if reason & REASON_DIGEST and fields[6] == fields[7]:
        return False
    if reason & REASON_AWARDS and fields[8] == fields[9] and fields[11] == fields[12] \
            and fields[13] == fields[14]:
        return False
    if reason & REASON_PRICES and (fields[16] == fields[17] or fields[15] >= cat.N_CLASSES):
        return False
    if reason & REASON_BID and fields[6] == fields[7]:
        return False
    return True


# ---- the region's glue (node/region.py calls these where containment is
# configured: MarketConfig.auditors) ------------------------------------------


def setup(region, config, now_ms):
    """Every elector keeps the quarantine table; an auditor also re-runs."""
    from node.quarantine import Quarantine

    mcfg = region.cfg
    cl = mcfg.cluster_of
    clusters = {}
    for i in range(len(mcfg.roster)):
        clusters[mcfg.roster[i]] = cl[i] if cl is not None else 0
    region.quarantine = Quarantine(mcfg.roster, clusters, mcfg.auditors, mcfg.quarantine_cap_permille, 4,
                                   mcfg.probation_ms)
    region.market.quarantine = region.quarantine
    region.lineage = config.lineage
    region.q_tick_ms = now_ms
    region.stale = {}  # member -> [stale-term claims seen, first one's ms]
    region.h_boot = _AGAIN  # ticks left to tell every cluster "I hold nobody" (HELD node 0): 0 once a table is restored
    region.h_again = {}  # node -> ticks left to say its changed state again (HELD)
    if region.id in mcfg.auditors:
        from node.bidcopy import Seen

        led = region.market.ledger
        region.auditor = Auditor(region.id, config.lineage, led.n_res, led.horizon, led.per_holder, led.n_holders,
                                 mcfg.max_bids, mcfg.roster)
        region.auditor.seen = Seen(mcfg.max_bids)  # the bids the traders copied to us


def attach(region, seat):
    q = region.quarantine
    me = region.id
    seat.may_lead = lambda now_ms: q.electable(me)
    seat.may_elect = lambda src, now_ms: q.electable(src)


def tick(region, now_ms):
    """A few times a round: accusations expire, probation is served, and
    each node this elector holds out of the election is said again to its
    cluster (HELD, node/heldview.py), as is a change of the last _AGAIN
    ticks and, after a boot, that it holds nobody."""
    if now_ms < region.q_tick_ms:
        return
    region.q_tick_ms = now_ms + region.cfg.lead_ms
    q = region.quarantine
    q.tick(now_ms // region.cfg.slot_ms, now_ms)
    _report_events(region, now_ms)
    if region.auditor is not None:
        _ask(region, region.auditor)  # rows still missing: ask again
    if region.h_boot:
        region.h_boot -= 1
        for k in sorted(set(q.clusters.values())):  # in order: a set's own order is the interpreter's (MicroPython,
            if k:                                      # CPython and PyPy each iterate {115, ..., 138} differently)
                region._send(wire.cluster_addr(k), msgs.HELD, msgs.pack(msgs.HELD, region.cfg.region, 0, 0))
    again = region.h_again
    for i in range(len(q.roster)):
        node = q.roster[i]
        if q.state[i] >= _QUARANTINED or node in again:  # held out (or just changed): say it again
            _held(region, node, q.state[i])
            n = again.get(node, 0)
            if n > 1:
                again[node] = n - 1
            elif n:
                del again[node]


def _held(region, node, state):
    """Tell node's cluster (its address: every member, traders too) the
    node's state in this elector's table, for the cluster election."""
    k = region.quarantine.clusters.get(node)
    if k:
        region._send(wire.cluster_addr(k), msgs.HELD, msgs.pack(msgs.HELD, region.cfg.region, node, state))


def on_frame(region, src, t, f, now_ms):
    if t == msgs.ACCUSE:
        on_accuse(region, src, f, now_ms)
        return
    if t == msgs.REINSTATE:
        on_reinstate(region, src, f, now_ms)
        return
    if t == msgs.WITNESS:
        on_witness(region, src, f, now_ms)
        return
    if t == _AUDIT_MISS:
        from node import rowfetch

        rowfetch.on_miss(region, src, f)
        return
    a = region.auditor
    if t == msgs.BID_SEEN:
        idx = region.cfg.index(src)
        if a is None or idx < 0:
            region.refused[refusal.UNEXPECTED] += 1
        elif not region.quarantine.is_quarantined(src):  # (its bids are refused: not evidence)
            a.seen.add(idx, f[0], f[1], f[2], f[3])
        return
    c, term = region._followed()  # AUDIT_BID: only from the coordinator we follow
    if a is None or src != c or region.market is None:
        region.refused[refusal.UNEXPECTED] += 1
    elif a.on_bid_copy(term, f, region.cfg.index(f[3]), region.market.ledger):
        _maybe_audit(region, src, now_ms)


def on_prepare(region, src, f, now_ms):
    a = region.auditor
    a.on_prepare(f[0], f[1], f[2], f[5], f[7:15])
    _maybe_audit(region, src, now_ms)
    _ask(region, a)


def _ask(region, a):
    """The round's PREPARE came and rows are still missing: ask the
    coordinator we follow for them (node/rowfetch.py)."""
    if a._claimed and not a._done and not a.ready():
        c = region._followed()[0]
        if c != msgs.NO_NODE and c != region.id:
            from node import rowfetch

            rowfetch.ask(region, a, c)


def _maybe_audit(region, coord, now_ms):
    """The round collected: re-run it, unless the coordinator runs our own
    clearing (we would repeat its defect, not find it)."""
    a = region.auditor
    if not a.ready():
        return
    _check_bids(region, a, coord, now_ms)
    seat = region.seat
    lin = seat.members.lineage.get(coord, -1) if seat is not None else -1
    if lin >= 0 and clearing_impl(lin) == clearing_impl(region.lineage):
        a._done = True
        a.skipped += 1
        return
    m = region.market
    fields = a.run(coord, region.cfg.region, region.cfg.units, m.first_ids, m.book)
    if fields is None:
        return
    _accuse(region, fields, now_ms)


def _check_bids(region, a, coord, now_ms):
    """The round's rows against the bids the traders copied to us
    (node/bidcopy.py): one altered or dropped is an accusation, whatever
    clearing the coordinator runs."""
    term, rnd = a._key
    got = a.seen.check(coord, term, rnd, a.bids, a._rows)
    if got is None:
        return
    idx, seq, own, row = got
    _accuse(region, (term, rnd & 0xFFFFFFFF, coord, region.cfg.region, REASON_BID, a.lineage, row, own, 0, 0,
                     region.cfg.roster[idx], NO_RESOURCE, NO_RESOURCE, 0, seq, 0, 0, 0), now_ms)


def _accuse(region, fields, now_ms):
    payload = msgs.pack(msgs.ACCUSE, *fields)
    region._send(region.dst, msgs.ACCUSE, payload)  # the other electors
    region._send(wire.ADDR_GROUND, msgs.ACCUSE, payload)
    on_accuse(region, region.id, fields, now_ms)  # and our own table


def on_accuse(region, src, f, now_ms):
    q = region.quarantine
    if f[3] != region.cfg.region:
        region.refused[refusal.REGION] += 1
        return
    before = q.refused[refusal.FORGED] + q.refused[refusal.EVIDENCE]
    q.accuse(src, f[2], f[1], has_evidence(f), now_ms)
    if q.refused[refusal.FORGED] + q.refused[refusal.EVIDENCE] != before:
        _report(region, "refused accusation from %d against %d round %d" % (src, f[2], f[1]))
    _report_events(region, now_ms)


def on_reinstate(region, src, f, now_ms):
    """The ground's intent: node f[1] leaves quarantine (suspect, quarantined
    or on probation) now. Only the ground may say so."""
    q = region.quarantine
    if src != wire.ADDR_GROUND:
        q.refused[refusal.FORGED] += 1
        _report(region, "refused reinstatement from %d of %d" % (src, f[1]))
        return
    if f[0] != region.cfg.region:
        region.refused[refusal.REGION] += 1
        return
    if q.index(f[1]) < 0:
        q.refused[refusal.UNKNOWN_NODE] += 1
        return
    q.reinstate(f[1], now_ms)
    _report_events(region, now_ms)


STALE_CLAIMS = const(4)  # stale-term claims from one member within STALE_WINDOW_T election timeouts
STALE_WINDOW_T = const(4)


def stale_claim(region, src, term, own, timeout_ms, now_ms):
    """A cluster member claimed coordinator in term `term` < our `own`: once
    is a node back from a partition (it steps down at our next heartbeat);
    STALE_CLAIMS within STALE_WINDOW_T election timeouts is byzantine,
    quarantined first hand (within the cap)."""
    seen = region.stale.get(src)
    if seen is None or now_ms - seen[1] > STALE_WINDOW_T * timeout_ms:
        region.stale[src] = [1, now_ms]
        return
    seen[0] += 1
    if seen[0] < STALE_CLAIMS:
        return
    del region.stale[src]
    if region.quarantine.byzantine(src, "%d stale-term claims (term %d, mine %d) seen by %d"
                                   % (STALE_CLAIMS, term, own, region.id), now_ms):
        # Only this cluster's electors saw it: tell the region's others, and the ground.
        payload = msgs.pack(msgs.WITNESS, region.cfg.region, src, term, own, STALE_CLAIMS)
        region._send(region.dst, msgs.WITNESS, payload)
        region._send(wire.ADDR_GROUND, msgs.WITNESS, payload)
    _report_events(region, now_ms)


def hello(region, src, payload, version):
    """A roster node's HELLO on the region's address (at boot, and after a
    split moved it: node/join.py): the cluster it is in, for the cap. Only
    where the region counts clusters (MarketConfig.cluster_of); a seat's
    HELLO names the region's own address (0xE00 and up), not a cluster."""
    if region.cfg.cluster_of is None:
        return
    cluster = msgs.unpack_as(msgs.HELLO, payload, version)[6]
    if 0 < cluster < 0xE00:
        region.quarantine.move(src, cluster)


def on_witness(region, src, f, now_ms):
    """Elector `src` saw node f[1] of its own cluster claim coordinator in a
    stale term STALE_CLAIMS times and quarantined it: quarantine it here too
    (within the cap). Refused, counted and logged: one not from an elector
    of the claimer's cluster (`forged`), one whose terms are not stale or
    whose claims are too few (`evidence`)."""
    q = region.quarantine
    region_id, node, term, own, claims = f
    if region_id != region.cfg.region:
        region.refused[refusal.REGION] += 1
        return
    if q.index(node) < 0:
        q.refused[refusal.UNKNOWN_NODE] += 1
        return
    k = q.clusters.get(node)
    if src not in region.cfg.electors or src == node or q.clusters.get(src) != k:
        why = refusal.FORGED  # only an elector of its cluster sees its claims
    elif term >= own or claims < STALE_CLAIMS:
        why = refusal.EVIDENCE
    else:
        q.byzantine(node, "witnessed by %d: %d stale-term claims (term %d, its %d)" % (src, claims, term, own), now_ms)
        _report_events(region, now_ms)
        return
    q.refused[why] += 1
    _report(region, "refused witness from %d against %d (%s)" % (src, node, refusal.NAMES[why]))


def _report_events(region, now_ms):
    for node, state, cause in region.quarantine.take_events():
        _report(region, "quarantine node %d %s: %s" % (node, state, cause))
        _held(region, node, STATE_NAMES.index(state))
        region.h_again[node] = _AGAIN
        if node == region.id and state == "quarantined" and region.seat is not None:
            from node import elect

            elect.resign(region.seat, now_ms)  # may_lead keeps it from running again


def _report(region, text):
    region._send(wire.ADDR_GROUND, msgs.LOG, text.encode())
