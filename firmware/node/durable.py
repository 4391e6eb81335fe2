# What the market tier keeps across power loss: the market section of the
# node's saved blob (Node.take_persist), packed and restored here.
#
# An elector keeps its ledger as it stood at the last round it holds (the
# (led_term, led_round) recovery asks about, node/recovery.py), so "a
# majority lost power" no longer loses a committed round; a holder keeps its
# own leases, so a rebooted holder claims what it holds. Written when
# (led_term, led_round) moves to a known round (at most once per round: the
# close on a coordinator, the matching ack on a replica, an adopted copy) or
# the holder's leases change; never a ledger that is half a copy (led_round
# -1: the flash keeps the last whole ledger, which this elector did hold,
# and a lease change meanwhile is written beside that ledger).
#
# Imported only when a section is packed or restored (a small heap).
#
# Layout, little-endian, after the node's (and its seat's) 14-byte term/vote
# blobs:
#   head   "<2sBBIiIHH" 20 bytes: b"MK", version 1, flags (bit 0: a ledger),
#          led_term, led_round (-1: none), ledger base, records, leases
#   record "<HHHBBB"     9 bytes: record slot index (its holder is index //
#          per_holder), res, first - base + 256, span, period, count
#   lease  "<HIBBBBB"   11 bytes: res, first, span, period, count, group, cover
#   crc32 of everything before it.
# docs/MARKET.md ("Power loss") has the bytes and writes per day.
#
# A trader's stocks follow as a 38-byte trailer read from the end (before a
# roster section), rewritten once per slot: node/stocks.py.

import binascii
import struct

from micropython import const

HEAD_LEN = const(20)
_HEAD = "<2sBBIiIHH"
_REC = "<HHHBBB"  # 9 bytes
_LEASE = "<HIBBBBB"  # 11 bytes
STOCK_LEN = const(38)  # node/stocks.py's trailer


class Keeper:
    """A market node's section on flash for Node: due() when it is out of
    date, take() the bytes to write, load() at boot (a one-line reason if
    the section could not be restored, else None)."""

    def __init__(self, region):
        self.region = region
        self.kept = b""  # the section on flash (empty: none yet)
        self.mark = self._now()  # (awards, released, led_term, led_round) when it was written
        self.qkept = b""  # an elector's quarantine table on flash, after the section (empty: none yet)
        self.qmark = 0  # its Quarantine.changes when it was written
        self.skept = b""  # the trader's stocks on flash (empty: none yet)
        self.sat = None  # the Trader.stock_at they were packed from (a new one: due again)
        self.stocks_ignored = 0  # saved stocks found torn or foreign at boot (initial stocks instead)

    def _now(self):
        tr = self.region.trader
        m = self.region.market
        return (tr.awards, tr.released) + ((m.led_term, m.led_round) if m is not None else (0, 0))

    def due(self):
        """The section on flash is out of date: the node's leases changed, or
        the elector's ledger holds a newer round. Never while the ledger is
        half a copy (led_round -1) after it held a round: the flash keeps
        that whole ledger until the copy is whole (a lease that came
        meanwhile waits for it too). Or whom the elector holds out of
        quarantine changed (node/quarantine.py: rare)."""
        q = self.region.quarantine
        return self._due() or (q is not None and q.changes != self.qmark) or self._stocks_due()

    def _stocks_due(self):
        at = self.region.trader.stock_at
        return at is not None and at is not self.sat

    def _due(self):
        now = self._now()
        if now == self.mark:
            return False
        return now[3] >= 0 or self.mark[3] < 0 or now[:2] != self.mark[:2]

    def take(self, fresh):
        q = self.region.quarantine
        if fresh and q is not None and q.changes != self.qmark:
            self.qkept = q.pack()  # first: a MemoryError leaves it due
            self.qmark = q.changes
        if fresh and (self._due() or not self.kept):
            now = self._now()
            if now[3] >= 0 or self.mark[3] < 0:
                kept = pack(self.region.market, self.region.trader)  # first: a MemoryError leaves it due
                self.mark = now
            else:  # a copy half here: the flash's whole ledger stays, the leases as they are now go with it
                kept = with_leases(self.kept, self.region.trader)
                self.mark = now[:2] + self.mark[2:]
            self.kept = kept
        if fresh and self._stocks_due():
            from node import stocks  # (region.preload loads it on a board)

            at = self.region.trader.stock_at
            self.skept = stocks.pack(self.region.trader.prod.gen, at)
            self.sat = at
        out = self.kept + self.qkept if self.qkept else self.kept
        return out + self.skept if self.skept else out

    def load(self, blob):
        """Put the saved section back (market, then an elector's quarantine
        table, then a trader's stocks); a one-line text for the ground when
        there is something to say (damage, a restored table), else None."""
        blob, stocks = stock_split(blob)
        why = self._load_stocks(stocks) if stocks is not None else None
        said = self._load(blob)
        return said + "; " + why if said and why else said or why

    def _load_stocks(self, sec):
        from node import stocks

        try:
            stocks.restore(sec, self.region.trader.prod)
        except ValueError as e:
            self.stocks_ignored += 1
            return "%s; initial stocks" % e
        return None

    def _load(self, blob):
        n = struct.unpack_from("<HH", blob, HEAD_LEN - 4) if len(blob) >= HEAD_LEN else (0, 0)
        end = HEAD_LEN + 9 * n[0] + 11 * n[1] + 4
        q = self.region.quarantine
        said = q.restore(self, blob[end:]) if q is not None and len(blob) > end else None
        blob = blob[:end]
        try:
            restore(blob, self.region.market, self.region.trader)
        except ValueError as e:
            return "%s; ledger and leases not restored" % e + ("; " + said if said else "")
        self.kept = bytes(blob)
        self.mark = self._now()
        return said


