"""The history checker: invariants over a whole run trace.

    report = check("runs/x/trace.jsonl", scenario="bench")
    report.ok                 # True when no invariant is broken
    print(report.format())    # each violation with the frame ids and trace lines
    python -m hil check runs/x/trace.jsonl [--scenario bench] [--json]

ground.metrics *measures* a run; this module *judges* it: every rule below
must hold in every run, whatever the impairments, and a single breach is a
failure naming the frames and lines that break it. Like ground.metrics it is
a pure function of the trace (docs/TRACE.md), fed one event at a time
(`_Checker.feed`) and read at the end (`_Checker.report`).

The invariants (docs/HIL.md has the long form):

  trace              the trace reads to its `end` event: a torn last line, a
                     bad line, no `end` event, or (when the caller names one)
                     another scenario in the header is a violation naming the
                     file and line.
  one_coordinator    at most one node claims coordinator per (cluster, term).
                     A claim is a `sent` COORDINATOR frame, or a heartbeat or
                     telemetry frame with role 2 (msgs.ROLE_COORDINATOR).
  lease_exclusive    no resource is leased to two nodes for overlapping slots.
  lease_awarded      no node acts on a lease it was not awarded.
  major_versions     at most 3 firmware major versions at once (the header's
                     nodes and, as they boot, their HELLO frames).
  firmware_declared  a node's HELLO reports the firmware major the header
                     (the scenario) says it runs.
  unique_ids         a daughter never reuses an id (history_replication.py).
  frame_fates        every sent frame has, for each recipient, exactly one
                     final fate (delivered or dropped) per copy; no fate for a
                     frame never sent.

Leases. The market tier's messages are not fixed yet, so message types are
recognised by name, from firmware/node/msgs.py's LAYOUTS at run time and from
the type names the trace itself carries; a name is split on "_" and:
  any word in RELEASE_WORDS -> a release, else any in USE_WORDS -> an act on
  a lease, else any in AWARD_WORDS -> an award.
Fields are found by the first name present in each alias list below (FIELDS).
A lease covers slots [first + k*period, first + k*period + span) for k in
0..count-1 (firmware/node/ledger.py's shape); an award with no slot fields
covers every slot (the conservative reading). Who is doing what follows from
the frame's flags where the firmware has them (msgs.AWARD_REPLICA,
AWARD_SYNC, AWARD_CLAIM), else from its addresses:
  - an award sent to its holder, or to a group, is a lease (the same holder
    again is a resend or an extension, never a conflict); every award to
    different holders for overlapping slots is a violation, whatever came
    before it (a RESYNC, a takeover, a void round);
  - a replica or a ledger copy (AWARD_REPLICA / AWARD_SYNC: to another
    elector, or a ledger fetched by a new coordinator) is not a lease, even
    when it goes to the holder itself (an elector that also bids); without
    those flags, an award sent to another node than its holder is a copy;
  - the regional coordinator's own award never crosses the wire (it goes
    to itself); its replicas (src == holder) become its lease when the same
    coordinator announces that round COMPLETE (PRICES status 1, broadcast):
    a round no majority held is voided and never leased;
  - an award sent *by* its holder with the claim flag is a claim (a resync
    after a takeover), an act on a lease; where the firmware has no claim
    flag, every award sent by its holder is read as a claim, and one without
    it is the coordinator writing down its own lease;
  - a release by its holder is an act on a lease: it must have been awarded;
  - a release cuts the holder's leases on that resource from `from_slot`.
With no award type in msgs nor in the trace, both lease invariants are
skipped with a note.

Frames the router rewrote in flight (a byzantine fault, `orig_hex`) are not
counted as their sender's claims: the sender did not say them.

Where this departs from STYLE.md: ground-side code under CPython, so it
allocates freely and reads the firmware's message table at run time.
"""

import json
import re

from ground import trace as trace_mod
from ground.history_containment import INVARIANTS as containment_invariants
from ground.history_containment import ContainmentChecker
from ground.history_replication import INVARIANTS as replication_invariants
from ground.history_replication import ReplicationChecker

