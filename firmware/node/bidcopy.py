# Bidders copy their bids to the region's auditors (docs/CONTAINMENT.md,
# "Auditors see the bids"), so a coordinator that drops or alters a bid
# before clearing, and forwards the rest, is seen.
#
# A bid is copied only once the coordinator said it has it: in a region with
# auditors the coordinator answers each BID it takes into its book with a
# BID_RECEIPT (round, seq and the digest of the bid as it got it; a resent
# BID it already took is receipted again, not taken twice). The trader holds
# each bid until its receipt comes (Held), resends it (the same bytes) at
# most RESENDS times, lead_ms / 4 apart, never after its round's close, and
# sends each auditor one BID_SEEN (the bid's round, its sequence number, the
# coordinator that receipted it and its digest: a crc32 of the bid's fields
# as the coordinator's AUDIT_BID rows carry them) when the receipt arrives.
# A bid never receipted (lost every time, or refused: full book, quarantined
# bidder, stale ...) is never copied: an auditor only judges bids the
# coordinator acknowledged, so a BID lost on its way is not taken for a drop.
# A digest, not a copy of the bid: 14 bytes of payload against BID's 22, and
# the auditor keeps 17 bytes per bid either way (the rows it compares with
# come from the coordinator whole).
#
# The auditor keeps the digests it got in a table sized like the round's
# book and, once it holds a round's rows (and its PREPARE), checks them:
#   - a row of a bid it saw whose digest differs: the bid was altered;
#   - a bid it saw go to this coordinator, already in its table when it
#     checked the round the bid was for, that is in neither that round's rows
#     nor the next round's of the same coordinator and term: the bid was
#     dropped (a bid that went to an earlier coordinator is lost with its
#     book at a takeover: no evidence against the next). (The next round
#     too: a bid sent just before a close may reach the coordinator after
#     it, and is cleared a round later.)
# A bid whose digest it did not get is no evidence (loss); a round it did
# not collect whole judges nothing.
#
# Pure: no I/O, no clock; compact arrays sized once, one 17-byte scratch.
# Loaded only in a region with auditors (every trader and elector there).

import binascii
import struct
from array import array

from micropython import const

from node import msgs, refusal
from node.auction import F_ALL
from node.msgs_tiers import BID_RECEIPT

_FMT = "<IIHHBBBBB"  # seq, first, resource, price, classes, span, period, count, flags
_buf = bytearray(17)
_SEEN = const(0)  # in the table since the last check
_OLD = const(1)  # it was in the table at the last check
_MATCHED = const(2)  # found in the rows: gone at the next compaction
RESENDS = const(3)  # a BID not receipted is sent again at most this often
HELD_MAX = const(8)  # bids a trader holds for their receipts at once (the oldest is given up)
# A held bid: [seq, round, digest, BID payload, coordinator it went to, resends left, next_ms]
_H_SEQ = const(0)
_H_RND = const(1)
_H_CRC = const(2)
_H_DST = const(4)
_H_LEFT = const(5)
_H_NEXT = const(6)
_IDLE = const(0)  # market.IDLE, RECOVERING (not imported: a trader does not load the market)
_RECOVERING = const(3)


def digest(seq, first, res, price, mask, span, period, count, flags):
    """The bid's digest (the same bytes on every runtime)."""
    struct.pack_into(_FMT, _buf, 0, seq, first, res, price, mask, span, period, count, flags & F_ALL)
    return binascii.crc32(_buf) & 0xFFFFFFFF


class Held:
    """A trader's bids waiting for their BID_RECEIPT (Trader.held)."""

    def __init__(self, tr):
        self.tr = tr
        self.bids = []
        self.gap_ms = tr.cfg.lead_ms // 4  # between two sends of one bid
        self.resent = 0  # BIDs sent again
        self.receipted = 0  # bids receipted (and copied to the auditors)
        self.given_up = 0  # bids never receipted: not copied
        self.stray = 0  # receipts for no bid held (a second receipt after a resend, or too late)
        self.other_digest = 0  # receipts naming a digest that is not the bid's (counted, not judged)

    def poll(self, now_ms):
        if self.due_ms(now_ms + 1) > now_ms:
            return  # nothing due (no list built on every poll)
        tr = self.tr
        cfg = tr.cfg
        keep = []
        for h in self.bids:
            if now_ms < h[_H_NEXT]:
                keep.append(h)
            elif h[_H_LEFT] and tr.coord == h[_H_DST] and now_ms < (h[_H_RND] + 1) * cfg.slot_ms - cfg.lead_ms:
                tr.send(h[_H_DST], msgs.BID, h[3])
                h[_H_LEFT] -= 1
                h[_H_NEXT] = now_ms + self.gap_ms
                self.resent += 1
                keep.append(h)
            else:
                self.given_up += 1  # after its round's close, to another coordinator, or out of tries
        self.bids = keep

    def due_ms(self, t):
        for h in self.bids:
            if h[_H_NEXT] < t:
                t = h[_H_NEXT]
        return t


