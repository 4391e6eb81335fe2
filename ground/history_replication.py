"""The history checker's replication invariant (docs/PROTOCOL.md "Joining
and splitting"): nodes added during a run, and clusters split.

  unique_ids   a daughter never reuses an id: a `node_added` event names an id
               no node of the header and no earlier daughter had.

It also keeps the checker's map of who is in which cluster current: a
daughter is a recipient of its cluster's frames from its `node_added` on, and
after a `cluster_split` the upper half's frames go to the new cluster (so
frame fates and coordinator claims are read against the map of the moment).
"""

INVARIANTS = ("unique_ids",)


class ReplicationChecker:
    def __init__(self, nodes, members, violate, cluster_region=None):
        self.nodes = nodes  # the checker's node id -> cluster (shared, updated here)
        self.members = members  # the checker's cluster -> set of node ids (shared, updated here)
        # the checker's cluster -> region (shared, updated here): a cluster made by a split is in its parent's region
        self.cluster_region = cluster_region if cluster_region is not None else {}
        self._violate = violate
        self.added = {}  # daughter id -> trace line of its node_added

    def node_event(self, e, line):
        """Feed one `node` event; True when it changed who is in which cluster."""
        ev = e.get("event")
        if ev == "node_added":
            self._added(e, line)
            return True
        if ev == "cluster_split":
            self._split(e, line)
            return True
        return False

    def _added(self, e, line):
        nid, cluster = e.get("node"), e.get("cluster")
        if not isinstance(nid, int) or not isinstance(cluster, int):
            self._violate("trace", "line %d: node_added without integer node and cluster" % line, lines=[line])
            return
        if nid in self.added or nid in self.nodes:
            first = self.added.get(nid)
            where = "an earlier daughter (line %d)" % first if first else "a node of the header"
            self._violate("unique_ids", "line %d: daughter of node %s added as node %d, the id of %s"
                          % (line, e.get("parent"), nid, where), lines=[line] + ([first] if first else []))
            return
        self.added[nid] = line
        self.nodes[nid] = cluster
        self.members.setdefault(cluster, set()).add(nid)

    def _split(self, e, line):
        c, new, high = e.get("cluster"), e.get("new_cluster"), e.get("high")
        if not isinstance(c, int) or not isinstance(new, int) or not isinstance(high, list):
            self._violate("trace", "line %d: cluster_split without cluster, new_cluster and high" % line, lines=[line])
            return
        if c in self.cluster_region:  # else its leases, keyed by (region, resource), were lost with the move
            self.cluster_region.setdefault(new, self.cluster_region[c])
        for n in high:
            self.members.get(c, set()).discard(n)
            self.members.setdefault(new, set()).add(n)
            self.nodes[n] = new
