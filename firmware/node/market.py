# The regional coordinator's market: bids in, clearing, awards out, and the
# electors that make a round all-or-nothing. Sans-IO: send(dst, type,
# payload); time comes in as now_ms. One instance per elector; it acts as
# coordinator while lead() is in force, and as a replica otherwise.
#
# A round, by its state table below:
#   RECOVERING a new coordinator first learns the most recent ledger a
#              majority's worth of electors hold (node/recovery.py) and sells
#              nothing until it holds it.
#   OPEN       bids for round r are checked (refusal.*) and kept in the book.
#   close(r)   at (r + 1) * slot_ms - lead_ms: the ledger's base moves to
#              r + 1, auction.clear() places the bids. Each award goes to every
#              other elector first (AWARD_REPLICA), then PRICES status PREPARE
#              carrying the ledger digest -> PREPARING.
#   PREPARING  each elector answers ROUND_ACK with its own ledger digest.
#              Equal: it holds the round. Not equal (it missed something): a
#              full copy of the ledger (AWARD_SYNC) at once. Once a majority of
#              the electors (this one included) hold the round: commit. No
#              majority in ack_timeout_ms: PREPARE again.
#   commit     AWARD to every winner, PRICES status COMPLETE to everyone: at
#              most AWARDS_PER_POLL awards per poll (the rest on the next
#              polls, due at once), so a round of 200 winners never needs its
#              200 frames, and a list block for them, on the heap at once.
# No award leaves for a holder before a majority of electors hold a ledger
# with it, and a new coordinator starts from the most recent ledger among a
# majority (any two majorities share an elector), so every award ever sent is
# in the ledger of every later coordinator: no slot is sold twice, whoever
# is lost. docs/MARKET.md has the argument; a region of one elector commits
# alone (its loss leaves holders' claims, ROUND_RESYNC, as the only record).

from array import array

from micropython import const

from node import auction, catalog as cat, msgs, recovery, refusal, wire
from node.auction import F_MERGED, BidBook
from node.ledger import Ledger, end_s

IDLE = const(0)
OPEN = const(1)
PREPARING = const(2)
RECOVERING = const(3)
STATE_NAMES = ("idle", "open", "preparing", "recovering")

EV_LEAD = const(0)  # became regional coordinator: ask the electors how recent their ledgers are
EV_CLOSE = const(1)  # bidding closed, round cleared, replica sent
EV_SOLO = const(2)  # a region of one elector: commit at once
EV_ACK = const(3)  # a majority of electors hold our ledger: commit
EV_RETRY = const(4)  # no majority yet: prepare (or query, or fetch) again
EV_STEP_DOWN = const(5)  # no longer coordinator
EV_RECOVERED = const(6)  # we hold the most recent ledger of a majority: open
EVENT_NAMES = ("lead", "close", "solo", "ack", "retry", "step_down", "recovered")

# Awards a commit sends per poll (docs/HEAP.md): each is a frame of ~160 heap
# bytes until the shell writes it; 199 at once also grew the node's output
# list to a 2 KB block a fragmented heap lacked. The wire bytes and their
# order are the same; only the polls they leave in differ.
AWARDS_PER_POLL = const(16)

_TABLE = {
    (IDLE, EV_LEAD): RECOVERING,
    (RECOVERING, EV_RETRY): RECOVERING,
    (RECOVERING, EV_RECOVERED): OPEN,
    (OPEN, EV_CLOSE): PREPARING,
    (OPEN, EV_SOLO): OPEN,
    (PREPARING, EV_ACK): OPEN,
    (PREPARING, EV_RETRY): PREPARING,
    (RECOVERING, EV_STEP_DOWN): IDLE,
    (OPEN, EV_STEP_DOWN): IDLE,
    (PREPARING, EV_STEP_DOWN): IDLE,
    # (IDLE, anything but lead) is absent: a replica does not run rounds.
    # (PREPARING, solo) is absent: without a majority nothing commits, even
    # with every other elector gone (the market waits; nodes ride autonomy).
}


# Which clearing a lineage runs (docs/CONTAINMENT.md): lineage L runs
# CLEARING[L % 2], A (node/auction.py) or B (node/auction_b.py, written apart;
# imported only by the electors that run it: 3 KB of bytecode).
CLEARING = ("A", "B")


def clearing(lineage):
    """The clear(book, n, ledger, units, first_ids, prices) lineage runs."""
    if CLEARING[lineage % 2] == "B":
        from node import auction_b

        return auction_b.clear
    return auction.clear


