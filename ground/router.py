"""The router: every frame between nodes passes through here.

A frame arrives from a node's link (`from_node`); the router decodes its
header, records `sent`, resolves the destination (a node, its cluster, the
broadcast address, or the ground), and for each recipient runs the directed
link's impairment pipeline (ground.pipeline), then schedules the delivery on
the clock. Partitions, blackouts, crashed nodes, version mismatches and
bad frames are decided here, and every frame gets exactly one final fate per
recipient in the trace (delivered or dropped, with a reason).

Version skew: a frame newer than its recipient speaks (the recipient's HELLO
proto_max; before any HELLO, what the scenario's firmware version speaks) is
down-converted for it (ground.downconvert; a `converted` fate, then the
pipeline carries the converted bytes), or, with the scenario's
`downconvert: false`, dropped with reason `version`.

The ground's own frames (CONFIG, INTENT: `to_node`) are signed with the
ground's auth counter, one sequence for the run. Nodes keep a replay
ceiling for the ground as for their peers (firmware/node/replay.py, blocks
of wire.GROUND_BLOCK), so the counter must never repeat on a board, across
runs either: a run on boards starts it from the wall clock
(`ground_counter_base`), and a node's HELLO moves it past the block the node
last accepted from it (the floor it restored at boot).

The same code runs in virtual time (in-process nodes) and in scaled real
time (boards over serial/pty, possibly mixed with in-process nodes).
"""

import random
import time

from ground import airtime
from ground import downconvert
from ground import firmware
from ground import stages as st
from ground.links import LinkError, SimLink
from ground.pipeline import build_pipeline
from ground.regions import REGION_CLUSTERS, region_cluster

wire = firmware.wire
msgs = firmware.msgs

MS = 1_000_000  # ns per ms
_VERSION = wire.VERSION  # what a node speaks before anything says otherwise
# A board's console line between two frames that is not a frame but the board
# saying it soft-rebooted (MicroPython prints it; an update's install and
# rollback soft-reset the board, docs/UPDATES.md): a `rebooted` node event,
# not a bad frame (a rollout counts bad frames as protocol errors).
SOFT_REBOOT_BANNER = b"MPY: soft reboot"


def _decode_fields(frame):
    """Payload fields by name ({} if the payload does not parse)."""
    layout = msgs.layout(frame.type, frame.version)
    if layout is None:
        return {}
    try:
        if frame.type == msgs.STATE:
            term, digest, first, total, entries = msgs.unpack_state(frame.payload)
            return {"term": term, "digest": digest, "first": first, "total": total, "entries": [list(e) for e in entries]}
        if frame.type == msgs.LOG:
            return {"text": msgs.unpack_log(frame.payload)}
        if frame.type == 0xA5:  # CATCHUP: its own layout (node/catchup.py; firmware/ is on sys.path)
            from node.catchup import unpack

            values = unpack(frame.payload)
            return dict(zip(layout[2], values[:7]), entries=[list(e) for e in values[7]])
        return dict(zip(layout[2], msgs.unpack(frame.type, frame.payload, frame.version)))
    except wire.ProtocolError:
        return {}


def _fields_of(type, payload, version=1):
    """_decode_fields of a payload the ground builds ({} for a variable layout: UPD_*)."""
    layout = msgs.layout(type, version)
    if layout is None or layout[1] is None:
        return {}
    values = msgs.unpack(type, payload, version)
    return {k: v.hex() if isinstance(v, bytes) else v for k, v in zip(layout[2], values)}


