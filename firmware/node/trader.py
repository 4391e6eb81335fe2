# One node's side of the regional market: needs become bids, awards become
# leases, leases feed production. Sans-IO: frames go out through
# send(dst, type, payload); time comes in as now_ms.
#
# What it needs and bids for is node/needs.py; what it does when it comes back
# from an autonomy window is node/reconcile.py; its market mode is
# node/autonomy.py's table. It only ever consumes leases it was awarded: a
# delivery happens because a held lease has an occurrence in this slot,
# nothing else, and an award is only taken from an elector of its region in a
# term no older than the newest it has heard.

from micropython import const

from node import auction, catalog as cat, msgs, needs, reconcile, refusal, strategy
from node.autonomy import CONSERVATIVE, NORMAL, RECONCILING, Autonomy
from node.ledger import end_s, last_slot
from node.needs import L_COUNT, L_FIRST, L_GROUP, L_PERIOD, L_RES, L_SPAN, G_FEED, G_LOGISTICS, G_PART_A
from node.production import Production
from node.strategy import Intent

# An outstanding bid: [seq, group, cover, need_ms, expire_ms, round, last slot asked, bid_ms]
# (need_ms: when the need it serves was first bid for; bid_ms: when this bid went)
_SEQ = const(0)
_NEED_MS = const(3)
_EXPIRE = const(4)
_ROUND = const(5)


