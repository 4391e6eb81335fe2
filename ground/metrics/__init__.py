"""Coordination metrics of a run, computed as its events happen or from its
trace file afterwards, with the same result either way (docs/METRICS.md).

    m = Metrics(header)              # during a run: the Run feeds each event it records
    m.feed(event)                    # ... one trace event (dict) at a time, the `end` line too
    result = m.result()              # JSON-ready dict
    result = compute(header, events) # the same over any iterable of events
    metrics, torn = from_trace(path) # the same over a trace file, streamed
    failures = evaluate(result, gates)  # ["split_brain = 1 > max 0", ...]; [] = pass
    rows = timeline(header, events)  # role segments per node, for the PNG

The work is split by family, each a small consumer with feed(view) and
result(span): ClaimMetrics and ChurnMetrics (ground/metrics/claims.py),
FailoverMetrics and AgreementMetrics (failover.py), TrafficMetrics and
SkewMetrics (traffic.py), MarketMetrics (market.py), AirtimeMetrics
(airtime.py), BoardMetrics (boards.py: TELEMETRY's heap and refusal
counters), ContainmentMetrics (containment.py), BlastMetrics (blast.py: a
lineage fault's blast radius), RolloutMetrics
(rollout.py: the rollout orchestrator's decisions), GrowthMetrics (growth.py:
nodes added, clusters split), TimelineMetrics
(roles.py). `Metrics` is the composer: the shared reading (fleet.py)
decodes each event once into views, the composer hands each view to the
families that read its kind (a family's VIEWS, and for a fate view its
FATES: most ignore the frame fates, which are most of a run's views), and
merges their results at the end. Nothing here does I/O (but from_trace,
which reads the file) or reads a clock. Each family's state grows
with nodes, clusters, faults, claims and awards, not with frames, except
where its docstring says so.

Where this departs from STYLE.md: this is ground code under CPython, so it
allocates freely; role names are copied from firmware/node/msgs.py rather than
imported, as ground/protocol.py does, so the ground never imports firmware.
"""

from ground.metrics.airtime import AirtimeMetrics
from ground.metrics.blast import BlastMetrics
from ground.metrics.boards import BoardMetrics
from ground.metrics.claims import ChurnMetrics, ClaimMetrics
from ground.metrics.common import Span, is_number, percentile, rnd
from ground.metrics.containment import ContainmentMetrics
from ground.metrics.failover import CRASH_FAULTS, AgreementMetrics, FailoverMetrics
from ground.metrics.fleet import (BROADCAST, CLUSTER_BASE, DOWN_FAULTS, GROUND, ROLE_COORDINATOR, ROLE_NAMES, Fleet,
                                  cluster_addr)
from ground.metrics.growth import GrowthMetrics
from ground.metrics.market import MarketMetrics
from ground.metrics.roles import DOWN, UNKNOWN, TimelineMetrics
from ground.metrics.rollout import RolloutMetrics
from ground.metrics.traffic import HARNESS_ONLY, NOT_COORDINATION, SkewMetrics, TrafficMetrics

__all__ = [
    "FLAT", "FORMAT", "Metrics", "compute", "evaluate", "from_trace", "percentile", "timeline", "cluster_addr",
    "ROLE_NAMES", "ROLE_COORDINATOR", "DOWN", "UNKNOWN", "DOWN_FAULTS", "CRASH_FAULTS", "NOT_COORDINATION",
    "HARNESS_ONLY", "CLUSTER_BASE", "BROADCAST", "GROUND",
]

FORMAT = "fleetloop-metrics/1"
FAMILIES = (FailoverMetrics, ClaimMetrics, ChurnMetrics, AgreementMetrics, TrafficMetrics, SkewMetrics, MarketMetrics,
            AirtimeMetrics, BoardMetrics, ContainmentMetrics, BlastMetrics, RolloutMetrics, GrowthMetrics)

# The flat namespace: every key of metrics["flat"], which is also every name a
# scenario may gate on. name -> (unit, meaning). docs/METRICS.md mirrors it.
FLAT = {"mission_s": ("s", "mission time covered by the trace")}
for _family in FAMILIES:
    FLAT.update(_family.FLAT)
