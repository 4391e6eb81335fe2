# The update agent (firmware/node/update.py) through a real Node: the state
# table, bitmap resume across a reboot, refusals by reason. Runs under
# CPython and MicroPython (tests/mpy_runner.py).
import hashlib

from node import msgs, wire
from node import update as U
from node.config import Config
from node.node import Node

CHUNK = 200


def _node(members=(1,), fw=(1, 0)):
    return Node(1, Config(cluster=1, members=list(members), election_timeout_ms=1000, fw_version=fw), seed=5)


def _image(n=1234):
    b = bytearray(n)
    for i in range(n):
        b[i] = (i * 7 + 3) & 0xFF
    return bytes(b)


def _offer(img, upd_id=9, version=(1, 1), flags=0, chunk=CHUNK, chunks=None):
    if chunks is None:
        chunks = (len(img) + chunk - 1) // chunk
    return msgs.pack(msgs.UPD_OFFER, upd_id, hashlib.sha256(img).digest(), len(img), chunks, chunk, version[0],
                     version[1], 0, flags)


def _send(node, type, payload, now=0, src=wire.ADDR_GROUND):
    node.receive(wire.encode(type, src, 1, payload)[:-1], now)


def _chunk(img, i, upd_id=9):
    return U.pack_chunk(upd_id, i, img[i * CHUNK:(i + 1) * CHUNK])


class Flash:
    """The shell's side, in memory: written chunks and the persisted record."""

    def __init__(self):
        self.data = {}
        self.record = None
        self.acts = []

    def run(self, agent, good=True):
        for kind, arg in agent.take_actions():
            self.acts.append(kind)
            if kind == U.ACT_WRITE:
                self.data[arg[0]] = bytes(arg[1])
            elif kind == U.ACT_PERSIST:
                self.record = bytes(arg)
            elif kind == U.ACT_VERIFY:
                agent.verified(U.R_NONE if good else U.R_DIGEST)
                self.run(agent)


def _acks(frames):
    out = []
    for dst, line in frames:
        f = wire.decode(line[:-1])
        if f.type == msgs.UPD_ACK:
            out.append(U.unpack_ack(f.payload))
    return out


def test_a_whole_transfer_verifies_installs_boots_as_trial_and_confirms():
    img = _image()
    n = _node()
    fl = Flash()
    _send(n, msgs.UPD_OFFER, _offer(img))
    assert n.update.state == U.RECEIVING
    for i in range(7):
        _send(n, msgs.UPD_CHUNK, _chunk(img, i))
        fl.run(n.update)
    assert b"".join(fl.data[i] for i in range(7)) == img
    assert n.update.state == U.VERIFIED and fl.acts.count(U.ACT_VERIFY) == 1
    ack = _acks(n.poll(10))[-1]
    assert ack[:5] == (9, U.VERIFIED, U.R_NONE, 7, 0)
    _send(n, msgs.UPD_CMD, msgs.pack(msgs.UPD_CMD, 9, U.CMD_INSTALL), 20)
    fl.run(n.update)
    assert n.update.state == U.INSTALL_PENDING and fl.acts[-2:] == [U.ACT_PERSIST, U.ACT_INSTALL]
    # The reboot: a new node of the new version, the record restored, the pointer says trial.
    n2 = _node(fw=(1, 1))
    a = U.agent(n2)
    a.confirm_after_ms = 3000  # board.json confirm_after_ms, as runtime/updboot.py sets it
    a.restore(fl.record)
    a.boot(U.TRIAL, True)
    assert a.state == U.TRIAL
    t = 0
    acks = []
    while a.state == U.TRIAL and t < 60000:
        acks += _acks(n2.poll(t))
        fl.run(a)
        t += 100
    assert a.state == U.CONFIRMED and U.ACT_CONFIRM in fl.acts
    assert t >= 3000  # not before confirm_after_ms of health (a coordinator first needs electing)
    assert acks[0][1] == U.TRIAL and acks[-1][1] == U.CONFIRMED and acks[-1][5:7] == (1, 1)
    # The ground repeats an install whose ACK it has not heard: taken already, it is only answered.
    refused = a.refused[U.R_STATE]
    _send(n2, msgs.UPD_CMD, msgs.pack(msgs.UPD_CMD, 9, U.CMD_INSTALL), t)
    assert a.state == U.CONFIRMED and a.refused[U.R_STATE] == refused
    assert [k for k, _ in a.take_actions()] == []
    assert _acks(n2.poll(t + 100))[-1][1:3] == (U.CONFIRMED, U.R_NONE)


def test_a_trial_never_healthy_does_not_confirm_and_a_reset_reverts():
    n = _node(members=(1, 2, 3))  # alone of three: never a coordinator, never healthy
    a = U.agent(n)
    a.state = U.INSTALL_PENDING
    a.boot(U.TRIAL, True)
    for t in range(0, 20000, 100):
        n.poll(t)
    assert a.state == U.TRIAL and U.ACT_CONFIRM not in [k for k, _ in a.take_actions()]
    a.boot(U.REVERTED, True)
    assert a.state == U.REVERTED


