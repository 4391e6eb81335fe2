"""Metrics families that read coordinator claims: split brain and
overlapping claims (ClaimMetrics), and leader churn (ChurnMetrics).

A claim, its start, its end and its term come from the shared reading
(ground/metrics/fleet.py): a view's `claim_term` (this frame claims) and
`ended` (claims this event closed, as (node, cluster, start_ns, last_ns)).
State: per cluster, per term claimed the nodes that claimed it (split brain),
the closed claim intervals (overlaps), and the highest term (churn): it grows
with claims and terms, never with frames.
"""

from ground.metrics.common import rnd, s


class ClaimMetrics:
    VIEWS = ("sent", "down", "close")  # the view kinds its feed() reads (the composer hands it only those)

    FLAT = {
        "split_brain": ("count", "(cluster, term) pairs claimed by two or more nodes"),
        "overlap_count": ("count", "intervals where two nodes of one cluster both claimed coordinator"),
        "overlap_s": ("s", "total length of those intervals"),
    }

    def __init__(self, fleet):
        self.clusters = list(fleet.members)
        self.claimers = {c: {} for c in fleet.members}  # cluster -> term -> {node: first claiming frame id}
        self.split = {c: {} for c in fleet.members}  # cluster -> term -> split-brain record
        self.intervals = {c: [] for c in fleet.members}  # cluster -> [(start_ns, last_ns, node)]

    def add_cluster(self, c):
        """A cluster a split made during the run (ground/replication.py)."""
        self.clusters.append(c)
        self.claimers[c], self.split[c], self.intervals[c] = {}, {}, []

    def feed(self, v):
        for nid, c, start, last in v.ended:
            self.intervals[c].append((start, last, nid))
        if v.claim_term is None:
            return
        term, c = v.claim_term, v.cluster
        who = self.claimers[c].setdefault(term, {})
        if v.nid not in who:
            who[v.nid] = v.fid
            if len(who) >= 2:
                rec = self.split[c].setdefault(term, {"term": term})
                rec["nodes"] = sorted(who)
                rec["frame_ids"] = [who[k] for k in sorted(who)]
                rec.setdefault("at_s", s(v.t))

    def result(self, span):
        clusters, n_split, all_overlaps = {}, 0, []
        for c in sorted(self.clusters, key=int):
            split = [self.split[c][k] for k in sorted(self.split[c])]
            overlaps = _overlaps(self.intervals[c])
            clusters[c] = {
                "split_brain": {"count": len(split), "events": split},
                "overlap": {"count": len(overlaps), "s": rnd(sum(o["s"] for o in overlaps)), "intervals": overlaps},
            }
            n_split += len(split)
            all_overlaps += overlaps
        flat = {"split_brain": n_split, "overlap_count": len(all_overlaps),
                "overlap_s": rnd(sum(o["s"] for o in all_overlaps))}
        return {"clusters": clusters, "flat": flat}


def _overlaps(intervals):
    """Maximal intervals where two or more nodes claim at once (closed ends)."""
    points = []
    for start, end, node in intervals:
        points.append((start, 0, node))  # starts before ends at the same instant
        points.append((end, 1, node))
    points.sort(key=lambda p: (p[0], p[1]))
    active = {}
    out = []
    cur = None
    for at, kind, node in points:
        if kind == 0:
            active[node] = active.get(node, 0) + 1
            if cur is None and len(active) >= 2:
                cur = {"start_ns": at, "nodes": set(active)}
            elif cur is not None:
                cur["nodes"].add(node)
        else:
            active[node] -= 1
            if not active[node]:
                del active[node]
            if cur is not None and len(active) < 2:
                t0 = cur["start_ns"]
                out.append({"start_s": s(t0), "end_s": s(at), "s": s(at - t0), "nodes": sorted(cur["nodes"])})
                cur = None
    return out


class ChurnMetrics:
    VIEWS = ("sent", "down")  # the view kinds its feed() reads (the composer hands it only those)

    FLAT = {
        "leader_changes": ("count", "coordinator changes, all clusters"),
        "leader_changes_per_hour": ("1/h", "coordinator changes per mission hour, all clusters"),
    }

    def __init__(self, fleet):
        self.clusters = list(fleet.members)
        self.max_term = dict.fromkeys(fleet.members)
        self.term_node = dict.fromkeys(fleet.members)  # who claimed the highest term first
        self.changes = {c: [] for c in fleet.members}  # {"at_s", "from", "to", "term"}

    def add_cluster(self, c):
        """A cluster a split made during the run (ground/replication.py)."""
        self.clusters.append(c)
        self.max_term[c] = self.term_node[c] = None
        self.changes[c] = []

    def feed(self, v):
        if v.claim_term is None:
            return
        c, term, nid = v.cluster, v.claim_term, v.nid
        if self.max_term[c] is None or term > self.max_term[c]:
            if self.term_node[c] is not None and self.term_node[c] != nid:
                self.changes[c].append({"at_s": s(v.t), "from": self.term_node[c], "to": nid, "term": term})
            self.max_term[c] = term
            self.term_node[c] = nid

    def result(self, span):
        clusters = {}
        total = 0
        for c in self.clusters:
            n = len(self.changes[c])
            clusters[c] = {"leader": {"changes": n, "changes_per_hour": span.per_hour(n), "events": self.changes[c],
                                      "max_term": self.max_term[c]}}
            total += n
        return {"clusters": clusters, "flat": {"leader_changes": total, "leader_changes_per_hour": span.per_hour(total)}}
