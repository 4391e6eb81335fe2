# Cluster membership that changes at run time: a daughter joins its parent's
# cluster, a cluster grown past its maximum splits in two.
#
# Loaded lazily by node.py (Node._joins) when the first JOIN, ROSTER or SPLIT
# arrives, or at boot on a daughter: a node of a fleet that never replicates
# never imports it. Pure like the rest of the core: no I/O, no clock, and the
# tables are bounded by what the config fixes at boot (docs/PROTOCOL.md
# "Joining and splitting" is the prose version):
#
# - ids: a cluster owns a reserved range of spare ids (config's spares, fixed
#   at boot and disjoint between clusters: the ground hands them out). Its
#   daughters take them in order; an id is never handed out twice (the ground
#   counts them, each node remembers who joined with which parent). A split
#   gives each side half of the spares still unused: still disjoint.
# - JOIN (daughter -> cluster): only the coordinator answers. It refuses an id
#   outside the spares or one naming another cluster (unknown), an id already
#   a member or already joined with another parent (duplicate), and a join
#   past max_members that no split can absorb (full). Otherwise it sends a
#   ROSTER naming the node; every member adds it (at most max_members + 1).
# - SPLIT: past max_members the coordinator splits: members in id order, the
#   lower half keeps the cluster, the upper half (ids from `pivot` up) becomes
#   cluster split_cluster. Both sides elect again. A split that would leave a
#   side under min_members is refused, by the coordinator and by every member.
# - Split numbers: config's split_cluster is a block (first, count) of
#   cluster numbers, fixed at boot and disjoint between clusters (the ground
#   hands them out). A split takes the block's first number for its upper
#   side and gives each side half of the rest (the lower half to the side
#   that stays): still disjoint, so a side splits again with its own first
#   number, as long as its block holds one (else a join past max_members is
#   refused as full). A bare number n is the block (n, 1).
# - Kept across power loss: each membership change (a join admitted, a
#   split, a daughter admitted) marks the node's state dirty once; its
#   roster section (section(), restore()) follows the node's saved blob.
# - Every refusal is counted by reason (`refused`) and told to the ground
#   (JOIN_REFUSED: reason, the frame's type, its sender, the id it named).

import binascii
import struct

from micropython import const

from node import election as el
from node import msgs, wire
from node import msgs_tiers  # noqa: F401 (the layouts of its messages load with this code, not mid-run: docs/HEAP.md)
from node.membership import Membership

R_UNKNOWN = const(0)  # an id outside this cluster's spares, or a JOIN naming another cluster
R_DUPLICATE = const(1)  # an id already a member, or joined before with another parent
R_FULL = const(2)  # at max_members and no split possible
R_SPLIT_SMALL = const(3)  # a split would leave a side under min_members (or the sides differ from ours)
R_NOT_COORDINATOR = const(4)  # a ROSTER, SPLIT or CATCHUP not from a member in our term or later
R_STALE = const(5)  # a CATCHUP older than what this node holds (node/catchup.py)
R_FOREIGN = const(6)  # a CATCHUP whose roster does not descend from this node's config (node/catchup.py)
N_REASONS = const(7)
REASON_NAMES = ("unknown", "duplicate", "full", "split_small", "not_coordinator", "stale", "foreign")
_RESENDS = const(3)  # a ROSTER is sent again this many times, one election timeout apart (a member may miss it)


def settings(cfg, spares, max_members, min_members, split_cluster, parent):
    """Config.replication from Config's arguments; ValueError if they are wrong."""
    first, count = spares
    block = (split_cluster, 1 if split_cluster else 0) if isinstance(split_cluster, int) else tuple(split_cluster)
    if len(block) != 2 or block[1] < 0 or block[1] and not 0 < block[0] <= block[0] + block[1] - 1 < 0xE00 or (
            block[0] <= cfg.cluster < block[0] + block[1]):
        raise ValueError("config: split_cluster must be another cluster number, or a block [first, count], below 0xE00")
    if count < 0 or count > 256 or (count and not (0 < first and first + count - 1 <= 0xEFFF)):
        raise ValueError("config: spares must be (first id, count <= 256) inside 1..0xEFFF")
    if not 2 <= min_members <= max_members // 2 or max_members > 64:
        raise ValueError("config: need 2 <= min_members <= max_members / 2, max_members <= 64")
    if len(cfg.members) > max_members + 1:
        raise ValueError("config: %d members, above max_members %d" % (len(cfg.members), max_members))
    return (first, count, max_members, min_members, block, parent)


