# Membership and failure detection from heartbeats, with suspicion.
#
# Every member heartbeats to the cluster; a member is ALIVE while heard within
# suspect_ms, SUSPECT until dead_ms, then DEAD. Membership itself is the member
# list from the config (a majority of it is the quorum), changed at run time
# only by node/join.py (a daughter joins: add(); a split: keep()), within the
# bound the config fixes at boot; this module only says who is live. Iteration is always in member-id order, never dict order,
# so CPython and MicroPython give the same outputs. The per-member tables hold
# every member from boot and nothing else: they never grow (a frame from a
# non-member never reaches them: node.py refuses or ignores it first), but
# by a join (at most config.max_members + 1 entries, checked by join.py).

from micropython import const


UNKNOWN = const(0)  # never heard
ALIVE = const(1)
SUSPECT = const(2)
DEAD = const(3)
STATUS_NAMES = ("unknown", "alive", "suspect", "dead")


class Membership:
    def __init__(self, self_id, members, suspect_ms, dead_ms):
        self.self_id = self_id
        self.members = members
        self.majority = len(members) // 2 + 1
        self.suspect_ms = suspect_ms
        self.dead_ms = dead_ms
        # node id -> mission ms last heard (None: never); node.py notes each member's frame in it
        self.last_ms = {}  # type: dict[int, int | None]
        self.lineage = {}  # node id -> software lineage, from hello/heartbeat (-1: not said)
        self.reach = {}  # node id -> members it hears alive (heartbeat v2 `alive`)
        for m in members:
            self.last_ms[m] = None
            self.lineage[m] = -1
            self.reach[m] = 0  # msgs.ALIVE_UNKNOWN

    def is_member(self, node):
        return node in self.last_ms

    def last_heard_ms(self, node):
        return self.last_ms.get(node)

    def status(self, node, now_ms):
        if node == self.self_id:
            return ALIVE
        last = self.last_ms.get(node)
        if last is None:
            return UNKNOWN
        quiet = now_ms - last
        if quiet < self.suspect_ms:
            return ALIVE
        if quiet < self.dead_ms:
            return SUSPECT
        return DEAD

    def count(self, status, now_ms):
        """How many members are in `status` (status(), written out: a heartbeat counts them)."""
        n = 0
        me = self.self_id
        last_ms = self.last_ms
        for m in self.members:
            last = last_ms.get(m)
            if m == me:
                s = ALIVE
            elif last is None:
                s = UNKNOWN
            else:
                quiet = now_ms - last
                s = ALIVE if quiet < self.suspect_ms else SUSPECT if quiet < self.dead_ms else DEAD
            if s == status:
                n += 1
        return n

    def heard_within(self, window_ms, now_ms):
        """How many members (self included) were heard in the last window_ms."""
        n = 0
        for m in self.members:
            last = now_ms if m == self.self_id else self.last_ms.get(m)
            if last is not None and now_ms - last < window_ms:
                n += 1
        return n

    def add(self, node):
        """A member joins (node/join.py checked it): tables get its entry,
        the quorum is recomputed. Allocates, once per join, not per frame."""
        if node in self.last_ms:
            return
        self.members = tuple(sorted(self.members + (node,)))
        self.majority = len(self.members) // 2 + 1
        self.last_ms[node] = None
        self.lineage[node] = -1
        self.reach[node] = 0

    def keep(self, members):
        """Only `members` stay (a split: the other side left); their state is kept."""
        for m in self.members:
            if m not in members:
                del self.last_ms[m]
                del self.lineage[m]
                del self.reach[m]
        self.members = tuple(sorted(members))
        self.majority = len(self.members) // 2 + 1
