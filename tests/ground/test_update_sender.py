"""The ground's update sender (ground/update_sender.py) repeats orders whose
effect it has not seen: an install order lost on the link, a rollback order
lost or not yet taken. Driven by hand-made ACK fields, as ground.protocol
parses them; no node."""

from ground import protocol as P
from ground.update_sender import CMD_INSTALL, CMD_ROLLBACK, CMD_STATUS, STATE_NAMES, UpdateSender


def _ack(s, state, version=(1, 0), reason=0):
    return {"upd_id": s.upd_id, "state": STATE_NAMES.index(state), "reason": reason, "have": s.chunks,
            "base": s.chunks, "bitmap": "", "fw_major": version[0], "fw_minor": version[1]}


def _cmds(out):
    return [P.parse_message(t, p)["action"] for t, p in out if t == P.UPD_CMD]


def _verified():
    s = UpdateSender(b"x" * 500, node=4, upd_id=7, version=(1, 1), offer_every_s=1.0)
    s.on_ack(_ack(s, "verified"))
    return s


def test_an_install_order_is_repeated_while_the_node_says_verified_and_not_after():
    s = _verified()
    assert _cmds(s.due(0.0, 4)) == [CMD_STATUS]  # not ordered yet: only asked where it is
    s.install()
    assert _cmds(s.due(0.2, 4)) == [CMD_INSTALL]
    assert _cmds(s.due(0.5, 4)) == []  # within offer_every_s
    assert _cmds(s.due(1.0, 4)) == [CMD_INSTALL]  # the order was lost: the node still says verified
    s.on_ack(_ack(s, "install_pending"))
    assert _cmds(s.due(2.0, 4)) == [CMD_STATUS]  # taken: only asking where it is


def test_without_an_order_a_verified_node_is_only_asked_its_state():
    s = _verified()
    s.due(0.0, 4)
    assert _cmds(s.due(1.0, 4)) == [CMD_STATUS]


def test_a_rollback_is_repeated_until_the_node_runs_another_version():
    s = _verified()
    s.on_ack(_ack(s, "confirmed", version=(1, 1)))
    s.rollback(every_s=10.0)
    assert _cmds(s.due(0.0, 4)) == [CMD_ROLLBACK]
    assert _cmds(s.due(5.0, 4)) == []  # a reboot takes time: no repeat yet
    assert _cmds(s.due(10.0, 4)) == [CMD_ROLLBACK]
    s.on_ack(_ack(s, "confirmed", version=(1, 0)))  # the boot ACK of the previous image
    assert _cmds(s.due(20.0, 4)) == []
    assert _cmds(s.due(40.0, 4)) == []
