"""Role segments per node and fault marks over mission time, for the
timeline PNG (ground/report.py): what each node said it was, when.

A node's role is what its last heartbeat or telemetry said, coordinator from
a COORDINATOR frame, candidate from a (pre)vote request, follower when it
first speaks after going down, "down" from a crash / power_cut / reset, and
"unknown" before its first frame. A node is marked quarantined while at
least one elector holds it so (the electors' LOG lines "quarantine node N
<state>: ...", docs/CONTAINMENT.md). State: one segment per role change per
node, one interval per quarantine and one mark per fault (they grow with role
changes, quarantines and faults, not with frames).
"""

import re

from ground.metrics.common import s
from ground.metrics.fleet import ROLE_NAMES

DOWN = "down"
UNKNOWN = "unknown"  # before a node's first frame
_Q = re.compile(r"^quarantine node (\d+) (\w+): ")


class TimelineMetrics:
    VIEWS = ("sent", "down", "fault", "close")  # the view kinds its feed() reads (the composer hands it only those)

    def __init__(self, fleet):
        self.fleet = fleet
        self.roles = dict.fromkeys(fleet.nodes, UNKNOWN)
        self.segments = {nid: [] for nid in fleet.nodes}  # node -> [[start_ns, end_ns or None, role]]
        self.fault_marks = []
        self.holders = {}  # node -> {elector} that hold it quarantined now
        self.quarantined = {}  # node -> [[start_ns, end_ns or None]]

    def _set(self, nid, role, t):
        if self.roles.get(nid, UNKNOWN) == role:
            return
        segs = self.segments.setdefault(nid, [])  # a node added during the run starts here
        if segs and segs[-1][1] is None:
            segs[-1][1] = t
        segs.append([t, None, role])
        self.roles[nid] = role

    def feed(self, v):
        kind = v.kind
        if kind == "sent":
            if v.node is None:
                return
            if v.type == "log" and v.msg is not None:
                self._quarantine(v)
            if v.came_up:
                self._set(v.nid, "follower", v.t)
            if not v.own:
                return
            if v.type == "coordinator" and v.claim_term is not None:
                self._set(v.nid, "coordinator", v.t)
            elif v.hb is not None or v.tel is not None:
                role = (v.hb or v.tel)[0]
                self._set(v.nid, ROLE_NAMES[role] if 0 <= role < len(ROLE_NAMES) else UNKNOWN, v.t)
            elif v.type in ("prevote_request", "vote_request"):
                self._set(v.nid, "candidate", v.t)
        elif kind == "down":
            self._set(v.nid, DOWN, v.t)
        elif kind == "fault":
            mark = {"at_s": s(v.t), "fault": v.name, "nodes": [x for x in v.targets if isinstance(x, int)]}
            if v.groups is not None:
                mark["groups"] = [[x for x in g if isinstance(x, int)] for g in v.groups]
            self.fault_marks.append(mark)
        elif kind == "close":
            for segs in list(self.segments.values()) + list(self.quarantined.values()):
                if segs and segs[-1][1] is None:  # [start, end, role] and [start, end]
                    segs[-1][1] = v.t

    def _quarantine(self, v):
        q = _Q.match(v.msg.get("text") or "")
        if q is None:
            return
        node, held = int(q.group(1)), q.group(2) == "quarantined"
        holders = self.holders.setdefault(node, set())
        was = bool(holders)
        if held:
            holders.add(v.nid)
        else:
            holders.discard(v.nid)
        spans = self.quarantined.setdefault(node, [])
        if holders and not was:
            spans.append([v.t, None])
        elif was and not holders:
            spans[-1][1] = v.t

    def result(self, span):
        start_ns, end_ns = self.fleet.start_ns, span.end_ns
        nodes = {}
        for nid in sorted(self.fleet.nodes):
            raw = list(self.segments.get(nid, ()))
            first = raw[0][0] if raw else end_ns
            if first > start_ns:
                raw.insert(0, [start_ns, first, UNKNOWN])
            segs = []
            for a, b, role in raw:
                if b <= a:
                    continue  # a role held for no time (e.g. follower, then at once coordinator)
                if segs and segs[-1][2] == role:
                    segs[-1][1] = s(b)
                else:
                    segs.append([s(a), s(b), role])
            nodes[str(nid)] = {"cluster": int(self.fleet.nodes[nid].cluster), "segments": segs,
                               "quarantined": [[s(a), s(end_ns if b is None else b)] for a, b in
                                               self.quarantined.get(nid, ())]}
        return {"nodes": nodes, "faults": self.fault_marks, "start_s": s(start_ns), "end_s": s(end_ns)}
