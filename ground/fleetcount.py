"""Fleet counters of a lean run (ground/fleetrun.py): what every node sent,
got and lost, by message type, and per cluster in mission-time buckets.

Memory is bounded by the fleet's size, never by the mission's length:

- per node and frame type: [sent, delivered, dropped] (the ground, node 0,
  counts what it received as a recipient);
- per node: drops by reason, and the frames down-converted for it (a
  recipient on an older protocol version, ground/shard_skew.py);
- per cluster: a fixed number of mission-time buckets (at most MAX_BUCKETS,
  each `bucket_ns` wide, chosen from the mission's duration before the run
  starts), each [sent, delivered, dropped];
- per node, its use of its radio and its core (`usage`, USAGE_FIELDS): the
  frames and line bytes it sent by tier (intra-cluster, intra-region,
  inter-region, ground), the frames and bytes delivered to it, and how many
  times its core was polled (what `ground sweep` turns into shares of the
  node's link budget and CPU, ground/sweep.py).

Counters from several shards add up (`merge`); the result is plain JSON
data (`to_json`), and regions are the sums of their clusters. Nothing here
does I/O or reads a clock.
"""

MAX_BUCKETS = 64
S = 1_000_000_000
SENT, DELIVERED, DROPPED = 0, 1, 2
TIERS = ("intra_cluster", "intra_region", "inter_region", "ground")
INTRA_CLUSTER, INTRA_REGION, INTER_REGION, GROUND_TIER = 0, 1, 2, 3
# usage[node]: [frames, bytes] sent per tier (2 * tier, 2 * tier + 1), then these
RX_FRAMES, RX_BYTES, POLLS = 8, 9, 10
USAGE_FIELDS = tuple("%s_%s" % (t, k) for t in TIERS for k in ("frames", "bytes")) + ("rx_frames", "rx_bytes",
                                                                                      "polls")


def bucket_width_ns(duration_s):
    """The width of a bucket: a whole number of mission seconds, doubled from
    1 s until MAX_BUCKETS buckets cover the mission."""
    w = S
    while w * MAX_BUCKETS < duration_s * S:
        w *= 2
    return w


