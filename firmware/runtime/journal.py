# The board's call journal: when the shell called the core, for frame replay.
#
#     j = Journal(node_id)                  # board.json "journal": true
#     j.boot(saved_parts, seed)             # once, with what the Node was built from
#     j.log(text); j.rx(t_ms, line); j.poll(t_ms, n_out)
#     line = j.take(force)                  # a JOURNAL frame to send, or None
#
# The core is a pure function of its construction (id, config, seed, saved
# state), the lines it is given and the mission ms of each receive() and
# poll(). A board's mission ms come from its own tick, which the ground
# cannot see; this journal sends them, so the ground can feed the recorded
# inputs to the in-process core at exactly the board's times and expect
# byte-identical outputs (ground/replay.py). Lines are named by crc32, not
# sent back: the ground recorded their bytes when it delivered them.
#
# The shell takes the journal before it writes a poll's frames, so every frame
# the ground records from the board comes after the journal that explains it.
# Entries wait in the buffer until a poll has frames to send, or it is full:
# what a board received after its last frame and then lost to a reset changed
# nothing the ground saw (the restored state is in the next boot's entries).
#
# Preallocated: one 224-byte buffer; a frame is built only when taken.

import binascii
import struct

from micropython import const

from node import msgs, wire

_HEAD = msgs.JOURNAL_HEAD
_ENTRY = msgs.JOURNAL_ENTRY
_ENTRY_LEN = msgs.JOURNAL_ENTRY_LEN
_MAX = msgs.JOURNAL_MAX_ENTRIES
_J_KEPT = const(9)  # msgs.J_NAMES[9]: the restored market section's length, then
_J_KEPT_WORD = const(10)  # its bytes, 4 an entry


class Journal:
    def __init__(self, node_id):
        self.node_id = node_id
        self._buf = bytearray(4 + _MAX * _ENTRY_LEN)
        self._n = 0  # entries in the buffer
        self._first = 0  # index since boot of the buffer's first entry
        self._seq = 0
        self._ready = []  # full frames not yet taken
        self.frames = 0  # built so far (for the REPL)

    def _add(self, kind, t_ms, arg):
        if self._n == _MAX:
            self._ready.append(self._frame())
        struct.pack_into(_ENTRY, self._buf, 4 + self._n * _ENTRY_LEN, kind, t_ms & 0xFFFFFFFF, arg & 0xFFFFFFFF)
        self._n += 1

    def _frame(self):
        struct.pack_into(_HEAD, self._buf, 0, self._first)
        payload = bytes(memoryview(self._buf)[: 4 + self._n * _ENTRY_LEN])
        self._first += self._n
        self._n = 0
        line = wire.encode(msgs.JOURNAL, self.node_id, wire.ADDR_GROUND, payload, self._seq)
        self._seq = (self._seq + 1) & 0xFF
        self.frames += 1
        return line

    def boot(self, saved_parts, seed, kept=None):
        """The Node was built with `seed` and saved state `saved_parts`
        (node.restore_all() of its blob: the node's (term, vote, counter),
        then its regional seat's), or None: fresh, and `kept`, the market
        section that followed them (node/durable.py: an elector's ledger, a
        holder's leases), or None. The seed goes too: a board without one in
        board.json derives it from its unique id, which the ground does not
        know. The market section goes whole, 4 bytes an entry: the ground
        rebuilds the exact blob the Node was built from."""
        self._add(msgs.J_BOOT, 0, 0 if saved_parts is None else 1)
        self._add(msgs.J_SEED, 0, seed)
        for term, vote, counter in saved_parts or ():
            self._add(msgs.J_TERM, 0, term)
            self._add(msgs.J_VOTE, 0, vote)
            self._add(msgs.J_COUNTER, 0, counter)
        if kept:
            self._add(_J_KEPT, 0, len(kept))
            kept = bytes(kept) + bytes(3)
            for i in range(0, len(kept) - 3, 4):
                self._add(_J_KEPT_WORD, 0, struct.unpack_from("<I", kept, i)[0])

    def log(self, text):
        self._add(msgs.J_LOG, 0, binascii.crc32(text.encode()[: wire.MAX_PAYLOAD]))

    def rx(self, t_ms, line):
        self._add(msgs.J_RX, t_ms, binascii.crc32(line))

    def poll(self, t_ms, n_out):
        self._add(msgs.J_POLL, t_ms, n_out)

    def take(self, force):
        """Frames to send now (a list, maybe empty): the full ones, and the
        partial one too when `force` (the poll has frames to send)."""
        if force and self._n:
            self._ready.append(self._frame())
        out = self._ready
        if out:
            self._ready = []
        return out
