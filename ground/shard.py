"""One shard of a lean fleet run (ground/fleetrun.py): the in-process nodes
of a set of whole clusters (never a split region), one event heap, the link
pipelines of their outgoing links, the fleet counters, and the per-frame
trace of the clusters the scenario names.

The shard does what ground/run.py's Run and ground/router.py's Router do
for in-process nodes in virtual time, with the harness cut to the bone:

- the nodes are the real core (ground/links.py's SimLink over
  firmware/node, built with run.py's node_config and the same node seeds),
  woken and polled exactly as Run does it;
- a frame's header is read once, here (ground/shard_route.py's
  `frame_header`: 7 bytes out of the COBS line, no CRC, no payload), and
  where it goes is worked out once per sender and address (shard_route.py's
  Routes: its recipients and tier); a frame to other nodes is decoded once
  too, when every node here decodes alike (Node.decode_key), and each
  recipient's core gets the Frame (Node.receive_decoded: the per-recipient
  part of receive()); a copy whose bytes a stage or a fault changed, a
  skewed node and a frame from another shard go the board's way, bytes to
  Node.receive;
- each directed link's impairments are the same ground/pipeline.py stages
  with the same seeds as the Router's ("seed/src/dst"), so the same draws;
- a frame newer than its recipient speaks is down-converted for it before
  its link (ground/shard_skew.py, the Router's Downconverter);
- fates become counters (ground/fleetcount.py), not trace lines, except
  for frames sent by a traced node, which are written to this shard's part
  of the trace (buffered, no flush per line) as the Router writes them.

Frames to a recipient in another unit (a cluster, or the region holding it)
are not scheduled here: they go into the outbox, and ground/fleetrun.py hands
them to the recipient's shard when the window ends (conservative
synchronisation). Frames within a unit never leave the shard.

Faults supported on the lean path: crash, restart, reset, power_cut,
power_on, skew, byzantine, corruption_burst, partition, heal, blackout and
intent steps (the frame faults and intent: ground/shard_faults.py), and the
containment steps lineage_fault, reinstate, sever and reinstate_region
(ground/shard_contain.py); ground/fleetrun.py refuses the others at load,
naming the step. A rollout's nodes, update slots and records for the
driver's orchestrator: ground/shard_rollout.py.
"""

import heapq
import os
import time

from ground import airtime, firmware, gcpolicy
from ground import run as run_mod
from ground import stages as st
from ground import fleetcount as fc
from ground import shard_contain, shard_faults, shard_land, shard_rollout, shard_route, shard_skew, wireids
from ground.fleetcount import DELIVERED, SENT, Counters
from ground.links import SimLink
from ground.pipeline import build_pipeline
from ground.router import _decode_fields
from ground.shard_route import frame_header
from ground.shard_trace import TracePart

wire = firmware.wire
msgs = firmware.msgs
MS = 1_000_000
S = 1_000_000_000
NODE_FAULTS = ("crash", "restart", "reset", "power_cut", "power_on", "skew", "byzantine", "corruption_burst")
GLOBAL_FAULTS = ("partition", "heal", "blackout", "intent")


class ShardFailed(Exception):
    """Shard `index` of the list advance_all ran raised `error` at mission
    time now_ns."""

    def __init__(self, index, now_ns, error):
        super().__init__(index, now_ns, error)
        self.index, self.now_ns, self.error = index, now_ns, error

    def __str__(self):
        return "%s: %s" % (type(self.error).__name__, self.error)


def advance_all(shards, until_ns, inboxes, last):
    """A worker's window (ground/fleetrun.py's InProcess, a Ray actor, a
    shard process): each shard's advance in turn; their outboxes and their
    CPU in all. ShardFailed names the one that raised."""
    outs = []
    for k, (sh, box) in enumerate(zip(shards, inboxes)):
        try:
            outs.append(sh.advance(until_ns, box, last))
        except Exception as e:
            raise ShardFailed(k, sh.now, e) from e
    return outs, sum(sh.last_cpu_s for sh in shards)


