"""Scenarios: what to run, as plain data, validated once at load.

A scenario (docs/SCENARIOS.md) speaks mission time: light delays in ms,
durations and fault times in mission seconds. `load(path)` returns a
`Scenario`; every error is a ConfigError naming file:line and the key.
Link specs are checked by building them with ground.pipeline, so a typo in a
link model fails at load, not mid-run. A scenario that cannot work (a
timeout under the light round trip, a fault after the end, a restart of a
running node, an unknown gate) is refused at load too (ground/guards.py,
ground/gates.py); one that works badly loads with `warnings`.
"""

from __future__ import annotations  # `int | None` read by Python 3.9 too: PyPy shard processes (ground/shard_host.py)

import os
from dataclasses import dataclass, field

from ground import airtime
from ground import contacts as contacts_mod
from ground import gates as gates_mod
from ground import guards
from ground import intent as intent_mod
from ground import lineagefault, linkstate, pipeline, sever
from ground import regions as regions_mod
from ground import wireids
from ground.yamlfile import ConfigError, Located, LocatedList, check_keys, load as load_yaml, loads, number

_TOP = {
    "name", "description", "seed", "duration_s", "time_scale", "election_timeout_ms", "auth_key",
    "clusters", "nodes", "links", "faults", "gates", "telemetry_ms", "contact_plan", "market", "board_journal",
    "downconvert", "regions", "trace", "rollout", "replication", "boards", "addressing",
}
_REPLICATION = {"spares", "max_cluster", "min_cluster", "splits"}
_CONTACT_PLAN = {"path", "text", "format", "epoch", "unplanned"}
_CLUSTER = {"id", "nodes", "firmware", "hw_gen", "lineages", "age_slots"}
_NODE = {"firmware", "hw_gen", "lineage", "age_slots"}
_LINKS = {"default", "intra_cluster", "inter_cluster", "intra_region", "inter_region", "ground", "pairs", "positions"}
_CLASSES = ("default", "intra_cluster", "inter_cluster", "intra_region", "inter_region", "ground")  # link models by tier
_FAULT_ACTIONS = {
    "crash", "restart", "reset", "power_cut", "power_on", "partition", "heal", "blackout", "skew",
    "byzantine", "corruption_burst", "intent", "lineage_fault", "sever", "reinstate",
}
# Ground commands that are steps of the same list but no fault (ground chaos never draws them).
_GROUND_STEPS = {"rollout", "reinstate_region"}  # rollout: pause / resume (ground/rollout_run.py); reinstate_region: R
#                                                  (ground/sever.py)
_STEP_ACTIONS = _FAULT_ACTIONS | _GROUND_STEPS
_FAULT_KEYS = _STEP_ACTIONS | {"at_s", "cluster", "duration_s", "factor", "rewrite", "bitflip", "groups", "nodes"}
GROUND = 0  # the ground's address: links.pairs may name it as src or dst
MAX_MAJOR_VERSIONS = 3  # DESIGN.md: at most 3 concurrent major versions fleet-wide


@dataclass
class NodeSpec:
    id: int
    cluster: int
    firmware: str
    hw_gen: int
    lineage: int
    age_slots: int = 0  # the node's age in market slots: how far its production has degraded
    where: str = ""  # file:line of its firmware (its cluster's entry, or its nodes: override)

    @property
    def fw_version(self):
        major, _, minor = self.firmware.partition(".")
        return int(major), int(minor or 0)


@dataclass
class Fault:
    at_s: float
    action: str
    target: object  # node id, "coordinator", "all", groups..., per action
    cluster: int | None = None
    duration_s: float | None = None
    params: dict = field(default_factory=dict)
    where: str = ""