class Trader:
    def __init__(self, node_id, gen, age_slots, mcfg, rng, send, now_ms=0):
        self.id = node_id
        self.cfg = mcfg
        self.rng = rng
        self.send = send
        self.prod = Production(gen, age_slots, mcfg.steps_per_slot, mcfg.slot_ms)
        self.auto = Autonomy(mcfg.cutoff_ms, mcfg.autonomy_after_ms, now_ms)
        self.intent = Intent()
        self.first_ids = cat.starts(mcfg.units)
        self.coord = msgs.NO_NODE  # the regional coordinator, as last heard
        self.term = 0
        self.prices = [auction.RESERVE_PRICE] * cat.N_CLASSES
        self.price_round = -1
        self.price_ms = None  # when those prices were heard
        self.leases = []
        self.pending = []
        self.held = None  # bids waiting for their receipt (node/bidcopy.py Held): a region with auditors
        self.step_ms = mcfg.slot_ms // mcfg.steps_per_slot
        self._step_n = (now_ms + self.step_ms - 1) // self.step_ms  # next step to run
        # Node builds its Region before it has read a clock (now_ms 0): the
        # first poll then starts production at the step it falls in, so a
        # node that boots (or reboots) late does not replay the steps it was
        # not running for, with fresh stocks, from mission 0.
        self._fresh = now_ms == 0
        self.slot = -1
        self.stock_at = None  # (slot, feed, buf, parts A, B, Earth, repl) at its start: kept on flash (node/durable.py)
        self._logistics = False  # a logistics lease covers the current slot
        self._logistics_used = False
        self._check = True  # re-project needs at the next poll
        # Market sequence numbers start above any of an earlier boot: at the
        # clock's second x 16 (< 16 market frames a second) when the first
        # one is drawn. Node builds its Region before it has read a clock
        # (now_ms 0 here), so _next_seq takes the floor from its caller.
        self._seq = (now_ms // 1000) * 16
        self._seq_floored = now_ms > 0
        self._rec_seq = 0
        self._rec_retry_ms = 0
        self._snap = (now_ms, 0, 0, 0, 0, 0, 0)  # counters at the last contact: an outage is reported against them
        self.refused = [0] * refusal.N_REASONS
        self.bids = 0
        self.awards = 0
        self.deferred_bids = 0  # needs that waited a round on price, or for contact
        self.daughters = 0
        self.kin = None  # (lineage, hw_gen, fw major, fw minor) a daughter inherits: set by region.py
        self.deferred_launches = 0
        self.used = 0  # lease occurrences that delivered something
        self.unused = 0  # occurrences that found nothing to do (stock full, blocked)
        self.released = 0  # occurrences given back
        self.gave_up = []  # (res, first) of the last 4 leases given back: a takeover's resend of one is stale
        self.voids_seen = 0
        self.last_void = -1
        self.round_status = {}  # round -> PRICES status last heard for it (tests read this)
        self.latency_sum_ms = 0
        self.latency_n = 0
        self.latency_max_ms = 0
        self.latencies = None  # a list to append (need latency, bid latency, cover) to, per award (benchmarks)
        self.need_since = [-1] * (2 * needs.N_GROUPS)  # per (group, spot|cover): its first unanswered bid
        self._snapshot(now_ms)

    # ---- helpers ---------------------------------------------------------

    def _next_seq(self, now_ms):
        if not self._seq_floored:  # the first of this boot: above every number an earlier boot sent
            self._seq_floored = True
            floor = (now_ms // 1000) * 16
            if floor > self._seq:
                self._seq = floor
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        return self._seq

    def _round_for(self, now_ms):
        """(round a bid sent now is cleared in, first slot it may ask for)."""
        slot_ms = self.cfg.slot_ms
        cur = now_ms // slot_ms
        if now_ms < cur * slot_ms + slot_ms - self.cfg.lead_ms:
            return cur, cur + 1
        return cur + 1, cur + 2

    def _snapshot(self, now_ms):
        p = self.prod
        self._snap = (now_ms, p.produced, p.lost(), p.paused_total_ms(), self.used, self.unused,
                      self.deferred_bids + self.deferred_launches)

    # ---- production ------------------------------------------------------

    def _slot_start(self, slot):
        self.slot = slot
        p = self.prod
        self.stock_at = (slot, p.feed, p.buf, p.parts[0], p.parts[1], p.parts[2], p.repl)  # before its deliveries
        p.start_slot(slot)
        keep = []
        for lease in self.leases:
            if last_slot(lease[L_FIRST], lease[L_SPAN], lease[L_PERIOD], lease[L_COUNT]) >= slot:
                keep.append(lease)
        self.leases = keep
        self._logistics = False
        self._logistics_used = False
        for lease in self.leases:
            off = needs.occurs(lease, slot)
            if off < 0:
                continue
            g = lease[L_GROUP]
            if g == G_LOGISTICS:
                if needs.slot_blocked(self, slot):
                    self.unused += 1  # the ground's campaign: honoured, not used
                else:
                    self._logistics = True
                continue
            if off:
                continue
            kind = needs.kind_of(g)
            part = needs.part_of(self, g)
            amount = self.prod.delivery(kind, part)
            if kind == cat.KIND_FEED:
                amount = amount * (800 + self.rng.below(401)) // 1000  # bodies vary +-20 %
            if self.prod.deliver(kind, amount, part):
                self.used += 1
            else:
                self.unused += 1
        self._check = True

    def _step(self, n):
        steps = self.cfg.steps_per_slot
        slot = n // steps
        if slot != self.slot:
            self._slot_start(slot)
        if self._logistics and self.prod.deliver(cat.KIND_LOGISTICS, 0) and not self._logistics_used:
            self._logistics_used = True  # the window moved output this slot
            self.used += 1
        self.prod.step(n % steps, self.intent.replication_permille())
        if self.prod.daughter_ready():
            if self.auto.may(strategy.ACT_LAUNCH, self.intent):
                self.prod.launch_daughter()
                self.daughters += 1
                at = self.stock_at
                if at is not None:  # the daughter is gone: a reboot must not build it again from the slot's start
                    self.stock_at = at[:6] + (self.prod.repl,)
                k = self.kin
                if k is not None:  # the ground fabs and boots it (docs/PROTOCOL.md "Joining and splitting")
                    self.send(0, msgs.DAUGHTER, msgs.pack(msgs.DAUGHTER, self.daughters & 0xFFFF, k[0], k[1], k[2], k[3]))
            elif n % steps == 0:
                self.deferred_launches += 1  # counted once per slot it waits

    # ---- needs and bids --------------------------------------------------

    # ---- the market's answers --------------------------------------------

    def _holds(self, res, slot, span):
        for lease in self.leases:
            if lease[L_RES] == res and lease[L_SPAN] == span and needs.occurs(lease, slot) == 0:
                return True
        return False

    def _adopt(self, src, term, now_ms):
        if term > self.term or self.coord == msgs.NO_NODE:
            if term > self.term and self.pending:
                self.pending = []  # they went to the old coordinator: bid again
                self._check = True
            self.term = term
            self.coord = src
        elif src != self.coord:
            self.coord = src  # same term, another sender: the standby completing a round
        mode = self.auto.contact(now_ms)
        if mode == RECONCILING and self._rec_seq == 0:
            reconcile.start(self, now_ms)
        elif mode == NORMAL:
            self._snapshot(now_ms)

    def _from_region(self, src, term):
        if src not in self.cfg.electors:
            self.refused[refusal.UNKNOWN_NODE] += 1
            return False
        if term < self.term:
            self.refused[refusal.STALE_TERM] += 1
            return False
        return True

    def on_award(self, src, fields, now_ms):
        term, rnd, seq, first, res, holder, price, span, period, count, flags, end = fields
        if not self._from_region(src, term):
            return
        cls = cat.class_of(self.first_ids, res)
        if holder != self.id or flags & (msgs.AWARD_REPLICA | msgs.AWARD_SYNC | msgs.AWARD_CLAIM):
            self.refused[refusal.UNEXPECTED] += 1
            return
        if cls < 0:
            self.refused[refusal.RESOURCE] += 1
            return
        if not auction.shape_ok(span, period, count, self.cfg.max_span) or (
                end and end != end_s(first, span, period, count, self.cfg.slot_ms)):
            # (protocol 4's end_s, 0 from an older coordinator: a lease ending
            # elsewhere on this node's slot clock than on the coordinator's is
            # a slot length they disagree on; never act on it)
            self.refused[refusal.SHAPE] += 1
            return
        g = needs.group_of(cls)
        if (g == G_FEED and (1 << cls) & ~self.prod.feed_mask) or (g >= G_PART_A and g not in needs.groups_of(self)):
            self.refused[refusal.CLASS] += 1  # a lease it cannot use: never act on it
            return
        self._adopt(src, term, now_ms)
        if (res, first) in self.gave_up:
            if flags & msgs.AWARD_RESEND:  # sent before the coordinator had our RELEASE: taking it back would
                self.refused[refusal.UNEXPECTED] += 1  # hold a slot its ledger has freed for another
                return
            self.gave_up.remove((res, first))  # awarded anew in a later round
        merge = bool(flags & msgs.AWARD_MERGE)
        if count == 1 and not merge:
            period = span
        dup = True
        for k in range(count):
            if not self._holds(res, first + k * period, span):
                dup = False
                break
        if dup:
            return  # a resend after a takeover: already held
        bid = None
        for b in self.pending:
            if b[_SEQ] == seq:
                bid = b
        cover = bid[2] if bid is not None else count > 1
        merged = False
        if merge:
            for lease in self.leases:
                p = lease[L_PERIOD]
                if (lease[L_RES] == res and lease[L_SPAN] == span and (count == 1 or p == period)
                        and lease[L_FIRST] + lease[L_COUNT] * p == first and lease[L_COUNT] + count <= 255):
                    lease[L_COUNT] += count
                    merged = True
                    break
        if not merged:
            self.leases.append([res, first, span, period, count, g, cover])
        self.awards += 1
        if bid is not None:
            self.pending.remove(bid)
            self.need_since[g + (needs.N_GROUPS if bid[2] else 0)] = -1
            lat = now_ms - bid[_NEED_MS]
            self.latency_sum_ms += lat
            self.latency_n += 1
            if lat > self.latency_max_ms:
                self.latency_max_ms = lat
            if self.latencies is not None:
                self.latencies.append((lat, now_ms - bid[7], bid[2]))
        self._check = True

    def on_prices(self, src, fields, now_ms):
        term, rnd, digest, intent_seq, region, awards, status = fields[:7]
        if region != self.cfg.region:
            self.refused[refusal.REGION] += 1
            return
        if not self._from_region(src, term):
            return
        if status not in (msgs.ROUND_COMPLETE, msgs.ROUND_VOID, msgs.ROUND_RESYNC):
            self.refused[refusal.UNEXPECTED] += 1
            return
        for p in fields[7:]:
            if not 0 < p <= auction.MAX_PRICE:
                self.refused[refusal.PRICE] += 1
                return
        self._adopt(src, term, now_ms)
        self.round_status[rnd] = status
        if len(self.round_status) > 8:
            del self.round_status[min(self.round_status)]
        if status == msgs.ROUND_COMPLETE:
            if rnd >= self.price_round:
                self.prices = list(fields[7:])
                self.price_round = rnd
                self.price_ms = now_ms
        elif status == msgs.ROUND_VOID:
            self.voids_seen += 1
            self.last_void = rnd
            self.pending = [b for b in self.pending if b[_ROUND] != rnd]
        else:
            self._claim(src, term)
        self._check = True

    def _claim(self, src, term):
        """A new coordinator without a replica asks holders what they hold."""
        slot_ms = self.cfg.slot_ms
        for lease in self.leases:
            first, span, period, count = lease[L_FIRST], lease[L_SPAN], lease[L_PERIOD], lease[L_COUNT]
            self.send(src, msgs.AWARD, msgs.pack(msgs.AWARD, term, 0, 0, first, lease[L_RES], self.id, 0, span,
                                                 period, count, msgs.AWARD_CLAIM,
                                                 end_s(first, span, period, count, slot_ms), version=msgs.VERSION))

    def on_reconcile_ack(self, src, fields, now_ms):
        term, seq, released, refused = fields
        if self.auto.mode != RECONCILING or seq != self._rec_seq or src != self.coord:
            self.refused[refusal.UNEXPECTED] += 1
            return
        self.auto.reconciled(now_ms)
        self._rec_seq = 0
        self._snapshot(now_ms)
        self._check = True

    def on_intent(self, unicast, fields, now_ms):
        if unicast:
            self.refused[refusal.UNICAST] += 1
            return
        why = self.intent.apply(*fields)
        if why:
            self.refused[why] += 1
        else:
            self._check = True

    # ---- the loop --------------------------------------------------------

    def poll(self, now_ms):
        if self._fresh:
            self._fresh = False
            if now_ms // self.step_ms > self._step_n:
                self._step_n = now_ms // self.step_ms
        while self._step_n * self.step_ms <= now_ms:
            self._step(self._step_n)
            self._step_n += 1
        before = self.auto.mode
        mode = self.auto.tick(now_ms)
        if mode != before:
            self._check = True
            if mode == CONSERVATIVE:
                self._rec_seq = 0
        if mode == RECONCILING and self._rec_seq and now_ms >= self._rec_retry_ms:
            reconcile.report(self, now_ms)
        if self.pending:
            live = [b for b in self.pending if b[_EXPIRE] > now_ms]
            if len(live) != len(self.pending):
                self.pending = live
                self._check = True
        if self.held is not None:
            self.held.poll(now_ms)
        if self._check:
            needs.check(self, now_ms)

    def next_deadline_ms(self):
        t = self._step_n * self.step_ms
        a = self.auto.next_deadline_ms()
        if a is not None and a < t:
            t = a
        for b in self.pending:
            if b[_EXPIRE] < t:
                t = b[_EXPIRE]
        if self.auto.mode == RECONCILING and self._rec_seq and self._rec_retry_ms < t:
            t = self._rec_retry_ms
        return t if self.held is None else self.held.due_ms(t)

    def price_age_ms(self, now_ms):
        return now_ms - self.price_ms if self.price_ms is not None else 0
