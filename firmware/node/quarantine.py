# Who is quarantined in a region, and why (docs/CONTAINMENT.md): one small
# state table per roster node, kept by every elector.
#
# A quarantined node is not electable, its bids and claims are ignored and it
# leaves the replication queue. It gets there by
#   - accusations (ACCUSE) from at least QUORUM different auditors of the
#     region within `window_rounds` of each other: one auditor alone, lying or
#     defective, can never quarantine anybody;
#   - byzantine behaviour the node itself observed (claims in stale terms,
#     bad-tag frames, bad-frame storms), reported by the host;
# and only if the cap allows it: never more than `cap_permille` of a cluster
# (at least one node of a cluster may always be quarantined only if the share
# allows a whole node), and never a node whose cluster would be left with
# fewer than two electable members (a coordinator and its last standby).
# A refused quarantine is counted (refusal.QUARANTINE_CAP) and the node stays
# SUSPECT: it is not forgotten. It comes back by ground intent (reinstate) or
# after probation: `probation_ms` quarantined, then as long again on
# probation (bids heard, still not electable) without a new accusation.
#
# States and events, every transition in one table as elsewhere in the core.
#
# Kept across power loss (docs/CONTAINMENT.md "Across a reboot"): who is held
# out (QUARANTINED or PROBATION) is packed (pack()) into the node's saved blob
# whenever that set changes (`changes` counts it: node/durable.py's Keeper
# writes then, rarely) and put back at boot (load()) before the elector
# answers anything. A SUSPECT is not kept (one auditor's word: accused again
# if it was right). Probation restarts: a held node serves probation_ms again
# from the elector's first tick after the boot (no clock survives a reboot).
#   section "<2sBBH" b"QT", version 1, 0, entries; each "<HB" node, state;
#   then the crc32 of everything before it.

import binascii
import struct

from micropython import const

from node import refusal

NORMAL = const(0)
SUSPECT = const(1)  # accused by one auditor: watched, nothing taken away
QUARANTINED = const(2)
PROBATION = const(3)  # back in the market, not electable yet
STATE_NAMES = ("normal", "suspect", "quarantined", "probation")

EV_ACCUSED = const(0)  # an accusation from an auditor not yet counted against it
EV_QUORUM = const(1)  # the QUORUM-th different auditor (or a byzantine report) and the cap allows it
EV_EXPIRED = const(2)  # the accusations' window passed without a quorum
EV_SERVED = const(3)  # probation_ms quarantined
EV_CLEARED = const(4)  # probation_ms on probation without an accusation
EV_REINSTATE = const(5)  # ground intent
EVENT_NAMES = ("accused", "quorum", "expired", "served", "cleared", "reinstate")

_TABLE = {
    (NORMAL, EV_ACCUSED): SUSPECT,
    (NORMAL, EV_QUORUM): QUARANTINED,  # byzantine behaviour needs no second witness
    (SUSPECT, EV_ACCUSED): SUSPECT,
    (SUSPECT, EV_QUORUM): QUARANTINED,
    (SUSPECT, EV_EXPIRED): NORMAL,
    (QUARANTINED, EV_SERVED): PROBATION,
    (PROBATION, EV_ACCUSED): SUSPECT,
    (PROBATION, EV_QUORUM): QUARANTINED,
    (PROBATION, EV_CLEARED): NORMAL,
    (SUSPECT, EV_REINSTATE): NORMAL,
    (QUARANTINED, EV_REINSTATE): NORMAL,
    (PROBATION, EV_REINSTATE): NORMAL,
}

QUORUM = const(2)  # different auditors whose accusations quarantine a node
_NONE = const(0)


class QuarantineError(Exception):
    """Local bug: an event with no transition from the current state."""


def next_state(state, event):
    try:
        return _TABLE[(state, event)]
    except KeyError:
        raise QuarantineError("no transition from %s on %s" % (STATE_NAMES[state], EVENT_NAMES[event]))


