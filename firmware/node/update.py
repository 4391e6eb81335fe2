# The update agent: a node's side of a software update, sans-IO.
#
#     agent = Update(send, fw_version, confirm_after_ms)   # agent(node) builds a node's on demand
#     agent.restore(blob)            # the record a board persisted (take_persist), or nothing
#     agent.boot(boot_state, has_previous)   # what the boot pointer said (runtime/slots.py)
#     agent.receive(src, type, payload, majors)   # UPD_OFFER / UPD_CHUNK / UPD_CMD
#     agent.poll(now_ms, healthy)    # timers: ACKs while receiving, the trial's confirmation
#     agent.take_actions()           # [(ACT_*, arg)] for the board shell, in order
#     agent.verified(reason)         # the shell checked the staged image: R_NONE or why not
#
# The states are a table (_NEXT): IDLE -> RECEIVING (an offer) -> VERIFYING
# (every chunk in) -> VERIFIED (the shell found digest, tag and files right)
# -> INSTALL_PENDING (install ordered: the shell writes the boot pointer and
# resets) -> TRIAL (the new image's first boot) -> CONFIRMED (healthy for
# confirm_after_ms) or REVERTED (a reset before that: boot.py went back). A
# refusal names its reason (R_*), is counted in `refused[reason]` and leaves
# nothing installed: the state goes back to where it was (IDLE for a bad
# transfer).
#
# The agent reads no flash and no clock. It tells the shell what to do:
#   ACT_BEGIN (offer fields)  start a staging file for this image
#   ACT_WRITE (index, data)   write chunk `index` to the staging file
#   ACT_PERSIST (blob)        store the agent's record atomically (every
#                             PERSIST_EVERY chunks and at each state change),
#                             so a reboot resumes from the persisted bitmap
#   ACT_VERIFY                check the staged image, then call verified()
#   ACT_INSTALL               boot pointer -> the new slot as TRIAL, reset
#   ACT_CONFIRM               boot pointer: the running slot is CONFIRMED
#   ACT_ROLLBACK              boot pointer -> the previous image, reset
# The shell does them in order before it sends the poll's frames, so an ACK
# never claims a chunk that is not on flash.
#
# Heap: the bitmap is one bit per chunk (a 200 KB image: 1,000 chunks, 125
# bytes). Node imports this module only when an update frame arrives or the
# board booted with an update under way.

import struct

from micropython import const

from node import msgs, wire
from node.wire import ERR_PAYLOAD, ProtocolError

IDLE = const(0)
RECEIVING = const(1)
VERIFYING = const(2)
VERIFIED = const(3)
INSTALL_PENDING = const(4)
TRIAL = const(5)
CONFIRMED = const(6)
REVERTED = const(7)
STATE_NAMES = ("idle", "receiving", "verifying", "verified", "install_pending", "trial", "confirmed", "reverted")

# Refusal reasons (UPD_ACK `reason`, and `refused[reason]` on the node).
R_NONE = const(0)
R_DIGEST = const(1)  # the staged image's sha256 (or a file's) is not the manifest's
R_TAG = const(2)  # the manifest's HMAC-SHA256 tag is not the fleet key's
R_TRUNCATED = const(3)  # the image is shorter or longer than its manifest says
R_RANGE = const(4)  # a chunk index or length outside the offer
R_MAJORS = const(5)  # installing would put a 4th major version in the cluster
R_NO_PREVIOUS = const(6)  # rollback with no previous confirmed image
R_DEFECT = const(7)  # defects declared by an image not flagged as a test build
R_BUSY = const(8)  # an offer while a trial runs or an install is pending
R_STATE = const(9)  # a command the state does not allow (install before verified)
R_OFFER = const(10)  # an offer that cannot be right (size 0, chunk size 0 or too big)
N_REASONS = const(11)
REASON_NAMES = ("none", "digest", "tag", "truncated", "range", "majors", "no_previous", "defect", "busy",
                "state", "offer")

ACT_BEGIN = const(1)
ACT_WRITE = const(2)
ACT_PERSIST = const(3)
ACT_VERIFY = const(4)
ACT_INSTALL = const(5)
ACT_CONFIRM = const(6)
ACT_ROLLBACK = const(7)

