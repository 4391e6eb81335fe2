"""What a watcher sees of a running fleet: the latest heartbeat, telemetry and
HELLO of every node, fed from a run's trace events as they are recorded.

    fleet = Fleet(run.header()["nodes"])
    fleet.feed(event)                 # every recorded event, in order
    fleet.agreed(1)                   # the coordinator cluster 1 agrees on, or None

Live (ground/live.py) keeps one and hands it to the predicates a test waits
on; nothing here reads a clock or a device.
"""

_S = 1_000_000_000


class NodeState:
    """What the ground last heard from one node."""

    __slots__ = ("id", "cluster", "role", "term", "coordinator", "standby", "alive", "suspect", "heard_s", "hello",
                 "boots", "down", "last")

    def __init__(self, nid, cluster):
        self.id = nid
        self.cluster = cluster
        self.role = None  # 0 follower, 1 candidate, 2 coordinator, 3 standby (msgs.ROLE_*)
        self.term = None
        self.coordinator = None  # who it names
        self.standby = None
        self.alive = None  # telemetry: members it hears
        self.suspect = None
        self.heard_s = None  # mission s of its latest routed frame
        self.hello = None  # its latest HELLO's fields
        self.boots = 0  # HELLOs seen
        self.down = False  # crashed / powered off by a fault, not heard since
        self.last = {}  # message type -> the decoded fields of its latest such frame (market_tel, ...)

    def copy(self):
        c = NodeState(self.id, self.cluster)
        for k in self.__slots__:
            setattr(c, k, getattr(self, k))
        c.last = dict(self.last)
        return c

    def __repr__(self):
        return "<node %d c%d role %s term %s coord %s%s>" % (self.id, self.cluster, self.role, self.term,
                                                            self.coordinator, " down" if self.down else "")


ROLE_COORDINATOR = 2


class Fleet:
    """The latest heartbeat / telemetry / HELLO of every node, from the trace
    events as they are recorded. Predicates given to Live.wait_for get one."""

    def __init__(self, header_nodes):
        self.now_s = 0.0
        self.nodes = {}
        for key, info in header_nodes.items():
            self.nodes[int(key)] = NodeState(int(key), int(info["cluster"]))
        self.claims = {}  # (cluster, term) -> set of nodes that claimed coordinator
        self.faults = []  # (mission s, fault event)

    def feed(self, e):
        t = e.get("mission_ns")
        if isinstance(t, int):
            self.now_s = max(self.now_s, t / _S)
        kind = e.get("kind")
        if kind == "node" and e.get("event") in ("node_added", "cluster_split"):  # ground/replication.py
            if e["event"] == "node_added" and e.get("node") not in self.nodes:
                self.nodes[e["node"]] = NodeState(e["node"], int(e["cluster"]))
            elif e["event"] == "cluster_split":
                for n in e.get("high") or ():
                    if n in self.nodes:
                        self.nodes[n].cluster = int(e["new_cluster"])
            return
        if kind == "fault":
            self.faults.append((self.now_s, e))
            if e.get("fault") in ("crash", "power_cut", "reset") and e.get("node") in self.nodes:
                self.nodes[e["node"]].down = True
            return
        if kind != "frame" or e.get("fate") != "sent" or e.get("dst") is None or "bad" in e:
            return
        n = self.nodes.get(e.get("src"))
        if n is None:
            return
        n.down = False
        n.heard_s = self.now_s
        msg = e.get("msg") or {}
        type_ = e.get("type")
        if type_ in ("heartbeat", "coordinator", "standby") and e["dst"] != 0xF000 | n.cluster:
            return  # a regional seat's election traffic (docs/MARKET.md), not the node's cluster role
        n.last[type_] = msg
        if type_ in ("heartbeat", "telemetry"):
            for k in ("role", "term", "coordinator", "standby"):
                if k in msg:
                    setattr(n, k, msg[k])
            if type_ == "telemetry":
                n.alive, n.suspect = msg.get("alive"), msg.get("suspect")
        elif type_ == "coordinator":
            n.role, n.term, n.coordinator, n.standby = ROLE_COORDINATOR, msg.get("term"), n.id, msg.get("standby")
        elif type_ == "hello" and e.get("dst") == 0:  # a node says HELLO to the ground and to its cluster
            n.hello = dict(msg)
            n.boots += 1
        if n.role == ROLE_COORDINATOR and n.term is not None and type_ in ("heartbeat", "telemetry", "coordinator"):
            self.claims.setdefault((n.cluster, n.term), set()).add(n.id)

    def copy(self):
        f = Fleet({})
        f.now_s = self.now_s
        f.nodes = {k: v.copy() for k, v in self.nodes.items()}
        f.claims = {k: set(v) for k, v in self.claims.items()}
        f.faults = list(self.faults)
        return f

    # ---- questions a test asks -------------------------------------------

    def members(self, cluster):
        return sorted(n for n, s in self.nodes.items() if s.cluster == cluster)

    def node(self, nid):
        return self.nodes[nid]

    def coordinator(self, cluster=None):
        """The node a majority of the cluster's members name as coordinator in
        the term it claims, or None. cluster None: the only cluster."""
        cluster = self._cluster(cluster)
        members = self.members(cluster)
        votes = {}
        for m in members:
            s = self.nodes[m]
            if not s.down and s.coordinator and s.term is not None:
                votes[(s.coordinator, s.term)] = votes.get((s.coordinator, s.term), 0) + 1
        for (c, term), k in sorted(votes.items(), key=lambda x: -x[1]):
            cs = self.nodes.get(c)
            if k >= len(members) // 2 + 1 and cs is not None and not cs.down and cs.role == ROLE_COORDINATOR \
                    and cs.term == term:
                return c
        return None

    def agreed(self, cluster=None, nodes=None):
        """The coordinator every listed node (default: the cluster's members
        not down) names, in one term, itself claiming it; else None."""
        cluster = self._cluster(cluster)
        nodes = [n for n in self.members(cluster) if not self.nodes[n].down] if nodes is None else list(nodes)
        named = {(self.nodes[n].coordinator, self.nodes[n].term) for n in nodes}
        if len(named) != 1:
            return None
        c, term = named.pop()
        cs = self.nodes.get(c)
        if not c or cs is None or cs.role != ROLE_COORDINATOR or cs.term != term:
            return None
        return c

    def standby(self, cluster=None):
        c = self.coordinator(cluster)
        return None if c is None else (self.nodes[c].standby or None)

    def term(self, cluster=None):
        """The highest term any member of the cluster reports."""
        cluster = self._cluster(cluster)
        terms = [self.nodes[n].term for n in self.members(cluster) if self.nodes[n].term is not None]
        return max(terms) if terms else None

    def claimants(self, cluster=None, term=None):
        """Nodes that claimed coordinator in `term` (default: every term): {term: set}."""
        cluster = self._cluster(cluster)
        out = {t: set(v) for (c, t), v in self.claims.items() if c == cluster and (term is None or t == term)}
        return out

    def _cluster(self, cluster):
        if cluster is not None:
            return cluster
        clusters = {s.cluster for s in self.nodes.values()}
        if len(clusters) != 1:
            raise ValueError("say which cluster: this fleet has clusters %s" % sorted(clusters))
        return clusters.pop()

    def __repr__(self):
        return "<Fleet at %.1f s: %s>" % (self.now_s, ", ".join(repr(s) for _, s in sorted(self.nodes.items())))
