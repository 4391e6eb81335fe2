# A region of several Tier-1 clusters of real Nodes, wired back to back in
# virtual time: Tier 1 (cluster elections), the regional election among the
# electors, and the market, all through wire frames. tests/core/mesh.py's
# bigger sibling; runs under CPython and the MicroPython unix port.
#
# Addresses resolve as the ground router would: a cluster address reaches the
# cluster's members, the region address (cluster 0xE00 | region) the region's
# electors, broadcast everyone, a node id that node; frames to the ground are
# counted (and kept with keep_ground). Every link has the same delay plus
# seeded jitter; `cut` nodes hear and reach nobody; a crash can also lose the
# frames the node had sent but that had not arrived yet (a power cut before
# the radio finished), which is how the tests stop a coordinator mid-round.
# Not modelled: per-pair light delays, loss bursts, the ground's impairment
# pipeline and trace (ground/ has those).
import gc
import heapq

from node import msgs, wire
from node.config import Config, MarketConfig
from node.election import COORDINATOR
from node.node import Node
from node.rng import Rng


class Federation:
    def __init__(self, clusters, units, seed=1, delay_ms=5, jitter_ms=0, loss_per_mille=0, electors=None,
                 gens=None, election_timeout_ms=1000, keep_ground=False, keep_awards=False, **market_kw):
        self.clusters = [list(c) for c in clusters]
        self.ids = sorted(i for c in self.clusters for i in c)
        self.cluster_of = {}
        for k, c in enumerate(self.clusters):
            for i in c:
                self.cluster_of[i] = k + 1
        if electors is None:
            electors = [c[0] for c in self.clusters]  # one delegate per cluster
        self.gens = gens or {}
        g = bytes(self.gens.get(i, 2) for i in self.ids)
        self.mcfg = MarketConfig(roster=self.ids, electors=electors, units=units, gens=g, **market_kw)
        self.election_timeout_ms = election_timeout_ms
        self.seed = seed
        self.delay_ms = delay_ms
        self.jitter_ms = jitter_ms
        self.loss_per_mille = loss_per_mille
        self.rng = Rng(seed * 7919 + 5)
        self.region_dst = wire.cluster_addr(self.mcfg.region_cluster)
        self.now = 0
        self.nodes = {}
        self.flash = {}
        self.down = set()
        self.cut = set()
        self.keep_ground = keep_ground
        self.to_ground = []
        self.on_ground = None  # fn(t, src, line) for every frame to the ground (a hook: no list grows)
        self.on_sent = None  # fn(t, src, dst, line) for every other frame a node sends (a hook too)
        # With keep_awards: (t, holder, round, flags) of every AWARD a holder
        # received (a list that grows: a 192K heap running a long schedule has no room for it).
        self.awards_seen = [] if keep_awards else None
        self.region_leaders = {}  # regional term -> [ids that were regional coordinator in it]
        self._queue = []
        self._order = 0
        self.delivered = 0
        self.dropped = 0
        for i in self.ids:
            self.nodes[i] = self._make(i, self.seed * 1000 + i, None)

    def _make(self, i, seed, saved):
        c = self.cluster_of[i]
        cfg = Config(cluster=c, members=self.clusters[c - 1], election_timeout_ms=self.election_timeout_ms,
                     hw_gen=self.gens.get(i, 2), lineage=i % 3, market=self.mcfg)
        return Node(i, cfg, seed, saved)

    # ---- faults --------------------------------------------------------

    def crash(self, i, lose_in_flight=False):
        self.down.add(i)
        if lose_in_flight:
            self._queue = [e for e in self._queue if e[2] != i]
            heapq.heapify(self._queue)

    def resume(self, i):
        """A hung node (crash that kept its RAM) carries on where it stopped."""
        self.down.discard(i)

    def restart(self, i):
        self.down.discard(i)
        self.nodes[i] = None  # let the old one go first: a 192K heap holds one, not two
        gc.collect()
        self.nodes[i] = self._make(i, self.seed * 1000 + i + self.now, self.flash.get(i))

    def inject(self, type, payload, dst=wire.ADDR_BROADCAST):
        """A frame from the ground, encoded as the ground would send it."""
        line = wire.encode(type, wire.ADDR_GROUND, dst, payload)
        self._order += 1
        heapq.heappush(self._queue, (self.now + self.delay_ms, self._order, wire.ADDR_GROUND, dst, bytes(line[:-1])))

    # ---- running -------------------------------------------------------

    def run_for(self, ms):
        return self.run_until(self.now + ms)

    def run_until(self, t_ms, until=None):
        while True:
            t = self._queue[0][0] if self._queue else None
            for i in self.ids:
                if i in self.down:
                    continue
                d = self.nodes[i].next_deadline_ms()
                if d < self.now:
                    d = self.now
                if t is None or d < t:
                    t = d
            if t is None or t > t_ms:
                self.now = t_ms
                return False
            self.now = t
            self._step(t)
            if until is not None and until(self):
                return True

    def _targets(self, dst):
        if dst == wire.ADDR_BROADCAST:
            return self.ids
        if dst == self.region_dst:
            return self.mcfg.electors
        if dst & 0xF000 == wire.ADDR_CLUSTER:
            k = dst & 0x0FFF
            return self.clusters[k - 1] if 0 < k <= len(self.clusters) else ()
        return (dst,)

    def _step(self, t):
        touched = []
        while self._queue and self._queue[0][0] <= t:
            _, _, src, dst, line = heapq.heappop(self._queue)
            for d in self._targets(dst):
                if d == src or d not in self.nodes:
                    continue
                if d in self.down or d in self.cut or src in self.cut:
                    self.dropped += 1
                    continue
                if self.loss_per_mille and self.rng.below(1000) < self.loss_per_mille:
                    self.dropped += 1
                    continue
                f = self.nodes[d].receive(line, t)
                if self.awards_seen is not None and f is not None and f.type == msgs.AWARD:
                    fl = msgs.unpack(msgs.AWARD, f.payload)
                    if fl[5] == d and not fl[10] & (msgs.AWARD_REPLICA | msgs.AWARD_SYNC | msgs.AWARD_CLAIM):
                        self.awards_seen.append((t, d, fl[1], fl[10]))
                self.delivered += 1
                if d not in touched:
                    touched.append(d)
        for i in self.ids:
            if i in self.down:
                continue
            node = self.nodes[i]
            if i in touched or node.next_deadline_ms() <= t:
                self._poll(node, t)

    def _poll(self, node, t):
        out = node.poll(t)
        blob = node.take_persist()
        if blob is not None:
            self.flash[node.id] = blob
        if node.seat is not None and node.seat.role == COORDINATOR:
            seen = self.region_leaders.setdefault(node.seat.term, [])
            if node.id not in seen:
                seen.append(node.id)
        for dst, line in out:
            if dst == wire.ADDR_GROUND:
                if self.keep_ground:
                    self.to_ground.append((t, node.id, bytes(line[:-1])))
                if self.on_ground is not None:
                    self.on_ground(t, node.id, line[:-1])
                continue
            if self.on_sent is not None:
                self.on_sent(t, node.id, dst, line[:-1])
            delay = self.delay_ms
            if self.jitter_ms:
                delay += self.rng.below(self.jitter_ms + 1)
            self._order += 1
            heapq.heappush(self._queue, (t + delay, self._order, node.id, dst, bytes(line[:-1])))

    # ---- observations --------------------------------------------------

    def region_coordinator(self):
        """The live elector every live elector agrees is regional coordinator, or None."""
        live = [e for e in self.mcfg.electors if e not in self.down]
        coords = [e for e in live if self.nodes[e].seat.role == COORDINATOR]
        if len(coords) != 1:
            return None
        c = coords[0]
        term = self.nodes[c].seat.term
        for e in live:
            s = self.nodes[e].seat
            if s.coordinator != c or s.term != term:
                return None
        return c

    def ground_frames(self, type):
        """[(src, payload)] of the frames of `type` sent to the ground (keep_ground)."""
        out = []
        for t, src, line in self.to_ground:
            fr = wire.decode(bytes(line[:-1]) if line[-1:] == b"\x00" else bytes(line))
            if fr.type == type:
                out.append((src, fr.payload))
        return out

    def accusations(self):
        """[(auditor, ACCUSE fields)] sent to the ground."""
        return [(src, msgs.unpack(msgs.ACCUSE, p)) for src, p in self.ground_frames(msgs.ACCUSE)]

    def market(self):
        c = self.region_coordinator()
        return self.nodes[c].region.market if c is not None else None

    def traders(self):
        return [self.nodes[i].region.trader for i in self.ids if i not in self.down]

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

    def split_brains(self):
        return [t for t in sorted(self.region_leaders) if len(self.region_leaders[t]) > 1]