class Quarantine:
    """roster: the region's node ids (ascending); clusters: node id -> its
    cluster id; auditors: the region's auditor ids."""

    def __init__(self, roster, clusters, auditors, cap_permille=340, window_rounds=4, probation_ms=0):
        self.roster = tuple(roster)
        self.clusters = clusters
        self.auditors = tuple(auditors)
        self.cap_permille = cap_permille
        self.window_rounds = window_rounds
        self.probation_ms = probation_ms  # 0: only ground intent reinstates
        n = len(self.roster)
        self.state = bytearray(n)
        self.first_accuser = [_NONE] * n  # the auditor whose accusation is pending
        self.accused_round = [0] * n
        self.since_ms = [0] * n  # when the state was entered
        self.refused = [0] * refusal.N_REASONS
        self.events = []  # (node, state name, cause): what the host reports to the ground, then clears
        self.quarantines = 0
        self.accusations = 0
        self.changes = 0  # changes to who is held out (what pack() keeps): the flash is out of date

    def index(self, node):
        lo, hi = 0, len(self.roster)
        while lo < hi:  # the roster is ascending: bisect, no dict per node
            mid = (lo + hi) // 2
            if self.roster[mid] < node:
                lo = mid + 1
            else:
                hi = mid
        return lo if lo < len(self.roster) and self.roster[lo] == node else -1

    def is_quarantined(self, node):
        i = self.index(node)
        return i >= 0 and self.state[i] == QUARANTINED

    def electable(self, node):
        i = self.index(node)
        return i < 0 or self.state[i] in (NORMAL, SUSPECT)

    def _go(self, i, event, now_ms, cause):
        s = next_state(self.state[i], event)
        if s >= QUARANTINED or self.state[i] >= QUARANTINED:
            self.changes += 1
        self.state[i] = s
        self.since_ms[i] = now_ms
        if s != SUSPECT:
            self.first_accuser[i] = _NONE
        if s == QUARANTINED:
            self.quarantines += 1
        self.events.append((self.roster[i], STATE_NAMES[s], cause))

    def _cap_allows(self, i):
        """Quarantining roster node i keeps its cluster within the cap and
        with two electable members."""
        node = self.roster[i]
        k = self.clusters.get(node)
        members = [m for m in self.roster if self.clusters.get(m) == k]
        out = sum(1 for m in members if not self.electable(m))
        if (out + 1) * 1000 > self.cap_permille * len(members):
            return False
        return len(members) - out - 1 >= 2

    def _quorum(self, i, now_ms, cause):
        if not self._cap_allows(i):
            self.refused[refusal.QUARANTINE_CAP] += 1
            if self.state[i] == NORMAL:
                self._go(i, EV_ACCUSED, now_ms, cause + " (cap: kept suspect)")
            return False
        self._go(i, EV_QUORUM, now_ms, cause)
        return True

    def accuse(self, auditor, accused, rnd, evidence_ok, now_ms):
        """An ACCUSE from `auditor` against `accused` for round rnd. Returns
        the accused's state afterwards, or -1 if the accusation was refused
        (counted by reason)."""
        if auditor not in self.auditors or auditor == accused:
            self.refused[refusal.FORGED] += 1
            return -1
        if not evidence_ok:
            self.refused[refusal.EVIDENCE] += 1
            return -1
        i = self.index(accused)
        if i < 0:
            self.refused[refusal.UNKNOWN_NODE] += 1
            return -1
        self.accusations += 1
        s = self.state[i]
        if s == QUARANTINED:
            return s
        first = self.first_accuser[i]
        if s == SUSPECT and first != _NONE and first != auditor and rnd - self.accused_round[i] <= self.window_rounds:
            self._quorum(i, now_ms, "accused by %d and %d" % (first, auditor))
            return self.state[i]
        if s == PROBATION or s == NORMAL or first == _NONE or rnd - self.accused_round[i] > self.window_rounds:
            if s != SUSPECT:
                self._go(i, EV_ACCUSED, now_ms, "accused by %d" % auditor)
            self.first_accuser[i] = auditor
            self.accused_round[i] = rnd
        return self.state[i]

    def byzantine(self, node, cause, now_ms):
        """Byzantine behaviour seen first hand (stale-term claims, bad tags,
        bad-frame storms): quarantine if the cap allows. True if done."""
        i = self.index(node)
        if i < 0 or self.state[i] == QUARANTINED:
            return False
        return self._quorum(i, now_ms, cause)

    def move(self, node, cluster):
        """Node `node` is in `cluster` now (a split moved it): the cap is
        counted over its new cluster from here on. False if not ours."""
        if self.index(node) < 0:
            return False
        self.clusters[node] = cluster
        return True

    def reinstate(self, node, now_ms, cause="ground intent"):
        i = self.index(node)
        if i < 0 or self.state[i] == NORMAL:
            return False
        self._go(i, EV_REINSTATE, now_ms, cause)
        return True

    def tick(self, rnd, now_ms):
        """Time passes: accusations expire, quarantines are served, probations
        end."""
        p = self.probation_ms
        for i in range(len(self.roster)):
            s = self.state[i]
            if self.since_ms[i] < 0:  # restored at boot: its probation time starts now
                self.since_ms[i] = now_ms
            if s == SUSPECT and rnd - self.accused_round[i] > self.window_rounds:
                self._go(i, EV_EXPIRED, now_ms, "no second auditor")
            elif p and s == QUARANTINED and now_ms - self.since_ms[i] >= p:
                self._go(i, EV_SERVED, now_ms, "probation")
            elif p and s == PROBATION and now_ms - self.since_ms[i] >= p:
                self._go(i, EV_CLEARED, now_ms, "probation served")

    def pack(self):
        """The table's section of the saved blob: the nodes held out."""
        held = [i for i in range(len(self.roster)) if self.state[i] >= QUARANTINED]
        out = bytearray(6 + 3 * len(held) + 4)
        struct.pack_into("<2sBBH", out, 0, b"QT", 1, 0, len(held))
        off = 6
        for i in held:
            struct.pack_into("<HB", out, off, self.roster[i], self.state[i])
            off += 3
        struct.pack_into("<I", out, off, binascii.crc32(memoryview(out)[:off]))
        return out

    def load(self, blob):
        """Put back a pack()ed section at boot: [(node, state name)] held
        out; ValueError if it is damaged (nothing restored then). A node no
        longer in the roster is skipped."""
        n = len(blob)
        h = struct.unpack_from("<2sBBH", blob, 0) if n >= 10 else (b"",)
        if h[0] != b"QT" or h[1] != 1 or n != 10 + 3 * h[3]:
            raise ValueError("quarantine table: %d bytes, not a table" % n)
        if binascii.crc32(memoryview(blob)[: n - 4]) != struct.unpack_from("<I", blob, n - 4)[0]:
            raise ValueError("quarantine table: bad crc")
        got = []
        for k in range(h[3]):
            node, s = struct.unpack_from("<HB", blob, 6 + 3 * k)
            i = self.index(node)
            if i >= 0 and s in (QUARANTINED, PROBATION):
                self.state[i] = s
                self.since_ms[i] = -1  # probation restarts at the first tick
                got.append((node, STATE_NAMES[s]))
        return got

    def restore(self, keeper, blob):
        """At boot, from node/durable.py's Keeper: the table section `blob`
        back into this table; a one-line text for the ground."""
        keeper.qmark = self.changes
        try:
            got = self.load(blob)
        except ValueError as e:
            return "%s; not restored" % e
        keeper.qkept = bytes(blob)
        if got:
            keeper.region.h_boot = 0  # it says whom it holds (node/audit.py tick), not "nobody"
        return "quarantine restored: " + (", ".join("node %d %s" % x for x in got) or "nobody held")

    def take_events(self):
        out = self.events
        self.events = []
        return out
