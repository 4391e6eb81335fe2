# Bidders copy their bids to the region's auditors (docs/CONTAINMENT.md,
# "Auditors see the bids"), so a coordinator that drops or alters a bid
# before clearing, and forwards the rest, is seen.
#
# A trader sends each auditor, beside its BID to the coordinator, one
# BID_SEEN per bid: the bid's round, its sequence number, the coordinator it
# went to and a digest (a
# crc32 of the bid's fields as the coordinator's AUDIT_BID rows carry them).
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
# not collect whole judges nothing. Limit: a bid lost on its way to the
# coordinator while its digest reached the auditor looks dropped (docs).
#
# Pure: no I/O, no clock; compact arrays sized once, one 17-byte scratch.

import binascii
import struct
from array import array

from micropython import const

from node import msgs
from node.auction import F_ALL

_FMT = "<IIHHBBBBB"  # seq, first, resource, price, classes, span, period, count, flags
_buf = bytearray(17)
_SEEN = const(0)  # in the table since the last check
_OLD = const(1)  # it was in the table at the last check
_MATCHED = const(2)  # found in the rows: gone at the next compaction


def digest(seq, first, res, price, mask, span, period, count, flags):
    """The bid's digest (the same bytes on every runtime)."""
    struct.pack_into(_FMT, _buf, 0, seq, first, res, price, mask, span, period, count, flags & F_ALL)
    return binascii.crc32(_buf) & 0xFFFFFFFF


def send_copies(tr, rnd, seq, first, hint, price, mask, span, period, count, flags):
    """The trader's side: one BID_SEEN per auditor but the coordinator it bids to."""
    p = msgs.pack(msgs.BID_SEEN, rnd & 0xFFFFFFFF, seq, tr.coord,
                  digest(seq, first, hint, price, mask, span, period, count, flags))
    for a in tr.cfg.auditors:
        if a != tr.coord:
            tr.send(a, msgs.BID_SEEN, p)


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
