"""The ground's update sender (ground/update_sender.py) against a real node's
update agent (firmware/node/update.py, in a firmware Node), in process, on
simulated time: the node says a state change in one ACK, and when that ACK
is lost the sender must still learn the new state.

The stall this pins down (tests/hil/test_update_emulated.py, power-cut test,
UPDATE_SEED=9 on a loaded machine): the last missing chunk arrived, the node
went receiving -> verifying -> verified and said so in two ACKs, both lost on
the up link. A node ACKs periodically only while it receives, and ignores
chunks in any other state; the sender, still believing "receiving", resent
the chunk it had not seen acknowledged for ever and never asked the node
where it was (it asked only in the other states): 640 of 641 chunks, 1,864
chunks sent, until the test's 300 s ran out.
"""

from ground import protocol as P
from ground.update_sender import CMD_STATUS, UpdateSender
from node import msgs, wire
from node.config import Config
from node.node import Node
from node import update as U

NODE = 1
STEP_S = 0.05  # simulated time between two turns of the loop


def _image(n):
    return bytes((i * 7 + 3) & 0xFF for i in range(n))


def _node():
    return Node(NODE, Config(cluster=1, members=[NODE], election_timeout_ms=1000, fw_version=(1, 0)), seed=5)


class Run:
    """One sender and one node on a link that loses nothing down and, up,
    the ACKs `lose(ack fields, previous state)` picks. The node's shell is
    played as runtime/shell.py plays it: the poll's frames are built, then
    the agent's actions done (a verify finishes at once and is good), then
    the frames go out."""

    def __init__(self, image, lose):
        self.node = _node()
        self.sender = UpdateSender(image, NODE, upd_id=23, version=(1, 1), chunk_size=100, rto_s=1.0,
                                   offer_every_s=1.0)
        self.lose = lose
        self.lost = []  # the ACKs lost: (state, have)
        self.cmds = []  # the UPD_CMD actions the sender sent
        self._said = None  # the state of the last ACK the node sent
        self.t = 0.0

    def turn(self):
        now_ms = int(self.t * 1000)
        for type, payload in self.sender.due(self.t, 4):
            if type == P.UPD_CMD:
                self.cmds.append(P.parse_message(type, payload)["action"])
            self.node.receive(wire.encode(type, wire.ADDR_GROUND, NODE, payload)[:-1], now_ms)
        frames = self.node.poll(now_ms)
        agent = self.node.update
        if agent is not None:
            for kind, _arg in agent.take_actions():
                if kind == U.ACT_VERIFY:
                    agent.verified(U.R_NONE)
            agent.take_actions()
        for _dst, line in frames:
            f = P.parse_line(bytes(line[:-1]))
            if f.type != msgs.UPD_ACK:
                continue
            fields = dict(f.msg)
            before, self._said = self._said, fields["state"]
            if self.lose(fields, before):
                self.lost.append((U.STATE_NAMES[fields["state"]], fields["have"]))
            else:
                self.sender.on_ack(fields)
        self.t += STEP_S

    def until(self, done, turns):
        """Turns until done() (True) or `turns` of them (False): simulated
        time, no clock."""
        for _ in range(turns):
            if done():
                return True
            self.turn()
        return done()


def _state_changes(fields, before):
    """Every ACK that is the node's first in a new state after receiving
    (the one it sends at the change)."""
    return before is not None and fields["state"] != before and fields["state"] != U.RECEIVING


def test_a_lost_ack_for_the_change_out_of_receiving_costs_a_status_query_not_a_stall():
    run = Run(_image(2000), _state_changes)
    assert run.until(lambda: len(run.lost) == 2, 400)
    assert run.lost == [("verifying", 20), ("verified", 20)]  # both changes' ACKs lost
    assert run.node.update.state == U.VERIFIED
    assert run.sender.state == "receiving"  # what it last heard
    # 30 simulated seconds: the node ACKs once a second while it receives, so
    # a quiet second is a question; before, the sender only resent chunks.
    assert run.until(lambda: run.sender.state == "verified", int(30 / STEP_S)), run.sender.progress()
    assert CMD_STATUS in run.cmds
    assert run.sender.have == run.sender.chunks and run.sender.error is None


def test_while_the_node_acks_a_transfer_the_sender_asks_nothing():
    run = Run(_image(2000), lambda fields, before: False)
    assert run.until(lambda: run.sender.state == "verified", int(30 / STEP_S)), run.sender.progress()
    assert run.lost == []
    assert run.cmds == []  # the ACKs (every 8 chunks, once a second, at each change) said it all


def test_a_node_that_lost_the_transfer_is_offered_it_again():
    # mid-transfer the node comes back idle with no record of it (a record
    # torn by a cut, a re-flash): its ACKs carry another id, which the
    # sender used to ignore while it resent chunks the node drops
    run = Run(_image(2000), lambda fields, before: False)
    assert run.until(lambda: run.sender.have >= 8, 400)
    assert run.sender.state == "receiving"
    run.node = _node()  # rebooted without its update record: idle, upd_id 0
    assert run.until(lambda: run.sender.state == "verified", int(60 / STEP_S)), run.sender.progress()
    assert run.node.update.upd_id == 23 and run.sender.have == run.sender.chunks


def test_an_earlier_transfers_late_ack_costs_an_offer_not_the_chunks_the_node_has():
    sends = []
    for late in (False, True):
        run = Run(_image(2000), lambda fields, before: False)
        assert run.until(lambda: run.sender.have >= 8, 400)
        if late:  # idle under the id before, arriving late
            run.sender.on_ack({"upd_id": 22, "state": 0, "reason": 0, "have": 0, "base": 0, "fw_major": 1,
                               "fw_minor": 0, "bitmap": b""})
            assert run.sender.state is None
        assert run.until(lambda: run.sender.state == "verified", int(30 / STEP_S)), run.sender.progress()
        assert run.node.update.have == run.sender.chunks
        sends.append(run.sender.sends)
    assert sends[1] == sends[0]  # no chunk sent again: the node's ACK to the offer said what it had
