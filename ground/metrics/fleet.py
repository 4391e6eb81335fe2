"""The metrics' one reading of a trace: decode each event once, keep the
state several families share, and hand the families a decoded view.

What a trace says, as the metrics read it (docs/METRICS.md has each metric):
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
    A lean run's trace (the header's `lean`) holds only its traced clusters'
    nodes, so there a recipient the header does not list is nobody: its
    fate is not in the trace (ground/fleetrun.py).

Bad input is expected input: an event for a node the header does not list, a
missing or mistyped field, a fate for a frame never sent, is counted in
`anomalies` (with the first few examples, by trace line) and skipped; it never
raises. `Fleet.feed(event)` yields the views (`View`) the families consume:
one per event, except a fault on several nodes, which yields the fault and then
one `down` view per node it stops, each after that node's state changed.

State kept: per node (liveness, open claim) and per cluster, plus the ids of
frames sent (`known_ids`, to flag a fate for a frame never sent): that set is
the one per-frame memory here.
"""

from ground import claims
from ground.metrics.common import get_int, is_number

ROLE_NAMES = ("follower", "candidate", "coordinator", "standby")  # msgs.ROLE_NAMES
ROLE_COORDINATOR = claims.ROLE_COORDINATOR
DOWN_FAULTS = ("crash", "power_cut", "reset")  # the node stops until it speaks again

CLUSTER_BASE = 0xF000
BROADCAST = 0xFFFF
GROUND = 0
_EXAMPLES = 20  # anomaly examples kept


def cluster_addr(cluster):
    return CLUSTER_BASE | cluster


class Node:
    __slots__ = ("cluster", "spoke", "down", "claim")

    def __init__(self, cluster):
        self.cluster = cluster  # str
        self.spoke = False  # has sent a frame since it last went down
        self.down = False
        self.claim = None  # open claim: {"start", "last", "term", "id"}

    def live(self):
        return self.spoke and not self.down


class View:
    """One decoded event (or one node a fault stopped), for the families.

    kind "sent": t (mission ns, never backwards), fid, bad, recipients (set,
      or None when the frame was not routed), nid / node / cluster (None when
      the sender is not a node the header lists, or the ground), type, size,
      came_up (the node's first frame since it went down), msg (dict; None for
      a bad frame), own (False for a seat's regional election traffic, whose
      claims are not claims on the cluster), hb (role, term, coordinator),
      tel (role, alive, suspect), claim_term (this frame claims), ended (the
      claims this frame closed: [(nid, cluster, start_ns, last_ns)]).
    kind "fate" (a Fate): fate, fid, to (int, None = every recipient, "skip"), copy, reason (None unless dropped).
    kind "fault": t, name, targets, groups (list of lists or None), detail (dict or None).
    kind "down": t, nid, node, cluster, fault, was_live, claim_term (the term
      it claimed when it went down, None if it was not claiming), ended.
    kind "radio": t, fid, nid / node / cluster (None for the ground or a
      node the header does not list), type, size (bytes on the air),
      start (mission ns the transmission started), airtime (its ns on air).
    kind "node" (event; msg: the event itself), "link" (state), "end" (status, reason, frames).
    kind "rollout": msg (the whole event: ground/rollout_run.py's decisions).
    kind "close": t = end of the mission, ended (every claim still open).
    """

    __slots__ = ("kind", "t", "fid", "bad", "recipients", "nid", "node", "cluster", "type", "size", "came_up",
                 "dst", "msg", "own", "hb", "tel", "claim_term", "ended", "fate", "to", "copy", "reason", "name",
                 "targets", "groups", "detail", "fault", "was_live", "event", "state", "status", "frames", "start", "airtime")

    def __init__(self, kind, t):
        self.kind = kind
        self.t = t
        self.nid = self.node = self.cluster = self.dst = self.msg = self.hb = self.tel = self.claim_term = None
        self.recipients = self.detail = None
        self.bad = self.came_up = self.own = False
        self.ended = ()