@dataclass
class Scenario:
    name: str
    path: str
    text: str
    seed: int
    duration_s: float
    time_scale: float
    election_timeout_ms: int
    telemetry_ms: int | None
    auth_key: bytes | None
    nodes: dict  # id -> NodeSpec
    clusters: dict  # cluster id -> [node ids]
    links: Located
    faults: list
    gates: dict
    description: str = ""
    contact_plan: object = None
    market: object = None  # node.config.MarketConfig shared by every node, or None  # ground.contacts.ContactPlan, merged into link_spec
    board_journal: bool = True  # boards send their core-call journal (exact frame replay)
    market_args: dict | None = None  # the MarketConfig arguments, as plain JSON data (a board's board.json)
    downconvert: bool = True  # frames newer than a recipient speaks are down-converted (else dropped: `version`)
    warnings: list = field(default_factory=list)  # "file:line: ..." lines: works, but badly (ground/guards.py)
    # Every region with a market (RegionSpec, ground/regions.py), in file order: `market:` gives
    # one over every node (then `market` above is its MarketConfig), `regions:`
    # several (then `market` is None unless there is one). [] without a market.
    regions: list = field(default_factory=list)
    region_of: dict = field(default_factory=dict)  # node id -> its RegionSpec (nodes with a market only)
    cluster_region: dict = field(default_factory=dict)  # cluster id -> its region number (clusters in a region only)
    positions: dict = field(default_factory=dict)  # cluster id -> (x, y, z) light ms (links.positions)
    trace: dict | None = None  # `trace: {clusters: [...]}`: the clusters a lean run traces (docs/FLEET_RUN.md)
    rollout: object = None  # ground.rollout.Plan (rollout:), or None
    replication: object = None  # ground.replication.Plan (scenario `replication:`), or None: nodes are never added
    boards: dict | None = None  # `boards: {cluster: N}`: the boards of --emulated/--rig are cluster N (ground/mixed.py)
    wire_ids: object = None  # `addressing: region`: ground.wireids.WireIds (the nodes' ids on the wire), else None

    def market_for(self, node_id):
        """The MarketConfig node `node_id` runs (its region's), or None."""
        r = self.region_of.get(node_id)
        return r.market if r is not None else None

    def market_args_for(self, node_id):
        """Its region's MarketConfig arguments as plain data (board.json), or None."""
        r = self.region_of.get(node_id)
        return r.market_args if r is not None else None

    def link_spec(self, src, dst):
        """The link model (a dict for ground.pipeline.build_pipeline) for src -> dst."""
        for pair in self.links.get("pairs", ()):
            if pair["src"] == src and pair["dst"] == dst:
                return {k: v for k, v in pair.items() if k not in ("src", "dst")}
        if dst == GROUND or src == GROUND:
            # The ground link: its own model; a contact plan plans node-node links only.
            return dict(self.links.get("ground", self.links.get("default", {})))
        ca, cb = self.nodes[src].cluster, self.nodes[dst].cluster
        links = self.links
        if ca == cb:
            key = "intra_cluster"
        else:
            key = "inter_cluster"
            ra, rb = self.cluster_region.get(ca), self.cluster_region.get(cb)
            if ra is not None and rb is not None:  # the tier classes, when the scenario has regions
                tier = "intra_region" if ra == rb else "inter_region"
                key = tier if tier in links else key
        spec = links.get(key, links.get("default", {}))
        if self.contact_plan is not None:
            return self.contact_plan.merge(src, dst, spec)
        spec = dict(spec)
        if ca != cb and ca in self.positions and cb in self.positions:
            # Light time between the two clusters' places, on top of the model's own delay.
            spec["delay_ms"] = round((spec.get("delay_ms") or 0) + light_ms(self.positions[ca], self.positions[cb]), 3)
        return spec

    def min_delay_ms(self):
        """Smallest nonzero fixed delay among the link models (None if all zero)."""
        delays = []
        for key in _CLASSES:
            if key in self.links:
                delays.append(self.links[key].get("delay_ms", 0))
        for pair in self.links.get("pairs", ()):
            delays.append(pair.get("delay_ms", 0))
        if self.contact_plan is not None and self.contact_plan.min_delay_ms() is not None:
            delays.append(self.contact_plan.min_delay_ms())
        delays = [d for d in delays if d]
        return min(delays) if delays else None

    def firmware_majors(self):
        return sorted({n.fw_version[0] for n in self.nodes.values()})