def hold(tr, now_ms, payload, rnd, seq, first, hint, price, mask, span, period, count, flags):
    """The trader's side, at a BID sent (payload) to tr.coord: hold it for its receipt."""
    h = tr.held
    if h is None:
        h = tr.held = Held(tr)
    if len(h.bids) >= HELD_MAX:
        h.bids.pop(0)
        h.given_up += 1
    h.bids.append([seq, rnd, digest(seq, first, hint, price, mask, span, period, count, flags), payload,
                   tr.coord, RESENDS, now_ms + h.gap_ms])


def on_receipt(tr, src, f):
    """A BID_RECEIPT: copy the bid it names to every auditor but src (the
    coordinator that receipted it), once."""
    h = tr.held
    if src not in tr.cfg.electors:
        tr.refused[refusal.UNEXPECTED] += 1
        return
    rnd, seq, crc = f
    for b in h.bids:
        if b[_H_SEQ] == seq and b[_H_DST] == src:
            h.bids.remove(b)
            h.receipted += 1
            if crc != b[_H_CRC]:
                h.other_digest += 1
            p = msgs.pack(msgs.BID_SEEN, b[_H_RND] & 0xFFFFFFFF, seq, src, b[_H_CRC])
            for a in tr.cfg.auditors:
                if a != src:
                    tr.send(a, msgs.BID_SEEN, p)
            return
    h.stray += 1


def on_bid(m, src, f, now_ms):
    """The coordinator's side (Market m, a region with auditors; node/
    region.py hands it every BID): a seq m took already (its replay window)
    is a resend whose receipt was lost: receipted again, not taken twice. A
    full book refuses a fresh bid (it would displace a cheaper row, and a
    receipted bid gone from the rows looks dropped); else the market takes
    it or refuses it as ever, and a bid taken is receipted."""
    idx = m.cfg.index(src)
    if idx >= 0 and m.state != _IDLE and m.state != _RECOVERING:  # (else on_bid refuses it, counted)
        back = m.last_seq[idx] - f[1]
        if 0 <= back < 16 and (m.seen[idx] >> back) & 1:
            receipt(m, src, f)
            return
        if m.book.n >= m.book.max:
            m.refused[refusal.FULL] += 1
            return
    n = m.bids_in
    m.on_bid(src, f, now_ms)
    if m.bids_in != n:
        receipt(m, src, f)


def receipt(m, src, f):
    """The coordinator's side: BID f from src is in m's book."""
    rnd, seq, first, res, price, mask, span, period, count, flags = f[:10]
    m.send(src, BID_RECEIPT, msgs.pack(BID_RECEIPT, rnd & 0xFFFFFFFF, seq,
                                       digest(seq, first, res, price, mask, span, period, count, flags)))


class Seen:
    """An auditor's table of the bids it saw (roster index, seq, digest, round)."""

    def __init__(self, size):
        self.size = size
        self.node = array("H", bytes(2 * size))
        self.seq = array("I", bytes(4 * size))
        self.crc = array("I", bytes(4 * size))
        self.rnd = array("I", bytes(4 * size))
        self.to = array("H", bytes(2 * size))  # the coordinator the bid went to
        self.state = bytearray(size)
        self.n = 0
        self.last = None  # (coordinator, term, round) of the last round checked
        self.full = 0  # digests not kept: the table was full
        self.altered = 0  # bids found altered in the rows
        self.dropped = 0  # bids found missing from the rows

    def add(self, idx, rnd, seq, to, crc):
        for j in range(self.n):
            if self.node[j] == idx and self.seq[j] == seq:
                return  # a duplicate
        j = self.n
        if j >= self.size:
            self.full += 1
            return
        self.node[j] = idx
        self.seq[j] = seq
        self.crc[j] = crc
        self.rnd[j] = rnd
        self.to[j] = to
        self.state[j] = _SEEN
        self.n = j + 1

    def check(self, coord, term, rnd, book, n):
        """Round `rnd`'s n rows (book, as bid) against the table: the first
        bid altered or dropped as (roster index, seq, the bid's digest, the
        row's digest or 0), or None; the bids judged leave the table."""
        got = None
        for i in range(n):
            idx, seq = book.node[i], book.seq[i]
            for j in range(self.n):
                if self.node[j] == idx and self.seq[j] == seq and self.state[j] != _MATCHED:
                    c = digest(seq, book.first[i], book.hint[i], book.price[i], book.mask[i], book.span[i],
                               book.period[i], book.count[i], book.flags[i])
                    if c != self.crc[j]:
                        self.altered += 1
                        if got is None:
                            got = (idx, seq, self.crc[j], c)
                    self.state[j] = _MATCHED
                    break
        follows = self.last == (coord, term, rnd - 1)
        k = 0
        for j in range(self.n):
            st = self.state[j]
            if st == _MATCHED:
                continue
            r = self.rnd[j]
            if r < rnd:  # due in an earlier round: judged now, or too late to judge
                if follows and st == _OLD and r == rnd - 1 and self.to[j] == coord:
                    self.dropped += 1
                    if got is None:
                        got = (self.node[j], self.seq[j], self.crc[j], 0)
                continue
            self.node[k] = self.node[j]
            self.seq[k] = self.seq[j]
            self.crc[k] = self.crc[j]
            self.rnd[k] = r
            self.to[k] = self.to[j]
            self.state[k] = _OLD
            k += 1
        self.n = k
        self.last = (coord, term, rnd)
        return got