def pack(m, tr):
    """The market section (bytes): elector market m's ledger (None: none)
    and trader tr's leases."""
    n = m.ledger.n if m is not None else 0
    out = bytearray(HEAD_LEN + 9 * n + 11 * len(tr.leases) + 4)
    off = HEAD_LEN
    if m is not None:
        led = m.ledger
        base = led.base
        struct.pack_into(_HEAD, out, 0, b"MK", 1, 1, m.led_term, m.led_round, base, n, len(tr.leases))
        for i in range(led.max):
            if led.count[i]:
                struct.pack_into(_REC, out, off, i, led.res_of(i), led.first(i) - base + 256, led.span_of(i),
                                 led.period[i], led.count[i])
                off += 9
    else:
        struct.pack_into(_HEAD, out, 0, b"MK", 1, 0, 0, -1, 0, 0, len(tr.leases))
    _seal(out, off, tr)
    return out  # not bytes(out): a copy needs a second block of its size (2 KB at 300 nodes, docs/HEAP.md)


def with_leases(kept, tr):
    """Section `kept` (b"": none) with trader tr's leases in place of its
    own: a holder's release or award is kept while its elector's ledger is
    half a copy (else a crash then gives the released lease back)."""
    n = struct.unpack_from("<H", kept, HEAD_LEN - 4)[0] if kept else 0
    at = HEAD_LEN + 9 * n
    out = bytearray(at + 11 * len(tr.leases) + 4)
    if kept:
        out[:at] = kept[:at]
        struct.pack_into("<H", out, HEAD_LEN - 2, len(tr.leases))
    else:
        struct.pack_into(_HEAD, out, 0, b"MK", 1, 0, 0, -1, 0, 0, len(tr.leases))
    _seal(out, at, tr)
    return out


def _seal(out, off, tr):
    """tr's leases into out from off, then the crc32 of all before it."""
    for x in tr.leases:
        struct.pack_into(_LEASE, out, off, x[0], x[1], x[2], x[3], x[4], x[5], 1 if x[6] else 0)
        off += 11
    struct.pack_into("<I", out, off, binascii.crc32(memoryview(out)[:off]))


