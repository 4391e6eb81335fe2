"""Coordination metrics from a run trace: pure functions of (header, events).

    m = compute(header, events)      # JSON-ready dict (docs/METRICS.md)
    failures = evaluate(m, gates)    # ["split_brain = 1 > max 0", ...]; [] = pass
    rows = timeline(header, events)  # role segments per node, for the PNG

`events` is any iterable of trace events after the header, in file order; it
is read once. Nothing here does I/O or reads a clock. Like h11, the work is a
small state machine fed one event at a time (`_Analyzer.feed`), and the result
is pulled at the end (`_Analyzer.result`).

What a trace says, as this module reads it (docs/METRICS.md has each metric):
  - A node *claims* coordinator with a `sent` COORDINATOR frame or a heartbeat
    with role 2; the term is the frame's `term`. A claim lasts from its first
    claiming frame to its last one before the node stops claiming: a heartbeat
    or telemetry with another role, a crash / power_cut / reset fault, or more
    than two heartbeat intervals (T/4 each, or the header's `heartbeat_ms`)
    with no claiming frame.
  - A node is *down* from a crash / power_cut / reset fault until it sends
    its next frame, and *live* once it has sent a frame and is not down.
  - A recipient of a frame follows from `dst` and the header's nodes: a node
    id is its own recipient, `0xF000 | c` reaches cluster c's members except
    the sender, 65535 every node except the sender, 0 (the ground) nobody.

Bad input is expected input: an event for a node the header does not list, a
missing or mistyped field, a fate for a frame never sent, is counted in
`anomalies` (with the first few examples, by trace line) and skipped; it never
raises. Times in the result are mission seconds; "T" figures divide by the
header's `election_timeout_ms`; undefined figures (no samples, no T) are None.

Where this departs from STYLE.md: this is ground code under CPython, so it
allocates freely; role names are copied from firmware/node/msgs.py rather than
imported, as ground/protocol.py does, so the ground never imports firmware.
"""

import math

from ground import market_metrics

FORMAT = "fleetloop-metrics/1"

ROLE_NAMES = ("follower", "candidate", "coordinator", "standby")  # msgs.ROLE_NAMES
ROLE_COORDINATOR = 2
DOWN = "down"
UNKNOWN = "unknown"  # timeline: before a node's first frame

DOWN_FAULTS = ("crash", "power_cut", "reset")  # the node stops until it speaks again
CRASH_FAULTS = ("crash", "power_cut")  # failure detection is measured for these
NOT_COORDINATION = ("telemetry", "log")  # every other type is coordination traffic
# The harness's own instrumentation (a board's call journal, for replay): listed
# per node by type, but not the fleet's traffic, so left out of every total and
# share; a run's metrics are the same with the journal on or off.
HARNESS_ONLY = ("journal",)

CLUSTER_BASE = 0xF000
BROADCAST = 0xFFFF
GROUND = 0

_NS = 1_000_000_000
_HOUR_S = 3600.0
_EXAMPLES = 20  # anomaly examples kept
_IDS_KEPT = 100  # unfated frame ids listed

