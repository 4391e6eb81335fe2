"""The ground's side of a software update to one node, sans-IO: what to send
when, and what the node's ACKs say (docs/UPDATES.md).

    s = UpdateSender(image_bytes, node=3, upd_id=7, version=(1, 1))
    for type, payload in s.due(now_s, max_frames):   # OFFER, then CHUNKs, paced by the caller
        send a frame of `type` with `payload` to node 3
    s.on_ack(fields)                 # an UPD_ACK's fields (ground.protocol.parse_message)
    s.install(); s.rollback(); s.status()   # queue an UPD_CMD (sent by the next due())
    s.state, s.reason, s.have, s.chunks, s.node_version, s.done

A rollout orchestrator drives one sender per node: offer (construct it),
watch `state`/`have` for progress, order install, see confirmed or reverted
in `state`, order rollback. Chunks go in order of need: never sent first,
then those an ACK's bitmap shows missing (sent more than `rto_s` ago), then
(only when the link would otherwise idle) the oldest unacknowledged ones: a
chunk still in flight costs a little capacity that would go unused anyway,
and the transfer's tail shrinks from round trips to a fraction of one.
Chunks follow the first offer at once, without waiting a round trip for the
node's first ACK (a chunk that overtakes a lost offer is ignored and sent
again). The node says a state change in one ACK; the sender asks for its
state (a status query) every `offer_every_s` in any state that is not final,
and while the node receives whenever no ACK came for `offer_every_s` (a
receiving node ACKs at least once a second, and ignores chunks in any other
state: without the question, a lost ACK for receiving -> verifying left the
sender resending a chunk for ever). A refusal comes back in the ACK's `reason`
(update.REASON_NAMES): the sender stops and says it in `error`, one line
naming the node.
"""

import hashlib

from ground import protocol as P

STATE_NAMES = ("idle", "receiving", "verifying", "verified", "install_pending", "trial", "confirmed", "reverted")
REASON_NAMES = ("none", "digest", "tag", "truncated", "range", "majors", "no_previous", "defect", "busy", "state",
                "offer")
CHUNK_SIZE = 218  # the most a frame carries (firmware/node/update.py MAX_CHUNK)
CMD_INSTALL, CMD_ROLLBACK, CMD_STATUS, CMD_ABORT = 1, 2, 3, 4
FLAG_TEST_BUILD, FLAG_DEFECTS = 1, 2