def light_ms(a, b):
    """The distance between two points given in light ms: the one-way light time."""
    return sum((x - y) ** 2 for x, y in zip(a, b)) ** 0.5


def load(path):
    """The scenario in the file at `path`; its warnings (if any) go to stderr."""
    import sys

    data, text = load_yaml(path)
    sc = parse(data, text, path)
    for w in sc.warnings:
        sys.stderr.write("warning: %s\n" % w)
    return sc


def load_text(text, path="<string>"):
    return parse(loads(text, path), text, path)


def parse(data, text, path):
    if not isinstance(data, Located):
        raise ConfigError("%s:1: a scenario is a mapping" % path)
    if "fleet" in data:  # a description by numbers: expanded into the explicit form (docs/FLEET.md)
        from ground import fleetdesc

        data = fleetdesc.expand(data)
    check_keys(data, _TOP, "scenario", required=("name", "duration_s", "clusters"))
    seed = number(data, "seed", "scenario", lo=0, default=1, integer=True)
    duration_s = number(data, "duration_s", "scenario", lo=0.001)
    time_scale = number(data, "time_scale", "scenario", lo=1e-6, default=1.0)
    t_ms = number(data, "election_timeout_ms", "scenario", lo=4, default=2000, integer=True)
    tel = number(data, "telemetry_ms", "scenario", lo=1, default=0, integer=True) or None
    key = data.get("auth_key")
    if key is not None:
        try:
            key = bytes.fromhex(str(key))
        except ValueError:
            raise data.error("auth_key", "scenario.auth_key: not hex") from None

    wide = wireids.parse_mode(data) == "region"
    nodes, clusters = _parse_clusters(data, wireids.MAX_ID if wide else 0xEFFF)
    majors = sorted({n.fw_version[0] for n in nodes.values()})
    if len(majors) > MAX_MAJOR_VERSIONS:
        raise data.error("clusters", "scenario: %d firmware major versions %s at once; at most %d may run"
                         % (len(majors), majors, MAX_MAJOR_VERSIONS))
    links = data.get("links", Located())
    _anchor_paths(links, path)
    _check_links(links, nodes, data.where("links"))
    faults = _parse_faults(data.get("faults", LocatedList()), nodes, clusters, data.where("faults"))
    if "market" in data and "regions" in data:
        raise data.error("regions", "scenario: give market: (one region over every node) or regions: (several),"
                         " not both")
    gates = gates_mod.parse(data, "market" in data or "regions" in data)
    sc = Scenario(
        name=str(data["name"]), path=path, text=text, seed=seed, duration_s=duration_s,
        time_scale=time_scale, election_timeout_ms=t_ms, telemetry_ms=tel, auth_key=key,
        nodes=nodes, clusters=clusters, links=links, faults=faults, gates=gates,
        description=str(data.get("description", "")),
    )
    sc.board_journal = _flag(data, "board_journal", sc.board_journal, "must be true or false")
    sc.downconvert = _flag(data, "downconvert", sc.downconvert, "true (convert frames for nodes on an older"
                           " protocol, the default) or false (drop them: reason version)")
    if "market" in data:
        sc.regions = [regions_mod.parse_market(data, sc)]
        sc.market, sc.market_args = sc.regions[0].market, sc.regions[0].market_args
    elif "regions" in data:
        sc.regions = regions_mod.parse_regions(data, sc, wide)
        if len(sc.regions) == 1:
            sc.market, sc.market_args = sc.regions[0].market, sc.regions[0].market_args
    if wide:
        sc.wire_ids = wireids.check(data, sc)
    lineagefault.apply_defects(sc)
    sc.region_of = {n: r for r in sc.regions for n in r.nodes}
    sever.check(sc)
    sc.cluster_region = {c: r.region for r in sc.regions for c in r.clusters}
    sc.positions = _parse_positions(links, clusters)
    if "trace" in data:
        sc.trace = _parse_trace(data, clusters)
    if "boards" in data:  # boards inside a simulated fleet (ground/mixed.py)
        from ground import mixed

        sc.boards = mixed.parse(data, clusters)
    if "replication" in data:
        sc.replication = _parse_replication(data, sc)
    if "contact_plan" in data:
        sc.contact_plan = _parse_contact_plan(data, path, sc)
    for f in sc.faults:
        if f.action == "intent" and not sc.regions:
            raise ConfigError("%s: step intent: the scenario has no market: section, and nodes without the market"
                              " tier have no use for intent; add market: (docs/SCENARIOS.md \"Market\")" % f.where)
    if "rollout" in data:
        from ground import rollout as rollout_mod

        sc.rollout = rollout_mod.parse(data, sc)
    for f in sc.faults:
        if f.action == "rollout" and sc.rollout is None:
            raise ConfigError("%s: step rollout: %s: the scenario has no rollout: section" % (f.where, f.target))
    guards.check_schedule(sc)
    guards.check_timeouts(sc, data)
    guards.check_rounds(sc, data)
    return sc


