# The regional ledger of leases: who holds which resource in which slots.
#
# A lease is a resource id, a holder, and a periodic set of slots:
#     occurrence k (0 <= k < count) covers slots
#     [first + k * period, first + k * period + span)
# so one record covers a spot lease (count 1) and an autonomy-window
# pre-allocation (say every 4th slot for 30 days) alike. An award is a lease
# with an expiry: the end of its last occurrence.
#
# The rule the ledger exists for: no (resource, slot) is ever held by two
# leases. It keeps a busy bitmap over a ring of `horizon` slots per resource
# (horizon / 8 bytes per resource) and refuses any add that touches a busy
# bit or a slot outside [base, base + horizon). base is the first slot still
# on sale; advance() moves it and drops what has passed. Bits are only ever
# set or cleared for slots inside the ring, so a lease whose early
# occurrences have passed never disturbs the bits of the slots that reuse
# their ring positions.
#
# Compact arrays, not objects, sized for a Pico-class regional coordinator
# (docs/MARKET.md has the arithmetic for 1,000 nodes): each holder (an index
# into the region's roster) owns `per_holder` record slots, record i belongs
# to holder i // per_holder, so a holder's leases are found without a search
# and no holder field or list link is stored. A record is 6 bytes: res,
# first and span (8 bits) in one u32 word, then period and count u8 (count
# 0: a free slot). first is kept modulo 2**fb and read back relative to
# base: every live record starts within 256 slots before base and the
# horizon after it, so it is exact with fb = 9 bits for a horizon up to 256
# slots (the default 128), 10 up to 768, 11 up to 1,024. res takes the
# word's top bits: a region has at most 8,192 resources (their busy bitmap
# alone would be 128 KB at the default horizon: no board holds it). With
# the default horizon every word stays a small int (under 2**30) on a
# 32-bit MicroPython, so reading a record allocates nothing.
# A holder whose slots are all taken gets no more leases until one expires
# (add() says -2, and no_room counts it; the clearings count a bid that
# loses for want of a record slot there too): a bound on what one node can
# hold, by design (docs/MARKET.md "Capacity").
#
# Records are merged only on request (an extension of a lease the holder
# named), so a replica that applies the same awards in any order ends up with
# the same records; digest() (a sum of mixed crc32s, one per record,
# order-free) is how a standby proves it is a replica. A record of one
# occurrence always stores span as its period (_put, advance), whatever made
# it: digest() does not cover that period, yet add()'s merge reads it, so a
# record that kept a stale rhythm after its other occurrences passed (the
# coordinator's) and the same record from a copy (an elector's AWARD_SYNC)
# would merge an extension differently with equal digests: an auditor's
# re-run then differed from an honest clearing (docs/CONTAINMENT.md "Loss
# and auditing").

import binascii
import struct
from array import array

from micropython import const

_REC = "<HHIBBB"
_U8 = const(255)
MAX_RESOURCES = const(8192)  # resource ids fit the record word's top bits at any horizon


def last_slot(first, span, period, count):
    return first + (count - 1) * period + span - 1


