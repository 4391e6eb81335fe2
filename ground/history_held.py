"""What each node knows of the quarantine, from the HELD frames it got: the
history checker's model of a member's view (firmware/node/heldview.py), so
`quarantine_respected` judges a cluster coordinator by what it could know.

A node is held out of its cluster's election once a majority of its region's
electors hold it out (quarantined or on probation) in its own view: the
latest HELD each elector's frames brought it (a HELD naming node 0: that
elector rebooted and holds nobody), plus its own table if it is an elector.
The cap applies as the core applies it: never more than cap_permille of the
cluster out, never fewer than two electable members, the lowest ids first.
A node's view lives in RAM: a crash, power cut or boot empties it. A node
cut off from the electors (a partition) does not know, and is not judged.
"""

import inspect

from ground import firmware

_OUT = (2, 3)  # quarantine.QUARANTINED, PROBATION: not electable
_OUT_NAMES = ("quarantined", "probation")
_KEPT_FRAMES = 4096  # HELD frames remembered until their deliveries are seen


def default_cap_permille():
    """node/config.py's MarketConfig default: the header does not carry it."""
    return inspect.signature(firmware.config.MarketConfig).parameters["quarantine_cap_permille"].default


class HeldKnowledge:
    def __init__(self, electors, cap_permille, members_of, tables):
        self.electors = set(electors)
        self.majority = len(self.electors) // 2 + 1
        self.cap_permille = cap_permille
        self.members_of = members_of  # node -> its cluster's member ids
        self.tables = tables  # member -> {elector: state name}: each elector's own table (its LOG reports)
        self.frames = {}  # fid -> (elector, member, state) of a sent HELD
        self.views = {}  # node -> {member: {elector}} whose latest HELD to it held member out
        self.out_since_ns = {}  # node -> mission ns since when its own view holds it out

    def sent(self, fid, src, msg):
        if src not in self.electors or not isinstance(msg.get("node"), int):
            return
        if len(self.frames) >= _KEPT_FRAMES:
            del self.frames[next(iter(self.frames))]
        self.frames[fid] = (src, msg["node"], msg.get("state"))

    def delivered(self, fid, to, now_ns):
        got = self.frames.get(fid)
        if got is None:
            return
        elector, member, state = got
        view = self.views.setdefault(to, {})
        for m in (list(view) if member == 0 else (member,)):
            holders = view.setdefault(m, set())
            if member != 0 and state in _OUT:
                holders.add(elector)
            else:
                holders.discard(elector)
        self.update(to, now_ns)

    def forget(self, node):
        """node's RAM is gone (crash, power cut, boot)."""
        self.views.pop(node, None)
        self.out_since_ns.pop(node, None)

    def update(self, node, now_ns):
        """Recompute whether node's view holds node out (after what it got or an elector's own table changed)."""
        if self._out(node):
            self.out_since_ns.setdefault(node, now_ns)
        else:
            self.out_since_ns.pop(node, None)

    def _count(self, node, member):
        view = self.views.get(node, {})
        n = len(view.get(member, ()))
        if node in self.electors and self.tables.get(member, {}).get(node) in _OUT_NAMES:
            n += 1  # its own table
        return n

    def _out(self, node):
        if self._count(node, node) < self.majority:
            return False
        members = sorted(self.members_of(node))
        room = min(len(members) - 2, self.cap_permille * len(members) // 1000)
        for m in members:
            if m == node:
                return room > 0
            if self._count(node, m) >= self.majority:
                room -= 1
        return False
