"""Metrics family of radio airtime (AirtimeMetrics): time on air per node
and message type, duty cycle over the run and over the busiest sliding
mission hour, the share of airtime coordination takes, how long frames
waited for the transmitter, and the frames the radio dropped.

Fed the `radio` views (one per transmission: ground/airtime.py's
Transmitter, recorded by the router) and the `dropped` fates with a radio
reason. A run without `radio:` links has no radio events: its figures are
None (radio_drops 0) and its result has no `airtime` section.

A transmission counts once it has started: the router records it when the
frame is sent, with the start its transmitter gave it (later, when frames
queue or wait for the duty cycle), so one that would start after the run's
end is left out of every figure but the wait.

State: counters per node and type; per node the transmissions that started
within the last hour (for the sliding-hour figure), bounded by what a node
can send in an hour, which its duty cycle limits; and those recorded but not
started yet (its transmit queue).
"""

import collections

from ground.metrics.common import NS, rnd
from ground.metrics.traffic import NOT_COORDINATION

HOUR_NS = 3600 * NS
RADIO_REASONS = ("duty_cycle", "dwell", "oversize")  # ground/airtime.py's drop reasons


class _Node:
    __slots__ = ("frames", "airtime", "coord", "types", "window", "in_window", "hour_max", "wait_max", "queued")

    def __init__(self):
        self.frames = self.airtime = self.coord = self.in_window = self.hour_max = self.wait_max = 0
        self.types = {}  # type -> [frames, airtime ns]
        self.window = collections.deque()  # (start ns, airtime ns) started within the last hour
        self.queued = collections.deque()  # (start ns, airtime ns, type) recorded, not started yet

    def started(self, upto_ns):
        """Account the queued transmissions that started before upto_ns."""
        q = self.queued
        while q and q[0][0] < upto_ns:
            start, a, type_ = q.popleft()
            self.frames += 1
            self.airtime += a
            row = self.types.get(type_)
            if row is None:
                row = self.types[type_] = [0, 0]
            row[0] += 1
            row[1] += a
            if type_ not in NOT_COORDINATION:
                self.coord += a
            # the sliding hour, counted by start as the transmitter counts its budget
            w = self.window
            while w and w[0][0] <= start - HOUR_NS:
                self.in_window -= w.popleft()[1]
            w.append((start, a))
            self.in_window += a
            if self.in_window > self.hour_max:
                self.hour_max = self.in_window


class AirtimeMetrics:
    VIEWS = ("radio", "fate")  # the view kinds its feed() reads (the composer hands it only those)
    FATES = ("dropped",)  # the fates among its fate views it reads

    FLAT = {
        "airtime_frames": ("count", "transmissions on a radio link (a broadcast is one)"),
        "airtime_s_max": ("s", "busiest node's time on air"),
        "airtime_duty_max": ("ratio", "busiest node's time on air / mission time"),
        "airtime_hour_duty_max": ("ratio", "most time on air of any node in one sliding mission hour / 1 h"),
        "airtime_coordination_share": ("ratio", "coordination time on air / all nodes' time on air"),
        "airtime_wait_s_max": ("s", "longest a frame waited for its transmitter (queue and duty cycle)"),
        "radio_drops": ("count", "frame drops by the radio (duty_cycle, dwell, oversize), per recipient"),
    }

    def __init__(self, fleet):
        self.fleet = fleet
        self.nodes = {}  # node id (0: the ground) -> _Node
        self.drops = {}

    def feed(self, v):
        if v.kind == "radio":
            nid = 0 if v.nid is None else v.nid
            n = self.nodes.get(nid)
            if n is None:
                n = self.nodes[nid] = _Node()
            wait = v.start - v.t
            if wait > n.wait_max:
                n.wait_max = wait
            n.queued.append((v.start, v.airtime, v.type))
            n.started(v.t + 1)
        elif v.kind == "fate" and v.fate == "dropped" and v.reason in RADIO_REASONS:
            self.drops[v.reason] = self.drops.get(v.reason, 0) + 1

    def _row(self, n, span):
        mission = span.mission_ns
        types = {}
        for t in sorted(n.types):
            frames, air = n.types[t]
            types[t] = {"frames": frames, "airtime_s": rnd(air / NS), "share": rnd(air / n.airtime) if n.airtime else None}
        return {
            "frames": n.frames,
            "airtime_s": rnd(n.airtime / NS),
            "duty": rnd(n.airtime / mission) if mission else None,
            "hour_duty_max": rnd(n.hour_max / HOUR_NS),
            "coordination_airtime_s": rnd(n.coord / NS),
            "coordination_share": rnd(n.coord / n.airtime) if n.airtime else None,
            "coordination_duty": rnd(n.coord / mission) if mission else None,
            "wait_s_max": rnd(n.wait_max / NS),
            "types": types,
        }

    def result(self, span):
        for n in self.nodes.values():
            n.started(span.end_ns + 1)
        drops_n = sum(self.drops.values())
        flat = dict.fromkeys(self.FLAT)
        flat["airtime_frames"] = sum(n.frames for n in self.nodes.values())
        flat["radio_drops"] = drops_n
        out = {"flat": flat}
        if not self.nodes and not drops_n:
            return out
        rows = {str(nid): self._row(n, span) for nid, n in sorted(self.nodes.items()) if nid != 0}
        node_rows = [self.nodes[nid] for nid in self.nodes if nid != 0]
        if node_rows:
            busiest = max(n.airtime for n in node_rows)
            total = sum(n.airtime for n in node_rows)
            flat["airtime_s_max"] = rnd(busiest / NS)
            flat["airtime_duty_max"] = rnd(busiest / span.mission_ns) if span.mission_ns else None
            flat["airtime_hour_duty_max"] = rnd(max(n.hour_max for n in node_rows) / HOUR_NS)
            flat["airtime_coordination_share"] = rnd(sum(n.coord for n in node_rows) / total) if total else None
            flat["airtime_wait_s_max"] = rnd(max(n.wait_max for n in node_rows) / NS)
        section = {"nodes": rows, "drops": dict(sorted(self.drops.items()))}
        if 0 in self.nodes:
            section["ground"] = self._row(self.nodes[0], span)
        out["airtime"] = section
        return out
