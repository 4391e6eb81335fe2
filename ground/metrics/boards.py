"""Metrics family of what nodes say about themselves in TELEMETRY
(BoardMetrics): free heap and its low-water mark, and the frames each node
refused, by reason, over the whole run.

Protocol 3 TELEMETRY (docs/PROTOCOL.md) carries u32 counters since the
node's boot (`rejects`, `unknown_src`, `long_lines`, `replayed`) and two
heap figures the board shell samples (`heap_free` now, `heap_min` since
boot; 0 = not known: in-process nodes have no heap to report). Older nodes
send only `bad_frames` (u16, since boot). A counter that goes down means the
node booted again, so the run's total is the sum of each boot's last value:
nothing is lost across reboots and nothing is counted twice.

State: per node its latest counters and the totals of its earlier boots;
it grows with nodes, not with frames.
"""

from ground.metrics.common import rnd

COUNTERS = ("rejects", "unknown_src", "long_lines", "replayed")  # v3 TELEMETRY, u32 since boot
LEGACY = "bad_frames"  # v1/v2 TELEMETRY, u16 since boot (counted as `rejects`)


class _Node:
    __slots__ = ("now", "before", "boots", "heap_min", "heap_free", "reports")

    def __init__(self):
        self.now = dict.fromkeys(COUNTERS, 0)  # this boot's latest values
        self.before = dict.fromkeys(COUNTERS, 0)  # the sum of earlier boots' last values
        self.boots = 1
        self.heap_min = None  # the lowest heap_min any of its reports gave (bytes)
        self.heap_free = None  # its latest report's free heap (bytes)
        self.reports = 0

    def report(self, msg):
        self.reports += 1
        values = {k: msg.get(k) for k in COUNTERS}
        if values["rejects"] is None and isinstance(msg.get(LEGACY), int):
            values["rejects"] = msg[LEGACY]
        values = {k: v for k, v in values.items() if isinstance(v, int) and not isinstance(v, bool)}
        if any(v < self.now[k] for k, v in values.items()):  # a counter went back: a new boot
            for k in COUNTERS:
                self.before[k] += self.now[k]
                self.now[k] = 0
            self.boots += 1
        self.now.update(values)
        low, free = msg.get("heap_min"), msg.get("heap_free")
        if isinstance(low, int) and low > 0:
            self.heap_min = low if self.heap_min is None else min(self.heap_min, low)
        if isinstance(free, int) and free > 0:
            self.heap_free = free

    def totals(self):
        return {k: self.before[k] + self.now[k] for k in COUNTERS}


class BoardMetrics:
    VIEWS = ("sent",)  # the view kinds its feed() reads (the composer hands it only those)

    FLAT = {
        "heap_min_bytes": ("bytes", "lowest free heap any board reported (TELEMETRY heap_min); None: none reports it"),
        "rejects_total": ("count", "frames and lines the nodes refused, over every boot (TELEMETRY rejects)"),
        "unknown_src_total": ("count", "frames refused for a source outside the node's rosters"),
        "replayed_total": ("count", "signed frames refused as replays"),
        "long_lines_total": ("count", "lines over a board's line buffer, refused"),
    }

    def __init__(self, fleet):
        self.fleet = fleet
        self.nodes = {}  # node id -> _Node

    def feed(self, v):
        if v.kind != "sent" or getattr(v, "type", None) != "telemetry" or v.nid is None or not isinstance(v.msg, dict):
            return
        n = self.nodes.get(v.nid)
        if n is None:
            n = self.nodes[v.nid] = _Node()
        n.report(v.msg)

    def result(self, span):
        flat = dict.fromkeys(self.FLAT)
        rows = {}
        sums = dict.fromkeys(COUNTERS, 0)
        for nid, n in sorted(self.nodes.items()):
            t = n.totals()
            for k in COUNTERS:
                sums[k] += t[k]
            rows[str(nid)] = dict(t, boots=n.boots, heap_min_bytes=n.heap_min, heap_free_bytes=n.heap_free,
                                  reports=n.reports)
        lows = [n.heap_min for n in self.nodes.values() if n.heap_min is not None]
        flat["heap_min_bytes"] = rnd(min(lows)) if lows else None
        flat["rejects_total"] = sums["rejects"]
        flat["unknown_src_total"] = sums["unknown_src"]
        flat["replayed_total"] = sums["replayed"]
        flat["long_lines_total"] = sums["long_lines"]
        out = {"flat": flat}
        if rows:
            out["boards"] = rows
        return out
