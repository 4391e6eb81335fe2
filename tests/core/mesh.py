# A cluster of in-process nodes wired back to back, in virtual time.
#
# The test and benchmark helper STYLE.md asks for: no I/O, no clock, runs under
# CPython and the MicroPython unix port alike. Links have a fixed delay plus
# seeded jitter and loss; nodes can crash, restart from their persisted state,
# and be partitioned. It is not the ground harness's router (ground/ has the
# full impairment pipeline and trace); it models only what the core's tests need.
# To fit 20 nodes in a 192K MicroPython heap, a cluster broadcast is one queue
# entry fanned out at delivery: its recipients share one delay (jitter is per
# frame, not per recipient), and loss and partitions are decided at delivery.

import heapq

from node import msgs, wire
from node.config import Config
from node.election import COORDINATOR
from node.node import Node
from node.rng import Rng


class Mesh:
    def __init__(self, n, seed=1, delay_ms=5, jitter_ms=0, loss_per_mille=0, first_id=1, cluster=1,
                 keep_ground=False, **config_kw):
        self.ids = list(range(first_id, first_id + n))
        self.seed = seed
        self.config = Config(cluster=cluster, members=self.ids, **config_kw)
        self.cluster_dst = wire.cluster_addr(cluster)
        self.delay_ms = delay_ms
        self.jitter_ms = jitter_ms
        self.loss_per_mille = loss_per_mille
        self.rng = Rng(seed * 7919 + 1)
        self.now = 0
        self.nodes = {}
        self.flash = {}  # node id -> last persisted blob (survives crashes)
        self.seen = {}  # node id -> last persisted replay ceilings (Node.take_seen)
        self.writes = {}  # node id -> how many flash writes it asked for (both kinds)
        self.down = set()
        self.groups = None  # partition: list of sets of ids, or None
        self.keep_ground = keep_ground
        self.to_ground = []  # (time, src, line) frames addressed to the ground
        self.ground_frames = 0
        self.leaders = {}  # term -> sorted list of ids that were coordinator in it
        self.events = []  # (time, id, term) each time a node became coordinator
        self._queue = []
        self._order = 0
        self.delivered = 0
        self.dropped = 0
        # decode_once: a frame is decoded once (under the nodes' decode_key),
        # its payload's values parsed once (Frame.values, not STATE's list),
        # and every recipient gets the Frame (Node.receive_decoded), as the
        # ground's lean path does; a frame that does not decode goes as bytes
        self.decode_once = False
        self.decoded = 0  # deliveries that took that way
        for i in self.ids:
            self.nodes[i] = Node(i, self.config, seed * 1000 + i)

    # ---- faults --------------------------------------------------------

    def crash(self, node_id):
        self.down.add(node_id)

    def restart(self, node_id):
        """Power back on: a fresh Node from what it persisted."""
        self.down.discard(node_id)
        self.nodes[node_id] = Node(node_id, self.config, self.seed * 1000 + node_id + self.now, self.flash.get(node_id),
                                   seen=self.seen.get(node_id))

    def partition(self, *groups):
        self.groups = [set(g) for g in groups]

    def heal(self):
        self.groups = None

    def connected(self, a, b):
        if self.groups is None:
            return True
        for g in self.groups:
            if a in g:
                return b in g
        return False

    # ---- running -------------------------------------------------------

    def run_for(self, ms):
        self.run_until(self.now + ms)

    def run_until(self, t_ms, until=None):
        """Advance virtual time to t_ms, or until `until(mesh)` is true."""
        while True:
            t = self._next_event_ms()
            if t is None or t > t_ms:
                self.now = t_ms
                return False
            self.now = t
            self._step(t)
            if until is not None and until(self):
                return True

    def _next_event_ms(self):
        t = self._queue[0][0] if self._queue else None
        for i in self.ids:
            if i in self.down:
                continue
            d = self.nodes[i].next_deadline_ms()
            if d < self.now:
                d = self.now  # "due now" (a node not yet booted says 0)
            if t is None or d < t:
                t = d
        return t

    def _step(self, t):
        touched = []
        while self._queue and self._queue[0][0] <= t:
            _, _, src, dst, line = heapq.heappop(self._queue)
            frame = self._decode(line) if self.decode_once else None
            if dst & 0xF000 == wire.ADDR_CLUSTER:  # any cluster's address, broadcast too: each node keeps its own
                targets = self.ids
            else:
                targets = (dst,)
            for d in targets:
                if d == src or d not in self.nodes:
                    continue
                if d in self.down or not self.connected(src, d):
                    self.dropped += 1
                    continue
                if self.loss_per_mille and self.rng.below(1000) < self.loss_per_mille:
                    self.dropped += 1
                    continue
                if frame is not None:
                    self.nodes[d].receive_decoded(frame, t)
                    self.decoded += 1
                else:
                    self.nodes[d].receive(line, t)
                self.delivered += 1
                if d not in touched:
                    touched.append(d)
        for i in self.ids:
            if i in self.down:
                continue
            node = self.nodes[i]
            if i in touched or node.next_deadline_ms() <= t:
                self._poll(node, t)

    def _decode(self, line):
        key, require_auth, proto_max = self.nodes[self.ids[0]].decode_key()
        try:
            frame = wire.decode(line, wire.Auth(key) if key else None, require_auth, proto_max)
        except wire.ProtocolError:
            return None
        if frame.type != msgs.STATE:
            try:
                frame.values = msgs.payload_values(frame.type, frame.payload, frame.version)
            except wire.ProtocolError:
                pass
        return frame

    def _poll(self, node, t):
        out = node.poll(t)
        seen = node.take_seen()
        if seen is not None:  # as the board shell: ceilings, then term/vote, then send
            self.seen[node.id] = b"".join(bytes(p) for p in seen)
            self.writes[node.id] = self.writes.get(node.id, 0) + 1
        blob = node.take_persist()
        if blob is not None:
            self.flash[node.id] = blob
            self.writes[node.id] = self.writes.get(node.id, 0) + 1
        if node.role == COORDINATOR:
            seen = self.leaders.setdefault(node.term, [])
            if node.id not in seen:
                seen.append(node.id)
                seen.sort()
                self.events.append((t, node.id, node.term))
        for dst, line in out:
            self._route(node.id, dst, line[:-1], t)

    def _route(self, src, dst, line, t):
        if dst == wire.ADDR_GROUND:
            self.ground_frames += 1
            if self.keep_ground:
                self.to_ground.append((t, src, line))
            return
        delay = self.delay_ms
        if self.jitter_ms:
            delay += self.rng.below(self.jitter_ms + 1)
        self._order += 1
        heapq.heappush(self._queue, (t + delay, self._order, src, dst, line))

    # ---- observations --------------------------------------------------

    def coordinators(self):
        """[(id, term)] of live nodes that are coordinator now."""
        out = []
        for i in self.ids:
            if i not in self.down and self.nodes[i].role == COORDINATOR:
                out.append((i, self.nodes[i].term))
        return out

    def coordinators_by_cluster(self):
        """{cluster number: [ids coordinating it]} among live nodes (a split
        makes several clusters in one mesh)."""
        out = {}
        for i in self.ids:
            n = self.nodes[i]
            if i not in self.down and n.role == COORDINATOR:
                out.setdefault(n.cluster_dst & 0xFFF, []).append(i)
        return out

    def add_daughter(self, nid, parent):
        """Boot a daughter as the ground does: its parent's cluster, that
        cluster's roster as the parent holds it plus itself, the spares and
        split block the parent holds now, its parent named. The new Node."""
        p = self.nodes[parent]
        j = p.joins
        c = self.config
        first, count = (j.first, j.count) if j is not None else c.replication[:2]
        split = j.split if j is not None else c.replication[4]
        cfg = Config(cluster=p.cluster_dst & 0xFFF, members=p.members.members + (nid,),
                     election_timeout_ms=c.election_timeout_ms, spares=(first, count), max_members=c.replication[2],
                     min_members=c.replication[3], split_cluster=split, parent=parent, lineage=2)
        self.ids.append(nid)
        self.nodes[nid] = Node(nid, cfg, 4242 + nid)
        return self.nodes[nid]

    def split_brains(self):
        """Terms in which more than one node was ever coordinator."""
        return [term for term in sorted(self.leaders) if len(self.leaders[term]) > 1]

    def agreed_coordinator(self):
        """The coordinator every live node follows, or None."""
        live = [i for i in self.ids if i not in self.down]
        coords = self.coordinators()
        if len(coords) != 1:
            return None
        cid, term = coords[0]
        for i in live:
            n = self.nodes[i]
            if n.coordinator != cid or n.term != term:
                return None
        return cid

    def digests(self):
        return sorted(set(self.nodes[i].records.digest() for i in self.ids if i not in self.down))
