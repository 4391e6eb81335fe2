"""The lean path's containment steps (docs/CONTAINMENT.md), as a shard
(ground/shard.py) applies them, with the --sim path's own code:

- lineage_fault: ground/lineagefault.py's struck() turns it into per-node
  faults, as ground/run.py does; each shard applies those on its own nodes
  with its node-fault code (crash, power_cut, reset, byzantine,
  corruption_burst; a clearing_defect is in the nodes' market from boot).
  The first shard records the `lineage_fault` event naming every struck
  node, as --sim does; a struck traced node's own fault is recorded where
  it runs.
- reinstate: every shard runs every step and sends the ground's REINSTATE
  (ground/sever.py reinstate_frame) to its own electors of the node's region
  (shard_faults.GroundSender.send, as intent).
- sever, reinstate_region and a region's `sever: unreplaced` policy:
  ground/sever.py's Severing itself, with this module's Containment in the
  places of the Router and the clock. The cut is applied where a frame is
  sent (dropped, reason `severed`, at each recipient outside the region and
  at the ground), in the shard that holds the region (a region is never
  split across shards), so a frame's fate does not depend on the shards.
  A region that only steps sever: every shard follows its steps (each has
  the same Severing state), the region's shard records the events, and each
  shard sends the ground's SEVER frames to its own electors of the other
  regions at once, as --sim does. A region with `sever: unreplaced`: only
  its shard sees its ACCUSEs to the ground and its coordinator's claims, so
  only that shard decides (policy and steps alike), and the SEVER frames
  are orders in the window exchange (dst ORDER): ground/fleetrun.py hands
  every order to every shard, and each sends the frame to its own
  recipients as the next window opens (on --sim they leave at the sever
  point: here up to one window, at most 1 s, later; none if the sever
  falls in the mission's last window). Either way every
  shard sends every ground frame at the same mission time, so the ground's
  frame count and auth counter move alike in each.
"""

from ground import fleet_contain, lineagefault
from ground import sever as sever_mod
from ground.router import _decode_fields
from ground.regions import region_of
from ground.scenario import Fault
from ground.shard_faults import msgs, wire

STEPS = ("lineage_fault", "reinstate", "sever", "reinstate_region")
ORDER = -1  # an exchanged frame's dst for a ground order: every shard sends it to its own recipients
_CLAIMS = (msgs.HEARTBEAT, msgs.COORDINATOR)


def step(shard, f):
    """A containment step f (one of STEPS) at its time, in this shard."""
    a = f.action
    if a == "lineage_fault":
        _lineage_fault(shard, f)
    elif a == "reinstate":
        region, dst, payload = sever_mod.reinstate_frame(shard.sc, f)
        if shard.index == 0 and shard.trace is not None:
            shard.trace("fault", shard.now, fault=a, node=f.target, detail={"where": f.where, "region": region})
        shard.ground.send(dst, msgs.REINSTATE, payload)
    else:
        shard.contain.step(a, f)


def _lineage_fault(shard, f):
    tr = shard.trace
    detail = {"where": f.where}
    if shard.index == 0 and tr is not None:
        tr("fault", shard.now, fault="lineage_fault", nodes=list(f.target),
           detail=dict(detail, duration_s=f.duration_s, **f.params))
    for kind, nid, params in lineagefault.struck(f):
        link = shard.links.get(nid)
        if link is None:
            continue  # another shard's node
        if tr is not None and nid in shard.traced:
            tr("fault", shard.now, fault=kind, node=nid, detail=dict(detail, lineage_fault=f.params["lineage"],
                                                                      **params))
        shard._node_fault(kind, nid, link, Fault(f.at_s, kind, nid, None, f.duration_s, params, f.where))


class Containment:
    """One shard's severing of regions: a ground/sever.py Severing over this
    object, which stands in for the Router (region_coordinator, _event,
    to_node) and the clock (now_ns, call_at)."""

    def __init__(self, shard):
        self.shard = shard
        sc = shard.sc
        self.region_coordinator = {}  # region -> (node, term), from claims on the region's address
        self.local = False  # to_node sends at once to this shard's recipients (else: an order)
        self.quiet = False  # _event records nothing (another shard's region: that shard records it)
        self.mine = {r.region for r in sc.regions if set(r.clusters) & set(shard.clusters)}
        self._regions = {r.region for r in sc.regions}
        self.severing = sever_mod.Severing(sc, self, self)
        self.times = fleet_contain.Times(sc, shard.auth)  # time to detect and to quarantine, per region
        shard.severed = self.severing.severed  # node -> its severed region: the cut (shard._send, _to_ground)
        # the nodes whose frames the severing learns from: those of this shard's regions with a policy
        self.watch = frozenset(n for r in sc.regions if r.region in self.mine and r.region in self.severing.auto
                               for n in r.nodes)

    def step(self, a, f):
        """A sever or reinstate_region step on region f.target."""
        r = f.target
        if r in self.severing.auto:  # its policy may sever it mid-window: its shard alone decides
            if r in self.mine:
                self.severing.step(a, f)
            return
        self.local, self.quiet = True, r not in self.mine  # every shard follows it, tells its electors now
        try:
            self.severing.step(a, f)
        finally:
            self.local = self.quiet = False

    # ---- the clock, for Severing ------------------------------------------------

    def now_ns(self):
        return self.shard.now

    def call_at(self, t, fn, *args):
        self.shard._call(t, fn, *args)

    # ---- the router, for Severing ------------------------------------------------

    def _event(self, kind, **fields):
        if self.shard.trace is not None and not self.quiet:
            self.shard.trace(kind, self.shard.now, **fields)

    def to_node(self, dst, typ, payload):
        """The ground's frame to the other regions' electors: now, to this
        shard's (local), or an order every shard carries out as the next
        window opens (keyed by address and payload: two orders never tie in
        the exchange's sort)."""
        if self.local:
            self.shard.ground.send(dst, typ, payload)
            return
        now = self.shard.now
        self.shard.outbox.append((now, 0, (dst, bytes(payload)), ORDER, 0, typ, (dst, bytes(payload)), now))

    # ---- frames ------------------------------------------------------------------

    def observe(self, src, typ, dst, line):
        """A frame a watched node sent: an ACCUSE to the ground, or a claim on
        a region's address (the Router's _observe), decoded and told Severing."""
        if typ == msgs.ACCUSE:
            if dst != wire.ADDR_GROUND:
                return
        elif typ not in _CLAIMS or dst & 0xF000 != wire.ADDR_CLUSTER or region_of(dst & 0x0FFF) not in self._regions:
            return
        try:
            frame = wire.decode(line, self.shard.auth)
        except wire.ProtocolError:
            return
        fields = _decode_fields(frame)
        if typ == msgs.ACCUSE:
            if self.shard.sc.wire_ids is not None:  # the accused by the scenario's id (ground/wireids.py)
                fields = self.shard.sc.wire_ids.scenario_fields(src, fields)
            self.severing.observe(src, msgs.name(typ), dst, fields)
        elif typ == msgs.COORDINATOR or fields.get("role") == msgs.ROLE_COORDINATOR:
            self.region_coordinator[dst & 0x1FF] = (src, fields.get("term", 0))

    def cut(self, src, targets, typ, fid, tr):
        """The recipients of src's frame (src severed) inside its region; the
        others get it dropped, reason `severed` (the Router's _send_one)."""
        severed = self.severing.severed
        r = severed[src]
        keep = []
        for t in targets:
            if severed.get(t[0]) == r:
                keep.append(t)
            else:
                self.shard._drop(tr, fid, t[0], typ, "severed")
        return keep
