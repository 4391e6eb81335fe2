# Full state sharing inside a cluster: one small record per member and a digest.
#
# Each member owns its record (version u16, data u32) and sends it in every
# heartbeat; the coordinator also sends the whole table (STATE) so a member
# that missed a peer's heartbeats repairs. A newer version wins (serial-number
# arithmetic, so the u16 wraps). The digest is crc32 of the table sorted by
# node id: two members with the same digest hold the same state.

import binascii
import struct


class Records:
    def __init__(self):
        self._table = {}  # node -> (version, data)
        self._digest = None

    def put(self, node, version, data):
        """Store if newer; returns True if the table changed."""
        old = self._table.get(node)
        # Newer: u16 serial arithmetic (RFC 1982), written out (it runs per heartbeat).
        if old is not None and not 0 < (version - old[0]) & 0xFFFF < 0x8000:
            return False
        self._table[node] = (version, data)
        self._digest = None
        return True

    def get(self, node):
        return self._table.get(node)

    def entries(self):
        """[(node, version, data)] sorted by node id."""
        out = []
        for node in sorted(self._table):
            version, data = self._table[node]
            out.append((node, version, data))
        return out

    def __len__(self):
        return len(self._table)

    def digest(self):
        if self._digest is None:
            crc = 0
            buf = bytearray(8)
            for node, version, data in self.entries():
                struct.pack_into("<HHI", buf, 0, node, version, data)
                crc = binascii.crc32(buf, crc)
            self._digest = crc
        return self._digest