# The flat namespace: every key of metrics["flat"], which is also every name a
# scenario may gate on. name -> (unit, meaning). docs/METRICS.md mirrors it.
FLAT = {
    "mission_s": ("s", "mission time covered by the trace"),
    "failover_count": ("count", "completed coordinator failovers"),
    "failover_incomplete": ("count", "coordinator crashes with no successor claim by the end"),
    "failover_s_p50": ("s", "failover time, median"),
    "failover_s_p99": ("s", "failover time, 99th percentile"),
    "failover_s_max": ("s", "failover time, maximum"),
    "failover_T_p50": ("T", "failover time in election timeouts, median"),
    "failover_T_p99": ("T", "failover time in election timeouts, 99th percentile"),
    "failover_T_max": ("T", "failover time in election timeouts, maximum"),
    "split_brain": ("count", "(cluster, term) pairs claimed by two or more nodes"),
    "overlap_count": ("count", "intervals where two nodes of one cluster both claimed coordinator"),
    "overlap_s": ("s", "total length of those intervals"),
    "leader_changes": ("count", "coordinator changes, all clusters"),
    "leader_changes_per_hour": ("1/h", "coordinator changes per mission hour, all clusters"),
    "detection_count": ("count", "node crashes a live peer's telemetry showed"),
    "detection_missed": ("count", "node crashes no peer telemetry showed by the end"),
    "detection_s_p50": ("s", "failure-detection time, median"),
    "detection_s_max": ("s", "failure-detection time, maximum"),
    "detection_T_p50": ("T", "failure-detection time in election timeouts, median"),
    "detection_T_max": ("T", "failure-detection time in election timeouts, maximum"),
    "decision_count": ("count", "coordinator crashes after which all live members named one new coordinator"),
    "decision_incomplete": ("count", "coordinator crashes with no such agreement by the end"),
    "decision_s_p50": ("s", "decision latency, median"),
    "decision_s_p99": ("s", "decision latency, 99th percentile"),
    "decision_s_max": ("s", "decision latency, maximum"),
    "decision_T_p50": ("T", "decision latency in election timeouts, median"),
    "decision_T_p99": ("T", "decision latency in election timeouts, 99th percentile"),
    "decision_T_max": ("T", "decision latency in election timeouts, maximum"),
    "coordination_bytes_share": ("ratio", "coordination bytes / all bytes sent by nodes"),
    "no_coordinator_share_max": ("ratio", "worst cluster's share of mission time with no agreed coordinator"),
    "messages_per_node_hour_max": ("1/h", "busiest node's frames sent per mission hour"),
    "bytes_per_node_hour_max": ("B/h", "busiest node's bytes sent per mission hour"),
    "frames_sent": ("count", "frames sent"),
    "frames_delivered": ("count", "deliveries, duplicates included"),
    "frames_dropped": ("count", "drops, all reasons"),
    "frames_duplicated": ("count", "extra copies made"),
    "frames_corrupted": ("count", "copies altered"),
    "frames_converted": ("count", "frames down-converted to an older protocol version for a recipient"),
    "unfated_frames": ("count", "sent frames with a recipient that got neither delivered nor dropped"),
    "faults": ("count", "fault events"),
    "anomalies": ("count", "events skipped as malformed or naming unknown nodes or frames"),
}
FLAT.update(market_metrics.FLAT)  # the market tier's (ground/market_metrics.py); None without market frames

GATE_BOUNDS = ("max", "min")


# ---- public API -----------------------------------------------------------


def compute(header, events):
    """Every metric of one run, as a JSON-ready dict (docs/METRICS.md)."""
    a = _Analyzer(header)
    for event in events:
        a.feed(event)
    return a.result()


def timeline(header, events):
    """Role segments per node, for plotting.

    {"nodes": {node_id_str: {"cluster": c, "segments": [[start_s, end_s, role], ...]}},
     "faults": [{"at_s": t, "fault": name, "nodes": [ids], "groups": [[ids], ...] if any}],
     "start_s": t0, "end_s": t1}
    role is one of ROLE_NAMES, "down" or "unknown" (not heard from yet).
    """
    a = _Analyzer(header, keep_timeline=True)
    for event in events:
        a.feed(event)
    return a.timeline()


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
            if not _is_number(limit):
                raise ValueError("gates: %s.%s: %r is not a number" % (name, bound, limit))
    flat = metrics.get("flat", {})
    failures = []
    for name in sorted(gates):
        value = flat.get(name)
        for bound in GATE_BOUNDS:
            if bound not in gates[name]:
                continue
            limit = gates[name][bound]
            if not _is_number(value):
                failures.append("%s has no value (nothing measured); gate %s %s" % (name, bound, _num(limit)))
            elif bound == "max" and value > limit:
                failures.append("%s = %s > max %s" % (name, _num(value), _num(limit)))
            elif bound == "min" and value < limit:
                failures.append("%s = %s < min %s" % (name, _num(value), _num(limit)))
    return failures


def percentile(values, p):
    """Nearest-rank percentile (p in 0..100) of a non-empty list; None if empty."""
    if not values:
        return None
    s = sorted(values)
    rank = max(1, math.ceil(p / 100.0 * len(s)))
    return s[rank - 1]


def cluster_addr(cluster):
    return CLUSTER_BASE | cluster


# ---- helpers --------------------------------------------------------------


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _int(d, key):
    v = d.get(key) if isinstance(d, dict) else None
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    return None


def _num(v):
    if isinstance(v, float):
        return "%.6g" % v
    return str(v)


def _s(ns):
    return ns / _NS


def _round(v):
    return None if v is None else round(v, 9)