def test_transfer_resumes_from_the_persisted_bitmap_after_a_reboot():
    img = _image(200 * 40 + 17)
    n = _node()
    fl = Flash()
    _send(n, msgs.UPD_OFFER, _offer(img))
    for i in range(0, 35):
        if i % 5 != 3:  # some lost
            _send(n, msgs.UPD_CHUNK, _chunk(img, i))
        fl.run(n.update)
    persisted = fl.record
    n2 = _node()  # power cut: what was persisted survives, the rest is asked again
    a = U.agent(n2)
    a.restore(persisted)
    a.boot(U.CONFIRMED, False)
    assert a.state == U.RECEIVING and 0 < a.have <= 28
    ack = _acks(n2.poll(0))[-1]
    upd_id, state, reason, have, base, _, _, bitmap = ack
    assert (upd_id, state, have, base) == (9, U.RECEIVING, a.have, 0)
    missing = [i for i in range(41) if i >= base + 8 * len(bitmap) or not bitmap[(i - base) >> 3] >> ((i - base) & 7) & 1]
    assert 3 in missing and 40 in missing and 0 not in missing
    writes_before = len(fl.data)
    for i in range(41):  # the sender resends everything it has no ACK for: duplicates are not rewritten
        _send(n2, msgs.UPD_CHUNK, _chunk(img, i))
        fl.run(a)
    assert a.state == U.VERIFIED
    for i in range(41):  # chunk by chunk: one 8K join does not fit a fragmented 192K heap
        assert fl.data[i] == img[i * CHUNK:(i + 1) * CHUNK], i
    assert len(fl.data) == 41 and writes_before <= 35


def test_refusals_are_counted_by_reason_and_install_nothing():
    img = _image()
    n = _node()
    a = U.agent(n)
    _send(n, msgs.UPD_OFFER, _offer(img, upd_id=4, flags=U.FLAG_DEFECTS))  # defects in a non-test image
    assert a.state == U.IDLE and a.refused[U.R_DEFECT] == 1
    assert (4, U.IDLE, U.R_DEFECT) in [k[:3] for k in _acks(n.poll(0))]  # the ACK names the refused offer
    _send(n, msgs.UPD_OFFER, _offer(img, chunks=3))  # chunk count that cannot be right
    assert a.refused[U.R_OFFER] == 1
    _send(n, msgs.UPD_CMD, msgs.pack(msgs.UPD_CMD, 0, U.CMD_ROLLBACK))
    assert a.refused[U.R_NO_PREVIOUS] == 1
    _send(n, msgs.UPD_OFFER, _offer(img))
    _send(n, msgs.UPD_CHUNK, U.pack_chunk(9, 7, b"x" * CHUNK))  # index past the end
    _send(n, msgs.UPD_CHUNK, U.pack_chunk(9, 2, b"x" * 5))  # wrong length
    assert a.refused[U.R_RANGE] == 2 and a.have == 0
    _send(n, msgs.UPD_CMD, msgs.pack(msgs.UPD_CMD, 9, U.CMD_INSTALL))  # not verified yet
    assert a.refused[U.R_STATE] == 1 and a.state == U.RECEIVING
    fl = Flash()
    for i in range(7):
        _send(n, msgs.UPD_CHUNK, _chunk(img, i))
        fl.run(a, good=False)  # the shell finds the digest wrong
    assert a.state == U.IDLE and a.refused[U.R_DIGEST] == 1 and U.ACT_INSTALL not in fl.acts
    ack = _acks(n.poll(0))[-1]
    assert ack[1:3] == (U.IDLE, U.R_DIGEST)


def test_an_update_that_would_make_four_majors_is_refused():
    n = _node(members=(1, 2, 3, 4))
    for m, major in ((2, 2), (3, 3)):
        n.records.put(m, 5, (1 << 24) | (major << 16))
    a = U.agent(n)
    _send(n, msgs.UPD_OFFER, _offer(_image(), version=(3, 1)))  # majors 1, 2, 3: one of them
    assert a.state == U.RECEIVING
    _send(n, msgs.UPD_CMD, msgs.pack(msgs.UPD_CMD, 9, U.CMD_ABORT))
    assert a.state == U.IDLE
    _send(n, msgs.UPD_OFFER, _offer(_image(), upd_id=10, version=(4, 0)))  # a 4th major
    assert a.state == U.IDLE and a.refused[U.R_MAJORS] == 1


def test_update_frames_from_a_member_are_ignored_and_bad_payloads_counted():
    n = _node(members=(1, 2))
    _send(n, msgs.UPD_OFFER, _offer(_image()), src=2)
    assert n.update is None and n.ignored == 1
    _send(n, msgs.UPD_CHUNK, b"\x01\x02")
    assert n.errors[wire.ERR_PAYLOAD] == 1


def test_a_damaged_record_is_refused_not_half_restored():
    a = U.agent(_node())
    for blob in (b"", b"\x01" * 10, a.record() + b"\x00"):
        try:
            a.restore(blob)
            raise AssertionError("restored %r" % blob)
        except ValueError:
            pass