def _parse_trace(data, clusters):
    """trace: {clusters: [ids]}: the clusters whose frames a lean run traces
    (docs/FLEET_RUN.md), each one of the scenario's clusters."""
    tr = data["trace"]
    if not isinstance(tr, Located):
        raise data.error("trace", "trace: a mapping {clusters: [cluster ids]}, got %r" % (tr,))
    check_keys(tr, {"clusters"}, "trace", required=("clusters",))
    ids = tr["clusters"]
    if not isinstance(ids, list) or not all(isinstance(c, int) and not isinstance(c, bool) for c in ids):
        raise tr.error("clusters", "trace.clusters: a list of cluster ids, e.g. [1, 2, 3], got %r" % (ids,))
    for c in ids:
        if c not in clusters:
            raise tr.error("clusters", "trace.clusters: cluster %d is not in the scenario (clusters %d..%d)"
                           % (c, min(clusters), max(clusters)))
    return {"clusters": sorted(set(ids))}
def _parse_replication(data, sc):
    """replication: {spares, max_cluster, min_cluster, splits} -> ground.replication.Plan
    (docs/SCENARIOS.md "Replication"): daughters become nodes."""
    from ground.replication import Plan

    r = data["replication"]
    if not isinstance(r, Located):
        raise data.error("replication", "scenario.replication: a mapping (spares, max_cluster, min_cluster)")
    check_keys(r, _REPLICATION, "replication")
    spares = number(r, "spares", "replication", lo=1, hi=256, default=16, integer=True)
    top = number(r, "max_cluster", "replication", lo=4, hi=64, default=20, integer=True)
    low = number(r, "min_cluster", "replication", lo=2, hi=top // 2, default=min(5, top // 2), integer=True)
    splits = number(r, "splits", "replication", lo=0, hi=255, default=3, integer=True)
    if max(sc.clusters) + len(sc.clusters) * splits >= regions_mod.REGION_CLUSTERS:
        raise r.error("splits", "replication: %d split numbers for each of %d clusters run past cluster %d"
                      % (splits, len(sc.clusters), regions_mod.REGION_CLUSTERS - 1))
    for c, ids in sorted(sc.clusters.items()):
        if len(ids) > top:
            raise r.error("max_cluster", "replication: cluster %d has %d nodes, above max_cluster %d"
                          % (c, len(ids), top))
    last = max(sc.nodes) + len(sc.clusters) * spares
    if last > 0xEFFF:
        raise r.error("spares", "replication: %d spare ids for each of %d clusters run past node id 61439"
                      % (spares, len(sc.clusters)))
    return Plan(spares, top, low, splits, data.where("replication"))


def _parse_contact_plan(data, path, sc):
    """contact_plan: {path | text, format, epoch, unplanned} -> ContactPlan,
    checked against the scenario's nodes and built into every planned link."""
    cp = data["contact_plan"]
    if not isinstance(cp, Located):
        raise data.error("contact_plan", "contact_plan: a mapping {path: plan file, format: ion|hdtn}")
    check_keys(cp, _CONTACT_PLAN, "contact_plan")
    if ("path" in cp) == ("text" in cp):
        raise cp.error(None, "contact_plan: give exactly one of path (a plan file) and text (the plan inline)")
    fmt = cp.get("format")
    if fmt is not None and fmt not in ("ion", "hdtn"):
        raise cp.error("format", "contact_plan.format: %r unknown (known: ion, hdtn)" % (fmt,))
    unplanned = cp.get("unplanned", "up")
    if unplanned not in ("up", "down"):
        raise cp.error("unplanned", "contact_plan.unplanned: 'up' (keep the link model) or 'down', got %r" % (unplanned,))
    epoch = cp.get("epoch")
    try:
        if "path" in cp:
            base = os.path.dirname(os.path.abspath(path)) if path and not path.startswith("<") else None
            plan = contacts_mod.load(contacts_mod.resolve(base, str(cp["path"])), fmt=fmt, epoch=epoch, unplanned=unplanned)
        else:
            if fmt is None:
                raise cp.error("text", "contact_plan: an inline plan needs format: ion or hdtn")
            plan = contacts_mod.load("%s (contact_plan.text)" % cp.where("text"), text=str(cp["text"]), fmt=fmt,
                                     epoch=epoch, unplanned=unplanned)
    except contacts_mod.PlanError as e:
        raise ConfigError("%s" % e) from None
    for nid, where in sorted(plan.nodes().items()):
        if nid not in sc.nodes:
            raise ConfigError("%s: contact plan: node %d is not in the scenario (nodes: %s)"
                              % (where, nid, ", ".join(str(n) for n in sorted(sc.nodes))))
    for src, dst in plan.pairs():
        try:
            pipeline.build_pipeline(sc.link_spec(src, dst), seed=0)
        except ValueError as e:
            raise ConfigError("%s: contact plan link %d -> %d: %s" % (cp.where(None), src, dst, e)) from None
    return plan


def _firmware(mapping, key, default):
    v = mapping.get(key, default)
    s = str(v)
    major, _, minor = s.partition(".")
    if not major.isdigit() or (minor and not minor.isdigit()):
        raise mapping.error(key, "firmware: %r is not 'major.minor'" % v)
    return s


def _parse_clusters(data, max_id):
    cl = data["clusters"]
    if not isinstance(cl, LocatedList) or not cl:
        raise data.error("clusters", "scenario.clusters: a non-empty list of clusters")
    nodes, clusters = {}, {}
    top = max_id if max_id > 0xEFFF else regions_mod.REGION_CLUSTERS - 1  # cluster ids: as node ids, or the wire's
    for i, c in enumerate(cl):
        check_keys(c, _CLUSTER, "clusters[%d]" % i, required=("id", "nodes"), where=cl.where(i))
        if isinstance(c.get("id"), int) and top < c["id"] <= wireids.MAX_ID:
            raise c.error("id", "cluster id %d: at most %d (more: addressing: region)" % (c["id"], top))
        cid = number(c, "id", "cluster", lo=0, hi=top, integer=True)
        if cid in clusters:
            raise c.error("id", "cluster %d defined twice" % cid)
        ids = c["nodes"]
        if not isinstance(ids, list) or not ids:
            raise c.error("nodes", "cluster %d: nodes must be a non-empty list of node ids" % cid)
        lineages = c.get("lineages", [0])
        if not isinstance(lineages, list) or not lineages:
            raise c.error("lineages", "cluster %d: lineages must be a non-empty list" % cid)
        fw = _firmware(c, "firmware", "1.0")
        hw = _hw_gen(c, "cluster %d" % cid, 1)
        age = number(c, "age_slots", "cluster %d" % cid, lo=0, hi=0xFFFFFFFF, default=0, integer=True)
        for i, nid in enumerate(ids):
            if isinstance(nid, bool) or not isinstance(nid, int) or not 0 < nid <= max_id:
                raise c.error("nodes", "cluster %d: node id %r must be an integer in 1..%d%s" % (
                    cid, nid, max_id, "" if max_id > 0xEFFF else " (more: addressing: region)"))
            if nid in nodes:
                raise c.error("nodes", "node %d is in two clusters" % nid)
            nodes[nid] = NodeSpec(nid, cid, fw, hw, int(lineages[i % len(lineages)]), age, c.where("firmware"))
        clusters[cid] = sorted(ids)
    overrides = data.get("nodes", Located())
    if not isinstance(overrides, Located):
        raise data.error("nodes", "scenario.nodes: a mapping of node id -> settings")
    for nid, o in overrides.items():
        if nid not in nodes:
            raise overrides.error(nid, "nodes: unknown node id %r (not in any cluster)" % nid)
        check_keys(o, _NODE, "nodes.%s" % nid, where=overrides.where(nid))
        n = nodes[nid]
        n.firmware = _firmware(o, "firmware", n.firmware)
        n.where = o.where("firmware") if "firmware" in o else n.where
        n.hw_gen = _hw_gen(o, "nodes.%s" % nid, n.hw_gen)
        n.age_slots = number(o, "age_slots", "nodes.%s" % nid, lo=0, hi=0xFFFFFFFF, default=n.age_slots, integer=True)
        n.lineage = number(o, "lineage", "nodes.%s" % nid, lo=0, hi=255, default=n.lineage, integer=True)
    return nodes, clusters


def _hw_gen(mapping, section, default):
    """A hardware generation the firmware's catalogue defines (node/catalog.py GENS)."""
    from node import catalog

    v = number(mapping, "hw_gen", section, default=default, integer=True)
    if not 1 <= v <= catalog.MAX_GEN:
        raise mapping.error("hw_gen", "%s.hw_gen: generation %r is not defined (firmware/node/catalog.py defines 1..%d;"
                            " a node of another generation would bid for nothing)" % (section, v, catalog.MAX_GEN))
    return v


def _flag(data, key, default, meaning):
    """A true/false scenario key, `default` when absent; file:line otherwise."""
    if key not in data:
        return default
    if not isinstance(data[key], bool):
        raise data.error(key, "scenario.%s: %s, got %r" % (key, meaning, data[key]))
    return data[key]


def _anchor_paths(links, scenario_path):
    """Relative file paths in link models (mahimahi.path, replay.trace) are
    relative to the scenario file's folder, as a user reads them; rewritten
    here once, so every later reader gets a path that works from any cwd.
    A scenario given as text (no file) keeps them as given (cwd)."""
    if not isinstance(links, dict) or not os.path.isfile(scenario_path):
        return
    base = os.path.dirname(os.path.abspath(scenario_path))
    specs = [links[k] for k in _CLASSES if k in links]
    pairs = links.get("pairs")
    specs += pairs if isinstance(pairs, list) else []
    for spec in specs:
        if not isinstance(spec, dict):
            continue
        for key, sub in (("mahimahi", "path"), ("replay", "trace")):
            m = spec.get(key)
            if isinstance(m, dict) and isinstance(m.get(sub), str) and not os.path.isabs(m[sub]):
                m[sub] = os.path.join(base, m[sub])


def _check_links(links, nodes, where):
    if not isinstance(links, Located):
        raise ConfigError("%s: links: expected a mapping, got %r" % (where, links))
    check_keys(links, _LINKS, "links")
    for key in _CLASSES:
        if key in links:
            _check_spec(links, key, links[key])
    pairs = links.get("pairs", [])
    if not isinstance(pairs, list):
        raise links.error("pairs", "links.pairs: a list of {src, dst, ...link model}")
    for i, p in enumerate(pairs):
        if not isinstance(p, Located) or "src" not in p or "dst" not in p:
            raise links.error("pairs", "links.pairs[%d]: needs src and dst" % i)
        for end in ("src", "dst"):
            if p[end] not in nodes and p[end] != GROUND:
                raise p.error(end, "links.pairs[%d].%s: unknown node %r (the scenario's nodes, or 0: the ground)"
                              % (i, end, p[end]))
        if p["src"] == p["dst"]:
            raise p.error("src", "links.pairs[%d]: src and dst are both %r" % (i, p["src"]))
        _check_spec(p, None, {k: v for k, v in p.items() if k not in ("src", "dst")})


def _parse_positions(links, clusters):
    """links.positions: {cluster id: [x, y] or [x, y, z] in light ms}. A link
    between two placed clusters gets the light time between them added to its
    model's delay_ms (docs/FLEET.md "Geometry")."""
    pos = links.get("positions")
    if pos is None:
        return {}
    if not isinstance(pos, Located):
        raise links.error("positions", "links.positions: a mapping of cluster id -> [x, y, z] light ms")
    out = {}
    for cid, xyz in pos.items():
        if cid not in clusters:
            raise pos.error(cid, "links.positions: unknown cluster %r" % (cid,))
        if not isinstance(xyz, list) or len(xyz) not in (2, 3) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in xyz):
            raise pos.error(cid, "links.positions.%s: [x, y] or [x, y, z] in light ms, got %r" % (cid, xyz))
        out[cid] = tuple(float(v) for v in xyz)
    return out