# UPD_CMD actions
CMD_INSTALL = const(1)
CMD_ROLLBACK = const(2)
CMD_STATUS = const(3)
CMD_ABORT = const(4)

# UPD_OFFER flags
FLAG_TEST_BUILD = const(1)
FLAG_DEFECTS = const(2)

MAX_MAJORS = const(3)  # major versions one cluster may run at once
PERSIST_EVERY = const(16)  # chunks between two persisted bitmaps
ACK_EVERY = const(8)  # chunks between two ACKs while receiving
ACK_MS = const(1000)  # ACK at least this often while receiving (mission ms)
MAX_CHUNK = const(218)  # wire.MAX_PAYLOAD - the chunk header (6 bytes)

_REC = "<BB32sIHHBBBBI"  # state, reason, digest, size, chunks, chunk_size, major, minor, lineage, flags, upd_id
_REC_LEN = const(50)

# (state, event) -> next state; an event missing for a state is refused (R_STATE).
E_OFFER = const(0)
E_COMPLETE = const(1)
E_GOOD = const(2)
E_BAD = const(3)
E_INSTALL = const(4)
E_TRIAL_BOOT = const(5)
E_HEALTHY = const(6)
E_REVERTED = const(7)
E_ABORT = const(8)
_NEXT = {
    (IDLE, E_OFFER): RECEIVING,
    (RECEIVING, E_OFFER): RECEIVING,
    (VERIFIED, E_OFFER): RECEIVING,
    (CONFIRMED, E_OFFER): RECEIVING,
    (REVERTED, E_OFFER): RECEIVING,
    (RECEIVING, E_COMPLETE): VERIFYING,
    (VERIFYING, E_GOOD): VERIFIED,
    (VERIFYING, E_BAD): IDLE,
    (VERIFIED, E_INSTALL): INSTALL_PENDING,
    (INSTALL_PENDING, E_TRIAL_BOOT): TRIAL,
    (TRIAL, E_TRIAL_BOOT): TRIAL,
    (TRIAL, E_HEALTHY): CONFIRMED,
    (TRIAL, E_REVERTED): REVERTED,
    (INSTALL_PENDING, E_REVERTED): REVERTED,
    (RECEIVING, E_ABORT): IDLE,
    (VERIFYING, E_ABORT): IDLE,
    (VERIFIED, E_ABORT): IDLE,
}


# The UPD_* message layouts (docs/PROTOCOL.md), as msgs.LAYOUTS has the others.
UPDATE_LAYOUTS = {
    msgs.UPD_OFFER: (
        "upd_offer",
        "<I32sIHHBBBB",
        ["upd_id", "digest", "size", "chunks", "chunk_size", "fw_major", "fw_minor", "lineage", "flags"],
    ),
    msgs.UPD_CHUNK: ("upd_chunk", None, ["upd_id", "index", "data"]),
    msgs.UPD_ACK: ("upd_ack", None, ["upd_id", "state", "reason", "have", "base", "fw_major", "fw_minor", "bitmap"]),
    msgs.UPD_CMD: ("upd_cmd", "<IB", ["upd_id", "action"]),
}


def cluster_majors(node):
    """The firmware major versions the node's records show in its cluster."""
    out = []
    for m in node.cfg.members:
        r = node.records.get(m)
        if r is not None:
            major = (r[1] >> 16) & 0xFF
            if major not in out:
                out.append(major)
    return out


def agent(node):
    """`node`'s update agent, built on first use: a node that never updates
    never imports this module (node.py imports it at the first UPD_* frame)."""
    if node.update is None:
        node.update = Update(node._send, node.cfg.fw_version)
    return node.update


def on_frame(node, f):
    """An UPD_* frame (wire.Frame) that reached `node`: the agent takes the
    ground's offers, chunks and commands sent to this node; anything else is
    ignored (another node's ACK, an update frame to a cluster)."""
    if f.src == wire.ADDR_GROUND and f.dst == node.id and f.type != msgs.UPD_ACK:
        agent(node).receive(f.src, f.type, f.payload, node)
    else:
        node.ignored += 1