def end_s(first, span, period, count, slot_ms):
    """The mission second a lease ends (its last occurrence's end): AWARD's
    end_s (protocol 4). In small ints on a board: slots x whole seconds."""
    end = first + (count - 1) * period + span
    return (end * (slot_ms // 1000) + end * (slot_ms % 1000) // 1000) & 0xFFFFFFFF


class Ledger:
    def __init__(self, n_res, horizon, per_holder, n_holders):
        if horizon % 8 or not 0 < horizon <= 1024:
            raise ValueError("ledger: horizon must be a multiple of 8 in 8..1024")
        if n_res > MAX_RESOURCES:
            raise ValueError("ledger: at most %d resources" % MAX_RESOURCES)
        self.n_res = n_res
        self.horizon = horizon
        self._row = horizon // 8
        self.busy = bytearray(n_res * self._row)
        self.base = 0
        self.per_holder = per_holder
        self.n_holders = n_holders
        self.max = per_holder * n_holders
        fb = 9 if horizon <= 256 else 10 if horizon <= 768 else 11  # holds 256 + horizon slots
        self._fmask = (1 << fb) - 1
        self._rshift = 8 + fb
        self._rfs = array("I", bytes(4 * self.max))  # res << _rshift | (first & _fmask) << 8 | span
        self.period = bytearray(self.max)
        self.count = bytearray(self.max)  # 0: a free record slot
        self.n = 0  # live records
        self.no_room = 0  # leases refused because their holder's record slots were taken (counted, not raised)
        self._rec = bytearray(11)

    # ---- records ---------------------------------------------------------

    def first(self, i):
        """Record i's first slot (stored modulo 2**fb, read relative to base)."""
        lo = self.base - 256
        return lo + (((self._rfs[i] >> 8) - lo) & self._fmask)

    def res_of(self, i):
        """Record i's resource."""
        return self._rfs[i] >> self._rshift

    def span_of(self, i):
        """Record i's slots per occurrence."""
        return self._rfs[i] & 0xFF

    def holder(self, i):
        return i // self.per_holder

    def lease(self, i):
        """(res, holder, first, span, period, count) of record i."""
        w = self._rfs[i]
        return w >> self._rshift, i // self.per_holder, self.first(i), w & 0xFF, self.period[i], self.count[i]

    def free_slots(self, holder):
        """(records holder can still take, its records of several occurrences)."""
        a = holder * self.per_holder
        free = periodic = 0
        for i in range(a, a + self.per_holder):
            c = self.count[i]
            if not c:
                free += 1
            elif c > 1:
                periodic += 1
        return free, periodic

    def records(self, holder):
        """Indices of holder's live records."""
        a = holder * self.per_holder
        return [i for i in range(a, a + self.per_holder) if self.count[i]]

    # ---- bits ----------------------------------------------------------

    def _bit(self, res, slot):
        s = slot % self.horizon
        return res * self._row + (s >> 3), 1 << (s & 7)

    def is_busy(self, res, slot):
        if slot < self.base or slot >= self.base + self.horizon:
            return False
        i, m = self._bit(res, slot)
        return bool(self.busy[i] & m)

    def _mark(self, res, first, span, period, count, on):
        lo = self.base
        hi = lo + self.horizon
        busy = self.busy
        for k in range(count):
            s0 = first + k * period
            for s in range(s0, s0 + span):
                if lo <= s < hi:
                    i, m = self._bit(res, s)
                    if on:
                        busy[i] |= m
                    else:
                        busy[i] &= ~m & 0xFF

    # ---- queries -------------------------------------------------------

    def fits(self, res, first, span, period, count, past=False):
        """True if every slot of the lease is inside the ring and free. With
        `past`, slots before base are allowed (and ignored): a record copied
        from another ledger whose first occurrence is under way."""
        if not (0 <= res < self.n_res) or count < 1 or span < 1 or (count > 1 and period < span):
            return False
        lo = self.base
        if first < lo and (not past or first < lo - 255):
            return False
        if last_slot(first, span, period, count) >= lo + self.horizon:
            return False
        busy = self.busy
        for k in range(count):
            s0 = first + k * period
            for s in range(s0, s0 + span):
                if s >= lo:
                    i, m = self._bit(res, s)
                    if busy[i] & m:
                        return False
        return True

    def find(self, res, holder, slot, span):
        """Holder's record with an occurrence of `span` slots starting at
        `slot` on `res`, and that occurrence's index: (i, k), or (-1, -1)."""
        if not 0 <= holder < self.n_holders:
            return -1, -1
        a = holder * self.per_holder
        for i in range(a, a + self.per_holder):
            if self.count[i] and self._rfs[i] >> self._rshift == res and self._rfs[i] & 0xFF == span:
                d = slot - self.first(i)
                p = self.period[i]
                if d >= 0 and d % p == 0 and d // p < self.count[i]:
                    return i, d // p
        return -1, -1

    # ---- changes -------------------------------------------------------

    def _alloc(self, holder):
        a = holder * self.per_holder
        for i in range(a, a + self.per_holder):
            if self.count[i] == 0:
                self.n += 1
                return i
        return -1

    def _put(self, i, res, first, span, period, count):
        self._rfs[i] = res << self._rshift | (first & self._fmask) << 8 | span
        self.period[i] = period if count > 1 else span  # one occurrence: period is span (digest(), add's merge)
        self.count[i] = count

    def add(self, res, holder, first, span, period, count, merge=False, past=False, new_ok=True):
        """Record a lease if it fits. Returns its record index, -1 if a slot
        is taken or outside the ring, -2 if the holder has no free record
        slot. With `merge`, a lease that continues one of holder's records on
        the same resource with the same shape extends that record instead
        (and with new_ok False, only that). `past` as in fits()."""
        if not 0 <= holder < self.n_holders or not self.fits(res, first, span, period, count, past):
            return -1
        if merge:
            for i in self.records(holder):
                c = self.count[i]
                p = self.period[i]
                if (self._rfs[i] >> self._rshift == res and self._rfs[i] & 0xFF == span and (count == 1 or period == p)
                        and self.first(i) + c * p == first and c + count <= _U8):
                    self._mark(res, first, span, p, count, True)  # one more occurrence or several, same rhythm
                    self.count[i] = c + count
                    return i
        if count == 1:
            period = span
        if not new_ok:
            return -2
        i = self._alloc(holder)
        if i < 0:
            self.no_room += 1
            return -2
        self._put(i, res, first, span, period, count)
        self._mark(res, first, span, period, count, True)
        return i

    def _drop(self, i, k0, k1):
        """Remove occurrences k0..k1 of record i (bits cleared; split when
        they are in the middle). False if a split needs a free record slot and
        the holder has none: then nothing changes."""
        w = self._rfs[i]
        res, first, span, period, count = w >> self._rshift, self.first(i), w & 0xFF, self.period[i], self.count[i]
        head = k0
        tail = count - k1 - 1
        if head and tail:
            j = self._alloc(i // self.per_holder)
            if j < 0:
                return False
            self._put(j, res, first + (k1 + 1) * period, span, period, tail)
        self._mark(res, first + k0 * period, span, period, k1 - k0 + 1, False)
        if head:
            self._put(i, res, first, span, period, head)
        elif tail:
            self._put(i, res, first + (k1 + 1) * period, span, period, tail)
        else:
            self.count[i] = 0
            self.n -= 1
        return True

    def release(self, res, holder, first, span, period, count, from_slot):
        """Free holder's occurrences of the lease (first, span, period,
        count) that start at or after both from_slot and base. Only
        occurrences this holder holds at exactly those starts are touched, so
        a release can never free anybody else's slots. Returns (freed,
        missing): occurrences freed, and occurrences not held by this holder."""
        freed = missing = 0
        if count < 1 or span < 1 or not 0 <= holder < self.n_holders:
            return 0, count
        p = period if count > 1 else span
        k = 0
        while k < count:
            s = first + k * p
            if s < from_slot or s < self.base:
                k += 1
                continue
            i, ki = self.find(res, holder, s, span)
            if i < 0:
                missing += 1
                k += 1
                continue
            run = 1
            if self.period[i] == p:
                run = min(count - k, self.count[i] - ki)
            if not self._drop(i, ki, ki + run - 1):
                return freed, missing + count - k  # no free slot to split into: the rest stays held
            freed += run
            k += run
        return freed, missing

    def advance(self, new_base):
        """Slots before new_base are past: drop the occurrences that ended
        before it and clear their ring bits for reuse."""
        if new_base <= self.base:
            return
        for i in range(self.max):
            c = self.count[i]
            if not c:
                continue
            f, p, sp = self.first(i), self.period[i], self._rfs[i] & 0xFF
            while c and f + sp - 1 < new_base:
                f += p
                c -= 1
            if c == 0:
                self.count[i] = 0
                self.n -= 1
            elif c != self.count[i]:
                w = self._rfs[i]
                self._rfs[i] = w - (w & (self._fmask << 8)) + ((f & self._fmask) << 8)
                self.count[i] = c
                if c == 1:
                    self.period[i] = sp  # its last occurrence: period is span, as _put stores it
        busy = self.busy
        if new_base - self.base >= self.horizon:
            for j in range(len(busy)):
                busy[j] = 0
        else:
            row = self._row
            for s in range(self.base, new_base):
                o = (s % self.horizon) >> 3
                m = ~(1 << (s & 7)) & 0xFF
                for r in range(self.n_res):
                    busy[r * row + o] &= m
        self.base = new_base

    def reset(self, base):
        """Empty, starting at base (a standby about to receive a full copy)."""
        for i in range(self.max):
            self.count[i] = 0
        for j in range(len(self.busy)):
            self.busy[j] = 0
        self.n = 0
        self.base = base

    # ---- proofs --------------------------------------------------------

    def digest(self):
        """Order-free digest of the records: the sum mod 2**32 of a mixed
        crc32 of each (a single occurrence's period means nothing, so it
        counts as its span). Not a plain XOR of crc32s: crc32 is linear over
        GF(2), so records whose fields XOR to zero (four leases of one
        resource at phases 2, 6, 10, 14 to holders 0..3, a clearing's
        everyday output) cancel out of an XOR, and an elector missing them
        would match a full ledger (chaos seed 81, docs/MARKET.md). The
        mixing (murmur3's finaliser) and the integer sum break that
        structure; what remains is a 2**-32 chance per comparison."""
        d = 0
        rec = self._rec
        for i in range(self.max):
            c = self.count[i]
            if c:
                w = self._rfs[i]
                struct.pack_into(_REC, rec, 0, w >> self._rshift, i // self.per_holder, self.first(i), w & 0xFF,
                                 self.period[i] if c > 1 else w & 0xFF, c)
                h = binascii.crc32(rec)
                h ^= h >> 16
                h = (h * 0x85EBCA6B) & 0xFFFFFFFF
                h ^= h >> 13
                d = (d + h) & 0xFFFFFFFF
        return d

    def conflicts(self):
        """(resource, slot) pairs held twice, recounted from the records alone
        (not the bitmap): 0 by construction; tests and benchmarks check it.
        Resources are checked a few at a time, so the count needs at most 1 KB,
        not a second bitmap."""
        row = self._row
        per = min(self.n_res, 1024 // row) or 1
        seen = bytearray(per * row)
        bad = 0
        lo_slot, hi_slot = self.base, self.base + self.horizon
        for r0 in range(0, self.n_res, per):
            for j in range(len(seen)):
                seen[j] = 0
            for i in range(self.max):
                c = self.count[i]
                if not c:
                    continue
                res = self._rfs[i] >> self._rshift
                if not r0 <= res < r0 + per:
                    continue
                first, span, period = self.first(i), self._rfs[i] & 0xFF, self.period[i]
                for k in range(c):
                    for s in range(first + k * period, first + k * period + span):
                        if lo_slot <= s < hi_slot:
                            b = s % self.horizon
                            j = (res - r0) * row + (b >> 3)
                            m = 1 << (b & 7)
                            if seen[j] & m:
                                bad += 1
                            seen[j] |= m
        return bad