def _check_spec(owner, key, spec):
    if not isinstance(spec, dict):
        raise owner.error(key, "links.%s: a link model is a mapping" % key)
    try:
        pipeline.build_pipeline(dict(spec), seed=0)
    except ValueError as e:
        where = spec.where() if isinstance(spec, Located) else owner.where(key)
        radio = spec.get("radio")
        if isinstance(e, airtime.RadioError):  # the radio setting's own line
            if isinstance(radio, Located):
                where = radio.where(e.key)
            elif isinstance(spec, Located):
                where = spec.where("radio")
        raise ConfigError("%s: links.%s: %s" % (where, key if key else "pairs", e)) from None


def _parse_faults(faults, nodes, clusters, where):
    if not isinstance(faults, list):
        raise ConfigError("%s: faults: a list of {at_s, <action>: target}, got %r" % (where, faults))
    out = []
    for i, f in enumerate(faults):
        check_keys(f, _FAULT_KEYS, "faults[%d]" % i, required=("at_s",),
                   where=faults.where(i) if isinstance(faults, LocatedList) else where)
        actions = [k for k in f if k in _STEP_ACTIONS]
        if len(actions) != 1:
            raise f.error(None, "fault: exactly one action of %s, got %s" % (sorted(_STEP_ACTIONS), actions or "none"))
        action = actions[0]
        at_s = number(f, "at_s", "fault", lo=0)
        target = f[action]
        cluster = f.get("cluster")
        if cluster is not None and cluster not in clusters:
            raise f.error("cluster", "fault: unknown cluster %r" % cluster)
        if action in ("crash", "restart", "reset", "power_cut", "power_on", "skew", "byzantine", "corruption_burst",
                      "reinstate"):
            if target == "coordinator":
                if cluster is None:
                    raise f.error(action, "fault %s: coordinator: say which cluster" % action)
            elif target not in nodes:
                raise f.error(action, "fault %s: unknown node %r" % (action, target))
        if action == "partition":
            target = _parse_partition(f, target, nodes, clusters)
        if action == "lineage_fault":  # every node of one lineage at once (ground/lineagefault.py)
            if cluster is not None:
                raise f.error("cluster", "fault lineage_fault: strikes a lineage wherever it runs; no cluster")
            target, lf_params = lineagefault.parse(f, nodes)
        if action == "intent":
            target = f  # parsed below, in time order: each step's seq follows the one before
            if "nodes" in f:
                raise f.error("nodes", "step intent: goes to the fleet or to a cluster (cluster: N), never to nodes")
        if action == "rollout" and target not in ("pause", "resume"):
            raise f.error(action, "step rollout: %r unknown (pause or resume)" % (target,))
        if action == "blackout":
            if target != "all" and not (isinstance(target, list) and all(n in nodes for n in target)):
                raise f.error(action, "fault blackout: 'all' or a list of node ids")
            if "duration_s" not in f:
                raise f.error(action, "fault blackout: needs duration_s")
        duration = number(f, "duration_s", "fault", lo=0, default=0) or None
        params = {k: f[k] for k in ("factor", "rewrite", "bitflip") if k in f}
        if action == "skew":
            params["factor"] = number(f, "factor", "fault skew", lo=0.01, hi=100)
        if action == "byzantine" and params.get("rewrite", "stale_term") not in ("stale_term",):
            raise f.error("rewrite", "fault byzantine: rewrite %r unknown (known: stale_term)" % params["rewrite"])
        if action == "lineage_fault":
            params = lf_params
        out.append(Fault(at_s, action, target, cluster, duration, params, f.where(action)))
    out.sort(key=lambda x: x.at_s)
    seq = 0
    for x in out:
        if x.action == "intent":
            x.target = intent_mod.parse(x.target, seq)  # the INTENT fields, in msgs order
            seq = x.target[0]
    return out