class Update:
    def __init__(self, send, fw_version, confirm_after_ms=30000):
        self._send = send  # send(dst, type, payload): the node's
        self.fw_version = fw_version
        self.confirm_after_ms = confirm_after_ms
        self.state = IDLE
        self.reason = R_NONE  # the last refusal
        self.refused = [0] * N_REASONS
        self.upd_id = 0
        self.digest = b"\x00" * 32
        self.size = 0
        self.chunks = 0
        self.chunk_size = 0
        self.version = (0, 0)
        self.lineage = 0
        self.flags = 0
        self.bitmap = bytearray(0)
        self.have = 0  # chunks received
        self.has_previous = False  # a confirmed image to roll back to (the shell says at boot)
        self._actions = []
        self._since_persist = 0
        self._since_ack = 0
        self._ack_due = True  # an ACK at the first poll (boot status)
        self._next_ack_ms = 0
        self._healthy_since = None

    # ---- persistence ----------------------------------------------------

    def record(self):
        """The agent's record: what a reboot needs to resume (bytes)."""
        v = self.version
        return struct.pack(_REC, self.state, self.reason, self.digest, self.size, self.chunks, self.chunk_size, v[0], v[1],
                           self.lineage, self.flags, self.upd_id) + bytes(self.bitmap)

    def restore(self, blob):
        """Resume from record(); ValueError if it is damaged."""
        if blob is None or len(blob) < _REC_LEN:
            raise ValueError("update record: %d bytes" % (0 if blob is None else len(blob)))
        (state, reason, digest, size, chunks, chunk_size, major, minor, lineage, flags,
         upd_id) = struct.unpack_from(_REC, blob, 0)
        if state >= len(STATE_NAMES) or len(blob) != _REC_LEN + (chunks + 7) // 8:
            raise ValueError("update record: state %d, %d bytes for %d chunks" % (state, len(blob), chunks))
        self.state = state
        self.reason = reason
        self.digest = bytes(digest)
        self.size, self.chunks, self.chunk_size = size, chunks, chunk_size
        self.version = (major, minor)
        self.lineage, self.flags, self.upd_id = lineage, flags, upd_id
        self.bitmap = bytearray(blob[_REC_LEN:])
        self.have = 0
        for i in range(chunks):
            if self.bitmap[i >> 3] & (1 << (i & 7)):
                self.have += 1
        if state == VERIFYING:  # cut while the shell checked: check again
            self._actions.append((ACT_VERIFY, None))

    def _persist(self):
        self._since_persist = 0
        self._actions.append((ACT_PERSIST, self.record()))

    # ---- state changes --------------------------------------------------

    def _go(self, event):
        nxt = _NEXT.get((self.state, event))
        if nxt is None:
            return False
        self.state = nxt
        self._ack_due = True
        return True

    def _refuse(self, reason):
        self.reason = reason
        self.refused[reason] += 1
        self._ack_due = True

    def boot(self, boot_state, has_previous):
        """What the boot pointer said at this boot: TRIAL (the new image runs
        its one trial boot), REVERTED (a trial was reset before it confirmed:
        the previous image runs) or CONFIRMED/IDLE (nothing to report)."""
        self.has_previous = has_previous
        if boot_state == TRIAL:
            self._go(E_TRIAL_BOOT)
            self.state = TRIAL  # also when the record was lost with a cut
        elif boot_state == REVERTED and self.state in (TRIAL, INSTALL_PENDING):
            self._go(E_REVERTED)
            self._persist()
        elif boot_state == CONFIRMED and self.state == TRIAL:
            self.state = CONFIRMED  # confirmed, then cut before the record said so
            self._persist()
        self._ack_due = True

    # ---- frames -----------------------------------------------------------

    def receive(self, src, type, payload, node):
        """One update frame from the ground for `node` (its records say which
        majors the cluster runs). ProtocolError on a bad layout."""
        if type == msgs.UPD_OFFER:
            self._on_offer(msgs.unpack(type, payload), cluster_majors(node))
        elif type == msgs.UPD_CHUNK:
            upd_id, index, data = unpack_chunk(payload)
            self._on_chunk(upd_id, index, data)
        elif type == msgs.UPD_CMD:
            upd_id, action = msgs.unpack(type, payload)
            self._on_cmd(upd_id, action)

    def _on_offer(self, f, majors):
        upd_id, digest, size, chunks, chunk_size, major, minor, lineage, flags = f
        if upd_id == self.upd_id and self.state != IDLE:
            self._ack_due = True  # the same offer again (our ACK was lost): say where we are
            return
        if self.state in (TRIAL, INSTALL_PENDING, VERIFYING):
            return self._refuse_offer(upd_id, R_BUSY)
        if size == 0 or chunk_size == 0 or chunk_size > MAX_CHUNK or chunks != (size + chunk_size - 1) // chunk_size:
            return self._refuse_offer(upd_id, R_OFFER)
        if flags & FLAG_DEFECTS and not flags & FLAG_TEST_BUILD:
            return self._refuse_offer(upd_id, R_DEFECT)
        if major not in majors and len(majors) + 1 > MAX_MAJORS:
            return self._refuse_offer(upd_id, R_MAJORS)
        self._go(E_OFFER)
        self.upd_id, self.digest, self.size, self.chunks, self.chunk_size = upd_id, bytes(digest), size, chunks, chunk_size
        self.version = (major, minor)
        self.lineage, self.flags = lineage, flags
        self.bitmap = bytearray((chunks + 7) // 8)
        self.have = 0
        self.reason = R_NONE
        self._actions.append((ACT_BEGIN, None))
        self._persist()

    def _refuse_offer(self, upd_id, reason):
        """An offer refused before it was taken: the ACK names the offer's id
        (the sender waits for its own), and what this node is doing goes on."""
        self.refused[reason] += 1
        v = self.fw_version
        self._send(0, msgs.UPD_ACK, pack_ack(upd_id, self.state, reason, 0, 0, v[0], v[1], b""))

    def _on_chunk(self, upd_id, index, data):
        if self.state != RECEIVING or upd_id != self.upd_id:
            return  # a late chunk of an earlier transfer: the ACK will say
        if index >= self.chunks:
            return self._refuse(R_RANGE)
        want = self.chunk_size if index < self.chunks - 1 else self.size - index * self.chunk_size
        if len(data) != want:
            return self._refuse(R_RANGE)
        bit = 1 << (index & 7)
        if self.bitmap[index >> 3] & bit:
            self._since_ack += 1  # a duplicate: the sender has not heard our ACK
        else:
            self._actions.append((ACT_WRITE, (index, data)))
            self.bitmap[index >> 3] |= bit
            self.have += 1
            self._since_ack += 1
            self._since_persist += 1
        if self.have == self.chunks:
            self._go(E_COMPLETE)
            self._persist()
            self._actions.append((ACT_VERIFY, None))
        elif self._since_persist >= PERSIST_EVERY:
            self._persist()
        if self._since_ack >= ACK_EVERY:
            self._ack_due = True

    def _on_cmd(self, upd_id, action):
        if action == CMD_STATUS:
            self._ack_due = True
            if self.state == VERIFYING:  # the check did not finish (out of heap, a cut): again
                self._actions.append((ACT_VERIFY, None))
        elif action == CMD_ROLLBACK:
            if not self.has_previous or self.state in (RECEIVING, VERIFYING, INSTALL_PENDING):
                return self._refuse(R_NO_PREVIOUS if not self.has_previous else R_STATE)
            self._actions.append((ACT_ROLLBACK, None))
            self._ack_due = True
        elif upd_id != self.upd_id:
            self._refuse(R_STATE)
        elif action == CMD_INSTALL:
            if self.state in (INSTALL_PENDING, TRIAL, CONFIRMED):
                self._ack_due = True  # taken already (a repeated order: ours was lost): say where we are
            elif not self._go(E_INSTALL):
                self._refuse(R_STATE)
            else:
                self._persist()
                self._actions.append((ACT_INSTALL, None))
        elif action == CMD_ABORT:
            if self._go(E_ABORT):
                self._persist()
            else:
                self._refuse(R_STATE)

    def verified(self, reason):
        """The shell's verdict on the staged image: R_NONE, or why it is refused."""
        if reason == R_NONE:
            self._go(E_GOOD)
        else:
            self._go(E_BAD)
            self._refuse(reason)
        self._persist()

    # ---- timers -----------------------------------------------------------

    def poll(self, now_ms, healthy):
        """ACKs while receiving; in TRIAL, confirm after confirm_after_ms of
        uninterrupted health (in the cluster, following or holding a
        coordinator)."""
        if self.state == TRIAL:
            if not healthy:
                self._healthy_since = None
            elif self._healthy_since is None:
                self._healthy_since = now_ms
            elif now_ms - self._healthy_since >= self.confirm_after_ms:
                self._go(E_HEALTHY)
                self._persist()
                self._actions.append((ACT_CONFIRM, None))
        if self.state == RECEIVING and now_ms >= self._next_ack_ms:
            self._ack_due = True
        if self._ack_due:
            self._ack_due = False
            self._since_ack = 0
            self._next_ack_ms = now_ms + ACK_MS
            self._send_ack()

    def next_deadline_ms(self, t):
        """The earlier of `t` and when poll() has work to do."""
        if self.state == RECEIVING:
            return min(t, self._next_ack_ms)
        if self.state == TRIAL and self._healthy_since is not None:
            return min(t, self._healthy_since + self.confirm_after_ms)
        return t

    def take_actions(self):
        out = self._actions
        self._actions = []
        return out

    def first_missing(self):
        for i in range(self.chunks):
            if not self.bitmap[i >> 3] & (1 << (i & 7)):
                return i
        return self.chunks

    def _send_ack(self):
        base = self.first_missing() & ~7
        tail = self.bitmap[base >> 3:(base >> 3) + UPD_ACK_MAX_BITMAP]
        v = self.fw_version
        payload = pack_ack(self.upd_id, self.state, self.reason, self.have, base, v[0], v[1], tail)
        self._send(0, msgs.UPD_ACK, payload)


# UPD_CHUNK: upd_id u32, index u16, then 1..218 bytes of the image.
UPD_CHUNK_HEAD = "<IH"
UPD_CHUNK_HEAD_LEN = const(6)
# UPD_ACK: upd_id u32, state u8, reason u8, have u16, base u16, fw_major u8,
# fw_minor u8, then the received-chunks bitmap from chunk `base` (a multiple
# of 8; bit i of byte j: chunk base + 8j + i), at most UPD_ACK_MAX_BITMAP bytes.
UPD_ACK_HEAD = "<IBBHHBB"
UPD_ACK_HEAD_LEN = const(12)
UPD_ACK_MAX_BITMAP = const(212)  # MAX_PAYLOAD 224 - 12: 1,696 chunks past the first missing


def pack_chunk(upd_id, index, data):
    return struct.pack(UPD_CHUNK_HEAD, upd_id, index) + bytes(data)


def unpack_chunk(payload):
    """(upd_id, index, data) of an UPD_CHUNK payload; data a memoryview."""
    if len(payload) <= UPD_CHUNK_HEAD_LEN:
        raise ProtocolError(ERR_PAYLOAD, "upd_chunk: %d bytes" % len(payload))
    upd_id, index = struct.unpack_from(UPD_CHUNK_HEAD, payload, 0)
    return upd_id, index, memoryview(payload)[UPD_CHUNK_HEAD_LEN:]


def pack_ack(upd_id, state, reason, have, base, fw_major, fw_minor, bitmap):
    return struct.pack(UPD_ACK_HEAD, upd_id, state, reason, have, base, fw_major, fw_minor) + bytes(bitmap)


def unpack_ack(payload):
    """(upd_id, state, reason, have, base, fw_major, fw_minor, bitmap bytes)."""
    n = len(payload)
    if n < UPD_ACK_HEAD_LEN or n > UPD_ACK_HEAD_LEN + UPD_ACK_MAX_BITMAP:
        raise ProtocolError(ERR_PAYLOAD, "upd_ack: %d bytes" % n)
    return struct.unpack_from(UPD_ACK_HEAD, payload, 0) + (bytes(payload[UPD_ACK_HEAD_LEN:]),)
