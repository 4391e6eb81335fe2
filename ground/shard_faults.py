"""The lean path's faults on frames and from the ground: byzantine,
corruption_burst and intent steps, as a shard (ground/shard.py) applies
them, with the Router's behaviour (ground/router.py, ground/run.py):

- byzantine: the node's outgoing frames are rewritten (router.rewrite: a
  stale term, re-encoded so its checks pass) before they are counted,
  traced (with `orig_hex`) and routed; for duration_s if given;
- corruption_burst: for duration_s (default 1 s), each copy of the node's
  frames to another node gets its bits flipped with the burst's
  probability before its link model, from the same per-source draws as the
  Router's (router.flip_rng), so a shard flips the same bits the --sim path
  does; the ground link is left alone, as there;
- intent: the ground's INTENT frame to the fleet or a cluster, over each
  recipient's ground link (GroundSender.send: the containment steps'
  REINSTATE and SEVER frames go the same way, ground/shard_contain.py). Every shard runs every intent step (faults are
  scheduled in every shard) and carries it to its own nodes; the first
  shard counts and traces it as sent. The ground's auth counter is kept per
  shard as the Router keeps it (a node's reboot moves it past the node's
  restored floor), and the frame's seq is the ground's frame count.

State lives on the shard: `byzantine` {node: rewrite}, `corrupting` {node:
(until_ns, probability)}, and this module's GroundSender.
"""

from ground import firmware
from ground import router as router_mod
from ground import stages as st
from ground import wireids
from ground.fleetcount import SENT
from ground.regions import region_cluster

wire = firmware.wire
msgs = firmware.msgs
S = 1_000_000_000
FRAME_FAULTS = ("byzantine", "corruption_burst")


def start(shard, a, nid, f):
    """A byzantine or corruption_burst step on nid (a node of this shard)."""
    now = shard.now
    if a == "byzantine":
        shard.byzantine[nid] = f.params.get("rewrite", "stale_term")
        if f.duration_s:
            shard._call(now + int(f.duration_s * S), shard.byzantine.pop, nid, None)
    else:
        shard.corrupting[nid] = (now + int((f.duration_s or 1.0) * S), float(f.params.get("bitflip", 0.01)))


def rewritten(shard, src, line):
    """(line, orig_hex): the byzantine rewrite of src's frame, or (line, None)."""
    try:
        frame = wire.decode(line, shard.auth)
    except wire.ProtocolError:
        return line, None
    new = router_mod.rewrite(frame, router_mod._decode_fields(frame), shard.byzantine[src], shard.auth)
    if new is None:
        return line, None
    return bytes(new[0]), line.hex()


def flipped(shard, src, d, data, fid, tr):
    """The copy of src's frame for d under a corruption burst (or data)."""
    until, ber = shard.corrupting[src]
    if shard.now >= until or not data:
        return data
    rng = shard.flip_rngs.get(src)
    if rng is None:
        rng = shard.flip_rngs[src] = router_mod.flip_rng(shard.seed, src)
    data, n = st.flip_bits(data, ber, rng)
    if n and tr is not None and d in shard.traced:
        tr("frame", shard.now, fate="corrupted", id=fid, to=d, how="bitflip")
    return data


