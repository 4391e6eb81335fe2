# Auditing over lossy links (docs/CONTAINMENT.md "Loss and auditing"): an
# auditor that lacks some of a round's AUDIT_BID rows once the round's
# PREPARE reached it asks the coordinator for them (AUDIT_MISS: the round,
# a first row and a 32-bit map of the missing rows from it), and the
# coordinator resends those rows from its copy of the round as it sent it.
#
# Bounded on both sides: the coordinator keeps one round's rows (a BidBook
# of the region's max_bids, made at its first audited close, about 21 B a
# row) and answers only for that round; an auditor asks at most MAX_ASKS
# times a round (at the PREPARE, then once every lead_ms), each ask at most
# MAX_FRAMES AUDIT_MISS frames (MAX_FRAMES * WINDOW rows). A round still
# incomplete when the next one starts is left unjudged (Auditor.unjudged):
# a coordinator that does not resend cannot be told from a lossy link, so
# silence is no evidence.
#
# Pure: no I/O, no clock; sends through the region's and market's send.
# Loaded by node/audit.py only in a region with auditors.

from micropython import const

from node import msgs, refusal
from node.msgs_tiers import AUDIT_MISS
from node.auction import BidBook

WINDOW = const(32)  # rows one AUDIT_MISS maps (its `missing` u32)
MAX_FRAMES = const(8)  # AUDIT_MISS frames one ask sends at most
MAX_ASKS = const(3)  # asks an auditor makes for one round
_MISSING = const(0xFF)  # audit._MISSING: a row not received yet


class Kept:
    """The coordinator's copy of its last audited round: the rows as it sent
    them (bids as bid, before clearing), its round and before-digest."""

    def __init__(self, max_bids):
        self.book = BidBook(max_bids)
        self.round = -1
        self.before = 0
        self.resent = 0  # rows sent again on an AUDIT_MISS
        self.stale = 0  # AUDIT_MISS for a round no longer kept (not answered)


def keep(m, n, before):
    """At a close (node/audit.py send_round): the n rows m's book holds now
    become the kept round."""
    from node.audit import copy_rows

    k = getattr(m, "kept", None)
    if k is None:
        k = m.kept = Kept(m.book.max)
    copy_rows(k.book, m.book, n)
    k.round = m.round
    k.before = before


def row(m, dst, rnd, n, i, before, b):
    """Send row i of book b (n rows) of round rnd to auditor dst."""
    m.send(dst, msgs.AUDIT_BID, msgs.pack(
        msgs.AUDIT_BID, rnd & 0xFFFFFFFF, n, i, m.cfg.roster[b.node[i]], before, b.seq[i], b.first[i],
        b.hint[i], b.price[i], b.mask[i], b.span[i], b.period[i], b.count[i], b.flags[i]))


def on_miss(region, src, f):
    """An auditor's AUDIT_MISS: resend the rows it maps, if we kept that
    round. Not from one of the region's auditors: refused (`unexpected`)."""
    m = region.market
    k = getattr(m, "kept", None) if m is not None else None
    if src not in region.cfg.auditors or k is None:
        region.refused[refusal.UNEXPECTED] += 1
        return
    rnd, first, bits = f
    if rnd != k.round & 0xFFFFFFFF:
        k.stale += 1  # an ask that crossed the next close: the auditor leaves that round unjudged
        return
    b = k.book
    for i in range(WINDOW):
        r = first + i
        if r >= b.n:
            break
        if bits >> i & 1:
            row(m, src, k.round, b.n, r, k.before, b)
            k.resent += 1


def ask(region, a, coord):
    """Auditor a lacks rows of the round it collects (its PREPARE came):
    ask coord for them, at most MAX_FRAMES frames; False once MAX_ASKS
    asks were made."""
    if a.asks >= MAX_ASKS:
        return False
    a.asks += 1
    b = a.bids
    rows = a._rows if a._rows < b.max else b.max
    rnd = a._key[1] & 0xFFFFFFFF
    frames = 0
    first = 0
    while first < rows and frames < MAX_FRAMES:
        bits = 0
        for i in range(WINDOW):
            r = first + i
            if r >= rows:
                break
            if r >= b.n or b.flags[r] == _MISSING:
                bits |= 1 << i
        if bits:
            region._send(coord, AUDIT_MISS, msgs.pack(AUDIT_MISS, rnd, first, bits))
            frames += 1
            a.asked += 1
        first += WINDOW
    return True