def check(blob):
    """The head's fields of one whole market section; ValueError if it is not."""
    n = len(blob)
    h = struct.unpack_from(_HEAD, blob, 0) if n >= HEAD_LEN + 4 else (b"",)
    if h[0] != b"MK" or h[1] != 1 or n != HEAD_LEN + 9 * h[6] + 11 * h[7] + 4:
        raise ValueError("market state: %d bytes, not a market section" % n)
    if binascii.crc32(memoryview(blob)[: n - 4]) != struct.unpack_from("<I", blob, n - 4)[0]:
        raise ValueError("market state: bad crc")
    return h


def restore(blob, m, tr):
    """Put a market section back: the ledger and its (term, round) into
    elector market m (None: skip), the leases into trader tr. ValueError if
    it is damaged or does not fit this node's config (nothing kept then)."""
    _, _, flags, lt, lr, base, nrec, nlease = check(blob)
    off = HEAD_LEN
    if m is not None and flags & 1:
        led = m.ledger
        led.reset(base)
        for _ in range(nrec):
            i, res, rel, span, period, count = struct.unpack_from(_REC, blob, off)
            off += 9
            first = base + rel - 256
            if i >= led.max or led.count[i] or not led.fits(res, first, span, period, count, True):
                led.reset(0)
                raise ValueError("market state: record %d does not fit the ledger" % i)
            led._put(i, res, first, span, period, count)
            led._mark(res, first, span, period, count, True)
            led.n += 1
        m.led_term, m.led_round = lt, lr
    off = HEAD_LEN + 9 * nrec
    leases = []
    for _ in range(nlease):
        x = list(struct.unpack_from(_LEASE, blob, off))
        x[6] = bool(x[6])
        leases.append(x)
        off += 11
    tr.leases = leases


def stock_split(blob):
    """(the blob before it, the stock section or None) of a market section
    (after roster_split): a section by its shape; Keeper checks its crc."""
    n = len(blob)
    if n < HEAD_LEN + STOCK_LEN or blob[n - 2:] != b"PS" or blob[n - STOCK_LEN:n - STOCK_LEN + 2] != b"ST":
        return blob, None
    return blob[:n - STOCK_LEN], blob[n - STOCK_LEN:]


def split(blob):
    """(term/vote part, market section or None) of a node's saved blob: the
    section follows one or two 14-byte term/vote blobs. An elector's
    quarantine table (node/quarantine.py, b"QT") may follow the market
    section, and a trader's stocks after that (stock_split): they stay with
    it (Keeper.load takes it apart). A roster section after everything
    (roster_split) is not part of it."""
    blob = roster_split(blob)[0]
    body = stock_split(blob)[0]
    for k in (14, 28):
        if len(body) > k + HEAD_LEN and body[k:k + 2] == b"MK":
            nrec, nlease = struct.unpack_from("<HH", body, k + 16)
            end = k + HEAD_LEN + 9 * nrec + 11 * nlease + 4
            if len(body) == end or _table_len(body, end) == len(body) - end:
                return blob[:k], blob[k:]
    return blob, None


def _table_len(blob, at):
    """Length of the quarantine table (node/quarantine.py pack()) at blob[at:], or -1."""
    if blob[at:at + 2] != b"QT" or len(blob) < at + 10:
        return -1
    return 10 + 3 * struct.unpack_from("<H", blob, at + 4)[0]


# ---- the roster section (node/join.py) --------------------------------------
# A node whose cluster's membership changed keeps its roster after everything
# above, as a trailer read from the end: ... crc32, u16 section length, b"RS".


def roster_split(blob):
    """(the blob before it, the roster section or None) of a saved blob: the
    section only if whole (its length fits, its crc matches)."""
    n = len(blob)
    if n < 14 + 26 or blob[n - 2:] != b"RS":
        return blob, None
    k = struct.unpack_from("<H", blob, n - 4)[0]
    if not 26 <= k <= n - 14 or binascii.crc32(memoryview(blob)[n - k:n - 8]) != struct.unpack_from("<I", blob, n - 8)[0]:
        return blob, None
    return blob[:n - k], blob[n - k:]