class MarketError(Exception):
    """Local bug: an event with no transition from the current state."""


def next_state(state, event):
    try:
        return _TABLE[(state, event)]
    except KeyError:
        raise MarketError("no transition from %s on %s" % (STATE_NAMES[state], EVENT_NAMES[event]))


class Market:
    def __init__(self, node_id, mcfg, intent, send, lineage_id=0):
        self.id = node_id
        self.clear = clearing(lineage_id)  # this lineage's own clearing
        self.drops = mcfg.defect_lineage == lineage_id and mcfg.defect_kind == 1  # a planted bid drop (audit.py)
        if mcfg.defect_lineage == lineage_id and not mcfg.defect_kind:
            from node import audit

            self.clear = audit.defective(self.clear)  # a planted defect: containment runs only
        self.quarantine = None  # set by the Region on an elector: bids from quarantined nodes are refused
        self.cfg = mcfg
        self.intent = intent
        self.send = send
        self.first_ids = cat.starts(mcfg.units)
        n = len(mcfg.roster)
        self.ledger = Ledger(self.first_ids[cat.N_CLASSES], mcfg.horizon_slots, mcfg.leases_per_node, n)
        self.book = BidBook(mcfg.max_bids)
        self.last_seq = array("I", bytes(4 * n))  # per node: highest seq accepted
        self.seen = array("H", bytes(2 * n))  # and which of the 16 below it were
        self.rel_ok = bytearray(n)  # occurrences released since its last reconcile (saturates)
        self.rel_missing = bytearray(n)
        self.prices = [auction.RESERVE_PRICE] * cat.N_CLASSES
        self.state = IDLE
        self.term = 0
        self.standby = msgs.NO_NODE  # the seat's standby (it takes over first); commits need a majority
        self.others = tuple(e for e in mcfg.electors if e != node_id)
        self.majority = len(mcfg.electors) // 2 + 1
        self._matched = []  # electors whose digest equals ours for the round being prepared
        self._copied = {}  # elector -> when it was last sent a copy (at most one per ack_timeout_ms)
        self.round = 0  # the round being collected (OPEN) or prepared (PREPARING)
        self._n_round = 0  # book rows that belong to the round being prepared
        self._won = 0
        self._retry_ms = 0
        self._closed_ms = 0
        self._committed = -1  # the last round this coordinator committed (late acks are not refusals)
        self._sending = False  # the committed round's awards are still going out (book rows 0.._out_n-1)
        self._out_i = 0  # its next book row to look at
        self._out_n = 0
        self._out_won = 0
        self._sync_id = 0
        self._sync_dst = msgs.NO_NODE  # who the last copy went to
        self.resync_until = 0
        recovery.init(self)  # led_term, led_round and the recovery's state
        # Replica side (standby).
        self._rep_key = None  # (term, round) of the round replicated in the book
        self._rep_want = -1  # awards the coordinator said the round has
        self._rep_acked = False  # we acked that round with a matching digest
        self._rep_digest = 0
        self._sync_key = None
        self._sync_want = 0  # records the sync in progress has
        # Counters.
        self.refused = [0] * refusal.N_REASONS
        self.rounds = 0
        self.voided = 0
        self.completed = 0  # in-flight rounds completed at a takeover
        self.syncs = 0
        self.bids_in = 0
        self.awarded = 0
        self.releases = 0
        self.reconciles = 0
        self.claims = 0
        self.fetches = 0  # ledgers fetched from another elector at a takeover
        self.last_round_ms = 0  # mission ms the last round took from close to commit

    # ---- roles -----------------------------------------------------------

    def close_ms(self, rnd):
        return (rnd + 1) * self.cfg.slot_ms - self.cfg.lead_ms

    def _round_at(self, now_ms):
        cur = now_ms // self.cfg.slot_ms
        return cur if now_ms < self.close_ms(cur) else cur + 1

    def open_round(self):
        return self.round + 1 if self.state == PREPARING else self.round

    def _go(self, event):
        self.state = next_state(self.state, event)

    def lead(self, term, standby, now_ms, prices):
        """Became regional coordinator in `term`: learn the most recent ledger
        of a majority (node/recovery.py), then settle the rounds in flight,
        announce the verdicts and open the next round."""
        self.term = term
        self.standby = standby
        self.prices = list(prices)
        self._go(EV_LEAD)
        self.round = self._round_at(now_ms)
        recovery.start(self, now_ms)

    def recovered(self, now_ms):
        """Our ledger is the most recent of a majority (or, _fallback, the
        best there is): settle the rounds in flight, open the next one."""
        self._go(EV_RECOVERED)
        recovery.settle(self, now_ms)

    def step_down(self):
        self.flush_awards()  # committed: they go, as they would have at the commit
        if self.state != IDLE:
            self._go(EV_STEP_DOWN)
        self.book.reset()
        self._n_round = 0
        self._rep_key = None
        # The ledger and its (term, round) stay: what we closed may be
        # committed, and a later coordinator must be able to learn it from us.

    def set_standby(self, standby, now_ms):
        self.standby = standby  # informational: every elector gets replicas, a majority commits

    # ---- coordinator: input ----------------------------------------------

    def _sender(self, src):
        """Roster index of a market request's sender, or -1 (counted)."""
        if self.state == IDLE or self.state == RECOVERING:
            self.refused[refusal.NOT_COORDINATOR] += 1  # (not yet: recovering the ledger)
            return -1
        idx = self.cfg.index(src)
        if idx < 0:
            self.refused[refusal.UNKNOWN_NODE] += 1
        return idx

    def _fresh(self, idx, seq):
        """A sequence number not used before by that node. A window of 16
        (wire.ReplayWindow's idea, in two compact arrays) so bids that
        overtake each other on the way are not mistaken for replays."""
        top = self.last_seq[idx]
        back = top - seq
        if seq > top or (back < 16 and not (self.seen[idx] >> back) & 1 and seq):
            return True
        self.refused[refusal.REPLAY] += 1
        return False

    def _accept(self, idx, seq):
        top = self.last_seq[idx]
        if seq > top:
            shift = seq - top
            self.seen[idx] = ((self.seen[idx] << shift) | 1) & 0xFFFF if shift < 16 else 1
            self.last_seq[idx] = seq
        else:
            self.seen[idx] |= 1 << (top - seq)

    def check_bid(self, idx, fields):
        """refusal.* reason why this bid may not enter the book, or 0."""
        rnd, seq, first, res, price, mask, span, period, count, flags, gen = fields
        cfg = self.cfg
        open_r = self.open_round()
        if rnd > open_r + 1 or rnd + cfg.stale_rounds < open_r:
            return refusal.ROUND
        # The bidder's hardware generation: as its bid says (protocol 4), or
        # the roster's table (an older bid says 0). Both known and different:
        # a bidder claiming hardware the region's roster says it lacks.
        if cfg.gens is not None:
            own = cfg.gen_of(idx)
            if gen and gen != own:
                return refusal.CLASS
            gen = own
        kind = cat.kind_of_mask(mask)
        if kind < 0 or (gen and not cat.may_bid(gen, mask)):
            return refusal.CLASS
        if res != auction.NO_RESOURCE:
            c = cat.class_of(self.first_ids, res)
            if c < 0 or not mask & (1 << c):
                return refusal.RESOURCE
        if not 0 < price <= auction.MAX_PRICE:
            return refusal.PRICE
        if flags & ~auction.F_ALL or not auction.shape_ok(span, period, count, cfg.max_span):
            return refusal.SHAPE
        on_sale = open_r + 1
        if first < on_sale and flags & auction.F_ASAP:
            first = on_sale
        if not auction.in_horizon(first, span, period, count, on_sale, cfg.horizon_slots):
            return refusal.HORIZON
        if kind == cat.KIND_LOGISTICS:
            reach = span + (period - 1 if flags & auction.F_FLEX and period else 0)
            if self.intent.blocks_slots(first, reach, period, count, cfg.slot_ms):
                return refusal.BLOCKED
        return 0

    def on_bid(self, src, fields, now_ms):
        idx = self._sender(src)
        if idx < 0 or not self._fresh(idx, fields[1]):
            return
        if self.quarantine is not None and self.quarantine.is_quarantined(src):
            self.refused[refusal.QUARANTINED] += 1
            return
        why = self.check_bid(idx, fields)
        if why:
            self.refused[why] += 1
            return
        full = self.book.n >= self.book.max
        row = self.book.add(idx, fields[1], fields[2], fields[3], fields[4], fields[5], fields[6], fields[7],
                            fields[8], fields[9], self._n_round)
        if full:
            self.refused[refusal.FULL] += 1  # this bid, or the cheaper one it displaced
        if row < 0:
            return
        self._accept(idx, fields[1])
        self.bids_in += 1

    def on_release(self, src, fields, now_ms):
        idx = self._sender(src)
        if idx < 0 or not self._fresh(idx, fields[0]):
            return
        seq, first, from_slot, res, holder, span, period, count = fields
        if holder != src:
            self.refused[refusal.NOT_HOLDER] += 1
            return
        if cat.class_of(self.first_ids, res) < 0:
            self.refused[refusal.RESOURCE] += 1
            return
        if not auction.shape_ok(span, period, count, self.cfg.max_span):
            self.refused[refusal.SHAPE] += 1
            return
        self._accept(idx, seq)
        freed, missing = self.ledger.release(res, idx, first, span, period, count, from_slot)
        self.rel_ok[idx] = min(255, self.rel_ok[idx] + freed)
        self.rel_missing[idx] = min(255, self.rel_missing[idx] + missing)
        if missing:
            self.refused[refusal.NOT_HOLDER] += 1
        self.releases += 1
        if freed:
            p = msgs.pack(msgs.RELEASE, *fields)
            for e in self.others:
                self.send(e, msgs.RELEASE, p)

    def on_reconcile(self, src, fields, now_ms):
        idx = self._sender(src)
        if idx < 0 or not self._fresh(idx, fields[0]):
            return
        self._accept(idx, fields[0])
        self.reconciles += 1
        self.send(src, msgs.RECONCILE_ACK, msgs.pack(msgs.RECONCILE_ACK, self.term, fields[0], self.rel_ok[idx],
                                                     self.rel_missing[idx]))
        self.rel_ok[idx] = 0
        self.rel_missing[idx] = 0

    def on_claim(self, src, fields, now_ms):
        """A holder's lease, reported after a takeover without a replica."""
        idx = self._sender(src)
        if idx < 0:
            return
        term, rnd, seq, first, res, holder, price, span, period, count, flags, _ = fields
        if self.quarantine is not None and self.quarantine.is_quarantined(src):
            self.refused[refusal.QUARANTINED] += 1
            return
        if now_ms >= self.resync_until or holder != src:
            self.refused[refusal.UNEXPECTED] += 1
            return
        if self.ledger.add(res, idx, first, span, period, count, False, True) < 0:
            self.refused[refusal.NOT_HOLDER] += 1  # overlaps a claim already taken
            return
        self.claims += 1

    def on_ack(self, src, fields, now_ms):
        term, rnd, digest, awards, status = fields
        if status == msgs.ROUND_QUERY:
            recovery.on_answer(self, src, fields, now_ms)
            return
        if term != self.term or src not in self.others or self.state == IDLE or self.state == RECOVERING:
            self.refused[refusal.UNEXPECTED] += 1
            return
        if self.state != PREPARING or rnd != self.round:
            if rnd != self._committed and rnd != self.led_round:  # (led_round: a catch-up's PREPARE)
                self.refused[refusal.UNEXPECTED] += 1
            elif digest != self.ledger.digest():
                self._copy(src, awards, now_ms)  # a slow elector of a committed round: bring it up to date
            return
        if digest == self.ledger.digest():
            if src not in self._matched:
                self._matched.append(src)
            if 1 + len(self._matched) >= self.majority:
                self._go(EV_ACK)
                self._commit(now_ms)
        else:
            self._copy(src, awards, now_ms)

    def _copy(self, dst, awards, now_ms):
        """A full copy of the ledger to an elector that said it differs, at
        most one per ack_timeout_ms each. Fewer records than ours and the
        last copy was its: fill in the gaps of that copy; as many or more:
        some are stale, start a new one."""
        last = self._copied.get(dst)
        if last is not None and now_ms - last < self.cfg.ack_timeout_ms:
            return
        self._copied[dst] = now_ms
        again = dst == self._sync_dst and awards < self.ledger.n and self._sync_id != 0
        self._sync(dst, again)

    # ---- coordinator: rounds ---------------------------------------------

    def _send_award(self, i, rnd, flags, dst=None):
        b = self.book
        holder = self.cfg.roster[b.node[i]]
        if b.flags[i] & F_MERGED:
            flags |= msgs.AWARD_MERGE
        first, span, period, count = b.first[i], b.span[i], b.period[i], b.count[i]
        self.send(holder if dst is None else dst, msgs.AWARD,
                  msgs.pack(msgs.AWARD, self.term, rnd, b.seq[i], first, b.hint[i], holder, b.price[i], span,
                            period, count, flags, end_s(first, span, period, count, self.cfg.slot_ms),
                            version=msgs.VERSION))

    def _announce(self, rnd, status, dst, awards=0, digest=0):
        """PRICES to dst. ADDR_BROADCAST is the whole region: where the
        config names the region's clusters, one frame to each of them and
        this node's own trader's copy (the fleet's other regions never hear
        it), else one broadcast to the fleet."""
        p = self.prices
        payload = msgs.pack(msgs.PRICES, self.term, rnd & 0xFFFFFFFF, digest, self.intent.seq, self.cfg.region,
                            awards, status, p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7])
        clusters = self.cfg.clusters
        if dst != wire.ADDR_BROADCAST or clusters is None:
            self.send(dst, msgs.PRICES, payload)
            return
        for c in clusters:
            self.send(wire.cluster_addr(c), msgs.PRICES, payload)
        self.send(self.id, msgs.PRICES, payload)

    def _close(self, now_ms):
        self.flush_awards()  # the book's first rows must be this round's
        self.ledger.advance(self.round + 1)
        n = self.book.n
        if self.cfg.auditors:
            from node import audit

            n = audit.send_round(self, n)
        self._n_round = n
        self._won = self.clear(self.book, n, self.ledger, self.cfg.units, self.first_ids, self.prices)
        self.rounds += 1
        self._closed_ms = now_ms
        self.led_term = self.term
        self.led_round = self.round
        self._matched = []
        if self.majority <= 1:
            self._go(EV_SOLO)
            self._commit(now_ms)
        else:
            self._go(EV_CLOSE)
            for i in range(n):
                if self.book.flags[i] & auction.F_WON:
                    for e in self.others:
                        self._send_award(i, self.round, msgs.AWARD_REPLICA, e)
            self._prepare(now_ms)

    def _prepare(self, now_ms):
        digest = self.ledger.digest()
        for e in self.others:
            if e not in self._matched:
                self._announce(self.round, msgs.ROUND_PREPARE, e, self._won, digest)
        self._retry_ms = now_ms + self.cfg.ack_timeout_ms

    def _sync(self, dst, again=False):
        """A full copy of the ledger for an elector. Each record says which
        sync it belongs to (round field), the ledger's base (seq field) and how
        many records the copy has (price field): the elector resets on the
        first it sees, in whatever order they arrive. `again`: the last copy
        once more, under its id (fills gaps)."""
        if not again:
            self._sync_id = (self._sync_id + 1) & 0xFFFFFFFF
        self._sync_dst = dst
        self.syncs += 1
        recovery.send_copy(self, dst, self.term, self._sync_id)

    def _commit(self, now_ms):
        self._sending = True
        self._out_i = 0
        self._out_n = self._n_round
        self._out_won = self._won
        self.awarded += self._won
        self._committed = self.round
        self.last_round_ms = now_ms - self._closed_ms
        self._n_round = 0
        nxt = self._round_at(now_ms)
        self.round = nxt if nxt > self.round else self.round + 1
        self._send_awards(AWARDS_PER_POLL)

    def _send_awards(self, most):
        """Up to `most` awards of the committed round, in book order; after
        the last, its PRICES COMPLETE, and its rows leave the book (bids of
        the next round that came meanwhile stay, after them)."""
        b = self.book
        i, n = self._out_i, self._out_n
        while i < n and most > 0:
            if b.flags[i] & auction.F_WON:
                self._send_award(i, self._committed, 0)
                most -= 1
            i += 1
        self._out_i = i
        if i >= n:
            self._sending = False
            self._announce(self._committed, msgs.ROUND_COMPLETE, wire.ADDR_BROADCAST, self._out_won)
            b.drop_first(n)
            self._out_i = self._out_n = 0

    def flush_awards(self):
        """Send whatever the committed round has not sent yet, all at once
        (before anything else uses the book's rows)."""
        if self._sending:
            self._send_awards(self._out_n)

    def poll(self, now_ms):
        if self._sending:
            self._send_awards(AWARDS_PER_POLL)
        if self.state == OPEN:
            if now_ms >= self.close_ms(self.round) and now_ms >= self.resync_until:
                self._close(now_ms)
        elif self.state == PREPARING and now_ms >= self._retry_ms:
            self._go(EV_RETRY)
            self._prepare(now_ms)
        elif self.state == RECOVERING and now_ms >= self._retry_ms:
            self._go(EV_RETRY)
            recovery.retry(self, now_ms)

    def next_deadline_ms(self):
        if self._sending:
            return 0  # awards still to go: poll again at once
        if self.state == OPEN:
            t = self.close_ms(self.round)
            return t if t > self.resync_until else self.resync_until
        if self.state == PREPARING or self.state == RECOVERING:
            return self._retry_ms
        return None

    def fill(self):
        """(live leases, bids waiting): how full the compact arrays are."""
        return self.ledger.n, self.book.n

