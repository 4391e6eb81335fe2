# A trader's stocks on flash: feed, parts, the output buffer and a daughter's
# progress are physical (a reboot of the node's computer neither refills nor
# empties them), so a market node keeps them with its saved state (the
# trailer of node/durable.py's market section, before a roster section),
# rewritten at most once per slot with the stocks as they stood at its start
# (Trader.stock_at, before that slot's deliveries), and a booting trader
# takes them instead of fresh stocks. A first boot (nothing saved) keeps the
# initial stocks; a torn or foreign one (another generation's) is ignored
# (initial stocks) and counted by durable.Keeper.
#
# Imported only when stocks are packed or restored (region.preload loads it
# up front on a board).
#
# Layout, little-endian, 38 bytes:
#   "<2sBBIiiiiii" 32 bytes: b"ST", version 1, hw_gen, slot, feed, buf,
#   parts A, B, Earth, replication output (milli-units);
#   crc32 of those 32 bytes; b"PS".
# docs/MARKET.md ("Power loss") has the bytes and writes per hour.

import binascii
import struct

_STOCK = "<2sBBIiiiiii"  # 32 bytes, then crc32 and b"PS" (durable.STOCK_LEN: 38)


def pack(gen, at):
    """The stock section (bytes) of a trader of generation gen whose stocks
    at the start of slot at[0] were at[1:] (Trader.stock_at)."""
    out = bytearray(38)
    struct.pack_into(_STOCK, out, 0, b"ST", 1, gen, at[0], at[1], at[2], at[3], at[4], at[5], at[6])
    struct.pack_into("<I2s", out, 32, binascii.crc32(memoryview(out)[:32]), b"PS")
    return out


def restore(sec, prod):
    """Put a stock section's stocks into Production prod; ValueError if it
    is torn or another generation's (prod keeps its initial stocks then)."""
    if binascii.crc32(memoryview(sec)[:32]) != struct.unpack_from("<I", sec, 32)[0]:
        raise ValueError("stocks: bad crc")
    h = struct.unpack_from(_STOCK, sec, 0)
    if h[1] != 1 or h[2] != prod.gen:
        raise ValueError("stocks: version %d, generation %d, not this node's" % (h[1], h[2]))
    prod.feed, prod.buf, prod.repl = h[4], h[5], h[9]
    prod.parts[0], prod.parts[1], prod.parts[2] = h[6], h[7], h[8]