def _parse_partition(f, target, nodes, clusters):
    """A partition as the directed (src, dst) pairs it cuts, from one of:
    [[a, b], [c, d]] (groups), {isolate: n or [ids]}, {majority_minority: cluster},
    {bridge: {a: [...], b: [...], via: n}}, {ring: [ids]}."""
    def known(ids, what):
        for nid in ids:
            if nid not in nodes:
                raise f.error("partition", "fault partition %s: unknown node %r" % (what, nid))
        return list(ids)

    if isinstance(target, list):
        if len(target) < 2:
            raise f.error("partition", "fault partition: a list of at least two groups of node ids")
        seen = set()
        for g in target:
            if not isinstance(g, list):
                raise f.error("partition", "fault partition: each group is a list of node ids")
            for nid in known(g, "group"):
                if nid in seen:
                    raise f.error("partition", "fault partition: node %r in two groups" % nid)
                seen.add(nid)
        return {"kind": "groups", "groups": [list(g) for g in target],
                "cut": sorted(linkstate.cut_between(target))}
    if not isinstance(target, dict) or len(target) != 1:
        raise f.error("partition", "fault partition: groups, or one of isolate, majority_minority, bridge, ring")
    (kind, arg), = target.items()
    everyone = sorted(nodes)
    if kind == "isolate":
        ids = known(arg if isinstance(arg, list) else [arg], "isolate")
        cut = linkstate.isolate(set(ids), everyone)
    elif kind == "majority_minority":
        if arg not in clusters:
            raise f.error("partition", "fault partition majority_minority: unknown cluster %r" % arg)
        cut = linkstate.majority_minority(clusters[arg])
    elif kind == "bridge":
        if not isinstance(arg, dict) or set(arg) != {"a", "b", "via"}:
            raise f.error("partition", "fault partition bridge: {a: [ids], b: [ids], via: id}")
        cut = linkstate.bridge(known(arg["a"], "bridge"), known(arg["b"], "bridge"), known([arg["via"]], "bridge")[0])
    elif kind == "ring":
        cut = linkstate.ring(known(arg, "ring"))
    else:
        raise f.error("partition", "fault partition: unknown kind %r (groups, isolate, majority_minority, bridge, ring)" % kind)
    return {"kind": kind, "arg": arg, "cut": sorted(cut)}