class Fate:
    """A `fate` view (see View), made with its six fields in one call: about
    85 % of a fleet run's views are fates. Every other View field reads as
    the View's default (class attributes), so a family may treat it as one."""

    __slots__ = ("t", "fate", "fid", "to", "copy", "reason")
    kind = "fate"
    nid = node = cluster = dst = msg = hb = tel = claim_term = recipients = detail = None
    bad = came_up = own = False
    ended = ()

    def __init__(self, t, fate, fid, to, copy, reason):
        self.t = t
        self.fate = fate
        self.fid = fid
        self.to = to
        self.copy = copy
        self.reason = reason  # None unless dropped


class Fleet:
    def __init__(self, header):
        self.anomalies = {}
        self.examples = []
        self.index = 0  # events fed; trace line = index + 1 (header is line 1)
        header = header if isinstance(header, dict) else {}
        self.header = header
        t = header.get("election_timeout_ms")
        self.t_ms = t if is_number(t) and t > 0 else None
        if self.t_ms is None:
            self.anomaly("header", "no usable election_timeout_ms: T figures are None")
        hb = header.get("heartbeat_ms")
        hb = hb if is_number(hb) and hb > 0 else (self.t_ms / 4.0 if self.t_ms else None)
        self.silence_ns = 2 * hb * 1_000_000 if hb else None
        self.nodes = {}
        clusters = {}
        raw = header.get("nodes")
        if not isinstance(raw, dict):
            self.anomaly("header", "no nodes table")
            raw = {}
        for key, info in raw.items():
            try:
                nid = int(key)
            except (TypeError, ValueError):
                self.anomaly("header", "node id %r is not an integer" % (key,))
                continue
            c = get_int(info, "cluster")
            if c is None or nid <= 0:
                self.anomaly("header", "node %r has no integer cluster" % (key,))
                continue
            self.nodes[nid] = Node(str(c))
            clusters.setdefault(str(c), []).append(nid)
        self.members = {c: sorted(m) for c, m in clusters.items()}  # cluster (str) -> sorted node ids
        self.cluster_of_addr = {cluster_addr(int(c)): c for c in self.members if 0 <= int(c) < 0xFFF}
        # A market region's electors share an address of their own (docs/MARKET.md).
        market = header.get("market") if isinstance(header.get("market"), dict) else {}
        self.region = market["region"] if isinstance(market.get("region"), int) else None
        self.region_addr = cluster_addr(0xE00 | self.region) if self.region is not None else None
        self.electors = set(market.get("electors") or ())
        self.partial = isinstance(header.get("lean"), dict)  # a lean run's trace: the traced clusters' nodes only
        start = header.get("mission_ns")
        self.start_ns = start if isinstance(start, int) and not isinstance(start, bool) else 0
        self.end_ns = self.start_ns  # the latest mission_ns of any event, the `end` line included
        self.state_ns = self.start_ns  # latest time a node's state changed
        self.known_ids = set()
        self.new_clusters = []  # clusters a split made, for the composer to announce (Metrics.feed)
        self.closed = False

    # ---- bookkeeping -------------------------------------------------------

    def anomaly(self, reason, text):
        self.anomalies[reason] = self.anomalies.get(reason, 0) + 1
        if len(self.examples) < _EXAMPLES:
            where = "header" if self.index == 0 else "trace line %d" % (self.index + 1)
            self.examples.append("%s: %s: %s" % (where, reason, text))

    def live(self, nid):
        return self.nodes[nid].live()

    def _clock(self, t):
        """Mission time for state changes: never backwards in file order."""
        if t < self.state_ns:
            self.anomaly("time_backwards", "mission_ns %d after %d" % (t, self.state_ns))
            return self.state_ns
        self.state_ns = t
        return t

    # ---- feeding -----------------------------------------------------------

    def _opened(self, e):
        """Count one event; its mission_ns, or None (an anomaly) when it has none."""
        self.index += 1
        if not isinstance(e, dict):
            self.anomaly("not_an_event", repr(e)[:60])
            return None
        t = e.get("mission_ns")
        if t.__class__ is not int and (not isinstance(t, int) or isinstance(t, bool)):
            self.anomaly("missing_field", "%s event without integer mission_ns" % e.get("kind"))
            return None
        if t > self.end_ns:
            self.end_ns = t
        return t

    def frame(self, e):
        """The view of one `frame` event (a dict with kind "frame"), or None
        when it is skipped: what feed() yields for it, without a generator
        (the composer's path for the run's most common events)."""
        t = self._opened(e)
        return None if t is None else self._frame(e, t)

    def feed(self, e):
        """Yield the views of one trace event (none for one that is skipped)."""
        t = self._opened(e)
        if t is None:
            return
        kind = e.get("kind")
        if kind == "frame":
            v = self._frame(e, t)
            if v is not None:
                yield v
        elif kind == "fault":
            yield from self._fault(e, t)
        elif kind == "node":
            v = View("node", t)
            v.event = str(e.get("event"))
            v.msg = e
            if v.event in ("node_added", "cluster_split"):
                self._regroup(e)
            yield v
        elif kind == "link":
            v = View("link", t)
            v.state = str(e.get("state"))
            yield v
        elif kind == "rollout":  # the rollout orchestrator's decisions (ground/rollout_run.py)
            v = View("rollout", t)
            v.msg = e
            yield v
        elif kind == "radio":
            v = self._radio(e, t)
            if v is not None:
                yield v
        elif kind == "header" and self.index == 1:
            pass  # a reader's whole output passed in, header first: fine
        elif kind == "end":
            v = View("end", t)
            v.status, v.reason, v.frames = e.get("status"), e.get("reason"), e.get("frames")
            yield v
        else:
            self.anomaly("unknown_kind", repr(kind))

    def _regroup(self, e):
        """A daughter added, a cluster split (ground/replication.py): the
        node table and the clusters' members follow, from this event on."""
        if e.get("event") == "node_added":
            nid, c = get_int(e, "node"), get_int(e, "cluster")
            if nid is None or c is None or nid <= 0 or nid in self.nodes:
                self.anomaly("missing_field", "node_added without a new integer node and cluster")
                return
            self.nodes[nid] = Node(str(c))
            moves = {nid: (None, str(c))}
        else:
            c, new, high = get_int(e, "cluster"), get_int(e, "new_cluster"), e.get("high")
            if c is None or new is None or not isinstance(high, list):
                self.anomaly("missing_field", "cluster_split without cluster, new_cluster and high")
                return
            moves = {n: (str(c), str(new)) for n in high if n in self.nodes}
        for n, (old, new) in moves.items():
            if old is not None:
                self.members[old] = [m for m in self.members.get(old, []) if m != n]
            if new not in self.members:
                self.new_clusters.append(new)
            self.members[new] = sorted(self.members.get(new, []) + [n])
            self.nodes[n].cluster = new
            if 0 <= int(new) < 0xFFF:
                self.cluster_of_addr[cluster_addr(int(new))] = new

    def close(self):
        """The last view: every claim still open ends at its last frame."""
        if self.closed:
            return None
        self.closed = True
        v = View("close", self.end_ns)
        v.ended = [self._end_claim(nid, n) for nid, n in self.nodes.items() if n.claim is not None]
        return v

    def _frame(self, e, t):
        fate = e.get("fate")
        fid = e.get("id")
        if fid is None or isinstance(fid, (dict, list)):
            self.anomaly("missing_field", "frame event without id")
            return None
        if fate == "sent":
            return self._sent(e, self._clock(t), fid)
        if fid not in self.known_ids:
            self.anomaly("unknown_frame", "%s for frame %r never sent" % (fate, fid))
            return None
        to = e.get("to", "missing")
        if to is not None and to.__class__ is not int and get_int(e, "to") is None and fate in ("delivered", "dropped"):
            self.anomaly("missing_field", "%s of frame %r without an integer `to`" % (fate, fid))
            to = "skip"
        copy = e.get("copy")
        if copy.__class__ is not int:
            copy = get_int(e, "copy") or 0
        reason = None
        if fate == "dropped":
            reason = e.get("reason")
            if not isinstance(reason, str):
                self.anomaly("missing_field", "dropped frame %r without reason" % (fid,))
                reason = "unknown"
        elif fate not in ("delivered", "duplicated", "corrupted", "converted"):
            self.anomaly("unknown_fate", repr(fate))
            return None
        return Fate(t, fate, fid, to, copy, reason)

    def _radio(self, e, t):
        nid, fid = get_int(e, "node"), e.get("id")
        start, air, size = get_int(e, "start_ns"), get_int(e, "airtime_ns"), get_int(e, "len")
        if nid is None or start is None or air is None or size is None or fid not in self.known_ids:
            self.anomaly("missing_field", "radio event without node, a sent frame's id, start_ns, airtime_ns, len")
            return None
        v = View("radio", t)
        v.fid, v.start, v.airtime, v.size = fid, start, air, size
        v.type = e.get("type") if isinstance(e.get("type"), str) else "unknown"
        n = self.nodes.get(nid)
        if n is not None:
            v.nid, v.node, v.cluster = nid, n, n.cluster
        elif nid != GROUND:
            self.anomaly("unknown_node", "radio event of node %d not in the header" % nid)
            return None
        return v

    def _recipients(self, src, dst):
        if dst == GROUND:
            return set()
        if dst == BROADCAST:
            return set(self.nodes) - {src}
        if dst == self.region_addr:
            return (self.electors & self.nodes.keys() if self.partial else self.electors) - {src}
        if dst >= CLUSTER_BASE:
            c = self.cluster_of_addr.get(dst)
            return set(self.members[c]) - {src} if c is not None else set()
        return {dst} if not self.partial or dst in self.nodes else set()

    def _sent(self, e, t, fid):
        v = View("sent", t)
        v.fid = fid
        self.known_ids.add(fid)
        v.bad = bad = "bad" in e  # the ground could not decode it: its src may be unknown
        src, dst = get_int(e, "src"), get_int(e, "dst")
        v.dst = dst
        if src is not None and "dst" in e and e["dst"] is None:
            return v  # not routed (from a node that is down, or undecodable): counted only
        if src is None or dst is None:
            if not bad:
                self.anomaly("missing_field", "sent frame %r without integer src/dst" % (fid,))
            return v
        v.recipients = self._recipients(src, dst)
        if src == GROUND:
            return v  # the ground's own frames (config): counted, no node state
        n = self.nodes.get(src)
        if n is None:
            if not bad:
                self.anomaly("unknown_node", "frame %r from node %d not in the header" % (fid, src))
            return v
        type_ = e.get("type")
        if not isinstance(type_, str):
            self.anomaly("missing_field", "sent frame %r without type" % (fid,))
            type_ = "unknown"
        size = get_int(e, "len")
        if size is None:
            self.anomaly("missing_field", "sent frame %r without len" % (fid,))
            size = 0
        v.nid, v.node, v.cluster, v.type, v.size = src, n, n.cluster, type_, size
        v.came_up = not n.live()
        if v.came_up:
            n.down = False
            n.spoke = True
        if bad:
            return v
        msg = e.get("msg")
        if not isinstance(msg, dict):
            self.anomaly("missing_field", "sent frame %r without msg" % (fid,))
            msg = {}
        v.msg = msg
        if not claims.on_own_cluster(dst, cluster_addr(int(n.cluster))):
            # Not the node's own cluster: a regional seat's election traffic
            # (docs/MARKET.md). Its claims are not claims on the cluster.
            return v
        v.own = True
        ended = []
        # A claim is what ground/claims.py says (the history checker's
        # one_coordinator reads the same): never a frame the router rewrote.
        said = claims.said_by_sender(e)
        if type_ == "coordinator":
            term = get_int(msg, "term")
            if term is None:
                self.anomaly("missing_field", "coordinator frame %r without term" % (fid,))
            elif said:
                self._claim(src, n, term, t, fid, ended)
                v.claim_term = term
        elif type_ == "heartbeat":
            role, term, coord = get_int(msg, "role"), get_int(msg, "term"), get_int(msg, "coordinator")
            if role is None or term is None or coord is None:
                self.anomaly("missing_field", "heartbeat %r without role/term/coordinator" % (fid,))
            else:
                if said and role == ROLE_COORDINATOR:
                    self._claim(src, n, term, t, fid, ended)
                    v.claim_term = term
                elif said and n.claim is not None:
                    ended.append(self._end_claim(src, n))
                v.hb = (role, term, coord)
        elif type_ == "telemetry":
            role, alive, suspect = get_int(msg, "role"), get_int(msg, "alive"), get_int(msg, "suspect")
            if role is None or alive is None or suspect is None:
                self.anomaly("missing_field", "telemetry %r without role/alive/suspect" % (fid,))
            else:
                term = claims.claimed_term(type_, msg) if said else None
                if term is not None:
                    self._claim(src, n, term, t, fid, ended)
                    v.claim_term = term
                elif said and role != ROLE_COORDINATOR and n.claim is not None:
                    ended.append(self._end_claim(src, n))
                v.tel = (role, alive, suspect)
        v.ended = ended
        return v

    def _fault(self, e, t):
        t = self._clock(t)
        name = e.get("fault")
        if not isinstance(name, str):
            self.anomaly("missing_field", "fault without a name")
            return
        targets = []
        if "node" in e and e["node"] is not None:
            targets = [e["node"]]
        elif isinstance(e.get("nodes"), (list, tuple)):
            targets = e["nodes"]
        v = View("fault", t)
        v.name, v.targets = name, targets
        v.detail = e.get("detail") if isinstance(e.get("detail"), dict) else None
        groups = e.get("groups")
        lists = (list, tuple)  # lists in a file, maybe tuples as the run records them
        v.groups = groups if isinstance(groups, lists) and all(isinstance(g, lists) for g in groups) else None
        yield v
        if name not in DOWN_FAULTS:
            return
        if not targets:
            self.anomaly("missing_field", "%s fault without node" % name)
        for nid in targets:
            n = self.nodes.get(nid) if isinstance(nid, int) and not isinstance(nid, bool) else None
            if n is None:
                self.anomaly("unknown_node", "%s fault on node %r not in the header" % (name, nid))
                continue
            if n.down:
                continue  # already down: nothing more stops
            d = View("down", t)
            d.nid, d.node, d.cluster, d.fault = nid, n, n.cluster, name
            d.was_live = n.live()
            claim = n.claim
            if claim is not None and (self.silence_ns is None or t - claim["last"] <= self.silence_ns):
                d.claim_term = claim["term"]
            d.ended = [self._end_claim(nid, n)] if claim is not None else []
            n.down = True
            n.spoke = False
            yield d

    # ---- claims ------------------------------------------------------------

    def _claim(self, nid, n, term, t, fid, ended):
        claim = n.claim
        if claim is not None and self.silence_ns is not None and t - claim["last"] > self.silence_ns:
            ended.append(self._end_claim(nid, n))
            claim = None
        if claim is None:
            n.claim = {"start": t, "last": t, "term": term, "id": fid}
        else:
            claim["last"] = t
            claim["term"] = max(claim["term"], term)

    def _end_claim(self, nid, n):
        c = n.claim
        n.claim = None
        return (nid, n.cluster, c["start"], c["last"])
