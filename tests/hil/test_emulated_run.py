"""A cluster of emulated Picos, each running the real firmware/main.py under
the MicroPython unix port, routed by the ground harness over their ptys."""

from ground import run, scenario, trace
from node import msgs, wire

SCENARIO = """\
name: emulated-cluster
seed: 5
duration_s: 90
time_scale: 10
election_timeout_ms: 4000
clusters:
  - {id: 1, nodes: [1, 2, 3, 4], lineages: [0, 1]}
links:
  intra_cluster: {delay_ms: 300, jitter: uniform, jitter_ms: 20}
faults:
  - {at_s: 40, crash: coordinator, cluster: 1}
gates:
  split_brain: {max: 0}
  unfated_frames: {max: 0}
"""


def test_emulated_boards_elect_and_fail_over_over_serial(tmp_path):
    from hil import emulated_run

    sc = scenario.load_text(SCENARIO, "emulated.yaml")
    farm = emulated_run.start_farm(sc, str(tmp_path / "boards"))
    try:
        res = run.run(sc, str(tmp_path / "run"), mode="emulated", boards=farm.devices())
    finally:
        farm.stop()
    assert res.ok, res.failures
    header, events, torn = trace.read(str(tmp_path / "run" / "trace.jsonl"))
    hellos = {e["node"] for e in events if e["kind"] == "node" and e["event"] == "hello"}
    assert hellos == {1, 2, 3, 4}
    fo = res.metrics["clusters"]["1"]["failover"]
    assert fo["count"] == 1 and not fo["incomplete"]
    # Each board persisted its term and vote to its own flash folder.
    for nid in (1, 2, 3, 4):
        assert (tmp_path / "boards" / ("node%d" % nid) / "state" / ("node%d" % nid)).exists()


SILENT = """\
name: silent-board
seed: 3
duration_s: 60
time_scale: 10
election_timeout_ms: 2000
clusters:
  - {id: 1, nodes: [1, 2, 3]}
links:
  intra_cluster: {delay_ms: 100}
"""


def test_a_board_that_stops_answering_is_named_and_the_run_goes_on(tmp_path):
    # Board 3 loses power behind the harness's back (no scheduled fault): the
    # run records it `silent` (node, port), keeps running the others, and
    # records `answering` once it is back and sends frames again.
    import threading

    from hil import emulated_run

    sc = scenario.load_text(SILENT, "silent.yaml")
    farm = emulated_run.start_farm(sc, str(tmp_path / "boards"))
    board3 = farm.boards[3]
    cut, back = threading.Timer(2.0, board3.power_cut), threading.Timer(4.0, board3.power_on)
    try:
        cut.start()
        back.start()
        res = run.run(sc, str(tmp_path / "run"), mode="emulated", boards=farm.devices())
    finally:
        cut.cancel()
        back.cancel()
        farm.stop()
    assert res.status == "ok"
    header, events, torn = trace.read(str(tmp_path / "run" / "trace.jsonl"))
    node_events = [(e["node"], e["event"], e.get("detail", "")) for e in events if e["kind"] == "node"]
    silent = [x for x in node_events if x[1] == "silent"]
    assert [n for n, _, _ in silent] == [3], node_events
    assert "node 3 on " in silent[0][2] and "no frame for" in silent[0][2]
    t_silent = next(e["mission_ns"] for e in events if e["kind"] == "node" and e["event"] == "silent")
    t_answer = [e["mission_ns"] for e in events if e["kind"] == "node" and e["event"] == "answering" and e["node"] == 3]
    assert t_answer and t_answer[0] > t_silent
    # the others kept going: frames from 1 and 2 after node 3 fell silent
    assert any(e["kind"] == "frame" and e["fate"] == "sent" and e.get("src") in (1, 2) and e["mission_ns"] > t_silent
               for e in events)


# A board that prints 20 KB of boot noise (short lines), then a HELLO naming its boot
# number (hw_gen) from a counter on its flash: with no host reading, the
# HELLO waits in the supervisor's queue behind a full pty.
_TALKER = """\
import sys, time
try:
    n = int(open("boots").read()) + 1
except OSError:
    n = 1
open("boots", "w").write(str(n))
sys.stdout.buffer.write(b"noise noise noise noise noise noise\\x00" * 560)
sys.stdout.buffer.write(bytes.fromhex(%r if n == 1 else %r))
while True:
    time.sleep(1)
"""


def test_a_board_reset_for_a_run_hands_over_only_the_new_boots_hello(tmp_path):
    from hil import emulated_run
    from hil.emulated import EmulatedBoard

    def hello(boot):
        return wire.encode(msgs.HELLO, 7, wire.ADDR_GROUND, msgs.pack(msgs.HELLO, boot, 1, 0, 0, 1, 1, 1)).hex()

    folder = tmp_path / "talker"
    folder.mkdir()
    (folder / "main.py").write_text(_TALKER % (hello(1), hello(2)))
    board = EmulatedBoard(folder, name="talker").start()
    try:
        assert board.wait_output(bytes.fromhex(hello(1)), timeout_s=30)  # boot 1 said it; nobody read it
        emulated_run.boot_and_wait_hello(board, 7, timeout_s=30)
        port, _, lines = board.open_port
        port.close()
        gens = [msgs.unpack(msgs.HELLO, wire.decode(x).payload)[0] for x in lines if _is_frame(x)]
        assert gens == [2], gens  # the boot it reset into, never the one before
    finally:
        board.stop()


def _is_frame(line):
    try:
        wire.decode(line)
        return True
    except wire.ProtocolError:
        return False