class GroundSender:
    """The ground's frames to this shard's nodes (intent, REINSTATE, SEVER)."""

    def __init__(self, shard):
        self.shard = shard
        self.counter = 0  # the ground's next auth counter (a sim run starts at 0, as the Router)
        self.frames = 0  # the ground's frames so far: their ids and seqs
        self.sent_to = {}  # node -> the last counter sent to it

    def booted(self, nid):
        """Node nid rebooted: it refuses counters up to the end of the block
        of the last one it took (Router._node_booted)."""
        last = self.sent_to.get(nid)
        if last is not None:
            floor = (last // wire.GROUND_BLOCK + 1) * wire.GROUND_BLOCK
            if self.counter < floor:
                self.counter = floor & 0xFFFFFFFF

    def intent(self, f):
        sh = self.shard
        # addressing: region: the cluster's address as its region numbers it (ground/wireids.py)
        dst = wire.ADDR_BROADCAST if f.cluster is None else wire.cluster_addr(wireids.wire_cluster(sh.sc, f.cluster))
        everyone = None if sh.sc.wire_ids is None or f.cluster is None else list(sh.sc.clusters[f.cluster])
        if sh.index == 0 and sh.trace is not None and self._seen(everyone or self._everyone(dst)):
            sh.trace("fault", sh.now, fault="intent", detail={"where": f.where, "to": "fleet" if f.cluster is None
                                                              else "cluster %d" % f.cluster})
        self.send(dst, msgs.INTENT, msgs.pack(msgs.INTENT, *f.target), everyone)

    def _everyone(self, dst):
        """Every recipient of a ground frame to dst, fleet-wide (the Router's
        _recipients for the ground): the fleet, a node, a cluster or a region's electors."""
        sc = self.shard.sc
        if dst == wire.ADDR_BROADCAST:
            return sorted(sc.nodes)
        if dst & 0xF000 != wire.ADDR_CLUSTER:  # a node (the rollout's frames, ground/fleet_rollout.py)
            return [dst] if dst in sc.nodes else []
        k = dst & 0x0FFF
        for r in getattr(sc, "regions", None) or ():
            if k == region_cluster(r.region):
                return list(r.electors)
        return list(sc.clusters.get(k, ()))

    def _seen(self, everyone):
        """Some traced node is among these recipients (the trace's sent line has its fates)."""
        traced = self.shard.traced
        return bool(traced) and any(n in traced for n in everyone)

    def send(self, dst, typ, payload, everyone=None):
        """The ground's frame to address dst (ground/router.py to_node), carried
        to this shard's recipients over their ground links. Every shard sends
        every ground frame (so the ground's frame count and auth counter move
        alike in each); the first counts it as sent and traces it. everyone:
        its recipients fleet-wide, when not those of dst (_everyone)."""
        sh = self.shard
        now = sh.now
        self.frames += 1
        counter = self.counter
        self.counter = (counter + 1) & 0xFFFFFFFF
        line = wire.encode(typ, wire.ADDR_GROUND, dst, payload, self.frames & 0xFF, sh.auth, counter)
        data = bytes(line[:-1])
        fid = sh._fid(0, self.frames)
        everyone = self._everyone(dst) if everyone is None else everyone
        targets = [n for n in everyone if n in sh.links]
        tr = sh.trace
        if sh.index == 0:  # the first shard counts and traces the ground's frame as sent
            sh.counters.count(0, typ, SENT, now)
            if tr is not None and self._seen(everyone):
                tr("frame", now, fate="sent", id=fid, src=0, dst=dst if sh.sc.wire_ids is None or not everyone else
                   sh.sc.wire_ids.scenario_addr(everyone[0], dst), type=msgs.name(typ), seq=self.frames & 0xFF,
                   len=len(line), hex=data.hex(), msg=router_mod._fields_of(typ, payload))
        for nid in targets:
            self.sent_to[nid] = counter
            ttr = tr if tr is not None and nid in sh.traced else None
            p = sh._pipeline(0, nid)
            if not (p.stages or p.state.gated):
                sh._deliver(nid, 0, data, typ, now, 0, self.frames)
                continue
            for when, pkt in p.send(st.Packet(fid, data, now), now):
                if ttr is not None:
                    if pkt.copy:
                        ttr("frame", now, fate="duplicated", id=fid, to=nid, copy=pkt.copy)
                    for how in pkt.how or ():
                        ttr("frame", now, fate="corrupted", id=fid, to=nid, how=how)
                if when.__class__ is int:
                    sh._call(when, sh._deliver, nid, pkt.copy, pkt.data, typ, now, 0, self.frames, None)
                else:
                    sh.counters.drop(nid, typ, when, now)
                    if ttr is not None:
                        ttr("frame", now, fate="dropped", id=fid, to=nid, copy=pkt.copy, reason=when)
