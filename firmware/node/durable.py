# What the market tier keeps across power loss: the market section of the
# node's saved blob (Node.take_persist), packed and restored here.
#
# An elector keeps its ledger as it stood at the last round it holds (the
# (led_term, led_round) recovery asks about, node/recovery.py), so "a
# majority lost power" no longer loses a committed round; a holder keeps its
# own leases, so a rebooted holder claims what it holds. Written when
# (led_term, led_round) moves to a known round (at most once per round: the
# close on a coordinator, the matching ack on a replica, an adopted copy) or
# the holder's leases change; never while a copy is half here (led_round -1:
# the flash keeps the last whole ledger, which this elector did hold).
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

import binascii
import struct

from micropython import const

MAGIC = b"MK"
_VERSION = const(1)
_HEAD = "<2sBBIiIHH"
HEAD_LEN = const(20)
_REC = "<HHHBBB"
_REC_LEN = const(9)
_LEASE = "<HIBBBBB"
_LEASE_LEN = const(11)
_F_LEDGER = const(1)


def to_keep(region, kept_leases):
    """True if the section on flash is out of date: the elector's ledger
    holds a newer round, or the holder's leases changed (kept_leases: the
    trader's (awards, released) when they were last kept). Not while an
    elector's ledger is half a copy (led_round -1) after it held a round:
    the flash keeps that whole ledger until the copy is whole (a lease that
    came meanwhile waits for it too)."""
    tr = region.trader
    m = region.market
    if m is None:
        return tr.awards != kept_leases[0] or tr.released != kept_leases[1]
    if m.led_round < 0 and m.kept[1] >= 0:
        return False
    return tr.awards != kept_leases[0] or tr.released != kept_leases[1] or m.to_keep()


def size(market, trader):
    n = market.ledger.n if market is not None else 0
    return HEAD_LEN + n * _REC_LEN + len(trader.leases) * _LEASE_LEN + 4


def pack(market, trader):
    """The market section (bytes) for this node's market tier: its elector's
    ledger (market None: none) and its trader's leases. Marks the ledger's
    round kept."""
    if market is not None:
        market.kept = (market.led_term, market.led_round)
    out = bytearray(size(market, trader))
    n = 0
    if market is not None:
        led = market.ledger
        struct.pack_into(_HEAD, out, 0, MAGIC, _VERSION, _F_LEDGER, market.led_term, market.led_round, led.base,
                         led.n, len(trader.leases))
        off = HEAD_LEN
        base = led.base
        for i in range(led.max):
            c = led.count[i]
            if c:
                struct.pack_into(_REC, out, off, i, led.res[i], led.first(i) - base + 256, led.span[i],
                                 led.period[i], c)
                off += _REC_LEN
                n += 1
    else:
        struct.pack_into(_HEAD, out, 0, MAGIC, _VERSION, 0, 0, -1, 0, 0, len(trader.leases))
        off = HEAD_LEN
    for lease in trader.leases:
        struct.pack_into(_LEASE, out, off, lease[0], lease[1], lease[2], lease[3], lease[4], lease[5],
                         1 if lease[6] else 0)
        off += _LEASE_LEN
    struct.pack_into("<I", out, off, binascii.crc32(memoryview(out)[:off]))
    return bytes(out)


def check(blob):
    """ValueError unless blob is one whole market section."""
    n = len(blob)
    if n < HEAD_LEN + 4 or blob[:2] != MAGIC:
        raise ValueError("market state: not a market section")
    magic, ver, flags, lt, lr, base, nrec, nlease = struct.unpack_from(_HEAD, blob, 0)
    if ver != _VERSION:
        raise ValueError("market state: version %d" % ver)
    if n != HEAD_LEN + nrec * _REC_LEN + nlease * _LEASE_LEN + 4:
        raise ValueError("market state: %d bytes for %d records and %d leases" % (n, nrec, nlease))
    (crc,) = struct.unpack_from("<I", blob, n - 4)
    if binascii.crc32(memoryview(blob)[: n - 4]) != crc:
        raise ValueError("market state: bad crc")


def restore(blob, market, trader):
    """Put a checked market section back: the ledger and its (term, round)
    into `market` (an elector's; None: skip), the leases into `trader`.
    ValueError if it does not fit this node's config (nothing kept then)."""
    check(blob)
    magic, ver, flags, lt, lr, base, nrec, nlease = struct.unpack_from(_HEAD, blob, 0)
    off = HEAD_LEN
    if market is not None and flags & _F_LEDGER:
        led = market.ledger
        led.reset(base)
        for _ in range(nrec):
            i, res, rel, span, period, count = struct.unpack_from(_REC, blob, off)
            off += _REC_LEN
            first = base + rel - 256
            if i >= led.max or led.count[i] or not led.fits(res, first, span, period, count, True):
                led.reset(0)
                raise ValueError("market state: record %d does not fit the ledger" % i)
            led._put(i, res, first, span, period, count)
            led._mark(res, first, span, period, count, True)
            led.n += 1
        market.led_term = lt
        market.led_round = lr
        market.kept = (lt, lr)
    else:
        off += nrec * _REC_LEN
    leases = []
    for _ in range(nlease):
        res, first, span, period, count, g, cover = struct.unpack_from(_LEASE, blob, off)
        off += _LEASE_LEN
        leases.append([res, first, span, period, count, g, bool(cover)])
    trader.leases = leases


def round_of(blob):
    """(led_term, led_round) of a checked market section."""
    return struct.unpack_from("<Ii", blob, 4)


def split(blob):
    """(term/vote part, market section or None) of a node's saved blob: the
    market section follows one or two 14-byte term/vote blobs."""
    for k in (14, 28):
        if len(blob) > k + HEAD_LEN and blob[k:k + 2] == MAGIC:
            nrec, nlease = struct.unpack_from("<HH", blob, k + 16)
            if len(blob) - k == HEAD_LEN + nrec * _REC_LEN + nlease * _LEASE_LEN + 4:
                return blob[:k], blob[k:]
    return blob, None
