# A node that a split passed by comes back into the right cluster: CATCHUP.
#
# A node off while its cluster split (or cut before it saved the split)
# boots with its boot config's roster and cluster number (docs/PROTOCOL.md
# "Membership on flash"). It sends as before: HELLO at boot, then
# heartbeats, on its old cluster's address. A coordinator of a replicating
# cluster (node/join.py's Joins exists) answers it with one CATCHUP, sent to
# that node only:
# - a HELLO from one of its own members (a boot: it may have missed a join
#   or a split it stayed through), and, in a cluster a split made or cut,
#   each member's first HEARTBEAT in the coordinator's term (a boot HELLO
#   that no coordinator heard: both sides elect after a split): its own
#   cluster's roster now;
# - a HELLO or HEARTBEAT on its cluster's address from a node that one of
#   its splits moved to the other side: that side's roster as of the split
#   (Joins.others, recorded by record() when the split is applied; the
#   other side answers from there on, so a node off across several splits
#   is led through them one side at a time).
# At most one CATCHUP per node per 4 election timeouts (Joins.told, at most
# 8 entries), and a member's heartbeat gets one once per term (Joins.shown):
# no storms.
#
# The receiver (apply) takes a CATCHUP only from a member of its roster in
# its term or later (else `not_coordinator`), whose roster descends from its
# own boot config (it is in it, every member a source it knows, the spares
# inside the config's, else `foreign`) and from what it holds: the same
# cluster and split block with a newer epoch (joins it missed), or a split
# block inside its own and past its first number (splits it missed), else
# `stale`. Each refusal is counted and told to the ground (JOIN_REFUSED).
# The same roster with the same epoch: nothing new, ignored. Applied: its
# cluster, members, spares, split block and parents are the CATCHUP's, its
# state is dirty once (its blob keeps the roster), it elects again and says
# HELLO to its (new) cluster, whose coordinator tells it anything newer.
#
# Loaded only where a split happens or a CATCHUP arrives (node/join.py,
# node/node.py): a fleet that never replicates never imports it.

import struct

from micropython import const

from node import election as el
from node import msgs, wire
from node.membership import Membership

CATCHUP = const(0xA5)  # the message's type (replication's block, docs/PROTOCOL.md)
_HEAD = "<IHHHHHH"  # term, epoch, cluster, spares first, count, split block first, count
_HEAD_LEN = const(16)
_ENTRY_LEN = const(4)  # node u16, parent u16 (0: not a daughter)
MAX_MEMBERS = const(52)  # (MAX_PAYLOAD 224 - 16) // 4: a larger roster is not sent
_OTHERS = const(4)
_TOLD = const(8)
_QUIET = const(4)  # election timeouts between two CATCHUPs to one node


def record(j, node, new_cluster, pivot, upper, mid, end):
    """In Joins._apply_split, before anything changes: the side this node
    does not go with, as a CATCHUP would carry it (epoch, cluster, spares,
    split block, members)."""
    members = tuple(m for m in node.members.members if (m >= pivot) != upper)
    if not members:
        return
    f, n = j.split
    half = (n - 1) // 2
    ok = n and f == new_cluster
    if upper:  # the other side stays: the old cluster, the lower spares
        side = (j.epoch, node.cluster_dst & 0xFFF, j.first, mid - j.first) + ((f + 1, half) if ok else (0, 0))
    else:
        side = (j.epoch, new_cluster, mid, end - mid) + ((f + 1 + half, n - 1 - half) if ok else (0, 0))
    others = j.others
    if len(others) >= _OTHERS:
        others.pop(0)
    others.append(side + (members,))


def pack(j, node, side):
    """A CATCHUP payload for `side` (epoch, cluster, first, count, split
    first, count, members), or None when its roster does not fit."""
    members = side[6]
    if len(members) > MAX_MEMBERS:
        return None
    parents = j.parents
    return pack_fields((node.term,) + side[:6], [(m, parents.get(m, 0)) for m in members])


def pack_fields(head, entries):
    """Payload bytes of head (term, epoch, cluster, first, count, split
    first, split count) and entries [(node, parent), ...]."""
    out = bytearray(_HEAD_LEN + _ENTRY_LEN * len(entries))
    struct.pack_into(_HEAD, out, 0, *head)
    off = _HEAD_LEN
    for m, p in entries:
        struct.pack_into("<HH", out, off, m, p)
        off += _ENTRY_LEN
    return bytes(out)