class Router:
    decode_once = True  # in-process recipients of a frame share its decode (False: each decodes the bytes)

    def __init__(self, scenario, clock, record, seed):
        self.sc = scenario
        self.clock = clock
        self.record = record  # a trace listener: record(event_dict)
        # The clock's methods, bound once: every event and delivery calls them.
        self._now_ns = clock.now_ns
        self._wall_ns = clock.wall_ns
        self._call_at = clock.call_at
        self._time_scale = scenario.time_scale
        self.seed = seed
        self.links = {}  # node id -> link
        self.members = {c: list(ids) for c, ids in scenario.clusters.items()}
        # Each market region's electors share the address cluster_addr(region_cluster(region)) (docs/MARKET.md).
        self._region_electors = {region_cluster(r.region): sorted(r.electors) for r in scenario.regions}
        self._pipelines = {}  # (src, dst) -> Pipeline
        self._out = {}  # src -> {dst: Pipeline}: the same, one dict lookup per recipient
        self.radios = airtime.Radios()  # the nodes' transmitters, for links with `radio:` (ground/airtime.py)
        self.cut = set()  # directed (src, dst) pairs cut by a partition
        self.blackout = set()  # node ids whose links are all down; 0 stands for "all"
        self.byzantine = {}  # node id -> rewrite name
        self.severed = {}  # node id -> its region, severed (ground/sever.py): its frames stay inside it
        self.severing = None  # ground/sever.Severing: fed every decoded frame
        self.corrupting = {}  # node id -> (until_ns, bitflip probability)
        self.coordinator = {}  # cluster -> (node, term) last claimed
        self.region_coordinator = {}  # region -> (node, term) last claimed on the region's address (progress line)
        self.hello = {}  # node id -> hello fields
        # node id -> newest protocol version it speaks: its HELLO's proto_max,
        # until then what its firmware in the scenario speaks
        self.proto_max = {n: firmware.config.protocols(spec.fw_version)[1] for n, spec in scenario.nodes.items()}
        self.next_id = 1
        self.ground_counter = 0  # the ground's next auth counter (a board run: ground_counter_base())
        self._ground_sent = {}  # node id -> the last ground counter sent to it
        self._inflight = {}  # token -> (frame id, recipient, copy): scheduled, not yet delivered
        self._token = 0
        self.frames = 0
        self.bad_frames = 0
        self.version_violation = None
        self.auth = wire.Auth(scenario.auth_key) if scenario.auth_key else None
        self._downconverter = downconvert.Downconverter(scenario.downconvert, self.auth)  # for older recipients
        self._flip_rngs = {}  # src -> its corruption bursts' draws (flip_rng)

    # ---- wiring --------------------------------------------------------

    def add(self, link):
        self.links[link.node_id] = link

    def pipeline(self, src, dst):
        key = (src, dst)
        p = self._pipelines.get(key)
        if p is None:
            p = build_pipeline(self.sc.link_spec(src, dst), seed="%d/%d/%d" % (self.seed, src, dst),
                               radios=self.radios, src=src)
            self._pipelines[key] = p
            self._out.setdefault(src, {})[dst] = p
        return p

    def _event(self, kind, **fields):
        now = self._now_ns()
        fields["kind"] = kind
        fields["mission_ns"] = now
        fields["wall_ns"] = self._wall_ns(self._time_scale)
        self.record(fields)

    # ---- frames from nodes --------------------------------------------

    def from_node(self, src, line):
        """One line frame (no delimiter) read from node `src`'s link."""
        fid = self.next_id
        self.next_id += 1
        self.frames += 1
        now = self.clock.now_ns()
        link = self.links.get(src)
        if link is not None and not link.up:
            # A crashed node "stops answering": whatever its board still
            # writes never reaches space.
            self._event("frame", fate="sent", id=fid, src=src, dst=None, type="?", seq=0, len=len(line) + 1,
                        hex=bytes(line).hex(), msg={})
            self._event("frame", fate="dropped", id=fid, to=None, reason="node_down")
            return
        if bytes(line).strip() == SOFT_REBOOT_BANNER:
            self._event("node", node=src, event="rebooted", detail="node %d: soft reboot (its console said so)" % src)
            return
        try:
            frame = wire.decode(line, self.auth)
        except wire.ProtocolError as e:
            self.bad_frames += 1
            self._event("frame", fate="sent", id=fid, src=src, dst=None, type="?", seq=0, len=len(line) + 1,
                        hex=bytes(line).hex(), msg={}, bad=str(e))
            self._event("frame", fate="dropped", id=fid, to=None, reason="bad_frame")
            self._event("node", node=src, event="bad_frame", detail="from node %d: %s" % (src, e))
            return
        extra = {}
        if frame.src != src:
            extra["claimed_src"] = frame.src  # a board lying about its id: recorded, routed as itself
        fields = _decode_fields(frame)
        rewrite = self.byzantine.get(src)
        if rewrite is not None:
            new = self._rewrite(frame, fields, rewrite)
            if new is not None:
                extra["orig_hex"] = bytes(line).hex()
                line, frame, fields = new
        self._event("frame", fate="sent", id=fid, src=src, dst=frame.dst, type=msgs.name(frame.type),
                    seq=frame.seq, len=len(line) + 1, hex=bytes(line).hex(), msg=fields, **extra)
        self._observe(src, frame, fields)
        if frame.dst == wire.ADDR_GROUND:
            self._to_ground(fid, src, frame.type, bytes(line), now)
            return
        targets = self._recipients(src, frame.dst)
        if not targets:
            self._event("frame", fate="dropped", id=fid, to=None, reason="unknown_dst")
            return
        corrupt = self.corrupting.get(src)
        sent = bytes(line)
        line0 = sent + b"\x00"  # what each recipient's link is given, when nothing happened to the frame
        pipes = self._out.get(src) or {}
        decoded = {}  # the in-process recipients' decodes of line0, one per decode key (SimLink.deliver_shared)
        for dst in targets:
            self._send_one(fid, src, dst, frame, sent, now, corrupt, pipes.get(dst), line0, decoded)
        if self.radios.any:
            self._aired(fid, src, msgs.name(frame.type))

    def _aired(self, fid, src, type_name):
        """A `radio` event for each of src's transmitters that put frame fid
        on the air (once per frame, however many recipients it reached)."""
        for radio in self.radios.aired(src, fid, type_name):
            self._event("radio", **radio)

    def _recipients(self, src, dst):
        if dst == wire.ADDR_BROADCAST:
            return [n for n in sorted(self.links) if n != src]
        if dst & 0xF000 == wire.ADDR_CLUSTER:
            k = dst & 0x0FFF
            if k >= REGION_CLUSTERS and k in self._region_electors:
                return [n for n in self._region_electors[k] if n != src and n in self.links]  # the region's electors
            return [n for n in self.members.get(k, ()) if n != src and n in self.links]
        return [dst] if dst in self.links and dst != src else []

    def _send_one(self, fid, src, dst, frame, sent, now, corrupt, pipe=None, line0=None, decoded=None):
        # Per recipient: the hot path of a run (bench/bench_links.py "Router
        # from_node..._deliver"), so the common case reads few attributes and
        # allocates only what the delivery needs (pipe: the link's Pipeline,
        # looked up by the caller, None the first time; line0: sent and its
        # delimiter, made once per frame; decoded: line0's decodes, shared
        # by the frame's in-process recipients).
        if self.severed and src in self.severed and self.severed.get(dst) != self.severed[src]:
            self._event("frame", fate="dropped", id=fid, to=dst, reason="severed")
            return
        if self.cut and (src, dst) in self.cut:
            self._event("frame", fate="dropped", id=fid, to=dst, reason="partition")
            return
        if self.blackout and (0 in self.blackout or src in self.blackout or dst in self.blackout):
            self._event("frame", fate="dropped", id=fid, to=dst, reason="blackout")
            return
        data = sent
        if frame.version > self.proto_max.get(dst, _VERSION):
            speaks = self.proto_max.get(dst, _VERSION)
            data = self._downconverter.for_recipient(fid, sent, frame, speaks)
            if data.__class__ is not bytes:  # (reason, detail): dropped for this recipient
                self._event("frame", fate="dropped", id=fid, to=dst, reason=data[0],
                            **({"detail": data[1]} if data[1] else {}))
                return
            self._event("frame", fate="converted", id=fid, to=dst, from_version=frame.version, to_version=speaks)
        if corrupt is not None and now < corrupt[0] and data:
            rng = self._flip_rngs.get(src)
            if rng is None:
                rng = self._flip_rngs[src] = flip_rng(self.seed, src)
            data, flipped = st.flip_bits(data, corrupt[1], rng)
            if flipped:
                self._event("frame", fate="corrupted", id=fid, to=dst, how="bitflip")
        if pipe is None:
            pipe = self.pipeline(src, dst)
        out = pipe.route(fid, data, now)
        if out.__class__ is int:  # the common case: the one copy, untouched, delivered (no Packet made)
            self._token = token = self._token + 1
            self._inflight[token] = (fid, dst, 0)
            if data is sent and line0 is not None:
                self._call_at(out, self._deliver_sent, fid, dst, line0, now, token, decoded)
            else:
                self._call_at(out, self._deliver, fid, dst, 0, data, sent, now, token)
            return
        if out.__class__ is str:  # the one copy, untouched, dropped
            self._event("frame", fate="dropped", id=fid, to=dst, copy=0, reason=out)
            return
        for when, p in out:
            if p.copy:
                self._event("frame", fate="duplicated", id=fid, to=dst, copy=p.copy)
            for how in p.how or ():
                self._event("frame", fate="corrupted", id=fid, to=dst, how=how)
            if when.__class__ is int:
                self._token += 1
                self._inflight[self._token] = (fid, dst, p.copy)
                self.clock.call_at(when, self._deliver, fid, dst, p.copy, p.data, sent, now, self._token)
            else:
                self._event("frame", fate="dropped", id=fid, to=dst, copy=p.copy, reason=when)

    def flush_inflight(self):
        """At the end of a run: frames still in space get their fate too."""
        for token in sorted(self._inflight):
            fid, dst, copy = self._inflight[token]
            self._event("frame", fate="dropped", id=fid, to=dst, copy=copy, reason="run_end")
        self._inflight.clear()

    def _deliver(self, fid, dst, copy, payload, sent_data, sent_ns, token=None):
        if token is not None:
            self._inflight.pop(token, None)
        link = self.links.get(dst)
        now = self._now_ns()
        if link is None or not link.up:
            self._event("frame", fate="dropped", id=fid, to=dst, copy=copy, reason="node_down")
            return
        if sent_data is not None and payload != sent_data:
            self._event("frame", fate="delivered", id=fid, to=dst, copy=copy, delay_ns=now - sent_ns, hex=payload.hex())
        else:
            self._event("frame", fate="delivered", id=fid, to=dst, copy=copy, delay_ns=now - sent_ns)
        try:
            link.deliver(payload + b"\x00", now // MS)
        except LinkError as e:
            self._event("node", node=dst, event="unreachable", detail=str(e))
            link.up = False
            return
        self.after_delivery(link)

    def _deliver_sent(self, fid, dst, line, sent_ns, token, decoded=None):
        """_deliver for the common case, copy 0 of a frame as it was sent
        (line: its bytes and delimiter): the same event, written out here
        rather than through _event (one call and one dict less per recipient);
        an in-process node takes the frame's shared decode (decoded, see
        SimLink.deliver_shared) unless decode_once is off."""
        self._inflight.pop(token, None)
        link = self.links.get(dst)
        now = self._now_ns()
        if link is None or not link.up:
            self._event("frame", fate="dropped", id=fid, to=dst, copy=0, reason="node_down")
            return
        self.record({"fate": "delivered", "id": fid, "to": dst, "copy": 0, "delay_ns": now - sent_ns, "kind": "frame",
                     "mission_ns": now, "wall_ns": self._wall_ns(self._time_scale)})
        try:
            if decoded is not None and link.__class__ is SimLink and self.decode_once:
                link.deliver_shared(line, now // MS, decoded)
            else:
                link.deliver(line, now // MS)
        except LinkError as e:
            self._event("node", node=dst, event="unreachable", detail=str(e))
            link.up = False
            return
        self.after_delivery(link)

    def after_delivery(self, link):
        """Hook: the run polls an in-process node right after it got a frame."""

    # ---- what the ground learns from frames ---------------------------

    def _observe(self, src, frame, fields):
        t = frame.type
        if self.severing is not None:
            self.severing.observe(src, msgs.name(t), frame.dst, fields)
        if t == msgs.HELLO and fields:
            self.hello[src] = fields
            self.proto_max[src] = fields["proto_max"]
            self._node_booted(src)
            self._event("node", node=src, event="hello", detail=fields)
            majors = sorted({h["fw_major"] for h in self.hello.values()})
            if len(majors) > 3 and self.version_violation is None:
                self.version_violation = "%d firmware major versions at once: %s" % (len(majors), majors)
                self._event("node", node=src, event="version", detail=self.version_violation)
        elif (t == msgs.HEARTBEAT and fields.get("role") == msgs.ROLE_COORDINATOR) or t == msgs.COORDINATOR:
            spec = self.sc.nodes.get(src)
            # Only claims on the node's own cluster address: an elector's
            # regional seat claims on the region's address, not its cluster's.
            if spec is not None and frame.dst == wire.cluster_addr(spec.cluster):
                self.coordinator[spec.cluster] = (src, fields.get("term", 0))
            elif frame.dst & 0xF000 == wire.ADDR_CLUSTER and (frame.dst & 0x0FFF) in self._region_electors:
                self.region_coordinator[frame.dst & 0x1FF] = (src, fields.get("term", 0))

    def _rewrite(self, frame, fields, how):
        return rewrite(frame, fields, how, self.auth)

    # ---- the ground link ------------------------------------------------
    #
    # The ground (address 0) is a link end like any node: node -> ground and
    # ground -> node frames run the `ground` link model (or a `pairs` entry
    # naming 0). A ground link with no stages (no delay, no loss: the
    # default) delivers at once, exactly as before there was a ground model.

    def _ground_pipeline(self, src, dst):
        """The directed ground link's pipeline, or None if it does nothing."""
        p = self.pipeline(src, dst)
        return p if p.stages or p.state.gated else None

    def _to_ground(self, fid, src, type, data, now):
        if src in self.severed and type != msgs.JOURNAL:  # the ground no longer honours a severed region
            self._event("frame", fate="dropped", id=fid, to=0, reason="severed")
            return
        # A board's JOURNAL is the harness's own record of it (exact frame
        # replay), read off its serial line, not mission traffic: never impaired.
        if type == msgs.JOURNAL or self._ground_pipeline(src, wire.ADDR_GROUND) is None:
            self._event("frame", fate="delivered", id=fid, to=0, copy=0, delay_ns=0)
        else:
            self._over_ground_link(fid, src, wire.ADDR_GROUND, data, now)
            if self.radios.any:
                self._aired(fid, src, msgs.name(type))

    def _over_ground_link(self, fid, src, dst, data, now):
        """One frame over an impaired ground link, either direction. Partitions
        and blackouts are shapes of the node-node links: they leave it alone."""
        for when, pkt in self.pipeline(src, dst).send(st.Packet(fid, data, now), now):
            if pkt.copy:
                self._event("frame", fate="duplicated", id=fid, to=dst, copy=pkt.copy)
            for how in pkt.how or ():
                self._event("frame", fate="corrupted", id=fid, to=dst, how=how)
            if when.__class__ is not int:
                self._event("frame", fate="dropped", id=fid, to=dst, copy=pkt.copy, reason=when)
                continue
            self._token += 1
            self._inflight[self._token] = (fid, dst, pkt.copy)
            then = self._deliver if dst != wire.ADDR_GROUND else self._ground_receives
            self.clock.call_at(when, then, fid, dst, pkt.copy, pkt.data, data, now, self._token)

    def _ground_receives(self, fid, dst, copy, payload, sent_data, sent_ns, token):
        self._inflight.pop(token, None)
        extra = {"hex": payload.hex()} if payload != sent_data else {}
        self._event("frame", fate="delivered", id=fid, to=0, copy=copy, delay_ns=self.clock.now_ns() - sent_ns, **extra)

    def _node_booted(self, nid):
        """Node nid said HELLO: it may have rebooted, and then it refuses our
        counters up to the end of the GROUND_BLOCK block of the last one it
        accepted (its restored floor). Move past it, as a peer does."""
        last = self._ground_sent.get(nid)
        if last is not None:
            floor = (last // wire.GROUND_BLOCK + 1) * wire.GROUND_BLOCK
            if self.ground_counter < floor:
                self.ground_counter = floor & 0xFFFFFFFF

    def to_node(self, dst, type, payload):
        """A frame from the ground (CONFIG to a node, INTENT to the fleet or a
        cluster): recorded, then carried over each recipient's ground link."""
        fid = self.next_id
        self.next_id += 1
        counter = self.ground_counter
        self.ground_counter = (counter + 1) & 0xFFFFFFFF
        line = wire.encode(type, wire.ADDR_GROUND, dst, payload, fid & 0xFF, self.auth, counter)
        self._event("frame", fate="sent", id=fid, src=0, dst=dst, type=msgs.name(type), seq=fid & 0xFF,
                    len=len(line), hex=bytes(line[:-1]).hex(), msg=_fields_of(type, payload))
        data = bytes(line[:-1])
        now = self.clock.now_ns()
        targets = self._recipients(wire.ADDR_GROUND, dst)
        if not targets:
            self._event("frame", fate="dropped", id=fid, to=None, reason="unknown_dst")
            return
        for nid in targets:
            self._ground_sent[nid] = counter
            if self._ground_pipeline(wire.ADDR_GROUND, nid) is None:
                self._deliver(fid, nid, 0, data, None, now)
            else:
                self._over_ground_link(fid, wire.ADDR_GROUND, nid, data, now)
        if self.radios.any:
            self._aired(fid, wire.ADDR_GROUND, msgs.name(type))

    # ---- link state -----------------------------------------------------

    def partition(self, cut):
        """Cut these directed (src, dst) pairs (replacing any earlier partition)."""
        self.cut = set(map(tuple, cut))
        for s, d in sorted(self.cut):
            self._event("link", state="down", src=s, to=d, reason="partition")

    def heal(self):
        for s, d in sorted(self.cut):
            self._event("link", state="up", src=s, to=d, reason="heal")
        self.cut = set()


def rewrite(frame, fields, how, auth):
    """Byzantine fault: alter a node's outgoing frame, re-encoded so its
    checks pass (the harness holds the fleet key, as an insider would):
    (line, frame, fields), or None if this frame is left alone. The Router
    and the lean path's shards (ground/shard_faults.py) alike."""
    if how != "stale_term" or "term" not in fields or fields["term"] == 0:
        return None
    if frame.type not in (msgs.HEARTBEAT, msgs.COORDINATOR, msgs.VOTE_REQUEST):
        return None
    values = list(msgs.unpack(frame.type, frame.payload, frame.version))
    values[0] -= 1
    payload = msgs.pack(frame.type, *values, version=frame.version)
    line, new = downconvert.reencode(frame, payload, frame.version, auth)
    return line, new, _decode_fields(new)


def flip_rng(seed, src):
    """The draws of a corruption burst on src's frames: one stream per
    source, so the lean path's shards draw as the Router does."""
    return random.Random("router/%d/%d" % (seed, src))


GROUND_EPOCH_S = 1_700_000_000  # 2023-11-14; GROUND_BLOCK counters a second from it fit a u32 until 2032


def ground_counter_base(unix_s=None):
    """The first ground auth counter of a run on boards started at unix_s
    (default now): the start of the GROUND_BLOCK block after the one of the
    current wall second. A board refuses ground counters below the end of
    the block it last accepted one from (its floor, kept on flash); a run
    that sent under GROUND_BLOCK frames a second (CONFIG per board, INTENT
    steps: a handful) has its counters under the base of any run started in a
    later second, so the next run is never refused. In-process runs keep 0:
    their nodes start afresh, and their traces stay the same run after run."""
    s = int(time.time() if unix_s is None else unix_s) - GROUND_EPOCH_S
    return ((s + 1) * wire.GROUND_BLOCK) & 0xFFFFFFFF
