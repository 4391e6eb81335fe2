"""Severing a compromised region (federation) from the rest of the fleet and
from the ground (docs/CONTAINMENT.md "Severing a federation").

A region is severed when the ground orders it (a scenario step `{at_s, sever:
R}`) or, for a region whose entry says `sever: unreplaced`, when it is judged
compromised: an auditor's ACCUSE reaches the ground against the region's
coordinator and one auction cycle (the region's slot_ms) later that node
still holds the region (no other elector has claimed it). From the sever point
on, the router delivers no frame a node of the region sends to anyone outside
it, the ground included (fate dropped, reason `severed`): the others and the
ground stop honouring its frames, leases and prices; the region keeps talking
to itself. The trace gets a `fault` event `sever` naming the region, its
nodes, the cause and the trigger (when the accusation came or the order was
given), from which the metrics count time to sever in cycles.

A step `{at_s, reinstate_region: R}` lifts it: from then on the router
carries the region's frames out of it again (a `fault` event
`reinstate_region` naming the region, its nodes and how long it was cut
off); a region reinstated may be severed again (by order, or by its policy).

The ground also tells the other regions' electors (SEVER, on their region
address: severed 1 at the sever point, 0 at a reinstatement), and their
cores refuse whatever names the severed region from then on, counted as
`severed` (node/severing.py): the core's own cut, for frames the router
cannot stop (a radio every region hears). The severed region's own nodes are
not told.
"""

from ground import wireids
from ground.firmware import msgs, wire
from ground.regions import region_cluster
from ground.yamlfile import ConfigError

UNREPLACED = "unreplaced"  # the one automatic policy


def check(sc):
    """Sever steps name a region of the scenario; reinstate steps a node of a
    region with auditors (docs/CONTAINMENT.md); file:line otherwise."""
    known = sorted(r.region for r in sc.regions)
    may_sever = {r.region for r in sc.regions if getattr(r, "sever", None) == UNREPLACED}
    for f in sorted(sc.faults, key=lambda f: f.at_s):
        if f.action == "reinstate_region":
            if f.target not in known:
                raise ConfigError("%s: step reinstate_region: unknown region %r (regions: %s)" % (f.where, f.target,
                                                                                                  known))
            if f.target not in may_sever:
                raise ConfigError("%s: step reinstate_region: region %d is never severed before it (no earlier sever"
                                  " step, no sever: unreplaced)" % (f.where, f.target))
            continue
        if f.action == "sever":
            may_sever.add(f.target)
        if f.action == "reinstate":
            r = sc.region_of.get(f.target) if f.target != "coordinator" else None
            if r is None or not r.market.auditors:
                raise ConfigError("%s: step reinstate: node %r is in no region with auditors (market.auditors), so"
                                  " nobody keeps a quarantine to take it out of" % (f.where, f.target))
        if f.action != "sever":
            continue
        if not known:
            raise ConfigError("%s: step sever: the scenario has no regions (market: or regions:) to sever" % f.where)
        if f.target not in known:
            raise ConfigError("%s: step sever: unknown region %r (regions: %s)" % (f.where, f.target, known))
        if len(known) == 1:
            raise ConfigError("%s: step sever: region %d is the scenario's only region; severing it leaves nothing"
                              % (f.where, f.target))


def reinstate_frame(sc, f):
    """A `reinstate` step's frame from the ground (the node out of
    quarantine, docs/CONTAINMENT.md): (region, its electors' address,
    REINSTATE payload); ground/run.py and the lean path (ground/shard_contain.py)."""
    region = sc.region_of[f.target].region
    return (region, wire.cluster_addr(region_cluster(region)),
            msgs.pack(msgs.REINSTATE, region, wireids.wire_node(sc, f.target)))


class Severing:
    """The ground's severing of regions during one run; the router asks
    `severed` (node id -> region) for every frame and feeds `observe`."""

    def __init__(self, sc, router, clock):
        self.router = router
        self.clock = clock
        self.regions = {r.region: r for r in sc.regions}
        self.auto = {r.region for r in sc.regions if getattr(r, "sever", None) == UNREPLACED}
        self.region_of = {n: r.region for r in sc.regions for n in r.nodes}
        self.severed = {}  # node id -> its severed region
        self.when = {}  # region -> sever ns
        self.pending = {}  # region -> (accused, accused_ns)

    def observe(self, src, type_name, dst, fields):
        """A frame node src sent (decoded): an ACCUSE to the ground may start
        a region's one-cycle grace."""
        if type_name != "accuse" or dst != 0 or not fields:
            return
        accused = fields.get("accused")
        r = self.region_of.get(accused)
        if r is None or r not in self.auto or r in self.when or r in self.pending:
            return
        held = self.router.region_coordinator.get(r)
        if held is None or held[0] != accused:
            return  # not the region's coordinator: the quarantine handles it
        now = self.clock.now_ns()
        self.pending[r] = (accused, now)
        self.clock.call_at(now + self.regions[r].market.slot_ms * 1_000_000, self._deadline, r)

    def _deadline(self, r):
        accused, since = self.pending.pop(r)
        if r in self.when:
            return
        held = self.router.region_coordinator.get(r)
        if held is not None and held[0] != accused:
            self.router._event("node", node=accused, event="sever_averted",
                               detail="region %d: node %d replaced its accused coordinator %d within one cycle"
                                      % (r, held[0], accused))
            return
        self.sever(r, "coordinator %d accused and not replaced within one cycle" % accused, since)

    def step(self, action, f):
        """A scenario step: sever region f.target, or reinstate it."""
        if action == "sever":
            self.sever(f.target, "ordered by the ground", where=f.where)
        else:
            self.reinstate(f.target, f.where)

    def reinstate(self, r, where=""):
        """The ground lifts region r's severance now: its frames leave it
        again. A region not severed now: the event says so, nothing changes."""
        spec = self.regions[r]
        since = self.when.pop(r, None)
        detail = {"region": r, "where": where}
        if since is None:
            detail["error"] = "region %d is not severed" % r
            self.router._event("fault", fault="reinstate_region", nodes=[], detail=detail)
            return
        for n in spec.nodes:
            self.severed.pop(n, None)
        detail["severed_ns"] = self.clock.now_ns() - since
        self.router._event("fault", fault="reinstate_region", nodes=list(spec.nodes), detail=detail)
        self._tell(r, 0)

    def _tell(self, r, severed):
        """SEVER to every other region's electors (node/severing.py)."""
        for o in sorted(self.regions):
            if o != r:
                self.router.to_node(wire.cluster_addr(region_cluster(o)), msgs.SEVER, msgs.pack(msgs.SEVER, r, severed))

    def sever(self, r, cause, trigger_ns=None, where=""):
        """Sever region r now (idempotent)."""
        if r in self.when:
            return
        now = self.clock.now_ns()
        spec = self.regions[r]
        self.when[r] = now
        for n in spec.nodes:
            self.severed[n] = r
        detail = {"region": r, "cause": cause, "trigger_ns": now if trigger_ns is None else trigger_ns,
                  "slot_ms": spec.market.slot_ms}
        if where:
            detail["where"] = where
        self.router._event("fault", fault="sever", nodes=list(spec.nodes), detail=detail)
        self._tell(r, 1)
