# A region at the market tier only, in virtual time: the test and benchmark
# helper for market behaviour over days and weeks of mission time.
#
# Each node is a node.region.Region (the same trader, market and production
# code a Node runs) with its roles fixed (`Region.fixed`): no Tier-1 or
# regional election runs, so a run of 30 mission days with 1,000 nodes is
# affordable. Frames are the real payloads (msgs.pack / msgs.unpack) without
# the wire framing. Links have one fixed one-way light delay plus seeded
# jitter and loss; a node can be cut off (hears and reaches nobody) and the
# coordinator can crash (its role passes to the standby, whose term rises).
# With `firmware` (a version per node) each node speaks its firmware's
# protocol, and a frame newer than its receiver's is moved to the older
# layout on the way, as the ground's down-converter does
# (ground/downconvert.py: msgs.convert by field name); `converted` counts them.
# What it does not model: Tier-1 clusters and elections (tests/core/mesh.py and
# tests/core/federation.py do), the ground's router and impairment pipeline.
import heapq

from node import market, replica  # noqa: F401 (the electors' code first, while the heap is whole: a board's region.preload)
from node import msgs, refusal, wire
from node.config import Config, MarketConfig
from node.region import Region
from node.rng import Rng


class FedSim:
    def __init__(self, n, units, gens=None, ages=None, seed=1, delay_ms=2000, jitter_ms=0, loss_per_mille=0,
                 electors=(1, 2), coordinator=1, standby=2, firmware=None, cluster_of=None, **market_kw):
        self.ids = list(range(1, n + 1))
        self.cluster_of = cluster_of  # fn(node) -> its cluster number, for frames to a cluster's address (None: all 1)
        self.firmware = list(firmware) if firmware is not None else [(1, 0)] * n
        self.converted = 0
        self.gens = list(gens) if gens is not None else [1 + i % 3 for i in range(n)]
        self.ages = list(ages) if ages is not None else [0] * n
        self.mcfg = MarketConfig(roster=self.ids, electors=electors, units=units, gens=bytes(self.gens), **market_kw)
        self.delay_ms = delay_ms
        self.jitter_ms = jitter_ms
        self.loss_per_mille = loss_per_mille
        self.rng = Rng(seed * 7919 + 3)
        self.seed = seed
        self.now = 0
        self.term = 1
        self.coordinator = coordinator
        self.standby = standby
        self.regions = {}
        self.down = set()
        self.cut = set()  # nodes that hear and reach nobody
        self._queue = []
        self._wake = []  # heap of (time, node): when each node wants polling
        self._armed = {}  # node -> the earliest time queued for it (so the heap stays ~1 entry per node)
        self._order = 0
        self.sent = 0
        self.sent_by_type = {}
        self.delivered = 0
        self.dropped = 0
        self.malformed = 0
        self.to_ground = 0
        self.on_ground = None  # fn(t, src, type, payload) for every frame to the ground
        self.on_frame = None  # fn(t, src, dst, type, payload) called for every frame between nodes
        # (a hook, not a log: a 192K MicroPython heap holds a few hundred frames at most)
        for i in self.ids:
            self._boot(i)

    def _boot(self, i):
        self._armed.pop(i, None)
        k = i - 1
        cfg = Config(members=[i], hw_gen=self.gens[k], age_slots=self.ages[k], market=self.mcfg,
                     fw_version=self.firmware[k])
        r = Region(i, cfg, Rng(self.seed * 1000 + i + self.now), self._sender(i), self.now)
        r.fixed = (self.coordinator, self.term, self.standby)
        self.regions[i] = r
        self._arm(i)

    def _sender(self, src):
        def send(dst, type, payload):
            self._route(src, dst, type, payload)
        return send

    def _arm(self, i):
        t = self.regions[i].next_deadline_ms()
        if t < self._armed.get(i, t + 1):
            self._armed[i] = t
            heapq.heappush(self._wake, (t, i))

    # ---- faults --------------------------------------------------------

    def crash_coordinator(self, successor=None, lose_in_flight=False, keep=None):
        """The coordinator goes down; the standby (or `successor`) takes over
        in a higher term and names the next elector as its standby. With
        lose_in_flight, what it sent that has not arrived is lost (a power
        cut before the radio finished), except frames keep(frame) accepts."""
        old = self.coordinator
        self.down.add(old)
        if lose_in_flight:
            self._queue = [e for e in self._queue if e[2] != old or (keep is not None and keep(e))]
            heapq.heapify(self._queue)
        self.coordinator = successor if successor is not None else self.standby
        self.term += 1
        left = [e for e in self.mcfg.electors if e not in self.down and e != self.coordinator]
        self.standby = left[0] if left else msgs.NO_NODE
        for i in self.ids:
            self.regions[i].fixed = (self.coordinator, self.term, self.standby)
            if i not in self.down:
                self.regions[i].poll(self.now)  # the new roles take effect at once
                self._arm(i)

    def resume(self, i):
        """A node that hung (kept its RAM) carries on where it stopped."""
        self.down.discard(i)
        self._arm(i)

    def restart(self, i):
        self.down.discard(i)
        self.regions[i] = None
        self._boot(i)

    def inject(self, type, payload, dst=wire.ADDR_BROADCAST, src=wire.ADDR_GROUND):
        """A frame from the ground (or anyone), delivered after one light delay."""
        self._route(src, dst, type, payload)

    # ---- running -------------------------------------------------------

    def _route(self, src, dst, type, payload):
        if src in self.down:
            return
        self.sent += 1
        self.sent_by_type[type] = self.sent_by_type.get(type, 0) + 1
        if dst == wire.ADDR_GROUND:
            self.to_ground += 1
            if self.on_ground is not None:
                self.on_ground(self.now, src, type, payload)
            return
        if self.on_frame is not None:
            self.on_frame(self.now, src, dst, type, payload)
        delay = self.delay_ms
        if self.jitter_ms:
            delay += self.rng.below(self.jitter_ms + 1)
        self._order += 1
        heapq.heappush(self._queue, (self.now + delay, self._order, src, dst, type, payload))

    def _deliver(self, src, dst, type, payload):
        if dst == wire.ADDR_BROADCAST:
            targets = self.ids
        elif dst > wire.MAX_NODE_ID:  # a cluster's address
            of = self.cluster_of
            targets = [i for i in self.ids if (of(i) if of is not None else 1) == dst & 0x0FFF]
        else:
            targets = (dst,)
        for d in targets:
            if d == src or d not in self.regions:
                continue
            if d in self.down or d in self.cut or src in self.cut:
                self.dropped += 1
                continue
            if self.loss_per_mille and self.rng.below(1000) < self.loss_per_mille:
                self.dropped += 1
                continue
            try:
                have = self._proto(src)
                want = self._proto(d)
                if have > want:  # the ground's down-converter's rule, on the node's own layouts
                    payload_d = msgs.pack(type, *msgs.convert(type, msgs.unpack(type, payload, have), have, want),
                                          version=want)
                    self.converted += payload_d != payload
                    self.regions[d].receive(src, dst, type, payload_d, self.now, want)
                else:
                    self.regions[d].receive(src, dst, type, payload, self.now, have)
            except wire.ProtocolError:
                self.malformed += 1
                self.regions[d].refused[refusal.MALFORMED] += 1
            self.delivered += 1
            self.regions[d].poll(self.now)
            self._arm(d)

    def _proto(self, node):
        """The protocol version `node` sends at (the ground's: version 1)."""
        r = self.regions.get(node)
        return r.proto if r is not None else 1

    def run_until(self, t_ms):
        while True:
            tq = self._queue[0][0] if self._queue else None
            while self._wake and self._wake[0][1] in self.down:
                heapq.heappop(self._wake)
            tw = self._wake[0][0] if self._wake else None
            t = tq if tw is None or (tq is not None and tq <= tw) else tw
            if t is None or t > t_ms:
                self.now = t_ms
                return
            if t > self.now:
                self.now = t
            if t == tq:
                _, _, src, dst, type, payload = heapq.heappop(self._queue)
                self._deliver(src, dst, type, payload)
            else:
                tw, i = heapq.heappop(self._wake)
                if self._armed.get(i) == tw:
                    del self._armed[i]
                r = self.regions[i]
                if r.next_deadline_ms() <= self.now:
                    r.poll(self.now)
                    if r.next_deadline_ms() <= self.now:
                        raise AssertionError("node %d: poll left its deadline at %d" % (i, r.next_deadline_ms()))
                self._arm(i)  # (an early entry whose node now wants a later time is simply moved)

    def run_for(self, ms):
        self.run_until(self.now + ms)

    # ---- observations --------------------------------------------------

    def market(self):
        return self.regions[self.coordinator].market

    def traders(self):
        return [self.regions[i].trader for i in self.ids if i not in self.down]

    def held_in_ledger(self, node):
        """How many future occurrences `node` believes it holds; each must be
        in the coordinator's ledger (AssertionError naming the lease if not)."""
        led = self.market().ledger
        idx = self.mcfg.index(node)
        n = 0
        for lease in self.regions[node].trader.leases:
            res, first, span, period, count = lease[0], lease[1], lease[2], lease[3], lease[4]
            for k in range(count):
                s = first + k * period
                if s >= led.base:
                    assert led.find(res, idx, s, span)[0] >= 0, (node, lease)
                    n += 1
        return n

    def conflicts(self):
        """(resource, slot) pairs that more than one live node believes it
        holds: the conflict check that does not trust the ledger. One bit per
        (resource, slot) in a bytearray, so it fits a 192K heap."""
        leases = []
        for tr in self.traders():
            leases.extend(tr.leases)
        if not leases:
            return 0
        lo = min(l[1] for l in leases)
        hi = max(l[1] + (l[4] - 1) * l[3] + l[2] for l in leases)
        width = hi - lo
        seen = bytearray((sum(self.mcfg.units) * width + 7) // 8)
        bad = 0
        for lease in leases:
            res, first, span, period, count = lease[0], lease[1], lease[2], lease[3], lease[4]
            for k in range(count):
                for s in range(first + k * period, first + k * period + span):
                    bit = res * width + s - lo
                    if seen[bit >> 3] & (1 << (bit & 7)):
                        bad += 1
                    seen[bit >> 3] |= 1 << (bit & 7)
        return bad

    def production(self):
        """(produced, ideal) milli-units over live nodes."""
        p = i = 0
        for t in self.traders():
            p += t.prod.produced
            i += t.prod.ideal
        return p, i