MAX_MAJOR_VERSIONS = 3  # DESIGN.md: at most 3 concurrent major versions fleet-wide
ROLE_COORDINATOR = 2  # msgs.ROLE_COORDINATOR (checked against msgs at import below)
GROUND = 0
CLUSTER_BASE = 0xF000
BROADCAST = 0xFFFF
_LISTED = 20  # frames listed in one violation before "and N more"
_MAX_OCCURRENCES = 4096  # a lease expanded into more occurrences is taken as one span
_MAX_PENDING = 64  # rounds of a coordinator's own replicated awards kept until their COMPLETE
ROUND_COMPLETE = 1  # msgs.ROUND_COMPLETE (PRICES status)

AWARD_WORDS = ("award", "lease", "grant")
USE_WORDS = ("use", "draw", "consume", "exercise")
RELEASE_WORDS = ("release", "revoke", "cancel", "return")

# Payload field aliases for the lease messages, first match wins.
FIELDS = {
    "resource": ("res", "resource", "resource_id", "rid"),
    "holder": ("holder", "node", "winner", "bidder", "node_id"),
    "first": ("first", "first_slot", "start_slot", "slot", "start"),
    "span": ("span", "slots"),
    "period": ("period",),
    "count": ("count", "occurrences"),
    "end": ("end", "end_slot", "until", "expires"),
    "from": ("from_slot", "from"),  # a release: the first slot given back
}

INVARIANTS = (
    "trace", "one_coordinator", "lease_exclusive", "lease_awarded", "major_versions", "firmware_declared",
    "frame_fates",
) + containment_invariants + replication_invariants


class Violation:
    """One breach of one invariant: what, and the frames and lines that show it."""

    def __init__(self, invariant, message, frame_ids=(), lines=()):
        self.invariant = invariant
        self.message = message
        self.frame_ids = list(frame_ids)
        self.lines = list(lines)

    def to_dict(self):
        return {"invariant": self.invariant, "message": self.message, "frame_ids": self.frame_ids, "lines": self.lines}

    def __str__(self):
        return "%s: %s" % (self.invariant, self.message)

    def __repr__(self):
        return "Violation(%r, %r)" % (self.invariant, self.message)


class Report:
    """What check() found. `ok` when nothing is broken; `notes` say what was
    not checked and why; `readable` is False when the file could not be read
    at all (no header)."""

    def __init__(self, path):
        self.path = path
        self.violations = []
        self.notes = []
        self.checked = []
        self.header = None
        self.lines = 0
        self.torn = False
        self.readable = True

    @property
    def ok(self):
        return not self.violations

    def by_invariant(self, name):
        return [v for v in self.violations if v.invariant == name]

    def to_dict(self):
        return {
            "trace": self.path, "ok": self.ok, "scenario": (self.header or {}).get("scenario"), "lines": self.lines,
            "torn": self.torn, "checked": self.checked, "violations": [v.to_dict() for v in self.violations],
            "notes": self.notes,
        }

    def format(self):
        h = self.header or {}
        head = "history of %s (scenario %s, %d lines): " % (self.path, h.get("scenario", "?"), self.lines)
        out = [head + ("clean" if self.ok else "%d violation(s)" % len(self.violations))]
        for v in self.violations:
            out.append("  VIOLATION " + str(v))
        for n in self.notes:
            out.append("  note: " + n)
        return "\n".join(out)

    def __str__(self):
        return self.format()


# ---- message types, from the firmware's table ------------------------------


def _words(type_name):
    return set(str(type_name).lower().split("_"))


def classify(type_name):
    """'award', 'use', 'release' or None for a message type name."""
    w = _words(type_name)
    if w & set(RELEASE_WORDS):
        return "release"
    if w & set(USE_WORDS):
        return "use"
    if w & set(AWARD_WORDS):
        return "award"
    return None


def _firmware_msgs():
    """firmware/node/msgs.py as it is now, or None: a broken firmware tree
    must not stop the checker."""
    try:
        from ground import firmware
    except Exception:
        return None
    return firmware.msgs


def firmware_type_names():
    """Every message type name in firmware/node/msgs.py's LAYOUTS, now."""
    msgs = _firmware_msgs()
    return [layout[0] for layout in msgs.LAYOUTS.values()] if msgs is not None else []