def unpack(payload):
    """(term, epoch, cluster, first, count, split first, split count,
    [(node, parent), ...]); ProtocolError if malformed."""
    n = len(payload)
    if n < _HEAD_LEN or (n - _HEAD_LEN) % _ENTRY_LEN:
        raise wire.ProtocolError(wire.ERR_PAYLOAD, "catchup: %d bytes" % n)
    head = struct.unpack_from(_HEAD, payload, 0)
    entries = [struct.unpack_from("<HH", payload, off) for off in range(_HEAD_LEN, n, _ENTRY_LEN)]
    return head + (entries,)


def answer(j, node, src, member, now_ms):
    """Joins.heard found that `src` (a `member` of this coordinator's
    cluster, or not) may have missed a split (above): one CATCHUP."""
    if member:
        side = (j.epoch, node.cluster_dst & 0xFFF, j.first, j.count, j.split[0], j.split[1], node.members.members)
    else:
        side = None
        for s in j.others:
            if src in s[6]:
                side = s  # the latest split that moved it
        if side is None:
            return
    told = j.told
    if now_ms < told.get(src, now_ms):
        return
    if len(told) >= _TOLD and src not in told:
        told.clear()
    told[src] = now_ms + _QUIET * node.cfg.election_timeout_ms
    payload = pack(j, node, side)
    if payload is not None:
        node._send(src, CATCHUP, payload)


def _descends(j, node, cluster, pf, pc):
    """A split block (pf, pc) of cluster `cluster` made from this node's by
    one or more splits."""
    f, n = j.split
    return n and f < pf and pf + pc <= f + n and (cluster == node.cluster_dst & 0xFFF or f <= cluster < f + n)


def apply(j, node, src, payload, now_ms):
    """A CATCHUP sent to this node: checked, then taken (above)."""
    term, epoch, cluster, sf, sc, pf, pc, entries = unpack(payload)
    if src == node.id:
        return
    if term < node.term or not node.members.is_member(src):
        j._refuse(node, R_NOT_COORDINATOR, CATCHUP, src, cluster)
        return
    members = [e[0] for e in entries]
    r = node.cfg.replication
    foreign = node.id not in members or not (r[0] <= sf and sf + sc <= r[0] + r[1]) or not 0 < cluster < 0xE00
    for m in members:
        if wire.index_of(node.sources, m) < 0:
            foreign = True
    if foreign:
        j._refuse(node, R_FOREIGN, CATCHUP, src, cluster)
        return
    newer = 0 < ((epoch - j.epoch) & 0xFFFF) < 0x8000
    same = cluster == node.cluster_dst & 0xFFF and (pf, pc) == j.split
    if same and not newer:
        node.ignored += 1  # nothing it does not hold already
        return
    if not (same or (_descends(j, node, cluster, pf, pc) and (newer or epoch == j.epoch))):
        j._refuse(node, R_STALE, CATCHUP, src, cluster)
        return
    for k, p in entries:
        if p:
            j.parents[k] = p
    if same:  # joins it missed: a join only adds
        for m in members:
            node.members.add(m)
    else:
        node.members = Membership(node.id, tuple(sorted(members)), node.cfg.suspect_ms, node.cfg.dead_ms)
    j.epoch, j.first, j.count, j.split = epoch, sf, sc, (pf, pc)
    j.joining = False
    j._roster = None
    j._resends = 0
    j.catchups += 1
    node.cluster_dst = wire.cluster_addr(cluster)
    j._changed(node)
    node.coordinator = msgs.NO_NODE
    node.standby = msgs.NO_NODE
    node._become(el.EV_HIGHER_TERM, now_ms)
    node._deadline_ms = now_ms + node._cold_timeout_ms()
    hello = node._hello()
    node._send(node.cluster_dst, msgs.HELLO, hello)  # (not to the ground: a HELLO there is a boot)
    region = node.region
    if region is not None:  # as a split (node/join.py _apply_split): the region's electors learn its cluster
        if region.quarantine is not None:
            region.quarantine.move(node.id, cluster)
        node._send(region.dst, msgs.HELLO, hello)


R_NOT_COORDINATOR = const(4)  # node/join.py's reasons
R_STALE = const(5)
R_FOREIGN = const(6)
