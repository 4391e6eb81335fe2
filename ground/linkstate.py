"""Whether a directed link is up, by mission time: contact windows,
blackouts and partitions (LinkState, over Schedules of time windows), and the
partition helpers that say which directed links a fault cuts. Pure: the
caller passes mission time in integer ns. A link's Pipeline
(ground/pipeline.py) gates each frame on its LinkState at send time: a frame
sent while the link is down is dropped; frames already in flight are
delivered. A caller can ask `state.is_up(now_ns)` and
`state.next_change_ns(now_ns)` (when a schedule may next change it).
"""

from bisect import bisect_right

from ground.stages import BLACKOUT, PARTITION


class Schedule:
    """Time windows [start_ns, end_ns): sorted, overlapping ones merged."""

    __slots__ = ("starts", "ends")

    def __init__(self, windows):
        ws = []
        for w in windows:
            try:
                s, e = w
            except (TypeError, ValueError):
                raise ValueError("a window must be a pair (start, end), got %r" % (w,)) from None
            if s.__class__ is bool or e.__class__ is bool or not isinstance(s, int) or not isinstance(e, int) or s < 0 or e <= s:
                raise ValueError("a window must be integer ns with 0 <= start < end, got %r" % (w,))
            ws.append((s, e))
        ws.sort()
        starts, ends = [], []
        for s, e in ws:
            if ends and s <= ends[-1]:
                if e > ends[-1]:
                    ends[-1] = e
            else:
                starts.append(s)
                ends.append(e)
        self.starts = starts
        self.ends = ends

    def contains(self, t_ns):
        i = bisect_right(self.starts, t_ns) - 1
        return i >= 0 and t_ns < self.ends[i]

    def next_edge_ns(self, t_ns):
        """The first window start or end strictly after t_ns, or None."""
        i = bisect_right(self.starts, t_ns)
        if i > 0 and t_ns < self.ends[i - 1]:
            return self.ends[i - 1]
        return self.starts[i] if i < len(self.starts) else None

    def __iter__(self):
        return iter(zip(self.starts, self.ends))

    def __repr__(self):
        return "Schedule(%r)" % list(self)


class LinkState:
    """Whether a directed link is up, by mission time.

    contacts   Schedule or None: if given, the link is up only inside these
               windows (contact windows); outside it is down, reason `blackout`
    blackouts  Schedule or None: the link is down inside these windows,
               reason `blackout`
    cut()/heal()  a partition (faults decide when), reason `partition`; it
               wins over a blackout when both apply
    """

    __slots__ = ("contacts", "blackouts", "partitioned", "gated")

    def __init__(self, contacts=None, blackouts=None):
        self.contacts = contacts
        self.blackouts = blackouts
        self.partitioned = False
        self.gated = contacts is not None or blackouts is not None  # any reason to look at all

    def cut(self):
        self.partitioned = self.gated = True

    def heal(self):
        self.partitioned = False
        self.gated = self.contacts is not None or self.blackouts is not None

    def down_reason(self, now_ns):
        """None if the link is up at now_ns, else PARTITION or BLACKOUT."""
        if not self.gated:
            return None
        if self.partitioned:
            return PARTITION
        if self.blackouts is not None and self.blackouts.contains(now_ns):
            return BLACKOUT
        if self.contacts is not None and not self.contacts.contains(now_ns):
            return BLACKOUT
        return None

    def is_up(self, now_ns):
        return self.down_reason(now_ns) is None

    def next_change_ns(self, now_ns):
        """When a schedule may next change the state (partitions are not
        scheduled here), or None. The state may stay the same across it, e.g.
        a blackout ending outside any contact window."""
        best = None
        for s in (self.contacts, self.blackouts):
            if s is not None:
                e = s.next_edge_ns(now_ns)
                if e is not None and (best is None or e < best):
                    best = e
        return best


# -- partitions: which directed links to cut --------------------------------
# Pure functions over node ids; each returns a set of (src, dst) pairs, never
# (n, n). Groups are taken in the order given, so the caller decides who is
# in the minority.

def cut_between(groups):
    """Cut every link between nodes of different groups (both directions).
    Nodes in no group are untouched."""
    groups = [list(g) for g in groups]
    where = {}
    for gi, g in enumerate(groups):
        for n in g:
            if n in where and where[n] != gi:
                raise ValueError("node %r is in two groups" % (n,))
            where[n] = gi
    return {(a, b) for a in where for b in where if where[a] != where[b]}


def isolate(node_or_nodes, nodes):
    """Cut one node (or a set of nodes, e.g. a cluster) off from the rest."""
    if isinstance(node_or_nodes, (set, frozenset, list, tuple)):
        inside = set(node_or_nodes)
    else:
        inside = {node_or_nodes}
    return cut_between([inside, [n for n in nodes if n not in inside]])


def majority_minority(nodes, minority_size=None):
    """Split into a majority and a minority (the last minority_size nodes in
    the order given; default the largest minority, (n - 1) // 2)."""
    nodes = list(nodes)
    k = (len(nodes) - 1) // 2 if minority_size is None else minority_size
    if k.__class__ is not int or not 0 <= k or 2 * k >= len(nodes) and len(nodes) > 0:
        raise ValueError("minority_size must be an integer below half of %d nodes, got %r" % (len(nodes), minority_size))
    return cut_between([nodes[:len(nodes) - k], nodes[len(nodes) - k:]])


def bridge(group_a, group_b, bridge_node):
    """Two groups that can talk only through bridge_node, which keeps its
    links to both."""
    a = [n for n in group_a if n != bridge_node]
    b = [n for n in group_b if n != bridge_node]
    return cut_between([a, b])


def ring(nodes):
    """Each node keeps links only to its two neighbours in the order given
    (the last and first are neighbours)."""
    nodes = list(nodes)
    n = len(nodes)
    keep = set()
    for i, a in enumerate(nodes):
        for b in (nodes[(i - 1) % n], nodes[(i + 1) % n]):
            keep.add((a, b))
    return {(a, b) for a in nodes for b in nodes if a != b and (a, b) not in keep}


def by_cluster(cluster_of):
    """Cut every link between clusters: cluster_of maps node -> cluster."""
    groups = {}
    for n, c in cluster_of.items():
        groups.setdefault(c, []).append(n)
    return cut_between(groups.values())