# ---- leases -------------------------------------------------------------------


def _field(msg, key):
    for name in FIELDS[key]:
        v = msg.get(name)
        if isinstance(v, int) and not isinstance(v, bool):
            return v
    return None


def lease_intervals(msg):
    """Half-open slot intervals [(a, b), ...] a lease message covers, or None
    for 'every slot' (no slot fields)."""
    first = _field(msg, "first")
    if first is None:
        return None
    end = _field(msg, "end")
    if end is not None and _field(msg, "span") is None:
        return [(first, max(end, first + 1))]
    span = _field(msg, "span") or 1
    count = _field(msg, "count") or 1
    period = _field(msg, "period") or span
    if count > _MAX_OCCURRENCES:
        return [(first, first + (count - 1) * period + span)]
    return [(first + k * period, first + k * period + span) for k in range(count)]


def _overlap(a, b):
    """First overlapping (lo, hi) of two interval lists (None = everything), or None."""
    if a is None and b is None:
        return (0, float("inf"))
    if a is None or b is None:
        x = b if a is None else a
        return x[0] if x else None
    a, b = sorted(a), sorted(b)
    i = j = 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if lo < hi:
            return (lo, hi)
        if a[i][1] <= b[j][1]:
            i += 1
        else:
            j += 1
    return None


def _covers(intervals, slot):
    if intervals is None or slot is None:
        return True
    return any(lo <= slot < hi for lo, hi in intervals)


def _cut(intervals, from_slot):
    """The intervals with every slot from from_slot on removed (None: all slots)."""
    if intervals is None:
        return [(0, from_slot)] if from_slot > 0 else []
    out = []
    for lo, hi in intervals:
        if lo < from_slot:
            out.append((lo, min(hi, from_slot)))
    return out


def _slots(iv):
    lo, hi = iv
    return "all slots" if hi == float("inf") else ("slot %d" % lo if hi == lo + 1 else "slots %d-%d" % (lo, hi - 1))


class _Lease:
    def __init__(self, resource, holder, intervals, fid, line):
        self.resource = resource
        self.holder = holder
        self.intervals = intervals
        self.fid = fid
        self.line = line


# ---- the checker ----------------------------------------------------------------


class _Sent:
    __slots__ = ("fid", "line", "src", "dst", "type", "need", "finals", "dups", "untargeted")

    def __init__(self, fid, line, src, dst, type_, need):
        self.fid = fid
        self.line = line
        self.src = src
        self.dst = dst
        self.type = type_
        self.need = need  # recipients that must get a final fate
        self.finals = {}  # recipient -> [lines of delivered/dropped]
        self.dups = {}  # recipient -> extra copies made
        self.untargeted = None  # line of a `dropped` with to null (covers everyone)


