# Replay protection: which auth counters a node has accepted, per source.
#
# Pure, no I/O, no clock; tables fixed at boot (no per-frame allocation, no
# growth however many frames or sources arrive). Loaded only by a node with an
# auth key. docs/PROTOCOL.md "Authentication and replay" is the prose version.

from micropython import const

import binascii
import struct
from array import array

from node.wire import ADDR_GROUND, BLOCK, GROUND_BLOCK, index_of

WINDOW = const(64)  # the widest reorder window (bits kept per source)
_LAST_BLOCK = const(0xFFFFFC00)  # counters from here on: the ceiling saturates
_HEARD = const(0x8000)  # per source: a counter from it accepted since boot
_TOLD = const(0x4000)  # per source: told once this boot that it is below its floor (node/node.py)
_BELOW = const(0x7FF)  # per source: how far the top counter is below its ceiling (0..BLOCK)


class ReplayWindow:
    """Replay protection over auth counters, for a fixed set of sources.

    `sources`: every source id the node will ever accept a signed frame from
    (sorted, unique: its rosters and the ground), fixed at boot; the tables
    are allocated once here and never grow. Per source: the highest counter
    accepted (`top`), a 64-counter window below it (RFC 4303; a bitmap indexed
    by counter % 64, so advancing clears bits instead of shifting a long
    integer), and a `ceiling`: the end of the BLOCK-counter block of the
    highest counter accepted. The ceiling is what survives a reboot: the
    node persists it (one write per source per block, not per frame) and at
    the next boot hands it back (load()), where it is the source's floor:
    until a counter at or above it arrives, everything below it is refused;
    that first counter marks the window's counters below the floor as seen,
    so they stay refused (no separate floor table: 4 bytes a source less).
    Once a counter is accepted the ceiling is the end of the top's block (or
    saturated in the last block), so the top is kept as how far it is below
    the ceiling, 0..BLOCK (u16 `_st`, with two flags: accepted since boot,
    told once): 3 bytes a source less than a u32 top and a flag byte
    (docs/HEAP.md), the same counters accepted and refused.
    Source 0, the ground, gets a ceiling too, in blocks of GROUND_BLOCK (it
    sends a few frames a run, and starts every run at a fresh block from the
    wall clock: ground/router.py), so a CONFIG or INTENT replayed after a
    reboot is refused like a peer's frame. There is no clock in it, so light
    delay of any length is fine.
    """

    def __init__(self, sources, size=64):
        if size > WINDOW:
            raise ValueError("replay window above %d" % WINDOW)
        self.size = size
        if not isinstance(sources, array):
            sources = array("H", sources)
        self.sources = sources  # array('H'), sorted: persisted as it is
        n = len(sources)
        self._st = array("H", bytes(2 * n))  # _HEARD, _TOLD, and how far the top counter is below the ceiling
        self._bits = bytearray(8 * n)  # bit (c % 64) of source i at 8*i + (c % 64) // 8
        self.ceiling = array("I", bytes(4 * n))  # to persist: block end above every accepted counter
        self.dirty = False  # a ceiling moved since take()
        self._ground = 0 if n and sources[0] == ADDR_GROUND else -1  # the ground's index (sources are sorted)

    def heard(self, i):
        """A counter from source index i accepted since boot."""
        return bool(self._st[i] & _HEARD)

    def tell(self, i, counter):
        """True once per source per boot: nothing accepted from it since
        boot and `counter` below its floor (a sender that may have missed our
        boot HELLO: the node tells it; node/node.py _check_replay)."""
        st = self._st[i]
        if st & (_HEARD | _TOLD) or counter >= self.ceiling[i]:
            return False
        self._st[i] = st | _TOLD
        return True

    def accept(self, i, counter):
        """Record `counter` for source index `i` (index_of(sources, src));
        False, with nothing recorded, if it is not fresh."""
        bits = self._bits
        base = 8 * i
        st = self._st[i]
        if not st & _HEARD:
            floor = self.ceiling[i]  # as loaded: nothing accepted since boot
            if counter < floor:
                return False
            for k in range(base, base + 8):
                bits[k] = 0
            for c in range(counter - WINDOW + 1 if counter >= WINDOW else 0, floor):  # below the floor: seen
                bits[base + ((c & 63) >> 3)] |= 1 << (c & 7)
            top = -1
        else:
            top = self.ceiling[i] - (st & _BELOW)
            if counter > top:
                if counter - top >= WINDOW:
                    for k in range(base, base + 8):
                        bits[k] = 0
                else:
                    for c in range(top + 1, counter + 1):  # counters skipped: not seen
                        bits[base + ((c & 63) >> 3)] &= ~(1 << (c & 7)) & 0xFF
            elif top - counter >= self.size or bits[base + ((counter & 63) >> 3)] & (1 << (counter & 7)):
                return False
        bits[base + ((counter & 63) >> 3)] |= 1 << (counter & 7)
        if counter >= self.ceiling[i]:  # always so for the first of a boot (counter >= floor)
            b = GROUND_BLOCK if i == self._ground else BLOCK
            self.ceiling[i] = (counter // b + 1) * b if counter < _LAST_BLOCK else 0xFFFFFFFF
            self.dirty = True
        if counter > top:
            self._st[i] = (st & _TOLD) | _HEARD | (self.ceiling[i] - counter)
        return True

    def load(self, blob):
        """Floors from a take() of an earlier boot (its parts joined, as a
        store gives them back); ValueError if damaged. Sources no longer in
        the rosters are dropped; new ones start with no floor. Before any
        accept()."""
        n = len(blob)
        if n < 8 or (n - 8) % 6:
            raise ValueError("replay ceilings: %d bytes" % n)
        (count,) = struct.unpack_from("<I", blob, 0)
        (crc,) = struct.unpack_from("<I", blob, n - 4)
        if count * 6 + 8 != n or binascii.crc32(memoryview(blob)[: n - 4]) != crc:
            raise ValueError("replay ceilings: bad length or crc")
        at = 4 + 2 * count
        for k in range(count):
            (src,) = struct.unpack_from("<H", blob, 4 + 2 * k)
            (ceiling,) = struct.unpack_from("<I", blob, at + 4 * k)
            i = index_of(self.sources, src)
            if i >= 0:
                self.ceiling[i] = ceiling

    def take(self):
        """The ceilings to persist, as parts to be written one after the
        other (runtime/store.py takes them so), or None if none moved since
        the last take(). The parts are the tables themselves: nothing the
        size of the rosters is allocated, however large they are. Layout:
        count u32 | source ids u16 x count | ceilings u32 x count | crc32 of
        all before it; little endian (the arrays' native order on RP2040 and
        every host this runs on)."""
        if not self.dirty:
            return None
        self.dirty = False
        src = memoryview(self.sources)
        ceil = memoryview(self.ceiling)
        head = struct.pack("<I", len(self.ceiling))
        crc = binascii.crc32(ceil, binascii.crc32(src, binascii.crc32(head)))
        return (head, src, ceil, struct.pack("<I", crc))