FLAT["anomalies"] = ("count", "events skipped as malformed or naming unknown nodes or frames")

GATE_BOUNDS = ("max", "min")
# Every kind of view the shared reading yields (ground/metrics/fleet.py View).
VIEW_KINDS = ("sent", "fate", "fault", "down", "radio", "node", "link", "rollout", "end", "close")
FATES = ("delivered", "dropped", "duplicated", "corrupted", "converted")  # a fate view's fates (Fleet._frame)
# Top-level sections a family may give (the rest of the result is the composer's).
_SECTIONS = ("nodes", "market", "airtime", "boards", "faults", "node_events", "link_events", "containment",
             "blast", "rollout", "growth")


class Metrics:
    """The composer: every family fed each event as it happens."""

    def __init__(self, header, keep_timeline=False):
        self.fleet = Fleet(header)
        self.families = [f(self.fleet) for f in FAMILIES]
        self.tl = TimelineMetrics(self.fleet) if keep_timeline else None
        if self.tl is not None:
            self.families.append(self.tl)
        # view kind -> the feeds of the families that read it (a family's
        # VIEWS; one without VIEWS reads every kind), in family order; a
        # fate view by its fate (a family's FATES, every fate without)
        self.feeds = {k: [f.feed for f in self.families if k in getattr(f, "VIEWS", VIEW_KINDS)] for k in VIEW_KINDS}
        self.fate_feeds = {k: [f.feed for f in self.families if "fate" in getattr(f, "VIEWS", VIEW_KINDS)
                               and k in getattr(f, "FATES", FATES)] for k in FATES}
        self.end = None
        self.realtime = None

    def feed(self, event):
        """One trace event (a dict as the trace holds it), in file order."""
        fleet = self.fleet
        if fleet.closed:
            raise ValueError("metrics: the result was taken (the run is closed); no more events")
        if event.__class__ is dict and event.get("kind") == "frame":  # one view or none (most events)
            v = fleet.frame(event)
            if v is not None:
                for feed in (self.fate_feeds[v.fate] if v.kind == "fate" else self.feeds[v.kind]):
                    feed(v)
            return
        for v in fleet.feed(event):
            while fleet.new_clusters:  # a split made a cluster: the families that keep one row each learn it
                c = fleet.new_clusters.pop(0)
                for f in self.families:
                    if hasattr(f, "add_cluster"):
                        f.add_cluster(c)
            if v.kind == "end":
                self.end = {"status": v.status, "reason": v.reason, "frames": v.frames}
                self.realtime = event.get("realtime")  # a real-time run: its scale and timer lateness
            for feed in self.feeds[v.kind]:
                feed(v)

    def _close(self):
        v = self.fleet.close()
        if v is not None:
            for feed in self.feeds[v.kind]:
                feed(v)

    def span(self):
        return Span(self.fleet.start_ns, self.fleet.end_ns, self.fleet.t_ms)

    def result(self):
        """Every metric so far, as a JSON-ready dict; closes the run (feed no more)."""
        self._close()
        fleet, span = self.fleet, self.span()
        clusters = {c: {"members": fleet.members[c]} for c in sorted(fleet.members, key=int)}
        flat = {"mission_s": rnd(span.mission_s)}
        frames = {}
        out = {}
        for f in self.families:
            if f is self.tl:
                continue
            part = f.result(span)
            for cid, section in part.get("clusters", {}).items():
                clusters[cid].update(section)
            flat.update(part["flat"])
            frames.update(part.get("frames", {}))
            out.update((k, part[k]) for k in _SECTIONS if k in part)
        anomalies_n = sum(fleet.anomalies.values())
        flat["anomalies"] = anomalies_n
        assert set(flat) == set(FLAT), sorted(set(flat) ^ set(FLAT))  # the namespace is the contract
        header = fleet.header
        out.update({
            "format": FORMAT,
            "scenario": header.get("scenario"),
            "seed": header.get("seed"),
            "mode": header.get("mode"),
            "election_timeout_ms": fleet.t_ms,
            "mission_s": rnd(span.mission_s),
            "flat": flat,
            "clusters": clusters,
            "frames": frames,
            "end": self.end,
            **({"realtime": self.realtime} if self.realtime else {}),
            "anomalies": {
                "count": anomalies_n,
                "by_reason": dict(sorted(fleet.anomalies.items())),
                "examples": fleet.examples,
            },
        })
        return out

    def timeline(self):
        """Role segments per node (only with keep_timeline); see timeline()."""
        if self.tl is None:
            raise ValueError("Metrics(keep_timeline=True) keeps the timeline; this one did not")
        self._close()
        return self.tl.result(self.span())