class _Checker:
    def __init__(self, path, header, scenario=None, type_names=None):
        self.r = Report(path)
        self.r.header = header
        msgs = _firmware_msgs()
        self.role_coordinator = getattr(msgs, "ROLE_COORDINATOR", ROLE_COORDINATOR)
        # the bit that marks an award-type frame as a holder's claim to a new
        # coordinator (msgs.AWARD_CLAIM), None where the firmware has none
        self.claim_flag = getattr(msgs, "AWARD_CLAIM", None)
        # the bits that mark an award-type frame as a copy (a replica for an
        # elector, part of a ledger copy), 0 where the firmware has none
        self.copy_flags = getattr(msgs, "AWARD_REPLICA", 0) | getattr(msgs, "AWARD_SYNC", 0)
        self.replica_flag = getattr(msgs, "AWARD_REPLICA", 0)
        self.complete = getattr(msgs, "ROUND_COMPLETE", ROUND_COMPLETE)
        self.own_pending = {}  # (coordinator, term, round) -> [_Lease]: its own awards, until COMPLETE
        self.nodes = {}  # node id -> cluster
        self.members = {}  # cluster -> set of node ids
        market = header.get("market") if isinstance(header.get("market"), dict) else {}
        self.electors = set(market.get("electors") or ())  # a market region's seats
        # Several regions (header `regions`, docs/TRACE.md): each region's address to its own electors.
        # Each region's market leases its own resources: leases are keyed by (region, resource) then.
        self.region_electors = {}
        self.cluster_region = {}
        for r in header.get("regions") or ():
            if isinstance(r, dict) and isinstance(r.get("region"), int):
                self.region_electors[0xE00 | r["region"]] = set(r.get("electors") or ())
                self.cluster_region.update(dict.fromkeys(r.get("clusters") or (), r["region"]))
        region = market.get("region", 1) if isinstance(market.get("region", 1), int) else 1
        self.region_addr = CLUSTER_BASE | 0xE00 | region
        self.containment = ContainmentChecker(self.electors, self._violate)  # quarantine_* (history_containment.py)
        self.majors = {}  # node id -> firmware major the header declares
        for key, info in (header.get("nodes") or {}).items():
            try:
                nid = int(key)
                cluster = int(info.get("cluster"))
            except (TypeError, ValueError, AttributeError):
                self._violate("trace", "line 1: header node %r has no integer id and cluster" % (key,), lines=[1])
                continue
            self.nodes[nid] = cluster
            self.members.setdefault(cluster, set()).add(nid)
            major = _major(info.get("firmware"))
            if major is not None:
                self.majors[nid] = major
        self.replication = ReplicationChecker(self.nodes, self.members, self._violate)  # unique_ids
        if scenario is not None and header.get("scenario") != scenario:
            self._violate("trace", "%s line 1: the trace is of scenario %r, expected %r"
                          % (path, header.get("scenario"), scenario), lines=[1])
        names = list(type_names if type_names is not None else firmware_type_names())
        self.fw_lease_types = sorted(n for n in names if classify(n))
        self.kinds = {n: classify(n) for n in names if classify(n)}
        self.claims = {}  # (cluster, term) -> {node: (fid, line)}
        self.split_reported = {}
        self.leases = {}  # resource (with several regions: (region, resource)) -> [_Lease]
        self.lease_msgs = 0
        self.copies = 0
        self.acts = 0
        self.unreadable_leases = []
        self.sent = {}  # frame id -> _Sent
        self.rewritten = 0
        self.running = {}  # node id -> (major, fid, line) from its latest HELLO
        self.too_many_reported = set()
        self.end = None
        self.line = 1

    def _violate(self, invariant, message, frame_ids=(), lines=()):
        self.r.violations.append(Violation(invariant, message, frame_ids, lines))

    # ---- feeding --------------------------------------------------------

    def feed(self, e, line):
        self.line = line
        kind = e.get("kind")
        if kind == "frame":
            self._frame(e, line)
        elif kind == "end":
            if self.end is not None:
                self._violate("trace", "line %d: a second end event (the first at line %d)" % (line, self.end), lines=[self.end, line])
            self.end = line
        elif kind == "node" and self.end is None:
            self.replication.node_event(e, line)
        elif self.end is not None and kind in ("fault", "link", "node"):
            self._violate("trace", "line %d: a %s event after the end event (line %d)" % (line, kind, self.end),
                          lines=[self.end, line])

    def _frame(self, e, line):
        fate = e.get("fate")
        fid = e.get("id")
        if not isinstance(fid, int) or isinstance(fid, bool):
            self._violate("trace", "line %d: frame event without an integer id" % line, lines=[line])
            return
        if fate == "sent":
            self._sent(e, fid, line)
            return
        s = self.sent.get(fid)
        if s is None:
            self._violate("frame_fates", "line %d: %s for frame %d, which was never sent" % (line, fate, fid),
                          frame_ids=[fid], lines=[line])
            return
        to = e.get("to")
        if fate in ("delivered", "dropped"):
            if to is None:
                if fate == "dropped":
                    if s.untargeted is not None or s.finals:
                        self._violate("frame_fates", "frame %d (sent line %d): dropped for every recipient at line %d"
                                      " after other fates" % (fid, s.line, line), frame_ids=[fid], lines=[s.line, line])
                    s.untargeted = line
                else:
                    self._violate("trace", "line %d: delivered frame %d without a recipient" % (line, fid),
                                  frame_ids=[fid], lines=[line])
                return
            s.finals.setdefault(to, []).append(line)
        elif fate == "duplicated":
            s.dups[to] = s.dups.get(to, 0) + 1
        elif fate not in ("corrupted", "converted"):  # alterations on the way, not final fates
            self._violate("trace", "line %d: unknown fate %r for frame %d" % (line, fate, fid), frame_ids=[fid], lines=[line])

    def _sent(self, e, fid, line):
        if fid in self.sent:
            self._violate("frame_fates", "line %d: frame id %d sent twice (first at line %d)" % (line, fid, self.sent[fid].line),
                          frame_ids=[fid], lines=[self.sent[fid].line, line])
            return
        src, dst = e.get("src"), e.get("dst")
        type_ = e.get("type")
        self.sent[fid] = _Sent(fid, line, src, dst, type_, self._recipients(src, dst))
        if "bad" in e or not isinstance(src, int) or src not in self.nodes:
            return  # the ground's own frames, undecodable ones: no node said anything
        if "orig_hex" in e:
            self.rewritten += 1
            return
        msg = e.get("msg") if isinstance(e.get("msg"), dict) else {}
        own = dst == GROUND or dst == CLUSTER_BASE | self.nodes[src]
        if type_ in ("coordinator", "heartbeat", "telemetry") and own:
            # (A regional seat's claims travel on the region's address:
            # they are not claims on the node's cluster, docs/MARKET.md.)
            self._claim(src, type_, msg, fid, line)
        elif type_ == "hello":
            self._hello(src, msg, fid, line)
        if self.electors:
            self.containment.sent(src, dst, type_, msg, fid, line, self.region_addr)
        elif type_ == "prices" and dst == BROADCAST and msg.get("status") == self.complete and self.own_pending:
            for x in self.own_pending.pop((src, msg.get("term"), msg.get("round")), ()):
                self._award(x.resource, x.holder, x.intervals, x.fid, x.line)  # its own award: committed
        kind = self.kinds.get(type_)
        if kind is None and type_ is not None and classify(type_):
            kind = self.kinds[type_] = classify(type_)
        if kind is not None:
            self.lease_msgs += 1
            self._lease(kind, src, dst, type_, msg, fid, line)

    def _recipients(self, src, dst):
        if dst is None or not isinstance(dst, int):
            return None  # not routed: one `dropped` with to null is its fate
        if dst == GROUND:
            return set()
        if dst == BROADCAST:
            return set(self.nodes) - {src}
        if dst >= CLUSTER_BASE:
            if (dst & 0x0FFF) >= 0xE00:  # a market region's electors
                if self.region_electors:
                    return set(self.region_electors.get(dst & 0x0FFF, ())) - {src}
                return set(self.electors) - {src}
            return set(self.members.get(dst & 0x0FFF, ())) - {src}
        return {dst} if dst in self.nodes and dst != src else None

    # ---- coordinators ---------------------------------------------------------

    def _claim(self, src, type_, msg, fid, line):
        term = msg.get("term")
        if not isinstance(term, int):
            return
        if type_ != "coordinator" and msg.get("role") != self.role_coordinator:
            return
        key = (self.nodes[src], term)
        who = self.claims.setdefault(key, {})
        if src in who:
            return
        who[src] = (fid, line)
        if len(who) >= 2:
            nodes = sorted(who)
            parts = ", ".join("node %d (frame %d, line %d)" % (n, who[n][0], who[n][1]) for n in nodes)
            v = self.split_reported.get(key)
            text = "cluster %d term %d has %d coordinators: %s" % (key[0], term, len(nodes), parts)
            ids = [who[n][0] for n in nodes]
            lines = [who[n][1] for n in nodes]
            if v is None:
                v = Violation("one_coordinator", text, ids, lines)
                self.r.violations.append(v)
                self.split_reported[key] = v
            else:
                v.message, v.frame_ids, v.lines = text, ids, lines

    # ---- versions ----------------------------------------------------------

    def _hello(self, src, msg, fid, line):
        major = msg.get("fw_major")
        if not isinstance(major, int):
            return
        declared = self.majors.get(src)
        if declared is not None and declared != major:
            self._violate("firmware_declared", "node %d says firmware major %d in its HELLO (frame %d, line %d); the"
                          " header declares %d" % (src, major, fid, line, declared), [fid], [line])
        self.running[src] = (major, fid, line)
        now = {}
        for nid in self.nodes:
            if nid in self.running:
                now.setdefault(self.running[nid][0], []).append(nid)
            elif nid in self.majors:
                now.setdefault(self.majors[nid], []).append(nid)
        key = tuple(sorted(now))
        if len(now) > MAX_MAJOR_VERSIONS and key not in self.too_many_reported:
            self.too_many_reported.add(key)
            seen = ["%d on node%s %s" % (m, "s" if len(now[m]) > 1 else "", ",".join(str(n) for n in sorted(now[m])))
                    for m in sorted(now)]
            ids = [self.running[n][1] for ns in now.values() for n in ns if n in self.running]
            lines = [self.running[n][2] for ns in now.values() for n in ns if n in self.running]
            self._violate("major_versions", "%d firmware major versions at once at line %d (at most %d): %s"
                          % (len(now), line, MAX_MAJOR_VERSIONS, "; ".join(seen)), sorted(ids), sorted(lines))

    # ---- leases ----------------------------------------------------------------

    def _lease(self, kind, src, dst, type_, msg, fid, line):
        res = _field(msg, "resource")
        if res is None:
            self.unreadable_leases.append("frame %d (%s, line %d): no resource field (looked for %s)"
                                          % (fid, type_, line, "/".join(FIELDS["resource"])))
            return
        holder = _field(msg, "holder")
        if holder is None and kind != "award":
            holder = src
        if holder is None and isinstance(dst, int) and dst in self.nodes:
            holder = dst
        if holder is None:
            self.unreadable_leases.append("frame %d (%s, line %d): no holder (looked for %s, or a node as dst)"
                                          % (fid, type_, line, "/".join(FIELDS["holder"])))
            return
        if kind == "release":
            if src == holder:
                self._acts(src, res, lease_intervals(msg), "releases", type_, fid, line)
            start = _field(msg, "from")
            if start is None:
                start = _field(msg, "first")
            for x in self.leases.get(self._res(res, holder), ()):
                if x.holder == holder:
                    x.intervals = [] if start is None else _cut(x.intervals, start)
            return
        flags = msg.get("flags")
        flags = flags if isinstance(flags, int) and not isinstance(flags, bool) else None
        if kind == "award" and flags is not None and flags & self.copy_flags and not (
                self.claim_flag is not None and flags & self.claim_flag):
            self.copies += 1  # a replica or a ledger copy: no lease, whoever it went to
            if flags & self.replica_flag and src == holder:
                key = (src, msg.get("term"), msg.get("round"))
                if key not in self.own_pending and len(self.own_pending) >= _MAX_PENDING:
                    del self.own_pending[next(iter(self.own_pending))]  # the oldest round: never completed
                mine = self.own_pending.setdefault(key, [])
                iv = lease_intervals(msg)
                if not any(x.resource == res and x.intervals == iv for x in mine):  # one copy per elector
                    mine.append(_Lease(res, holder, iv, fid, line))
            return
        own_award = False
        if kind == "award" and src == holder and self.claim_flag is not None:
            own_award = flags is not None and not flags & self.claim_flag
        if kind == "use" or (src == holder and not own_award):
            # An act on a lease: a use, or the holder itself asserting what it
            # holds (an award-type frame from its holder, e.g. a resync claim).
            if kind == "use":
                slot = _field(msg, "first")
                self._acts(src, res, None if slot is None else [(slot, slot + 1)], "acts on", type_, fid, line)
            else:
                self._acts(src, res, lease_intervals(msg), "claims", type_, fid, line)
            return
        if isinstance(dst, int) and dst in self.nodes and dst != holder and not own_award:
            self.copies += 1  # a copy for someone else (the standby's replica): not a lease until the holder gets it
            return
        self._award(res, holder, lease_intervals(msg), fid, line)

    def _award(self, res, holder, intervals, fid, line):
        """A lease to `holder`: exclusive against every other holder's."""
        for x in self.leases.get(self._res(res, holder), ()):
            if x.holder == holder:
                continue  # the same award again (a retransmission, a resend after a takeover) or an extension
            iv = _overlap(x.intervals, intervals)
            if iv is not None:
                boot = self.running.get(x.holder)
                since = ("; node %d rebooted in between (HELLO line %d) and so forgot its lease, which does not"
                         " make this one less of a double lease" % (x.holder, boot[2])) if boot and boot[2] > x.line else ""
                self._violate("lease_exclusive", "resource %d leased to node %d (frame %d, line %d) and to node %d"
                              " (frame %d, line %d) for overlapping %s%s"
                              % (res, x.holder, x.fid, x.line, holder, fid, line, _slots(iv), since),
                              [x.fid, fid], [x.line, line])
        self.leases.setdefault(self._res(res, holder), []).append(_Lease(res, holder, intervals, fid, line))

    def _res(self, res, holder):
        """The lease table's key: the resource, in the holder's region when there are several."""
        if not self.cluster_region:
            return res
        return self.cluster_region.get(self.nodes.get(holder)), res

    def _acts(self, node, res, intervals, verb, type_, fid, line):
        """`node` acts on resource `res` in `intervals` (None: any slot): it
        must hold a lease on it that was awarded earlier in the trace."""
        self.acts += 1
        mine = [x for x in self.leases.get(self._res(res, node), ()) if x.holder == node]
        if any(_overlap(x.intervals, intervals) is not None for x in mine if x.intervals != []):
            return
        others = [x for x in self.leases.get(self._res(res, node), ())
                  if x.holder != node and _overlap(x.intervals, intervals) is not None]
        who = ("; held by " + ", ".join("node %d (award frame %d, line %d)" % (x.holder, x.fid, x.line) for x in others)
               if others else "; nobody was awarded it")
        where = "" if intervals is None else " " + _slots((intervals[0][0], intervals[-1][1]))
        self._violate("lease_awarded", "node %d %s resource %d%s (%s frame %d, line %d) without an award%s"
                      % (node, verb, res, where, type_, fid, line, who),
                      [fid] + [x.fid for x in others], [line] + [x.line for x in others])

    # ---- the end ------------------------------------------------------------

    def report(self, torn):
        r = self.r
        r.checked = [x for x in INVARIANTS if x not in ("lease_exclusive", "lease_awarded")]
        if torn:
            self._violate("trace", "%s:%d: the last line is torn: the run was cut off mid-write"
                          % (r.path, self.line + 1), lines=[self.line + 1])
        elif self.end is None:
            self._violate("trace", "%s:%d: no end event after this line: the run did not finish"
                          % (r.path, self.line), lines=[self.line])
        if self.end is None:
            r.checked.remove("frame_fates")
            r.notes.append("frame_fates: not checked, the trace has no end (frames still in flight have no fate yet)")
        else:
            self._fates()
        if self.kinds:
            r.checked += ["lease_exclusive", "lease_awarded"]
            r.notes.append("leases: %d lease message(s), %d act(s) on leases, %d replica copies; types: %s"
                           % (self.lease_msgs, self.acts, self.copies,
                              ", ".join("%s=%s" % (k, v) for k, v in sorted(self.kinds.items()))))
        else:
            r.notes.append("lease_exclusive, lease_awarded: skipped: no award/lease message type in"
                           " firmware/node/msgs.py LAYOUTS nor in the trace (market tier not built yet)")
        for text in self.unreadable_leases[:_LISTED]:
            r.notes.append("lease message not understood: " + text)
        if len(self.unreadable_leases) > _LISTED:
            r.notes.append("... and %d more lease messages not understood" % (len(self.unreadable_leases) - _LISTED))
        if self.rewritten:
            r.notes.append("one_coordinator: %d frame(s) rewritten in flight by a byzantine fault not counted as"
                           " their sender's claims" % self.rewritten)
        return r

    def _fates(self):
        missing = []
        extra = []
        for s in self.sent.values():
            if s.untargeted is not None:
                continue
            if s.need is None:
                missing.append((s, ["everyone (the frame was not routed)"]))
                continue
            lack = []
            for to in sorted(s.need | set(s.finals)):
                want = 1 + s.dups.get(to, 0) if to in s.need else 0
                got = len(s.finals.get(to, ()))
                if s.dst == GROUND and to == GROUND:
                    continue  # the ground's own copy: delivered at once, not required
                if got < want:
                    lack.append(str(to) if want == 1 else "%d (%d of %d copies)" % (to, want - got, want))
                elif got > want:
                    extra.append((s, to, got, want))
            if lack:
                missing.append((s, lack))
        if missing:
            missing.sort(key=lambda x: x[0].line)
            shown = missing[:_LISTED]
            text = "; ".join("frame %d (%s %s -> %s, line %d): no fate for %s"
                             % (s.fid, s.type, s.src, s.dst, s.line, ", ".join(lack)) for s, lack in shown)
            if len(missing) > _LISTED:
                text += "; and %d more frames" % (len(missing) - _LISTED)
            self._violate("frame_fates", "%d sent frame(s) without a fate for every recipient: %s" % (len(missing), text),
                          [s.fid for s, _ in missing], [s.line for s, _ in missing])
        for s, to, got, want in sorted(extra, key=lambda x: x[0].line)[:_LISTED]:
            self._violate("frame_fates", "frame %d (%s %s -> %s, line %d) to %s: %d final fates (lines %s), expected %d"
                          % (s.fid, s.type, s.src, s.dst, s.line, to, got, ", ".join(map(str, s.finals[to])), want),
                          [s.fid], [s.line] + s.finals[to])


