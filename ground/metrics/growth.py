"""The replication family (docs/PROTOCOL.md "Joining and splitting"): nodes
added by replication, clusters split, joins refused, and the fleet's node
count over time, read from the ground's node events (ground/replication.py:
node_added, cluster_split, join_refused, daughter_lost, caught_up).

State: one row per such event: it grows with them, never with frames.
"""

from ground.metrics.common import s


class GrowthMetrics:
    VIEWS = ("node",)  # the view kinds its feed() reads (the composer hands it only those)

    FLAT = {
        "nodes_added": ("count", "daughters that became nodes (node_added)"),
        "nodes_final": ("count", "nodes at the end: the header's and every one added"),
        "cluster_splits": ("count", "clusters split in two (cluster_split)"),
        "clusters_final": ("count", "clusters at the end"),
        "join_refusals": ("count", "JOIN, ROSTER or SPLIT frames a node refused, with the reason (join_refused)"),
        "daughters_lost": ("count", "completed daughters the ground could not boot (daughter_lost)"),
        "catch_ups": ("count", "nodes a split passed by that took a CATCHUP into their cluster (caught_up)"),
    }

    def __init__(self, fleet):
        self.fleet = fleet
        self.start = len(fleet.nodes)
        self.added = []  # {"at_s", "node", "parent", "cluster", "lineage", "hw_gen", "frame"}
        self.splits = []
        self.refusals = []
        self.lost = []
        self.caught = []

    def feed(self, v):
        if v.kind != "node" or v.msg is None:
            return
        e = v.msg
        if v.event == "node_added":
            self.added.append({"at_s": s(v.t), **{k: e.get(k) for k in
                                                  ("node", "parent", "cluster", "lineage", "hw_gen", "frame")}})
        elif v.event == "cluster_split":
            self.splits.append({"at_s": s(v.t), **{k: e.get(k) for k in
                                                   ("node", "cluster", "new_cluster", "pivot", "low", "high", "frame")}})
        elif v.event == "join_refused":
            self.refusals.append({"at_s": s(v.t), "node": e.get("node"), "reason": e.get("reason"),
                                  "frame": e.get("frame"), "detail": e.get("detail")})
        elif v.event == "daughter_lost":
            self.lost.append({"at_s": s(v.t), "node": e.get("node"), "detail": e.get("detail")})
        elif v.event == "caught_up":
            self.caught.append({"at_s": s(v.t), **{k: e.get(k) for k in ("node", "cluster", "by", "frame", "hello")}})

    def result(self, span):
        fleet = self.fleet
        flat = {"nodes_added": len(self.added), "nodes_final": len(fleet.nodes),
                "cluster_splits": len(self.splits), "clusters_final": len([c for c, m in fleet.members.items() if m]),
                "join_refusals": len(self.refusals), "daughters_lost": len(self.lost), "catch_ups": len(self.caught)}
        if not (self.added or self.splits or self.refusals or self.lost or self.caught):
            return {"flat": flat}
        over_time = [[0.0, self.start]]
        for i, a in enumerate(self.added):
            over_time.append([a["at_s"], self.start + i + 1])
        return {"flat": flat, "growth": {"nodes_over_time": over_time, "added": self.added, "splits": self.splits,
                                         "refusals": self.refusals, "lost": self.lost, "caught_up": self.caught}}