class UpdateSender:
    def __init__(self, image, node, upd_id, version, lineage=0, flags=0, chunk_size=CHUNK_SIZE, rto_s=5.0,
                 offer_every_s=2.0, digest=None):
        if not 0 < chunk_size <= CHUNK_SIZE:
            raise ValueError("node %d: chunk size %d (1..%d)" % (node, chunk_size, CHUNK_SIZE))
        if not image:
            raise ValueError("node %d: empty image" % node)
        self.image = bytes(image)
        self.node = node
        self.upd_id = upd_id
        self.version = tuple(version)
        self.chunk_size = chunk_size
        self.chunks = (len(self.image) + chunk_size - 1) // chunk_size
        if self.chunks > 0xFFFF:
            raise ValueError("node %d: image of %d bytes needs more than 65535 chunks" % (node, len(self.image)))
        self.digest = digest if digest is not None else hashlib.sha256(self.image).digest()
        self.offer = {
            "upd_id": upd_id, "digest": self.digest.hex(), "size": len(self.image), "chunks": self.chunks,
            "chunk_size": chunk_size, "fw_major": version[0], "fw_minor": version[1], "lineage": lineage,
            "flags": flags,
        }
        self.rto_s = rto_s
        self.offer_every_s = offer_every_s
        self.state = None  # the node's update state (STATE_NAMES) as its last ACK said; None: not heard
        self.reason = "none"
        self.error = None  # one line when the node refused
        self.node_version = None  # (major, minor) the node runs, from its ACKs
        self.have = 0  # chunks the node has
        self.acked = bytearray(self.chunks)  # 1: the node has it
        self.sent_at = [None] * self.chunks  # when each chunk last left (s)
        self.sends = 0  # chunk frames sent, retransmissions included
        self._offer_at = None
        self._cmds = []
        self._install_wanted = False  # install ordered: repeated (not STATUS) while the node says verified
        self._rolling_back = False  # a rollback ordered: repeated until the node runs another version
        self._rollback_from = None  # the version it was ordered from
        self._rollback_at = None
        self._rollback_every_s = 10.0
        self._missing = []  # chunks an ACK showed missing, in order
        self._next_new = 0
        self._heard = False  # an ACK of this transfer came since the last due()
        self._heard_at = None  # the due() time that saw the last one

    # ---- what the node said ------------------------------------------------

    def on_ack(self, f):
        """Take an UPD_ACK's fields (a dict, as ground.protocol parses it)."""
        self.node_version = (f["fw_major"], f["fw_minor"])
        if f["upd_id"] != self.upd_id:
            if self.state == "receiving" and f["state"] == 0 and self.error is None:
                # idle under another id while we believed it received ours: it lost the transfer (a
                # record damaged by a cut, the board re-flashed). Offer again; the node's ACK to it
                # says which chunks it has (none: each is resent as missing). An earlier transfer's
                # late ACK costs one offer: the node says it has ours, and where it is.
                self.state = None
                self._offer_at = None
            return  # another transfer's (an earlier one's ACK still on its way)
        self._heard = True
        if f["reason"] and f["have"] == 0 and f["state"] != 1 and self.state is None:
            self._fail(f["reason"])  # the offer itself refused: the node goes on as it was
            return
        self.state = STATE_NAMES[f["state"]] if f["state"] < len(STATE_NAMES) else "state_%d" % f["state"]
        if f["reason"]:
            self._fail(f["reason"])
        base = f["base"]
        bitmap = bytes.fromhex(f["bitmap"]) if isinstance(f["bitmap"], str) else bytes(f["bitmap"])
        for i in range(min(base, self.chunks)):
            self.acked[i] = 1
        missing = []
        for j, byte in enumerate(bitmap):
            for b in range(8):
                i = base + 8 * j + b
                if i >= self.chunks:
                    break
                if byte >> b & 1:
                    self.acked[i] = 1
                else:
                    self.acked[i] = 0  # the node says it lacks it (lost, or lost again in a reboot)
                    if self.sent_at[i] is not None:
                        missing.append(i)
        if self.state not in ("idle", "receiving"):
            self.acked[:] = b"\x01" * self.chunks
        self.have = f["have"]
        self._missing = missing

    def _fail(self, reason):
        self.reason = REASON_NAMES[reason] if reason < len(REASON_NAMES) else "reason_%d" % reason
        self.error = "node %d refused update %d (%d.%d): %s" % (self.node, self.upd_id, self.version[0],
                                                               self.version[1], self.reason)

    @property
    def done(self):
        """The transfer is over: the node has every chunk (or refused)."""
        return self.error is not None or self.state not in (None, "idle", "receiving")

    # ---- commands ------------------------------------------------------------

    def install(self):
        """Order the install; repeated every offer_every_s while the node's
        ACKs still say verified (a lost order; the node takes a repeat of an
        install it took as a status request)."""
        self._install_wanted = True
        self._cmds.append(CMD_INSTALL)

    def rollback(self, every_s=10.0):
        """Order a rollback; repeated every every_s (longer than a reboot)
        until an ACK shows the node running another version than now."""
        self._rolling_back = True
        self._rollback_from = self.node_version
        self._rollback_every_s = every_s
        self._rollback_at = None

    def status(self):
        self._cmds.append(CMD_STATUS)

    # ---- what to send now ------------------------------------------------------

    def due(self, now_s, max_frames):
        """Up to max_frames (type, payload) to send now: commands first, the
        offer until the node says it receives, then chunks."""
        out = []
        if self._rolling_back:
            if self.node_version != self._rollback_from:
                self._rolling_back = False  # it runs the previous image
            elif self._rollback_at is None or now_s - self._rollback_at >= self._rollback_every_s:
                self._rollback_at = now_s
                out.append(self._cmd(CMD_ROLLBACK))
        while self._cmds and len(out) < max_frames:
            out.append(self._cmd(self._cmds.pop(0)))
        if self._heard or self._heard_at is None:
            self._heard = False
            self._heard_at = now_s
        if self.error is not None or len(out) >= max_frames:
            return out
        due = self._offer_at is None or now_s - self._offer_at >= self.offer_every_s
        if self.state is None:  # not heard yet: the offer (again), and chunks right behind it
            if due:
                self._offer_at = now_s
                out.append((P.UPD_OFFER, P.build_message(P.UPD_OFFER, self.offer)))
        elif self.state != "receiving":
            if due:
                self._offer_at = now_s
                if self.state == "idle":
                    out.append((P.UPD_OFFER, P.build_message(P.UPD_OFFER, self.offer)))
                elif self.state not in ("confirmed", "reverted"):
                    # The node ACKs a state change once; ask again in case that ACK was lost
                    # (or order the install again, in case the order was).
                    again = CMD_INSTALL if self.state == "verified" and self._install_wanted else CMD_STATUS
                    out.append(self._cmd(again))
            return out
        if due and now_s - self._heard_at >= self.offer_every_s:
            # Receiving, but no ACK for offer_every_s: the one that said the node moved on
            # (verifying, verified) may be lost, and it ACKs no chunk there. Ask.
            self._offer_at = now_s
            out.append(self._cmd(CMD_STATUS))
        while len(out) < max_frames:
            i = self._pick(now_s)
            if i is None:
                break
            self.sent_at[i] = now_s
            self.sends += 1
            data = self.image[i * self.chunk_size:(i + 1) * self.chunk_size]
            out.append((P.UPD_CHUNK, P.build_message(P.UPD_CHUNK, {"upd_id": self.upd_id, "index": i, "data": data})))
        return out

    def _cmd(self, action):
        return P.UPD_CMD, P.build_message(P.UPD_CMD, {"upd_id": self.upd_id, "action": action})

    def _pick(self, now_s):
        while self._next_new < self.chunks:
            i = self._next_new
            self._next_new += 1
            if not self.acked[i]:
                return i
        while self._missing:
            i = self._missing.pop(0)
            if not self.acked[i] and now_s - self.sent_at[i] >= self.rto_s:
                return i
        oldest = None
        for i in range(self.chunks):
            if not self.acked[i] and (oldest is None or self.sent_at[i] < self.sent_at[oldest]):
                oldest = i
        if oldest is not None and now_s - self.sent_at[oldest] >= self.rto_s / 4:
            return oldest
        return None

    def progress(self):
        return "node %d: update %d.%d %s, %d/%d chunks, %d sent" % (
            self.node, self.version[0], self.version[1], self.state or "offered", self.have, self.chunks, self.sends)