# ---- public API -----------------------------------------------------------


def compute(header, events):
    """Every metric of one run, as a JSON-ready dict (docs/METRICS.md)."""
    m = Metrics(header)
    for event in events:
        m.feed(event)
    return m.result()


def from_trace(path, keep_timeline=False):
    """(Metrics fed every event of the trace file at path, torn): the file is
    read as it is iterated; a torn last line is left out and reported."""
    from ground.trace import TraceError, TraceReader

    reader = TraceReader(path)
    m = None
    for event in reader:
        if m is None:
            m = Metrics(event, keep_timeline=keep_timeline)
        else:
            m.feed(event)
    if m is None:
        raise TraceError("%s: empty trace" % path)
    return m, reader.torn


def timeline(header, events):
    """Role segments per node, for plotting.

    {"nodes": {node_id_str: {"cluster": c, "segments": [[start_s, end_s, role], ...],
                             "quarantined": [[start_s, end_s], ...]}},  # while some elector holds it so
     "faults": [{"at_s": t, "fault": name, "nodes": [ids], "groups": [[ids], ...] if any}],
     "start_s": t0, "end_s": t1}
    role is one of ROLE_NAMES, "down" or "unknown" (not heard from yet).
    """
    m = Metrics(header, keep_timeline=True)
    for event in events:
        m.feed(event)
    return m.timeline()


def evaluate(metrics, gates):
    """Failure strings for the gates a scenario sets; [] when every gate holds.

    gates: {flat_name: {"max": x} | {"min": x} | {"max": x, "min": y}}. An
    unknown name or bound is a ValueError naming it (the scenario's fault). A
    gated metric with no value (nothing measured, e.g. no failover happened)
    fails its gate: a gate must not pass by default.
    """
    if gates is None:
        return []
    if not isinstance(gates, dict):
        raise ValueError("gates: expected a mapping of metric name to bounds, got %s" % type(gates).__name__)
    for name in sorted(gates, key=str):
        if name not in FLAT:
            raise ValueError("gates: unknown metric %r (known: %s)" % (name, ", ".join(sorted(FLAT))))
        bounds = gates[name]
        if not isinstance(bounds, dict) or not bounds:
            raise ValueError("gates: %s: expected {max: n} and/or {min: n}, got %r" % (name, bounds))
        for bound, limit in bounds.items():
            if bound not in GATE_BOUNDS:
                raise ValueError("gates: %s: unknown bound %r (use max or min)" % (name, bound))
            if not is_number(limit):
                raise ValueError("gates: %s.%s: %r is not a number" % (name, bound, limit))
    flat = metrics.get("flat", {})
    failures = []
    for name in sorted(gates):
        value = flat.get(name)
        for bound in GATE_BOUNDS:
            if bound not in gates[name]:
                continue
            limit = gates[name][bound]
            if not is_number(value):
                failures.append("%s has no value (nothing measured); gate %s %s" % (name, bound, _num(limit)))
            elif bound == "max" and value > limit:
                failures.append("%s = %s > max %s" % (name, _num(value), _num(limit)))
            elif bound == "min" and value < limit:
                failures.append("%s = %s < min %s" % (name, _num(value), _num(limit)))
    return failures


def _num(v):
    if isinstance(v, float):
        return "%.6g" % v
    return str(v)
