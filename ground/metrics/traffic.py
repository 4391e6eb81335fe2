"""Metrics families of the traffic: frame fates, messages and bytes per node
and type, coordination overhead, faults and events (TrafficMetrics), and
version skew, the frames down-converted for an older recipient (SkewMetrics).

Fed the shared views (ground/metrics/fleet.py). State: counters per node and
type, per cluster, per fate, fault and event; and the frames still waiting
for a fate, by id with their recipients. That last map is per-frame memory,
but only for frames in flight: a frame leaves it once every recipient has a
fate, so what stays is the frames a run lost track of (`unfated`).
"""

from ground.metrics.common import rnd

NOT_COORDINATION = ("telemetry", "log")  # every other type is coordination traffic
# The harness's own instrumentation (a board's call journal, for replay): listed
# per node by type, but not the fleet's traffic, so left out of every total and
# share; a run's metrics are the same with the journal on or off.
HARNESS_ONLY = ("journal",)
_IDS_KEPT = 100  # unfated frame ids listed


class TrafficMetrics:
    VIEWS = ("sent", "fate", "fault", "node", "link")  # the view kinds its feed() reads (the composer hands it only those)
    FATES = ("delivered", "dropped", "duplicated", "corrupted")  # the fates among its fate views it reads

    FLAT = {
        "coordination_bytes_share": ("ratio", "coordination bytes / all bytes sent by nodes"),
        "messages_per_node_hour_max": ("1/h", "busiest node's frames sent per mission hour"),
        "bytes_per_node_hour_max": ("B/h", "busiest node's bytes sent per mission hour"),
        "frames_sent": ("count", "frames sent"),
        "frames_delivered": ("count", "deliveries, duplicates included"),
        "frames_dropped": ("count", "drops, all reasons"),
        "frames_duplicated": ("count", "extra copies made"),
        "frames_corrupted": ("count", "copies altered"),
        "unfated_frames": ("count", "sent frames with a recipient that got neither delivered nor dropped"),
        "faults": ("count", "fault events"),
    }

    def __init__(self, fleet):
        self.fleet = fleet
        self.sent = self.bad = self.delivered = self.delivered_copies = self.duplicated = self.corrupted = 0
        self.dropped = {}
        self.pending = {}  # frame id -> set of recipients with no fate yet
        self.per_node = {}  # node id -> {type: [messages, bytes]}
        self.bytes = dict.fromkeys(fleet.members, 0)  # cluster -> bytes its nodes sent
        self.coord_bytes = dict.fromkeys(fleet.members, 0)
        self.faults = {}
        self.node_events = {}
        self.links = {}

    def add_cluster(self, c):
        """A cluster a split made during the run (ground/replication.py)."""
        self.bytes[c] = self.coord_bytes[c] = 0

    def feed(self, v):
        kind = v.kind
        if kind == "sent":
            self.sent += 1
            if v.bad:
                self.bad += 1
            if v.recipients:
                self.pending[v.fid] = v.recipients
            if v.node is None:
                return
            row = self.per_node.setdefault(v.nid, {}).setdefault(v.type, [0, 0])
            row[0] += 1
            row[1] += v.size
            if v.type not in HARNESS_ONLY:
                self.bytes[v.cluster] += v.size
                if v.type not in NOT_COORDINATION:
                    self.coord_bytes[v.cluster] += v.size
        elif kind == "fate":
            fate = v.fate
            if fate == "delivered" or fate == "dropped":
                if fate == "delivered":
                    self.delivered += 1
                    if v.copy > 0:
                        self.delivered_copies += 1
                else:
                    self.dropped[v.reason] = self.dropped.get(v.reason, 0) + 1
                # a final fate: the recipient owes the frame none now (once per delivery: written out here)
                rest = self.pending.get(v.fid)
                to = v.to
                if rest is not None and to != "skip":
                    if to is None:  # dropped before fan-out: a fate for every recipient
                        rest.clear()
                    else:
                        rest.discard(to)
                    if not rest:
                        del self.pending[v.fid]
            elif fate == "duplicated":
                self.duplicated += 1
            elif fate == "corrupted":
                self.corrupted += 1
        elif kind == "fault":
            self.faults[v.name] = self.faults.get(v.name, 0) + 1
        elif kind == "node":
            self.node_events[v.event] = self.node_events.get(v.event, 0) + 1
        elif kind == "link":
            self.links[v.state] = self.links.get(v.state, 0) + 1

    def result(self, span):
        clusters = {}
        total_bytes = total_coord = 0
        for c in sorted(self.bytes, key=int):
            b, cb = self.bytes[c], self.coord_bytes[c]
            clusters[c] = {"bytes": b, "coordination_bytes": cb,
                           "coordination_bytes_share": rnd(cb / b) if b else None}
            total_bytes += b
            total_coord += cb
        nodes = {}
        busiest_msgs = busiest_bytes = None
        for nid in sorted(self.per_node):
            types = {}
            msgs_n = bytes_n = 0
            for type_ in sorted(self.per_node[nid]):
                count, size = self.per_node[nid][type_]
                types[type_] = {"messages": count, "bytes": size, "messages_per_hour": span.per_hour(count),
                                "bytes_per_hour": span.per_hour(size)}
                if type_ in HARNESS_ONLY:
                    continue
                msgs_n += count
                bytes_n += size
            row = {"cluster": int(self.fleet.nodes[nid].cluster), "types": types, "messages": msgs_n,
                   "bytes": bytes_n, "messages_per_hour": span.per_hour(msgs_n), "bytes_per_hour": span.per_hour(bytes_n)}
            nodes[str(nid)] = row
            if row["messages_per_hour"] is not None:
                busiest_msgs = max(busiest_msgs or 0, row["messages_per_hour"])
                busiest_bytes = max(busiest_bytes or 0, row["bytes_per_hour"])
        unfated = sorted(self.pending, key=lambda i: (str(type(i)), i))
        frames = {
            "sent": self.sent,
            "bad": self.bad,
            "delivered": self.delivered,
            "delivered_copies": self.delivered_copies,
            "dropped": dict(sorted(self.dropped.items())),
            "dropped_total": sum(self.dropped.values()),
            "duplicated": self.duplicated,
            "corrupted": self.corrupted,
            "unfated": len(unfated),
            "unfated_recipients": sum(len(v) for v in self.pending.values()),
            "unfated_ids": unfated[:_IDS_KEPT],
        }
        flat = {
            "coordination_bytes_share": rnd(total_coord / total_bytes) if total_bytes else None,
            "messages_per_node_hour_max": busiest_msgs,
            "bytes_per_node_hour_max": busiest_bytes,
            "frames_sent": self.sent,
            "frames_delivered": self.delivered,
            "frames_dropped": frames["dropped_total"],
            "frames_duplicated": self.duplicated,
            "frames_corrupted": self.corrupted,
            "unfated_frames": len(unfated),
            "faults": sum(self.faults.values()),
        }
        return {"clusters": clusters, "nodes": nodes, "frames": frames, "flat": flat,
                "faults": dict(sorted(self.faults.items())), "node_events": dict(sorted(self.node_events.items())),
                "link_events": dict(sorted(self.links.items()))}


class SkewMetrics:
    """Version skew: frames the router down-converted to an older protocol
    version for a recipient (`converted`; not a final fate, the converted
    frame still gets its delivered or dropped)."""

    VIEWS = ("fate",)  # the view kinds its feed() reads (the composer hands it only those)
    FATES = ("converted",)  # the fates among its fate views it reads

    FLAT = {"frames_converted": ("count", "frames down-converted to an older protocol version for a recipient")}

    def __init__(self, fleet):
        self.converted = 0

    def feed(self, v):
        if v.kind == "fate" and v.fate == "converted":
            self.converted += 1

    def result(self, span):
        return {"frames": {"converted": self.converted}, "flat": {"frames_converted": self.converted}}