class Counters:
    """One shard's counters (or the merge of several). `cluster_of` maps a
    node id to its cluster; the ground (0) has none."""

    def __init__(self, cluster_of, clusters, duration_s, nodes=None):
        self.cluster_of = cluster_of
        self.bucket_ns = bucket_width_ns(duration_s)
        self.n_buckets = max(1, -(-int(duration_s * S) // self.bucket_ns))
        self.nodes = {}  # node id -> {type: [sent, delivered, dropped]}
        self.reasons = {}  # node id -> {reason: drops}
        self.buckets = {c: [[0, 0, 0] for _ in range(self.n_buckets)] for c in clusters}
        # node id -> its cluster's buckets, for the nodes of `clusters` (nodes: those, if the caller knows them)
        self._rows = ({nid: self.buckets[cluster_of[nid]] for nid in nodes} if nodes is not None
                      else {nid: self.buckets[c] for nid, c in cluster_of.items() if c in self.buckets})
        self.usage = {}  # node id -> [USAGE_FIELDS]: radio and core use (ground/shard.py fills it)
        self.held = 0  # cross-shard frames that arrived before their window closed (ground/fleetrun.py)
        self.converted = {}  # node id -> frames down-converted for it (ground/shard_skew.py)

    def count(self, nid, typ, what, t_ns):
        """One frame of type `typ` sent by (what=SENT) or delivered to / dropped
        for (DELIVERED, DROPPED) node nid at mission t_ns."""
        try:
            cell = self.nodes[nid][typ]
        except KeyError:
            cell = self.nodes.setdefault(nid, {}).setdefault(typ, [0, 0, 0])
        cell[what] += 1
        rows = self._rows.get(nid)
        if rows is None and nid:
            rows = self._other_rows(nid)
        if rows is not None:
            k = t_ns // self.bucket_ns
            rows[k if k < self.n_buckets else self.n_buckets - 1][what] += 1

    def delivered(self):
        """Frames delivered, every node and the ground, in all."""
        return sum(cell[DELIVERED] for row in self.nodes.values() for cell in row.values())

    def _other_rows(self, nid):
        """The bucket rows of node nid's cluster when it is another shard's
        (a frame dropped here for it: a partition's, a severed region's), so
        the per-cluster figures do not depend on the shards; None for the
        ground or an unknown node."""
        c = self.cluster_of.get(nid)
        if c is None:
            return None
        rows = self.buckets.get(c)
        if rows is None:
            rows = self.buckets[c] = [[0, 0, 0] for _ in range(self.n_buckets)]
        self._rows[nid] = rows
        return rows

    def use(self, nid):
        """Node nid's usage row (created on first use)."""
        row = self.usage.get(nid)
        if row is None:
            row = self.usage[nid] = [0] * len(USAGE_FIELDS)
        return row

    def drop(self, nid, typ, reason, t_ns):
        self.count(nid, typ, DROPPED, t_ns)
        r = self.reasons.get(nid)
        if r is None:
            r = self.reasons[nid] = {}
        r[reason] = r.get(reason, 0) + 1

    def size(self):
        """Retained counter cells (the memory the counters hold, in cells)."""
        return (sum(len(r) for r in self.nodes.values()) + sum(len(r) for r in self.reasons.values())
                + sum(len(b) for b in self.buckets.values()) + len(self.usage) + len(self.converted))

    # ---- merging and the result -------------------------------------------

    def state(self):
        """This shard's counters as plain data (what a Ray actor sends back)."""
        return {"nodes": self.nodes, "reasons": self.reasons, "buckets": self.buckets, "held": self.held,
                "usage": self.usage, "converted": self.converted}

    def merge(self, state):
        for nid, row in state["nodes"].items():
            mine = self.nodes.setdefault(nid, {})
            for typ, cell in row.items():
                m = mine.setdefault(typ, [0, 0, 0])
                for i in range(3):
                    m[i] += cell[i]
        for nid, row in state["reasons"].items():
            mine = self.reasons.setdefault(nid, {})
            for k, n in row.items():
                mine[k] = mine.get(k, 0) + n
        for c, rows in state["buckets"].items():
            mine = self.buckets.setdefault(c, [[0, 0, 0] for _ in range(self.n_buckets)])
            for a, b in zip(mine, rows):
                for i in range(3):
                    a[i] += b[i]
        self.held += state["held"]
        for nid, n in state.get("converted", {}).items():
            self.converted[nid] = self.converted.get(nid, 0) + n
        for nid, row in state.get("usage", {}).items():
            mine = self.usage.get(nid)
            if mine is None:
                self.usage[nid] = list(row)
            else:
                for i, v in enumerate(row):
                    mine[i] += v

    def to_json(self, type_name, regions):
        """{"nodes": {id: {type name: {sent, delivered, dropped}}}, "drop_reasons",
        "clusters": {id: totals and buckets}, "regions", "fleet"}. regions: name -> clusters."""
        nodes = {}
        for nid in sorted(self.nodes):
            nodes[str(nid)] = {type_name(t): {"sent": c[0], "delivered": c[1], "dropped": c[2]}
                               for t, c in sorted(self.nodes[nid].items())}
        clusters = {}
        for c in sorted(self.buckets):
            rows = self.buckets[c]
            clusters[str(c)] = {"sent": sum(r[0] for r in rows), "delivered": sum(r[1] for r in rows),
                                "dropped": sum(r[2] for r in rows), "buckets": [list(r) for r in rows]}
        region_out = {}
        for name, cids in sorted(regions.items()):
            rows = [[0, 0, 0] for _ in range(self.n_buckets)]
            for c in cids:
                for a, b in zip(rows, self.buckets.get(c, ())):
                    for i in range(3):
                        a[i] += b[i]
            region_out[str(name)] = {"clusters": len(cids), "sent": sum(r[0] for r in rows),
                                     "delivered": sum(r[1] for r in rows), "dropped": sum(r[2] for r in rows),
                                     "buckets": rows}
        tot = [0, 0, 0]
        for row in self.nodes.values():
            for cell in row.values():
                for i in range(3):
                    tot[i] += cell[i]
        reasons = {}
        for row in self.reasons.values():
            for k, n in row.items():
                reasons[k] = reasons.get(k, 0) + n
        return {
            "bucket_s": self.bucket_ns / S,
            "fleet": {"sent": tot[0], "delivered": tot[1], "dropped": tot[2],
                      "drop_reasons": dict(sorted(reasons.items())), "held_to_window": self.held,
                      "converted": sum(self.converted.values())},
            "nodes": nodes,
            "drop_reasons": {str(n): dict(sorted(r.items())) for n, r in sorted(self.reasons.items())},
            "converted": {str(n): self.converted[n] for n in sorted(self.converted)},
            "clusters": clusters,
            "regions": region_out,
            "usage_fields": list(USAGE_FIELDS),
            "usage": {str(n): self.usage[n] for n in sorted(self.usage)},
        }