class Joins:
    def __init__(self, node):
        first, count, top, low, split, parent = node.cfg.replication or (0, 0, 20, 5, (0, 0), 0)
        self.first = first  # this cluster's spare ids: first .. first + count - 1
        self.count = count
        self.max = top  # members past this: split
        self.min = low  # never a side under this
        self.parent = parent
        self.parents = {}  # spare id -> the parent it joined with (at most `count` entries)
        self.epoch = 0  # roster changes applied
        self.refused = [0] * N_REASONS
        self.split = split  # (first, count): the cluster numbers this cluster's splits take (first: the next)
        self.changed = False  # a membership change since boot, or one restored: section() has bytes
        self._kept = None  # the roster section as packed last (None: pack it again)
        self.joining = parent != 0  # a daughter, until a ROSTER names it
        self._roster = None  # the last ROSTER payload sent as coordinator, to send again
        self._resends = 0
        self._next_ms = 0  # when poll() has work (JOIN again, ROSTER again)
        self.others = []  # the other side of each split this node took part in (node/catchup.py), at most 4
        self.told = {}  # node id -> mission ms before which it is not sent a CATCHUP again (at most 8 entries)
        self.catchups = 0  # CATCHUPs this node applied
        self.shown = None  # members sent a CATCHUP in term shown_term (at most every member once per term)
        self.shown_term = -1

    # ---- ids -------------------------------------------------------------

    def is_spare(self, node_id):
        return self.first <= node_id < self.first + self.count

    def _next_free(self):
        """The lowest spare id above every one that joined."""
        n = self.first
        for k in self.parents:
            if k >= n:
                n = k + 1
        return n

    # ---- timers ----------------------------------------------------------

    def poll(self, node, now_ms):
        if now_ms < self._next_ms:
            return
        t = node.cfg.election_timeout_ms
        self._next_ms = now_ms + t
        if self.joining:
            c = node.cfg
            payload = msgs.pack(msgs.JOIN, self.parent, node.cluster_dst & 0xFFF, c.lineage, c.hw_gen,
                                (c.fw_version[0] << 8) | c.fw_version[1])
            node._send(node.cluster_dst, msgs.JOIN, payload)
        elif self._resends and node.role == el.COORDINATOR:
            self._resends -= 1
            node._send(node.cluster_dst, msgs.ROSTER, self._roster)
        else:  # not coordinator now: its ROSTER's term is over (sent again later, members refused it as not_coordinator)
            self._resends = 0

    def next_deadline_ms(self):
        return self._next_ms if self.joining or self._resends else None

    # ---- frames ------------------------------------------------------------

    def receive(self, node, src, t, fields, now_ms):
        if t == msgs.JOIN:
            self._on_join(node, src, fields, now_ms)
        elif t == msgs.ROSTER:
            term, epoch, joined, parent, size = fields
            if src == node.id:
                return
            if term < node.term or not node.members.is_member(src):
                self._refuse(node, R_NOT_COORDINATOR, t, src, joined)
                return
            self._admit(node, joined, parent, epoch, t, src)
        elif t == msgs.SPLIT:
            term, epoch, new_cluster, pivot, low, high = fields
            if src == node.id:
                return
            if term < node.term or not node.members.is_member(src):
                self._refuse(node, R_NOT_COORDINATOR, t, src, pivot)
                return
            self._split(node, new_cluster, pivot, low, high, t, src, now_ms)

    def catch_up(self, node, f, now_ms):
        """A CATCHUP frame `f` sent to the node (node/catchup.py)."""
        from node.catchup import apply

        apply(self, node, f.src, f.payload, now_ms)

    def heard(self, node, src, t, now_ms):
        """A HELLO or HEARTBEAT reached the node: as coordinator, it answers
        with a CATCHUP (node/catchup.py, loaded only then) a member's boot, a
        member's first heartbeat in its term when a split made or cut this
        cluster, and a node one of its splits moved."""
        if node.role != el.COORDINATOR or src == node.id:
            return
        member = node.members.is_member(src)
        if member and t != msgs.HELLO:
            if not self.others and self.split == node.cfg.replication[4]:
                return  # no split since its boot config
            shown = self.shown
            if shown is None or self.shown_term != node.term:
                shown = self.shown = set()
                self.shown_term = node.term
            if src in shown:
                return
            shown.add(src)
        elif not member and not self.others:
            return
        from node.catchup import answer

        answer(self, node, src, member, now_ms)

    def _refuse(self, node, reason, t, src, subject):
        self.refused[reason] += 1
        node._send(wire.ADDR_GROUND, msgs.JOIN_REFUSED,
                   msgs.pack(msgs.JOIN_REFUSED, reason, t, src, subject, self.refused[reason] & 0xFFFFFFFF))

    def _on_join(self, node, src, fields, now_ms):
        parent, cluster, lineage, hw_gen, fw = fields
        if node.role != el.COORDINATOR:
            node.ignored += 1  # the coordinator answers
            return
        known = self.parents.get(src)
        if known is not None and known == parent and node.members.is_member(src):
            # It missed its ROSTER: say it again (not a refusal).
            node._send(node.cluster_dst, msgs.ROSTER,
                       msgs.pack(msgs.ROSTER, node.term, self.epoch, src, parent, len(node.members.members)))
            return
        if known is not None or node.members.is_member(src):
            self._refuse(node, R_DUPLICATE, msgs.JOIN, src, parent)
            return
        if cluster != node.cluster_dst & 0xFFF or not self.is_spare(src):
            self._refuse(node, R_UNKNOWN, msgs.JOIN, src, parent)
            return
        n = len(node.members.members)
        cfg = node.cfg
        if n >= self.max + 1 or (n == self.max and (not self.split[1] or (n + 1) // 2 < self.min)):
            self._refuse(node, R_FULL, msgs.JOIN, src, parent)
            return
        self.epoch = (self.epoch + 1) & 0xFFFF
        self._roster = msgs.pack(msgs.ROSTER, node.term, self.epoch, src, parent, n + 1)
        self._resends = _RESENDS
        self._next_ms = now_ms + cfg.election_timeout_ms
        node.members.lineage[src] = lineage
        node._send(node.cluster_dst, msgs.ROSTER, self._roster)
        self._add(node, src, parent)
        members = node.members.members
        if len(members) > self.max:
            low = len(members) // 2
            pivot = members[low]
            new = self.split[0]
            node._send(node.cluster_dst, msgs.SPLIT,
                       msgs.pack(msgs.SPLIT, node.term, self.epoch, new, pivot, low, len(members) - low))
            self._apply_split(node, new, pivot, now_ms)

    def _admit(self, node, joined, parent, epoch, t, src):
        if not self.is_spare(joined):
            self._refuse(node, R_UNKNOWN, t, src, joined)
            return
        known = self.parents.get(joined)
        if known is not None and known != parent:
            self._refuse(node, R_DUPLICATE, t, src, joined)
            return
        if joined == node.id and self.joining:
            self.joining = False
            self._changed(node)
        # (A daughter still joining lists itself: it does not count.)
        if known is None and not node.members.is_member(joined) and (
                len(node.members.members) - self.joining > self.max):
            self._refuse(node, R_FULL, t, src, joined)
            return
        if ((epoch - self.epoch) & 0xFFFF) < 0x8000:
            self.epoch = epoch
        self._add(node, joined, parent)

    def _add(self, node, joined, parent):
        if self.parents.get(joined) != parent or not node.members.is_member(joined):
            self.parents[joined] = parent
            node.members.add(joined)
            self._changed(node)

    def _changed(self, node):
        """Membership changed: the node persists once (take_persist) before it sends on."""
        self.changed = True
        self._kept = None
        node._dirty = True

    def _split(self, node, new_cluster, pivot, low, high, t, src, now_ms):
        members = node.members.members
        n_low = n_high = 0
        for m in members:
            if m == node.id and self.joining:
                continue  # not in the roster yet: node/join.py's side for it is by spare id (_apply_split)
            if m < pivot:
                n_low += 1
            else:
                n_high += 1
        lo = self.min
        if n_low < lo or n_high < lo or n_low != low or n_high != high or not 0 < new_cluster < 0xE00 or (
                new_cluster == node.cluster_dst & 0xFFF):
            self._refuse(node, R_SPLIT_SMALL, t, src, pivot)
            return
        self._apply_split(node, new_cluster, pivot, now_ms)

    def _apply_split(self, node, new_cluster, pivot, now_ms):
        members = node.members.members
        # The spares still unused: the lower half stays, the upper half goes
        # (the side that stays keeps the used ones too: one still joining may be below nxt).
        nxt = self._next_free()
        end = self.first + self.count
        mid = nxt + (end - nxt) // 2 if end > nxt else end
        # A member goes by its id; a daughter still joining by its spare id:
        # it joins the side whose spares hold it (the ground says the same).
        upper = node.id >= (mid if self.joining else pivot)
        side = tuple(m for m in members if m != node.id and (m >= pivot) == upper) + (node.id,)
        # The split numbers left: the first is spent, each side gets half of
        # the rest. A block whose first is not this SPLIT's number (a member
        # that lost track) leaves neither side one: it can split no more.
        f, n = self.split
        from node.catchup import record  # the other side, for a node this split passed by

        record(self, node, new_cluster, pivot, upper, mid, end)
        if n and f == new_cluster:
            half = (n - 1) // 2
            self.split = (f + 1 + half, n - 1 - half) if upper else (f + 1, half)
        else:
            self.split = (0, 0)
        if upper:
            self.first, self.count = mid, end - mid
            node.cluster_dst = wire.cluster_addr(new_cluster)
        else:  # from its first spare: a daughter admitted late (below nxt) is still its own
            self.count = mid - self.first
        node.members.keep(side)
        self._changed(node)
        self._roster = None
        self._resends = 0
        # Both sides elect: nobody coordinates until a new election says so.
        node.coordinator = msgs.NO_NODE
        node.standby = msgs.NO_NODE
        node._become(el.EV_HIGHER_TERM, now_ms)
        node._deadline_ms = now_ms + node._cold_timeout_ms()
        region = node.region
        if region is not None:  # the region's electors count the quarantine cap per cluster: say where it is now
            if region.quarantine is not None:
                region.quarantine.move(node.id, node.cluster_dst & 0xFFF)  # an elector's own table
            node._send(region.dst, msgs.HELLO, node._hello())

    # ---- kept across power loss (docs/PROTOCOL.md "Membership on flash") ----

    def section(self, node):
        """The roster section that follows the node's saved blob (b"": no
        membership change yet, nothing to keep). Packed once per change."""
        if not self.changed:
            return b""
        kept = self._kept
        if kept is None:
            kept = self._kept = pack(self, node)
        return kept

    def restore(self, node, saved):
        """At boot, before the first poll (so before any election): the
        roster section of `saved` (a blob take_persist gave) back into this
        node, if it descends from this boot's config: its spares inside the
        config's, every member a source the config knows, the node among
        them. Otherwise, or if damaged, the config's roster stands and the
        node says why in a LOG."""
        if not saved:
            return
        from node.durable import roster_split

        sec = roster_split(saved)[1]
        why = load(self, node, sec) if sec is not None else "kept roster damaged" if saved[-2:] == b"RS" else None
        if why:
            node.log("roster: %s; the boot config's roster stands" % why)


_HEAD = "<BBHHHHHHHH"  # 18 bytes: version 1, flags (bit 0: still joining), cluster, epoch,
#                        spares first, count, split block first, count, members, parents
_HEAD_LEN = const(18)
_TAIL_LEN = const(8)  # crc32 of the section before it, u16 section length, b"RS"


def pack(j, node):
    """Joins j's roster section: node's cluster, its members, who joined with
    which parent, the spare ids and split numbers left, then the tail."""
    members = node.members.members
    parents = sorted(j.parents)
    n = _HEAD_LEN + 2 * len(members) + 4 * len(parents) + _TAIL_LEN
    out = bytearray(n)
    struct.pack_into(_HEAD, out, 0, 1, 1 if j.joining else 0, node.cluster_dst & 0xFFF, j.epoch, j.first, j.count,
                     j.split[0], j.split[1], len(members), len(parents))
    off = _HEAD_LEN
    for m in members:
        struct.pack_into("<H", out, off, m)
        off += 2
    for k in parents:
        struct.pack_into("<HH", out, off, k, j.parents[k])
        off += 4
    struct.pack_into("<IH2s", out, off, binascii.crc32(memoryview(out)[:off]), n, b"RS")
    return bytes(out)


def load(j, node, sec):
    """Put roster section `sec` (whole, crc checked) into Joins j and its
    node; a one-line reason (str) if it does not fit, else None."""
    ver, flags, cluster, epoch, sf, sc, pf, pc, nm, np = struct.unpack_from(_HEAD, sec, 0)
    if ver != 1 or len(sec) != _HEAD_LEN + 2 * nm + 4 * np + _TAIL_LEN:
        return "kept roster: version %d, %d bytes" % (ver, len(sec))
    members = struct.unpack_from("<%dH" % nm, sec, _HEAD_LEN)
    cfg = node.cfg
    r = cfg.replication
    if not (r[0] <= sf and sf + sc <= r[0] + r[1]) or node.id not in members:
        return "kept roster of cluster %d (spares %d+%d) is not this config's (%d+%d)" % (cluster, sf, sc, r[0], r[1])
    for m in members:
        if wire.index_of(node.sources, m) < 0:
            return "kept roster names node %d, unknown to this config" % m
    if cluster == cfg.cluster and (sf, sc) == (r[0], r[1]):
        members = tuple(set(members) | set(cfg.members))  # no split since the config: a join only adds
    off = _HEAD_LEN + 2 * nm
    j.parents = {}
    for _ in range(np):
        k, p = struct.unpack_from("<HH", sec, off)
        j.parents[k] = p
        off += 4
    j.joining = bool(flags & 1)
    j.epoch, j.first, j.count, j.split = epoch, sf, sc, (pf, pc)
    j.changed = True
    j._kept = None
    node.cluster_dst = wire.cluster_addr(cluster)
    node.members = Membership(node.id, tuple(sorted(members)), cfg.suspect_ms, cfg.dead_ms)
    return None