def _stats(values_s, t_s, quantiles=(50, 99)):
    """{count, s_p50, s_p99, s_max, T_p50, ...} of mission-second samples."""
    out = {"count": len(values_s)}
    for q in quantiles:
        out["s_p%d" % q] = _round(percentile(values_s, q))
    out["s_max"] = _round(max(values_s)) if values_s else None
    for key in list(out):
        if key.startswith("s_"):
            out["T_" + key[2:]] = _round(out[key] / t_s) if out[key] is not None and t_s else None
    return out


class _Node:
    def __init__(self, cluster):
        self.cluster = cluster  # str
        self.spoke = False  # has sent a frame since it last went down
        self.down = False
        self.claim = None  # open claim: {"start", "last", "term", "id"}
        self.last_hb = None  # (coordinator, term) of its latest heartbeat
        self.last_tel = None  # (alive, suspect) of its latest telemetry
        self.role = UNKNOWN  # timeline only
        self.segments = []

    def live(self):
        return self.spoke and not self.down


class _Cluster:
    def __init__(self, members):
        self.members = members  # sorted node ids (int)
        self.claimers = {}  # term -> {node: first claiming frame id}
        self.split = {}  # term -> split-brain record
        self.intervals = []  # (start_ns, end_ns, node) of closed claims
        self.max_term = None
        self.term_node = None  # who claimed the highest term first
        self.changes = []  # {"at_s", "from", "to", "term"}
        self.failovers = []
        self.failover_pending = []
        self.detections = []
        self.detection_pending = []
        self.decisions = []
        self.decision_pending = []
        self.agreed = None  # node all live members name, or None
        self.agreed_since_ns = 0
        self.no_coord_ns = 0
        self.bytes = 0
        self.coord_bytes = 0