def _major(firmware):
    try:
        return int(str(firmware).partition(".")[0])
    except ValueError:
        return None


# ---- public API -----------------------------------------------------------------


def check(path, scenario=None, type_names=None):
    """Check every invariant over the trace at `path`; returns a Report.

    scenario: the scenario name the caller expects (a different one is a
    violation). type_names: message type names to recognise leases from
    (default: firmware/node/msgs.py's LAYOUTS); the trace's own type names
    are always added. Never raises on a bad trace: it is reported."""
    reader = trace_mod.TraceReader(path)
    header = None
    checker = None
    line = 0
    try:
        for line, e in enumerate(reader, 1):
            if line == 1:
                header = e
                checker = _Checker(path, header, scenario, type_names)
                checker.r.lines = 1
                continue
            checker.feed(e, line)
            checker.r.lines = line
    except trace_mod.TraceError as exc:
        r = checker.r if checker is not None else Report(path)
        r.readable = checker is not None
        r.violations.append(Violation("trace", str(exc), lines=[_line_of(str(exc), line + 1)]))
        r.notes.append("the checks stopped at the unreadable line; what came before was checked as far as it goes")
        return r
    except OSError as exc:
        r = Report(path)
        r.readable = False
        r.violations.append(Violation("trace", "%s: cannot read: %s" % (path, exc.strerror or exc)))
        return r
    if checker is None:
        r = Report(path)
        r.readable = False
        r.violations.append(Violation("trace", "%s: empty trace (no header)" % path, lines=[1]))
        return r
    r = checker.report(reader.torn)
    r.torn = reader.torn
    return r


def check_events(header, events, path="<events>", scenario=None, type_names=None, torn=False):
    """check() over a header and the events after it, already in memory
    (line numbers count the header as line 1)."""
    c = _Checker(path, header, scenario, type_names)
    c.r.lines = 1
    for i, e in enumerate(events, 2):
        c.feed(e, i)
        c.r.lines = i
    r = c.report(torn)
    r.torn = torn
    return r


def _line_of(text, default):
    m = re.search(r":(\d+):", text)
    return int(m.group(1)) if m else default


# ---- the `hil check` verb ------------------------------------------------------------


def add_arguments(parser):
    parser.add_argument("trace", help="a run's trace.jsonl")
    parser.add_argument("--scenario", metavar="NAME", help="fail unless the trace is of this scenario")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def main(args):
    """Exit status: 0 clean, 1 an invariant broken, 2 the file could not be read."""
    r = check(args.trace, scenario=args.scenario)
    print(json.dumps(r.to_dict(), indent=2, sort_keys=True) if args.json else r.format())
    if not r.readable:
        return 2
    return 0 if r.ok else 1
