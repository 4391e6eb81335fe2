"""The history checker's lease invariants (lease_exclusive, lease_awarded;
ground/history.py's docstring has the rules): which message types are
leases, the slots a lease covers, and LeaseRules, the part of the checker
(ground/history_checker.py) that keeps the leases awarded so far and judges
every award, use, claim and release against them."""

from ground.regions import region_cluster

_MAX_OCCURRENCES = 4096  # a lease expanded into more occurrences is taken as one span
_MAX_PENDING = 64  # rounds of a coordinator's own replicated awards kept until their COMPLETE
_RELEASES_KEPT = 256  # holders' releases remembered, so a copy of one is not judged again

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
    """Every message type name in firmware/node/msgs.py's all_layouts(), now."""
    msgs = _firmware_msgs()
    return [layout[0] for layout in msgs.all_layouts().values()] if msgs is not None else []


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


def _minus(intervals, removed):
    """The intervals without the slots of `removed` (both lists of half-open (lo, hi))."""
    out = list(intervals)
    for rlo, rhi in removed:
        kept = []
        for lo, hi in out:
            if hi <= rlo or lo >= rhi:
                kept.append((lo, hi))
                continue
            if lo < rlo:
                kept.append((lo, rlo))
            if hi > rhi:
                kept.append((rhi, hi))
        out = kept
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



def _pend(pending, key, res, holder, msg, fid, line):
    """Keep a replica of an award that is not a lease yet under `key` in
    `pending` (LeaseRules.own_pending: a coordinator's own award until its
    COMPLETE; seat_pending: the replica of an elector's own award, sent to it
    by the coordinator that prepared the round, until that elector completes
    the round itself after a takeover: its RESENDs to the other holders, then
    its COMPLETE, while no frame ever carries its own award to itself (chaos
    containment-sever seed 406)). One copy per award; the oldest key goes
    when _MAX_PENDING are kept (a round never completed)."""
    if key not in pending and len(pending) >= _MAX_PENDING:
        del pending[next(iter(pending))]
    mine = pending.setdefault(key, [])
    iv = lease_intervals(msg)
    if not any(x.resource == res and x.intervals == iv for x in mine):
        mine.append(_Lease(res, holder, iv, fid, line))


class LeaseRules:
    """The checker's lease rules (a mixin of history_checker._Checker, whose
    state they read and write: leases, own_pending, seat_pending, releases_seen, kinds,
    counters)."""

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
            if src == holder and self._first_release(src, msg):
                self._acts(src, res, lease_intervals(msg), "releases", type_, fid, line)
            start = _field(msg, "from")
            if start is None:
                start = _field(msg, "first")
            gone = lease_intervals(msg)  # only the released lease's slots: the holder may hold others on res
            for x in self.leases.get(self._res(res, holder, src), ()):
                if x.holder == holder:
                    if start is None:
                        x.intervals = []
                    elif gone is None or x.intervals is None:
                        x.intervals = _cut(x.intervals, start)
                    else:
                        x.intervals = _minus(x.intervals, [(max(lo, start), hi) for lo, hi in gone if hi > start])
            return
        flags = msg.get("flags")
        flags = flags if isinstance(flags, int) and not isinstance(flags, bool) else None
        if kind == "award" and flags is not None and flags & self.copy_flags and not (
                self.claim_flag is not None and flags & self.claim_flag):
            self.copies += 1  # a replica or a ledger copy: no lease, whoever it went to
            if flags & self.replica_flag and src == holder:  # the coordinator's own award, until its COMPLETE
                _pend(self.own_pending, (src, msg.get("term"), msg.get("round")), res, holder, msg, fid, line)
            elif flags & self.replica_flag and dst == holder:  # an elector's own, until it completes the round
                _pend(self.seat_pending, (holder, msg.get("round")), res, holder, msg, fid, line)
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
        self._award(res, holder, lease_intervals(msg), fid, line, src)

    def _first_release(self, src, msg):
        """False for a copy of a release this holder already sent: one act,
        judged once. A regional coordinator that holds a lease itself
        releases it locally and sends the release on to every other elector
        (market.py on_release): the first copy cuts the lease, and judging
        the next against the cut lease would call it a release of nothing.
        The last _RELEASES_KEPT releases are remembered."""
        key = (src, tuple(sorted((k, v) for k, v in msg.items() if isinstance(v, (int, str)))))
        seen = self.releases_seen
        if key in seen:
            return False
        if len(seen) >= _RELEASES_KEPT:
            del seen[next(iter(seen))]
        seen[key] = True
        return True

    def _award(self, res, holder, intervals, fid, line, via=None):
        """A lease to `holder` (sent by node `via`): exclusive against every other holder's."""
        key = self._res(res, holder, via)
        for x in self.leases.get(key, ()):
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
        self.leases.setdefault(key, []).append(_Lease(res, holder, intervals, fid, line))

    def _awarders_traced(self, node):
        """Whether every elector of node's region (the market's, with one) is in the trace's header."""
        region = self.cluster_region.get(self.nodes.get(node)) if self.region_electors else None
        electors = self.region_electors.get(region_cluster(region), ()) if region is not None else self.electors
        return all(e in self.nodes for e in electors)

    def _res(self, res, holder, via=None):
        """The lease table's key: the resource, in the holder's region when there are several. A
        holder the header does not list (untraced, on a partial lean trace) is in the region of the
        node `via` that sent the frame (its coordinator: a region's market leases to its own nodes)."""
        if not self.cluster_region:
            return res
        region = self.cluster_region.get(self.nodes.get(holder))
        if region is None and via is not None:
            region = self.cluster_region.get(self.nodes.get(via))
        return region, res

    def _acts(self, node, res, intervals, verb, type_, fid, line):
        """`node` acts on resource `res` in `intervals` (None: any slot): it
        must hold a lease on it that was awarded earlier in the trace. On a
        partial (lean) trace, only where every elector that could have
        awarded it is traced (history_checker.py `partial`): an award from
        an untraced coordinator is not in the trace."""
        self.acts += 1
        if self.partial and not self._awarders_traced(node):
            self.acts_unjudged += 1
            return
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