def finish_all(shards, inboxes, status, reason):
    """Each shard's counters at the end (Shard.finish)."""
    return [sh.finish(box, status, reason) for sh, box in zip(shards, inboxes)]


class Shard:
    """Whole clusters `clusters` of scenario sc, run in windows by advance().

    unit_of: cluster id -> its unit (the cluster or its region): frames
    between units go through the outbox. traced: node ids whose frames are
    traced (into trace_path). coordinator_watch: clusters whose coordinator a
    fault targets (their claims are decoded to know it)."""

    def __init__(self, sc, seed, index, clusters, unit_of, traced=(), trace_path=None, coordinator_watch=(),
                 die_at_ns=None, hard_death=False, cluster_of=None):
        self.sc = sc
        self.seed = seed
        self.index = index
        self.clusters = sorted(clusters)
        self.unit_of = unit_of
        self.die_at_ns = die_at_ns  # a fault injected by a test: the worker dies once this mission time is reached
        self.hard_death = hard_death  # die as a process (a Ray worker), not by raising (in-process)
        if cluster_of is None:  # node id -> its cluster, fleet-wide (ground/fleetrun.py builds it once for every shard)
            cluster_of = {nid: spec.cluster for nid, spec in sc.nodes.items()}
        self.cluster_of = cluster_of
        mine = sorted(nid for c in self.clusters for nid in sc.clusters[c])  # this shard's nodes
        self.counters = Counters(cluster_of, self.clusters, sc.duration_s, nodes=mine)
        self.now = 0
        self.cpu_s = self.last_cpu_s = 0.0  # CPU seconds spent in advance(): in all, in the last window
        self._heap = []
        self._seq = 0
        self.traced = frozenset(traced)
        self._traced_from = self.traced | {0} if self.traced else frozenset()  # senders traced: the ground too
        self.trace = TracePart(trace_path, sc.time_scale) if trace_path else None
        self.coordinator_watch = frozenset(coordinator_watch)
        self.coordinator = {}  # cluster -> (node, term), for the watched clusters
        self.outbox = []
        self.cut = set()
        self.blackout = set()
        self.byzantine = {}  # node -> rewrite, corrupting: node -> (until_ns, p) (ground/shard_faults.py)
        self.corrupting = {}
        self.flip_rngs = {}
        self.auth = wire.Auth(sc.auth_key) if sc.auth_key else None
        self.ground = shard_faults.GroundSender(self)
        self.severed = {}  # node -> its severed region; contain: the containment steps (ground/shard_contain.py)
        self.contain = shard_contain.Containment(self) if len(getattr(sc, "regions", None) or ()) > 1 else None
        self._pipelines = {}
        self.radios = airtime.Radios()  # the nodes' transmitters, shared by their links with `radio:`, as the Router's
        self._land = shard_land.Landing(self).land  # a frame as sent, to a node here: the hot path
        self.route = shard_route.Routes(self)  # who a frame's address reaches, the tier it counts under
        self._recipients = self.route.recipients  # (src, dst address) -> [(recipient, pipeline, local?)]
        self._tier = {}  # (src, dst address) -> the tier its frames count under (fleetcount.TIERS)
        self._nseq = {}  # node -> frames it sent (cross-unit order and trace ids)
        self._fid_bits = 16 if max(sc.nodes) <= 0xFFFF else 24  # a frame id's low bits: its sender
        self.links = {}
        self.wake_at = {}
        self.rollout = shard_rollout.ShardUpdates(self) if sc.rollout is not None else None  # nodes' update slots
        for nid in mine:
            link = SimLink(nid, self._factory(nid), self.rollout.slots(nid) if self.rollout else None)
            self.links[nid] = link
            self.wake_at[nid] = None
            self._call(0, self._wake, nid, 0)
        for f in sc.faults:
            self._call(int(f.at_s * S), self._fault, f)
        self.skew = shard_skew.Skew(self) if shard_skew.needed(sc) else None  # older recipients' frames converted
        # one decode for every node here when their keys agree (with skew: but for proto_max, decoded up to
        # skew.decode_max, as a recipient then only ever gets a line at or below its own, converted otherwise)
        keys = {link.node.decode_key() if self.skew is None else link.node.decode_key()[:2] + (self.skew.decode_max,)
                for link in self.links.values()}
        self._key = keys.pop() if len(keys) == 1 else None  # None: every node decodes its own frames
        self._key_auth = wire.Auth(self._key[0]) if self._key and self._key[0] else None

    def _factory(self, nid):
        cfgs = {None: run_mod.node_config(self.sc, nid)}
        seed = self.seed
        wire_id = wireids.wire_node(self.sc, nid)  # its id on the wire

        def make(saved, boots, version=None):  # the node seeds of ground/run.py's Run; version: an installed image's
            cfg = cfgs.get(version) or cfgs.setdefault(version, run_mod.node_config(self.sc, nid, tuple(version)))
            return firmware.core.Node(wire_id, cfg, seed * 100_003 + nid * 7 + boots, saved)

        return make

    def _call(self, t, fn, *args):
        self._seq += 1
        heapq.heappush(self._heap, (t if t > self.now else self.now, self._seq, fn, args))

    # ---- the windows -------------------------------------------------------

    def advance(self, until_ns, inbox=(), last=False):
        """Take the frames other shards sent here (sorted), run every event
        before until_ns (up to and including it when last), and return the
        frames for other units, as (deliver_ns, src, nseq, dst, copy, type,
        data, sent_ns)."""
        cpu0 = time.process_time()
        if inbox and inbox[0][3] == shard_skew.RANGE:  # nodes' new protocol ranges, first (ground/shard_skew.py)
            inbox = self.skew.opened(inbox)
        held = 0
        for t, src, nseq, dst, copy, typ, data, sent_ns in inbox:
            if dst == shard_contain.ORDER:  # the ground's frame, sent to this shard's recipients as the window opens
                self._call(t, self.ground.send, data[0], typ, data[1], *data[2:])  # [2]: its recipients, if named
                continue
            if t < self.now:
                held += 1  # arrived before its window closed: delivered as the next one opens
            self._call(t, self._deliver, dst, copy, data, typ, sent_ns, src, nseq, None)
        self.counters.held += held
        heap = self._heap
        pop = heapq.heappop
        die = self.die_at_ns
        limit = until_ns + 1 if last else until_ns  # the events before it
        with gcpolicy.during_run():  # the cyclic GC less often, as Run's clock loop (ground/gcpolicy.py)
            while heap and heap[0][0] < limit:
                t, _, fn, args = pop(heap)
                self.now = t
                if die is not None and t >= die:
                    if self.hard_death:
                        os._exit(70)  # the injected death: no cleanup, as a killed worker
                    raise RuntimeError("injected death of shard %d" % self.index)
                fn(*args)
        self.now = until_ns
        if self.trace is not None:
            self.trace.flush()
        out, self.outbox = self.outbox, []
        self.last_cpu_s = time.process_time() - cpu0  # this window's work (ground/fleetrun.py's window cost)
        self.cpu_s += self.last_cpu_s
        return out

    def finish(self, inbox=(), status="ok", reason=""):
        """Frames still in space (in the heap, or handed over as the last
        window closed) get their fate, run_end; close the trace part; return
        the counters (Counters.state())."""
        for f in inbox:
            if f[3] != shard_contain.ORDER and f[3] != shard_skew.RANGE:
                self._call(f[0], self._deliver, f[3], f[4], f[6], f[5], f[7], f[1], f[2], None)
        for t, _, fn, args in sorted(self._heap, key=lambda e: (e[0], e[1])):
            if fn == self._land:
                fn, args = self._deliver, (args[0], 0) + args[1]
            if fn == self._deliver:
                dst, copy, data, typ, sent_ns, src, nseq = args[:7]  # as _deliver takes them: its frame is optional
                self.counters.drop(dst, typ, "run_end", self.now)
                if src in self._traced_from and (dst in self.traced or dst == 0):
                    self.trace("frame", self.now, fate="dropped", id=self._fid(src, nseq), to=dst, copy=copy,
                               reason="run_end")
        self._heap = []
        if self.trace is not None:
            self.trace.close()
        return dict(self.counters.state(), cpu_s=self.cpu_s,
                    contain=self.contain.times.state() if self.contain is not None else {})

    # ---- nodes ---------------------------------------------------------------

    def _wake(self, nid, at_ns):
        w = self.wake_at[nid]
        if w is not None and w != at_ns:
            return  # stale: rescheduled since
        self.wake_at[nid] = None
        self._poll(nid)

    def _poll(self, nid):
        # SimLink.poll and next_deadline_ms, inlined for the unskewed node (the hot path)
        link = self.links[nid]
        now = self.now
        if not link.up:
            return
        self.counters.use(nid)[fc.POLLS] += 1
        boots = link.boots
        if link.skew != 1.0 or link.updates is not None:  # with updates: SimLink.poll (installs, restarts, defects)
            lines = link.poll(now // MS)
            d = link.next_deadline_ms()
        else:
            node = link.node
            out = node.poll(now // MS)
            blob = node.take_persist()
            if blob is not None:
                link.flash = blob  # "written to flash" before the frames leave
            lines = [line for _, line in out]
            d = node.next_deadline_ms()
        for line in lines:
            self._send(nid, bytes(line[:-1]))
        if link.updates is not None:
            self.rollout.after_poll(nid, link, boots)
        if d is not None:
            at = d * MS
            floor = (now // MS + 1) * MS
            if at < floor:
                at = floor
            w = self.wake_at[nid]
            if w is None or at < w:
                self.wake_at[nid] = at
                self._call(at, self._wake, nid, at)

    # ---- frames ----------------------------------------------------------------

    def _fid(self, src, nseq):
        return (nseq << self._fid_bits) | src  # unique fleet-wide, whatever the shards

    def _pipeline(self, src, dst):
        p = self._pipelines.get((src, dst))
        if p is None:
            p = build_pipeline(self.sc.link_spec(src, dst), seed="%d/%d/%d" % (self.seed, src, dst),
                               radios=self.radios, src=src)
            self._pipelines[(src, dst)] = p
        return p

    def _send(self, src, line):
        now = self.now
        orig = None
        if self.byzantine and src in self.byzantine:
            line, orig = shard_faults.rewritten(self, src, line)
        version, typ, seq, _, dst = frame_header(line)
        c = self.counters
        c.count(src, typ, SENT, now)
        tier = self._tier.get((src, dst))
        if tier is None:
            tier = self._tier[(src, dst)] = self.route.tier_of(src, dst)
        row = c.use(src)
        row[tier] += 1
        row[tier + 1] += len(line) + 1  # line bytes with the delimiter, as the trace's `len`
        nseq = self._nseq.get(src, 0) + 1
        self._nseq[src] = nseq
        tr = self.trace if src in self.traced else None
        fid = self._fid(src, nseq)  # every frame its id: a radio's transmitter tells frames apart by it (ground/airtime.py)
        if tr is not None or (self.coordinator_watch and self.cluster_of[src] in self.coordinator_watch):
            self._traced_sent(tr, src, fid, line, now, orig)
        if self.contain is not None and src in self.contain.watch:
            self.contain.observe(src, typ, dst, line)  # what the ground's severing learns (ground/sever.py)
        if self.rollout is not None and typ in self.rollout.types:
            self.rollout.sent(src, nseq, typ, line)  # what the rollout's orchestrator reads (ground/shard_rollout.py)
        if dst == wire.ADDR_GROUND:
            self._to_ground(src, typ, fid, line, tr)
            if tr is not None and self.radios.any:
                self._aired(tr, fid, src, typ)
            return
        targets = self._recipients(src, dst)
        if self.severed and src in self.severed:
            targets = self.contain.cut(src, targets, typ, fid, tr)
        if not targets:
            c.drop(src, typ, "unknown_dst", now)
            if tr is not None:
                tr("frame", now, fate="dropped", id=fid, to=None, reason="unknown_dst")
            return
        data = line
        frame = self._decoded(line)
        cut, blackout, corrupting = self.cut, self.blackout, self.corrupting
        heap, push, deliver, land, fr = self._heap, heapq.heappush, self._deliver, self._land, None
        skew = self.skew if self.skew is not None and version > self.skew.oldest else None
        for d, pipe, local in targets:
            if cut and (src, d) in cut:
                self._drop(tr, fid, d, typ, "partition")
                continue
            if blackout and (0 in blackout or src in blackout or d in blackout):
                self._drop(tr, fid, d, typ, "blackout")
                continue
            if skew is not None:  # an older recipient's copy (ground/shard_skew.py)
                data = skew.line_for(src, nseq, d, line, version, typ, fid, tr)
                if data is None:
                    continue
            if corrupting and src in corrupting:
                data = shard_faults.flipped(self, src, d, data if skew is not None else line, fid, tr)
            out = pipe.route(fid, data, now)
            if out.__class__ is int:
                if local:  # self._call, inlined; the frame as it was sent lands by ground/shard_land.py
                    self._seq += 1
                    if data is line:
                        if fr is None:
                            fr = (line, typ, now, src, nseq, frame)  # shared by the frame's recipients
                        push(heap, (out if out > now else now, self._seq, land, (d, fr)))
                    else:
                        push(heap, (out if out > now else now, self._seq, deliver,
                                    (d, 0, data, typ, now, src, nseq, None)))
                else:
                    self.outbox.append((out, src, nseq, d, 0, typ, data, now))
                continue
            if out.__class__ is str:
                self._drop(tr, fid, d, typ, out, copy=0)
                continue
            for when, p in out:
                if tr is not None and d in self.traced:
                    if p.copy:
                        tr("frame", now, fate="duplicated", id=fid, to=d, copy=p.copy)
                    for how in p.how or ():
                        tr("frame", now, fate="corrupted", id=fid, to=d, how=how)
                if when.__class__ is int:
                    if local:
                        self._call(when, self._deliver, d, p.copy, p.data, typ, now, src, nseq,
                                   frame if p.data is line else None)
                    else:
                        self.outbox.append((when, src, nseq, d, p.copy, typ, p.data, now))
                else:
                    self._drop(tr, fid, d, typ, when, copy=p.copy)
        if tr is not None and self.radios.any:
            self._aired(tr, fid, src, typ)

    def _aired(self, tr, fid, src, typ):
        """The Router's `radio` events (ground/router.py _aired), for a traced sender's frame."""
        for radio in self.radios.aired(src, fid, msgs.name(typ)):
            tr("radio", self.now, **radio)

    def _drop(self, tr, fid, dst, typ, reason, copy=None):
        self.counters.drop(dst, typ, reason, self.now)
        if tr is not None and (dst in self.traced or dst == 0):
            extra = {} if copy is None else {"copy": copy}
            tr("frame", self.now, fate="dropped", id=fid, to=dst, reason=reason, **extra)

    def _to_ground(self, src, typ, fid, data, tr):
        """As the Router: at once over a ground link with no stages, else
        through its pipeline (the ground receives it when it arrives)."""
        now = self.now
        if self.contain is not None:
            self.contain.times.seen(src, typ, data, now)  # time to detect and to quarantine (ground/fleet_contain.py)
        if self.severed and src in self.severed and typ != msgs.JOURNAL:  # the ground no longer honours it
            self._drop(tr, fid, 0, typ, "severed")
            return
        p = self._pipeline(src, 0)
        if typ == msgs.JOURNAL or not (p.stages or p.state.gated):
            self.counters.count(0, typ, DELIVERED, now)
            if self.rollout is not None:
                self.rollout.at_ground(src, self._nseq[src], typ, data)
            if tr is not None:
                tr("frame", now, fate="delivered", id=fid, to=0, copy=0, delay_ns=0)
            return
        for when, pkt in p.send(st.Packet(fid, data, now), now):
            if tr is not None:
                if pkt.copy:
                    tr("frame", now, fate="duplicated", id=fid, to=0, copy=pkt.copy)
                for how in pkt.how or ():
                    tr("frame", now, fate="corrupted", id=fid, to=0, how=how)
            if when.__class__ is not int:
                self._drop(tr, fid, 0, typ, when, copy=pkt.copy)
            else:
                self._call(when, self._deliver, 0, pkt.copy, pkt.data, typ, now, src, self._nseq[src], None)

    def _traced_sent(self, tr, src, fid, data, now, orig=None):
        try:
            frame = wire.decode(data, None)
        except wire.ProtocolError:
            return  # a core's own frame always decodes (a byzantine rewrite re-encodes it)
        fields = _decode_fields(frame)
        t = frame.type
        if (t == msgs.HEARTBEAT and fields.get("role") == msgs.ROLE_COORDINATOR) or t == msgs.COORDINATOR:
            c = self.cluster_of[src]
            if frame.dst == wire.cluster_addr(wireids.wire_cluster(self.sc, c)):
                self.coordinator[c] = (src, fields.get("term", 0))
        if tr is None:
            return
        extra = {} if orig is None else {"orig_hex": orig}
        dst, ids = frame.dst, self.sc.wire_ids
        if ids is not None:  # addressing: region: the trace names nodes and clusters by the scenario's ids
            dst, fields = ids.scenario_addr(src, dst), ids.scenario_fields(src, fields)
        tr("frame", now, fate="sent", id=fid, src=src, dst=dst, type=msgs.name(t), seq=frame.seq,
           len=len(data) + 1, hex=data.hex(), msg=fields, **extra)
        if t == msgs.HELLO and fields:
            tr("node", now, node=src, event="hello", detail=fields)

    def _decoded(self, line):
        """The Frame every node here makes of line (Node.decode_key), its
        payload's values parsed once as its recipients' cores would, or None
        (the nodes decode differently, or the line is refused: each
        recipient decodes it and counts why)."""
        key = self._key
        if key is None:
            return None
        try:
            frame = wire.decode(line, self._key_auth, key[1], key[2])
        except wire.ProtocolError:
            return None
        t = frame.type
        if t != msgs.STATE and t not in msgs.UPDATE_TYPES and t not in msgs.MARKET_TYPES:
            try:  # its payload's values too (Frame.values; STATE's list, update and market frames: per recipient)
                frame.values = msgs.payload_values(t, frame.payload, frame.version)
            except wire.ProtocolError:
                pass  # malformed: each recipient parses it and counts why
        return frame

    def _deliver(self, dst, copy, data, typ, sent_ns, src, nseq, frame=None):
        link = self.links.get(dst)
        now = self.now
        tr = self.trace if (self.traced and src in self._traced_from and (dst in self.traced or dst == 0)) else None
        if dst == 0:  # the ground receives it
            self.counters.count(0, typ, DELIVERED, now)
            if self.rollout is not None:
                self.rollout.at_ground(src, nseq, typ, data)
            if tr is not None:
                tr("frame", now, fate="delivered", id=self._fid(src, nseq), to=0, copy=copy, delay_ns=now - sent_ns)
            return
        if link is None or not link.up:
            self.counters.drop(dst, typ, "node_down", now)
            if tr is not None:
                tr("frame", now, fate="dropped", id=self._fid(src, nseq), to=dst, copy=copy, reason="node_down")
            return
        c = self.counters  # c.count(dst, typ, DELIVERED, now), inlined
        try:
            c.nodes[dst][typ][1] += 1
        except KeyError:
            c.nodes.setdefault(dst, {}).setdefault(typ, [0, 0, 0])[1] += 1
        rows = c._rows.get(dst)
        if rows is not None:
            k = now // c.bucket_ns
            rows[k if k < c.n_buckets else c.n_buckets - 1][1] += 1
        use = c.use(dst)
        use[fc.RX_FRAMES] += 1
        use[fc.RX_BYTES] += len(data) + 1
        if tr is not None:
            extra = self.skew.delivered(src, dst, data) if self.skew is not None else {}
            tr("frame", now, fate="delivered", id=self._fid(src, nseq), to=dst, copy=copy, delay_ns=now - sent_ns,
               **extra)
        if link.skew != 1.0:
            link.deliver(data + b"\x00", now // MS)
        elif frame is not None:
            link.node.receive_decoded(frame, now // MS)  # decoded once for every recipient (_decoded)
        else:
            link.node.receive(data, now // MS)  # SimLink.deliver without the delimiter round trip
        self._poll(dst)

    # ---- faults ----------------------------------------------------------------

    def _fault(self, f):
        a = f.action
        tr = self.trace
        detail = {"where": f.where}
        if a in NODE_FAULTS:
            nid = f.target
            if nid == "coordinator":
                if f.cluster not in self.clusters:
                    return
                held = self.coordinator.get(f.cluster)
                if held is None:
                    if tr is not None and f.cluster in {self.cluster_of[n] for n in self.traced}:
                        tr("fault", self.now, fault=a, node=None,
                           detail=dict(detail, error="no coordinator known in cluster %s" % f.cluster))
                    return
                nid = held[0]
            link = self.links.get(nid)
            if link is None:
                return  # another shard's node
            if tr is not None and nid in self.traced:
                tr("fault", self.now, fault=a, node=nid, detail=dict(detail, **f.params))
            self._node_fault(a, nid, link, f)
            return
        first = self.index == 0 and tr is not None  # one shard records the fleet-wide faults
        if a == "partition":
            p = f.target
            if first:
                shape = ({"groups": p["groups"]} if p["kind"] == "groups"
                         else {"detail": dict(detail, kind=p["kind"], arg=p["arg"])})
                tr("fault", self.now, fault=a, **dict({"detail": detail}, **shape))
            self.cut = set(map(tuple, p["cut"]))  # replaces an earlier partition, as the Router's
            self._link_events("down", "partition")
        elif a == "heal":
            if first:
                tr("fault", self.now, fault=a, detail=detail)
            self._link_events("up", "heal")
            self.cut = set()
        elif a == "blackout":
            nodes = [0] if f.target == "all" else list(f.target)
            if first:
                tr("fault", self.now, fault="blackout_start", nodes=nodes, detail=dict(detail, duration_s=f.duration_s))
            self.blackout.update(nodes)
            self._call(self.now + int(f.duration_s * S), self._blackout_end, nodes)
        elif a == "intent":
            self.ground.intent(f)
        elif a in shard_contain.STEPS:
            shard_contain.step(self, f)

    def _link_events(self, state, reason):
        if self.trace is None:
            return
        for s, d in sorted(self.cut):
            if s in self.links and s in self.traced and d in self.traced:
                self.trace("link", self.now, state=state, src=s, to=d, reason=reason)

    def _blackout_end(self, nodes):
        self.blackout.difference_update(nodes)
        if self.index == 0 and self.trace is not None:
            self.trace("fault", self.now, fault="blackout_end", nodes=nodes, detail={})

    def _node_fault(self, a, nid, link, f):
        if a == "crash":
            link.crash()
        elif a in ("restart", "power_on", "reset"):
            if a == "reset":
                link.power_cut()
            link.restart()
            self.wake_at[nid] = None
            self._poll(nid)
        elif a == "power_cut":
            link.power_cut()
        elif a == "skew":
            link.skew = f.params["factor"]
        elif a in shard_faults.FRAME_FAULTS:
            shard_faults.start(self, a, nid, f)
        if a in ("restart", "power_on", "reset"):
            self.ground.booted(nid)
        if f.duration_s and a in ("crash", "power_cut"):
            self._call(self.now + int(f.duration_s * S), self._fault_back,
                       "restart" if a == "crash" else "power_on", nid, f)

    def _fault_back(self, action, nid, f):
        link = self.links[nid]
        if self.trace is not None and nid in self.traced:
            self.trace("fault", self.now, fault=action, node=nid, detail={"after": f.action})
        link.restart()
        self.ground.booted(nid)
        self.wake_at[nid] = None
        self._poll(nid)
