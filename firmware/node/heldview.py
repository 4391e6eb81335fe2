# Quarantine in the cluster election (docs/CONTAINMENT.md): a cluster
# member's view of which members its region's electors hold out of the
# election (quarantined or on probation), from their HELD frames.
#
# Every elector of a region with auditors sends HELD (region, node, state) to
# a node's cluster address when the node's state in its table changes (and
# at its next 3 lead_ms ticks: a lost release is said again), every lead_ms
# while it holds the node out (a member that rebooted learns it again), and
# after its own boot, unless it restored a table that holds somebody out
# (node/quarantine.py, kept on flash), a HELD naming no node (0) to every
# cluster: forget what I held. A member counts, per node, the electors whose
# latest HELD held it out, plus its own table if it is an elector: it keeps
# a hold until that elector releases it or reboots, so a cluster cut off
# from the electors by a partition does not forget a quarantine it heard.
# A node that a majority of the region's electors hold out is not
# electable in its cluster: it does not stand, members refuse it their
# (pre)votes, a coordinator does not name it standby, and a coordinator that
# learns it is held resigns. The cap holds here too: never more than
# `quarantine_cap_permille` of the cluster out, never fewer than two
# electable members (the lowest ids held are out first, the same on every
# member that has the same view).
#
# Loaded on a node's first HELD (only nodes with a market, in a region with
# auditors, once some elector holds a node out); a node that never gets one
# runs the cluster election exactly as before.

from micropython import const

from node import elect, refusal
from node import election as el

_QUARANTINED = const(2)  # quarantine.QUARANTINED
_PROBATION = const(3)  # quarantine.PROBATION: back in the market, not electable yet
_NO_NODE = const(0)  # msgs.NO_NODE: a HELD naming no node, from an elector that booted


class HeldView:
    def __init__(self, node):
        m = node.region.cfg
        self.node = node
        self.majority = len(m.electors) // 2 + 1
        self.cap_permille = m.quarantine_cap_permille
        self.held = {}  # member -> [electors whose latest HELD held it out]

    def on_held(self, src, member, state):
        if member == _NO_NODE:  # src rebooted: it holds nobody now
            for k in list(self.held):
                self.on_held(src, k, 0)
            return
        got = self.held.get(member)
        if state == _QUARANTINED or state == _PROBATION:
            if got is None:
                got = self.held[member] = []
            if src not in got:
                got.append(src)
        elif got is not None and src in got:
            got.remove(src)
            if not got:
                del self.held[member]

    def count(self, member, now_ms):
        """Electors holding member out: those whose latest HELD said so, and
        this node's own table if it is an elector."""
        got = self.held.get(member)
        n = len(got) if got else 0
        q = self.node.region.quarantine
        if q is not None and not q.electable(member):
            n += 1
        return n

    def electable(self, member, now_ms):
        if self.count(member, now_ms) < self.majority:
            return True
        members = self.node.members.members
        n = len(members)
        room = min(n - 2, self.cap_permille * n // 1000)  # how many may be out
        for m in members:  # ascending ids
            if m == member:
                return room <= 0
            if self.count(m, now_ms) >= self.majority:
                room -= 1
        return True

    def may_lead(self, now_ms):
        return self.electable(self.node.id, now_ms)

    def may_elect(self, src, now_ms):
        return self.electable(src, now_ms)


def on_held(node, src, f, now_ms):
    """A HELD from `src`: checked (an elector of our region, about a member
    of our cluster), then kept; a coordinator it now holds out resigns."""
    region = node.region
    region_id, member, state = f
    if region_id != region.cfg.region:
        region.refused[refusal.REGION] += 1
        return
    if src not in region.cfg.electors:
        region.refused[refusal.FORGED] += 1
        return
    if member and not node.members.is_member(member):
        region.refused[refusal.UNKNOWN_NODE] += 1
        return
    view = node.held
    if view is None:
        view = node.held = HeldView(node)
        node.may_lead = view.may_lead
        node.may_elect = view.may_elect
    view.on_held(src, member, state)
    if node.role == el.COORDINATOR and not view.electable(node.id, now_ms):
        elect.resign(node, now_ms)  # may_lead keeps it from running again