class _Analyzer:
    def __init__(self, header, keep_timeline=False):
        self.keep_timeline = keep_timeline
        self.anomalies = {}
        self.examples = []
        self.index = 0  # events fed; trace line = index + 1 (header is line 1)
        header = header if isinstance(header, dict) else {}
        self.header = header
        t = header.get("election_timeout_ms")
        self.t_ms = t if _is_number(t) and t > 0 else None
        if self.t_ms is None:
            self._anomaly("header", "no usable election_timeout_ms: T figures are None")
        hb = header.get("heartbeat_ms")
        hb = hb if _is_number(hb) and hb > 0 else (self.t_ms / 4.0 if self.t_ms else None)
        self.silence_ns = 2 * hb * 1_000_000 if hb else None
        self.nodes = {}
        clusters = {}
        raw = header.get("nodes")
        if not isinstance(raw, dict):
            self._anomaly("header", "no nodes table")
            raw = {}
        for key, info in raw.items():
            try:
                nid = int(key)
            except (TypeError, ValueError):
                self._anomaly("header", "node id %r is not an integer" % (key,))
                continue
            c = _int(info, "cluster")
            if c is None or nid <= 0:
                self._anomaly("header", "node %r has no integer cluster" % (key,))
                continue
            self.nodes[nid] = _Node(str(c))
            clusters.setdefault(str(c), []).append(nid)
        self.clusters = {c: _Cluster(sorted(m)) for c, m in clusters.items()}
        self.cluster_of_addr = {cluster_addr(int(c)): c for c in self.clusters if 0 <= int(c) < 0xFFF}
        # A market region's electors share an address of their own (docs/MARKET.md).
        market = header.get("market") if isinstance(header.get("market"), dict) else {}
        self.region_addr = cluster_addr(0xE00 | market["region"]) if isinstance(market.get("region"), int) else None
        self.electors = set(market.get("electors") or ())
        start = header.get("mission_ns")
        self.start_ns = start if isinstance(start, int) and not isinstance(start, bool) else 0
        self.end_ns = self.start_ns
        self.state_ns = self.start_ns  # latest time a node's state changed
        self.market = market_metrics.MarketTally(self.start_ns)
        for c in self.clusters.values():
            c.agreed_since_ns = self.start_ns
        # frames
        self.sent = 0
        self.bad = 0
        self.delivered = 0
        self.delivered_copies = 0
        self.dropped = {}
        self.duplicated = 0
        self.corrupted = 0
        self.converted = 0
        self.pending = {}  # frame id -> set of recipients with no fate yet
        self.known_ids = set()
        self.per_node = {}  # node id -> {type: [messages, bytes]}
        self.faults = {}
        self.fault_marks = []
        self.node_events = {}
        self.links = {}
        self.end = None
        self.closed = False

    # ---- bookkeeping -------------------------------------------------------

    def _anomaly(self, reason, text):
        self.anomalies[reason] = self.anomalies.get(reason, 0) + 1
        if len(self.examples) < _EXAMPLES:
            where = "header" if self.index == 0 else "trace line %d" % (self.index + 1)
            self.examples.append("%s: %s: %s" % (where, reason, text))

    def _set_role(self, n, role, t):
        if n.role == role:
            return
        if self.keep_timeline:
            if n.segments and n.segments[-1][1] is None:
                n.segments[-1][1] = t
            n.segments.append([t, None, role])
        n.role = role

    # ---- feeding -----------------------------------------------------------

    def feed(self, e):
        self.index += 1
        if not isinstance(e, dict):
            self._anomaly("not_an_event", repr(e)[:60])
            return
        t = e.get("mission_ns")
        if not isinstance(t, int) or isinstance(t, bool):
            self._anomaly("missing_field", "%s event without integer mission_ns" % e.get("kind"))
            return
        if t > self.end_ns:
            self.end_ns = t
        kind = e.get("kind")
        if kind == "frame":
            self._frame(e, t)
        elif kind == "fault":
            self._fault(e, t)
        elif kind == "node":
            ev = e.get("event")
            self.node_events[str(ev)] = self.node_events.get(str(ev), 0) + 1
        elif kind == "link":
            st = e.get("state")
            self.links[str(st)] = self.links.get(str(st), 0) + 1
        elif kind == "header" and self.index == 1:
            pass  # a reader's whole output passed in, header first: fine
        elif kind == "end":
            self.end = {"status": e.get("status"), "reason": e.get("reason"), "frames": e.get("frames")}
        else:
            self._anomaly("unknown_kind", repr(kind))

    def _frame(self, e, t):
        fate = e.get("fate")
        fid = e.get("id")
        if fid is None or isinstance(fid, (dict, list)):
            self._anomaly("missing_field", "frame event without id")
            return
        if fate == "sent":
            self._sent(e, t, fid)
            return
        if fid not in self.known_ids:
            self._anomaly("unknown_frame", "%s for frame %r never sent" % (fate, fid))
            return
        to = e.get("to", "missing")
        if to is not None and _int(e, "to") is None and fate in ("delivered", "dropped"):
            self._anomaly("missing_field", "%s of frame %r without an integer `to`" % (fate, fid))
            to = "skip"
        if fate == "delivered":
            self.delivered += 1
            copy = _int(e, "copy") or 0
            if copy > 0:
                self.delivered_copies += 1
            self._fated(fid, to)
        elif fate == "dropped":
            reason = e.get("reason")
            if not isinstance(reason, str):
                self._anomaly("missing_field", "dropped frame %r without reason" % (fid,))
                reason = "unknown"
            self.dropped[reason] = self.dropped.get(reason, 0) + 1
            self._fated(fid, to)
        elif fate == "duplicated":
            self.duplicated += 1
        elif fate == "corrupted":
            self.corrupted += 1
        elif fate == "converted":
            # Not a final fate: the converted frame still goes down the link
            # and gets its delivered / dropped like any other.
            self.converted += 1
        else:
            self._anomaly("unknown_fate", repr(fate))

    def _fated(self, fid, to):
        rest = self.pending.get(fid)
        if rest is None or to == "skip":
            return
        if to is None:  # dropped before fan-out: a fate for every recipient
            rest.clear()
        else:
            rest.discard(to)
        if not rest:
            del self.pending[fid]

    def _recipients(self, src, dst):
        if dst == GROUND:
            return set()
        if dst == BROADCAST:
            return set(self.nodes) - {src}
        if dst == self.region_addr:
            return self.electors - {src}
        if dst >= CLUSTER_BASE:
            c = self.cluster_of_addr.get(dst)
            return set(self.clusters[c].members) - {src} if c is not None else set()
        return {dst}

    def _clock(self, t):
        """Mission time for state changes: never backwards in file order."""
        if t < self.state_ns:
            self._anomaly("time_backwards", "mission_ns %d after %d" % (t, self.state_ns))
            return self.state_ns
        self.state_ns = t
        return t

    def _sent(self, e, t, fid):
        t = self._clock(t)
        self.sent += 1
        self.known_ids.add(fid)
        bad = "bad" in e  # the ground could not decode it: its src may be unknown
        if bad:
            self.bad += 1
        src, dst = _int(e, "src"), _int(e, "dst")
        if src is not None and "dst" in e and e["dst"] is None:
            return  # not routed (from a node that is down, or undecodable): counted only
        if src is None or dst is None:
            if not bad:
                self._anomaly("missing_field", "sent frame %r without integer src/dst" % (fid,))
            return
        rcpt = self._recipients(src, dst)
        if rcpt:
            self.pending[fid] = rcpt
        if src == GROUND:
            return  # the ground's own frames (config): counted, no node state
        n = self.nodes.get(src)
        if n is None:
            if not bad:
                self._anomaly("unknown_node", "frame %r from node %d not in the header" % (fid, src))
            return
        type_ = e.get("type")
        if not isinstance(type_, str):
            self._anomaly("missing_field", "sent frame %r without type" % (fid,))
            type_ = "unknown"
        size = _int(e, "len")
        if size is None:
            self._anomaly("missing_field", "sent frame %r without len" % (fid,))
            size = 0
        row = self.per_node.setdefault(src, {}).setdefault(type_, [0, 0])
        row[0] += 1
        row[1] += size
        c = self.clusters[n.cluster]
        if type_ not in HARNESS_ONLY:
            c.bytes += size
            if type_ not in NOT_COORDINATION:
                c.coord_bytes += size
        coming_up = not n.live()
        if coming_up:
            n.down = False
            n.spoke = True
            self._set_role(n, "follower", t)
        if bad:
            if coming_up:
                self._agreement(n.cluster, t)
            return
        msg = e.get("msg")
        if not isinstance(msg, dict):
            self._anomaly("missing_field", "sent frame %r without msg" % (fid,))
            msg = {}
        if type_ in ("market_tel", "prices"):
            self.market.sent(src, type_, msg, dst, t)
        if dst >= CLUSTER_BASE and dst != BROADCAST and self.cluster_of_addr.get(dst) != n.cluster:
            # Not the node's own cluster: a regional seat's election traffic
            # (docs/MARKET.md). Its claims are not claims on the cluster.
            return
        if type_ == "coordinator":
            term = _int(msg, "term")
            if term is None:
                self._anomaly("missing_field", "coordinator frame %r without term" % (fid,))
            else:
                self._set_role(n, "coordinator", t)
                self._claim(src, n, term, t, fid)
        elif type_ == "heartbeat":
            role, term, coord = _int(msg, "role"), _int(msg, "term"), _int(msg, "coordinator")
            if role is None or term is None or coord is None:
                self._anomaly("missing_field", "heartbeat %r without role/term/coordinator" % (fid,))
            else:
                if role == ROLE_COORDINATOR:
                    self._claim(src, n, term, t, fid)
                else:
                    self._end_claim(src, n)
                self._set_role(n, ROLE_NAMES[role] if 0 <= role < len(ROLE_NAMES) else UNKNOWN, t)
                n.last_hb = (coord, term)
                self._agreement(n.cluster, t)
                return
        elif type_ == "telemetry":
            role, alive, suspect = _int(msg, "role"), _int(msg, "alive"), _int(msg, "suspect")
            if role is None or alive is None or suspect is None:
                self._anomaly("missing_field", "telemetry %r without role/alive/suspect" % (fid,))
            else:
                if role != ROLE_COORDINATOR:
                    self._end_claim(src, n)
                self._set_role(n, ROLE_NAMES[role] if 0 <= role < len(ROLE_NAMES) else UNKNOWN, t)
                prev = n.last_tel
                n.last_tel = (alive, suspect)
                if prev is not None and (suspect > prev[1] or alive < prev[0]):
                    self._detected(src, n, t, fid)
        elif type_ in ("prevote_request", "vote_request"):
            self._set_role(n, "candidate", t)
        if coming_up:
            self._agreement(n.cluster, t)

    def _fault(self, e, t):
        t = self._clock(t)
        name = e.get("fault")
        if not isinstance(name, str):
            self._anomaly("missing_field", "fault without a name")
            return
        self.faults[name] = self.faults.get(name, 0) + 1
        targets = []
        if "node" in e and e["node"] is not None:
            targets = [e["node"]]
        elif isinstance(e.get("nodes"), list):
            targets = e["nodes"]
        if self.keep_timeline:
            mark = {"at_s": _s(t), "fault": name, "nodes": [x for x in targets if isinstance(x, int)]}
            groups = e.get("groups")
            if isinstance(groups, list) and all(isinstance(g, list) for g in groups):
                mark["groups"] = [[x for x in g if isinstance(x, int)] for g in groups]
            self.fault_marks.append(mark)
        if name not in DOWN_FAULTS:
            return
        if not targets:
            self._anomaly("missing_field", "%s fault without node" % name)
        for nid in targets:
            n = self.nodes.get(nid) if isinstance(nid, int) and not isinstance(nid, bool) else None
            if n is None:
                self._anomaly("unknown_node", "%s fault on node %r not in the header" % (name, nid))
                continue
            self._down(nid, n, name, t)

    def _down(self, nid, n, fault, t):
        if n.down:
            return  # already down: nothing more stops
        was_live = n.live()
        claim = n.claim
        claiming = claim is not None and (self.silence_ns is None or t - claim["last"] <= self.silence_ns)
        self._end_claim(nid, n)
        n.down = True
        n.spoke = False
        n.last_hb = None
        n.last_tel = None  # a rebooted node's counts start over
        self._set_role(n, DOWN, t)
        c = self.clusters[n.cluster]
        if claiming:
            rec = {"node": nid, "fault": fault, "at_s": _s(t), "term": claim["term"], "_t": t}
            c.failover_pending.append(dict(rec))
            c.decision_pending.append(dict(rec))
        if fault in CRASH_FAULTS and was_live:
            c.detection_pending.append({"node": nid, "fault": fault, "at_s": _s(t), "_t": t})
        self._agreement(n.cluster, t)

    # ---- claims ------------------------------------------------------------

    def _claim(self, nid, n, term, t, fid):
        claim = n.claim
        if claim is not None and self.silence_ns is not None and t - claim["last"] > self.silence_ns:
            self._end_claim(nid, n)
            claim = None
        if claim is None:
            n.claim = {"start": t, "last": t, "term": term, "id": fid}
        else:
            claim["last"] = t
            claim["term"] = max(claim["term"], term)
        c = self.clusters[n.cluster]
        who = c.claimers.setdefault(term, {})
        if nid not in who:
            who[nid] = fid
            if len(who) >= 2:
                rec = c.split.setdefault(term, {"term": term})
                rec["nodes"] = sorted(who)
                rec["frame_ids"] = [who[k] for k in sorted(who)]
                rec.setdefault("at_s", _s(t))
        if c.max_term is None or term > c.max_term:
            if c.term_node is not None and c.term_node != nid:
                c.changes.append({"at_s": _s(t), "from": c.term_node, "to": nid, "term": term})
            c.max_term = term
            c.term_node = nid
        still = []
        for p in c.failover_pending:
            if p["node"] != nid and term > p["term"] and t >= p["_t"]:
                d = t - p["_t"]
                p.update(new_coordinator=nid, new_term=term, frame_id=fid, s=_s(d))
                p["T"] = _s(d) * 1000.0 / self.t_ms if self.t_ms else None
                c.failovers.append(p)
            else:
                still.append(p)
        c.failover_pending = still

    def _end_claim(self, nid, n):
        if n.claim is not None:
            self.clusters[n.cluster].intervals.append((n.claim["start"], n.claim["last"], nid))
            n.claim = None

    # ---- agreement, decisions, detection -------------------------------------

    def _agreed(self, c, min_term=None):
        """The coordinator every live member's latest heartbeat names, or None."""
        live = [m for m in c.members if self.nodes[m].live()]
        if not live:
            return None
        named = None
        for m in live:
            hb = self.nodes[m].last_hb
            if hb is None or (min_term is not None and hb[1] <= min_term):
                return None
            if named is None:
                named = hb[0]
            elif hb[0] != named:
                return None
        if named == GROUND or named not in live:
            return None
        return named

    def _agreement(self, cid, t):
        c = self.clusters[cid]
        now = self._agreed(c)
        if (now is None) != (c.agreed is None):
            if c.agreed is None:
                c.no_coord_ns += max(0, t - c.agreed_since_ns)
            c.agreed_since_ns = t
        c.agreed = now
        if c.decision_pending:
            still = []
            for p in c.decision_pending:
                who = self._agreed(c, min_term=p["term"]) if t >= p["_t"] else None
                if who is None:
                    still.append(p)
                    continue
                d = t - p["_t"]
                p.update(coordinator=who, s=_s(d))
                p["T"] = _s(d) * 1000.0 / self.t_ms if self.t_ms else None
                c.decisions.append(p)
            c.decision_pending = still

    def _detected(self, nid, n, t, fid):
        c = self.clusters[n.cluster]
        still = []
        for p in c.detection_pending:
            if p["node"] != nid and t >= p["_t"]:
                d = t - p["_t"]
                p.update(by=nid, frame_id=fid, s=_s(d))
                p["T"] = _s(d) * 1000.0 / self.t_ms if self.t_ms else None
                c.detections.append(p)
            else:
                still.append(p)
        c.detection_pending = still

    # ---- results -----------------------------------------------------------

    def _overlaps(self, intervals):
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
                    out.append({"start_s": _s(t0), "end_s": _s(at), "s": _s(at - t0), "nodes": sorted(cur["nodes"])})
                    cur = None
        return out

    def _close(self):
        if self.closed:
            return
        self.closed = True
        end = self.end_ns
        for nid, n in self.nodes.items():
            self._end_claim(nid, n)
            if self.keep_timeline and n.segments and n.segments[-1][1] is None:
                n.segments[-1][1] = end
        for c in self.clusters.values():
            if c.agreed is None:
                c.no_coord_ns += max(0, end - c.agreed_since_ns)
            c.agreed_since_ns = end

    def result(self):
        self._close()
        mission_ns = max(0, self.end_ns - self.start_ns)
        mission_s = _s(mission_ns)
        hours = mission_s / _HOUR_S
        t_s = self.t_ms / 1000.0 if self.t_ms else None

        def per_hour(x):
            return _round(x / hours) if hours > 0 else None

        clusters = {}
        all_fo, all_fo_inc, all_det, all_det_miss, all_dec, all_dec_inc = [], [], [], [], [], []
        all_split, all_overlaps, all_changes = [], [], 0
        total_bytes = total_coord = 0
        worst_share = None
        for cid in sorted(self.clusters, key=int):
            c = self.clusters[cid]
            fo = [_public(p) for p in c.failovers]
            fo_inc = [_public(p) for p in c.failover_pending]
            det = [_public(p) for p in c.detections]
            det_miss = [_public(p) for p in c.detection_pending]
            dec = [_public(p) for p in c.decisions]
            dec_inc = [_public(p) for p in c.decision_pending]
            split = [c.split[k] for k in sorted(c.split)]
            overlaps = self._overlaps(c.intervals)
            share = _round(c.no_coord_ns / mission_ns) if mission_ns else None
            if share is not None and (worst_share is None or share > worst_share):
                worst_share = share
            clusters[cid] = {
                "members": c.members,
                "failover": dict(_stats([p["s"] for p in fo], t_s), events=fo, incomplete=fo_inc),
                "split_brain": {"count": len(split), "events": split},
                "overlap": {"count": len(overlaps), "s": _round(sum(o["s"] for o in overlaps)), "intervals": overlaps},
                "leader": {
                    "changes": len(c.changes),
                    "changes_per_hour": per_hour(len(c.changes)),
                    "events": c.changes,
                    "max_term": c.max_term,
                },
                "detection": dict(_stats([p["s"] for p in det], t_s), events=det, missed=det_miss),
                "decision": dict(_stats([p["s"] for p in dec], t_s), events=dec, incomplete=dec_inc),
                "no_coordinator_s": _round(_s(c.no_coord_ns)),
                "no_coordinator_share": share,
                "bytes": c.bytes,
                "coordination_bytes": c.coord_bytes,
                "coordination_bytes_share": _round(c.coord_bytes / c.bytes) if c.bytes else None,
            }
            all_fo += fo
            all_fo_inc += fo_inc
            all_det += det
            all_det_miss += det_miss
            all_dec += dec
            all_dec_inc += dec_inc
            all_split += split
            all_overlaps += overlaps
            all_changes += len(c.changes)
            total_bytes += c.bytes
            total_coord += c.coord_bytes

        nodes = {}
        busiest_msgs = busiest_bytes = None
        for nid in sorted(self.per_node):
            types = {}
            msgs_n = bytes_n = 0
            for type_ in sorted(self.per_node[nid]):
                count, size = self.per_node[nid][type_]
                types[type_] = {
                    "messages": count,
                    "bytes": size,
                    "messages_per_hour": per_hour(count),
                    "bytes_per_hour": per_hour(size),
                }
                if type_ in HARNESS_ONLY:
                    continue
                msgs_n += count
                bytes_n += size
            row = {
                "cluster": int(self.nodes[nid].cluster),
                "types": types,
                "messages": msgs_n,
                "bytes": bytes_n,
                "messages_per_hour": per_hour(msgs_n),
                "bytes_per_hour": per_hour(bytes_n),
            }
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
            "converted": self.converted,
            "unfated": len(unfated),
            "unfated_recipients": sum(len(v) for v in self.pending.values()),
            "unfated_ids": unfated[:_IDS_KEPT],
        }
        fo_s = [p["s"] for p in all_fo]
        det_s = [p["s"] for p in all_det]
        dec_s = [p["s"] for p in all_dec]
        fo_st, det_st, dec_st = _stats(fo_s, t_s), _stats(det_s, t_s), _stats(dec_s, t_s)
        anomalies_n = sum(self.anomalies.values())
        flat = {
            "mission_s": _round(mission_s),
            "failover_count": len(all_fo),
            "failover_incomplete": len(all_fo_inc),
            "split_brain": len(all_split),
            "overlap_count": len(all_overlaps),
            "overlap_s": _round(sum(o["s"] for o in all_overlaps)),
            "leader_changes": all_changes,
            "leader_changes_per_hour": per_hour(all_changes),
            "detection_count": len(all_det),
            "detection_missed": len(all_det_miss),
            "decision_count": len(all_dec),
            "decision_incomplete": len(all_dec_inc),
            "coordination_bytes_share": _round(total_coord / total_bytes) if total_bytes else None,
            "no_coordinator_share_max": worst_share,
            "messages_per_node_hour_max": busiest_msgs,
            "bytes_per_node_hour_max": busiest_bytes,
            "frames_sent": self.sent,
            "frames_delivered": self.delivered,
            "frames_dropped": frames["dropped_total"],
            "frames_duplicated": self.duplicated,
            "frames_corrupted": self.corrupted,
            "frames_converted": self.converted,
            "unfated_frames": len(unfated),
            "faults": sum(self.faults.values()),
            "anomalies": anomalies_n,
        }
        for prefix, st in (("failover", fo_st), ("detection", det_st), ("decision", dec_st)):
            for key, value in st.items():
                name = "%s_%s" % (prefix, key)
                if name in FLAT:
                    flat[name] = value
        market, market_flat = self.market.result(self.end_ns)
        flat.update(market_flat)
        assert set(flat) == set(FLAT), sorted(set(flat) ^ set(FLAT))  # the namespace is the contract
        return {
            "format": FORMAT,
            "scenario": self.header.get("scenario"),
            "seed": self.header.get("seed"),
            "mode": self.header.get("mode"),
            "election_timeout_ms": self.t_ms,
            "mission_s": _round(mission_s),
            "flat": flat,
            "clusters": clusters,
            "nodes": nodes,
            "market": market,
            "frames": frames,
            "faults": dict(sorted(self.faults.items())),
            "node_events": dict(sorted(self.node_events.items())),
            "link_events": dict(sorted(self.links.items())),
            "end": self.end,
            "anomalies": {
                "count": anomalies_n,
                "by_reason": dict(sorted(self.anomalies.items())),
                "examples": self.examples,
            },
        }

    def timeline(self):
        self._close()
        nodes = {}
        for nid in sorted(self.nodes):
            n = self.nodes[nid]
            raw = list(n.segments)
            first = raw[0][0] if raw else self.end_ns
            if first > self.start_ns:
                raw.insert(0, [self.start_ns, first, UNKNOWN])
            segs = []
            for a, b, role in raw:
                if b <= a:
                    continue  # a role held for no time (e.g. follower, then at once coordinator)
                if segs and segs[-1][2] == role:
                    segs[-1][1] = _s(b)
                else:
                    segs.append([_s(a), _s(b), role])
            nodes[str(nid)] = {"cluster": int(n.cluster), "segments": segs}
        return {"nodes": nodes, "faults": self.fault_marks, "start_s": _s(self.start_ns), "end_s": _s(self.end_ns)}


def _public(rec):
    return {k: (_round(v) if isinstance(v, float) else v) for k, v in rec.items() if not k.startswith("_")}
