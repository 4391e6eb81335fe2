# Who this board is: its node id and its random seed.
#
# The node id is board.json's "node_id" when given. Without one, the id
# stored on flash at an earlier boot is kept (so it never changes under a
# running cluster); on the very first boot it is derived from the chip's
# unique id: 1 + crc32(unique_id) % MAX_NODE_ID. The chosen id is stored in
# state/identity (runtime/store.py) whenever it changes.
#
# The default seed mixes the unique id with the node id, so two boards never
# share election timeouts, and one board reuses its seed across restarts
# (replaying its inputs reproduces its outputs).

import binascii
import struct

from node.wire import MAX_NODE_ID

_IDENTITY = "<H"


def unique_id():
    """machine.unique_id(), or b"" where there is none (bare unix port)."""
    try:
        import machine

        return bytes(machine.unique_id())
    except (ImportError, AttributeError, OSError):
        return b""


def derive_node_id(uid):
    return 1 + binascii.crc32(uid) % MAX_NODE_ID


def derive_seed(uid, node_id):
    return binascii.crc32(struct.pack("<H", node_id), binascii.crc32(uid))


def choose_node_id(configured, store, uid):
    """(node_id, how) with how one of "board.json", "stored", "unique_id".

    Writes the choice to `store` (a runtime.store.Store) when it changed.
    """
    stored = None
    blob = store.read()
    if blob is not None and len(blob) == 2:
        (stored,) = struct.unpack(_IDENTITY, blob)
    if configured is not None:
        node_id, how = configured, "board.json"
    elif stored:
        node_id, how = stored, "stored"
    else:
        node_id, how = derive_node_id(uid), "unique_id"
    if node_id != stored:
        store.write(struct.pack(_IDENTITY, node_id))
    return node_id, how
