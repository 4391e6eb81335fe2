"""Region-scoped wire addresses (`addressing: region`, docs/FLEET.md "More
than 61,439 nodes"): which 16-bit id a node, and which cluster number its
cluster, has on the wire when a fleet is too large for one address space.

A frame's header and payload carry 16-bit node ids (1..0xEFFF) and 12-bit
cluster numbers (below 0xE00; docs/PROTOCOL.md). With `addressing: region`
they name nodes and clusters of the sender's region only: each region
numbers its nodes 1..n and its clusters 1..c in the order of their
scenario ids, so ids keep their order inside a region (elections break ties
the same way). The engine keeps the scenario's ids (up to MAX_ID) for
everything it counts, traces and reports, and translates at three places
only: the ids a node's core is built with (ground/run.py node_config, the
region's MarketConfig), the recipients of a frame's address by its
sender's region (ground/shard_route.py), and the address of a ground frame
(ground/shard_faults.py). The frames' bytes are never rewritten: a node
only reaches nodes of its own region, as in the fleets the descriptions
make (no inter-region traffic: each region announces its rounds to its own
clusters). A node's frame to another region's address reaches nobody.
"""

MAX_ID = 0xFFFFFF  # scenario node and cluster ids with `addressing: region` (16,777,215)
MAX_WIRE_NODE = 0xEFFF  # node/wire.py MAX_NODE_ID: a region's nodes at most
MAX_WIRE_CLUSTER = 0xDFF  # a region's clusters at most: from ground/regions.py REGION_CLUSTERS on, region addresses
MODES = ("fleet", "region")


class RegionIds:
    """One region's wire numbering: its nodes 1..n, its clusters 1..c, in
    the order of their scenario ids."""

    def __init__(self, region, nodes, clusters):
        self.region = region
        self.node_wire = {g: i + 1 for i, g in enumerate(sorted(nodes))}
        self.node_global = {w: g for g, w in self.node_wire.items()}
        self.cluster_wire = {c: i + 1 for i, c in enumerate(sorted(clusters))}
        self.cluster_global = {w: c for c, w in self.cluster_wire.items()}

    def market_kw(self, kw):
        """MarketConfig's arguments `kw` (scenario ids) with every id in it
        as the wire has it: roster, electors, auditors, cluster_of, clusters."""
        out = dict(kw)
        n, c = self.node_wire, self.cluster_wire
        for key in ("roster", "electors", "auditors"):
            if out.get(key) is not None:
                out[key] = [n[g] for g in out[key]]
        for key in ("cluster_of", "clusters"):
            if out.get(key) is not None:
                out[key] = [c[k] for k in out[key]]
        return out


class WireIds:
    """Every region's numbering, and the lookups the engine makes by them."""

    def __init__(self, regions):
        """regions: RegionIds, one per region."""
        self.of_node = {g: r for r in regions for g in r.node_wire}  # scenario node id -> its RegionIds
        self.of_cluster = {c: r for r in regions for c in r.cluster_wire}

    def node(self, nid):
        """Node nid's wire id."""
        return self.of_node[nid].node_wire[nid]

    def cluster(self, cid):
        """Cluster cid's wire number."""
        return self.of_cluster[cid].cluster_wire[cid]

    def node_from(self, src, wire_id):
        """The scenario id of the node that wire id names in a frame of src's (None: none in src's region)."""
        return self.of_node[src].node_global.get(wire_id)

    def cluster_from(self, src, wire_cluster):
        """The scenario id of the cluster that wire number names in a frame of src's (None: none in src's region)."""
        return self.of_node[src].cluster_global.get(wire_cluster)

    # ---- what the ground reads of a frame (the trace, containment, a rollout), in the scenario's ids --------
    def scenario_addr(self, src, addr):
        """The address a frame of src's (or to src's region, for the ground's)
        names, in the scenario's ids: a node's id, a cluster's address
        (representable: traced clusters are below 0xE00, fleetrun checks), a
        region's or the broadcast as they are."""
        if addr == 0 or addr == 0xFFFF:
            return addr
        if addr & 0xF000 == 0xF000:
            k = addr & 0x0FFF
            if k > MAX_WIRE_CLUSTER:
                return addr
            c = self.cluster_from(src, k)
            return addr if c is None else 0xF000 | c
        g = self.node_from(src, addr)
        return addr if g is None else g

    def scenario_fields(self, src, fields):
        """A frame's decoded fields (ground/router.py _decode_fields) with the
        node ids and cluster numbers in them in the scenario's."""
        out = dict(fields)
        r = self.of_node[src]
        for k in _NODE_FIELDS:
            v = out.get(k)
            if v:
                out[k] = r.node_global.get(v, v)
        for k in _CLUSTER_FIELDS:
            v = out.get(k)
            if v:
                out[k] = r.cluster_global.get(v, v)
        if isinstance(out.get("entries"), list) and out["entries"] and isinstance(out["entries"][0], (list, tuple)):
            out["entries"] = [[r.node_global.get(e[0], e[0])] + list(e[1:]) for e in out["entries"]]
        return out


# payload fields (node/msgs.py, msgs_tiers.py layouts) that hold a node id or a cluster number
_NODE_FIELDS = ("candidate", "coordinator", "standby", "node", "holder", "accused", "subject", "parent", "pivot", "src")
_CLUSTER_FIELDS = ("cluster", "new_cluster")


def wire_node(sc, nid):
    """Node nid's id on the wire: its region's number for it with addressing: region, else nid itself."""
    return nid if sc.wire_ids is None else sc.wire_ids.node(nid)


def wire_cluster(sc, cid):
    """Cluster cid's number on the wire: its region's number for it with addressing: region, else cid itself."""
    return cid if sc.wire_ids is None else sc.wire_ids.cluster(cid)


def parse_mode(data):
    """The scenario's `addressing:` ("fleet", the default, or "region")."""
    mode = data.get("addressing", "fleet")
    if mode not in MODES:
        raise data.error("addressing", "scenario.addressing: fleet (node ids 1..61439 name one node fleet-wide, the"
                         " default) or region (node ids up to %d; on the wire each region numbers its own),"
                         " got %r" % (MAX_ID, mode))
    return mode


def region_ids(r, num, roster, clusters):
    """RegionIds of region `num` (its section r, its nodes and clusters); a
    region larger than one wire address space is refused at its line."""
    if len(roster) > MAX_WIRE_NODE or len(clusters) > MAX_WIRE_CLUSTER:
        raise r.error("clusters", "region %d: %d nodes in %d clusters; with addressing: region a region holds at most"
                      " %d nodes and %d clusters (one wire address space)"
                      % (num, len(roster), len(clusters), MAX_WIRE_NODE, MAX_WIRE_CLUSTER))
    return RegionIds(num, roster, clusters)


def check(data, sc):
    """WireIds of a scenario with `addressing: region` (sc.regions parsed,
    each with its RegionIds); refuses, at the line of what it names, what
    this addressing does not carry yet: boards (a board's board.json and
    the full path's router name nodes fleet-wide) and replication (a
    daughter's id comes from its parent's spares: the lean path adds no
    nodes either)."""
    if not sc.regions or "market" in data:
        raise data.error("addressing", "scenario: addressing: region needs regions: (each region numbers its own"
                         " nodes on the wire)")
    for key, what in (("boards", "boards inside a simulated fleet"), ("replication", "replication")):
        if key in data:
            raise data.error(key, "scenario: addressing: region does not carry %s yet; use addressing: fleet"
                             " (at most 61,439 nodes)" % what)
    return WireIds([spec.wire for spec in sc.regions])
