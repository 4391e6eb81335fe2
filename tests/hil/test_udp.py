"""Boards on transport udp: emulated Picos (the MicroPython unix port running
the real firmware/main.py and runtime/link_udp.py) sending one frame per
datagram over real UDP on loopback to the ground's hub (ground/udplink.py)."""

import os
import socket
from pathlib import Path

import pytest

from ground import firmware, scenario, trace
from ground.run import run
from ground.udplink import UdpHub

HAVE_BOARDS = (Path(os.sys.executable).parent / "micropython").exists()
needs_boards = pytest.mark.skipif(not HAVE_BOARDS, reason="needs the MicroPython unix port in .venv (make venv)")

wire, msgs = firmware.wire, firmware.msgs

SC = """\
name: udp-small
seed: 5
duration_s: 24
time_scale: 10
election_timeout_ms: 2000
clusters:
  - {id: 1, nodes: [1, 2, 3]}
links:
  intra_cluster: {delay_ms: 100}
faults:
  - {at_s: 12, crash: coordinator, cluster: 1}
gates:
  split_brain: {max: 0}
  unfated_frames: {max: 0}
"""


def _hello(src):
    return bytes(wire.encode(msgs.HELLO, src, wire.ADDR_GROUND, msgs.pack(msgs.HELLO, 1, 2, 0, 0, 1, 2, 1)))


# ---- the hub alone: judging datagrams ----------------------------------------


@pytest.fixture
def hub():
    h = UdpHub("127.0.0.1")
    yield h
    h.close()


def _send(hub, data, sock):
    sock.sendto(data, (hub.host, hub.port))
    import select

    select.select([hub.fileno()], [], [], 5.0)
    return hub.read()


def test_the_hub_learns_a_board_address_from_its_hello_and_refuses_junk_naming_the_sender(hub):
    hub.link(3)
    board = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    board.bind(("127.0.0.1", 0))
    try:
        where = "127.0.0.1:%d" % board.getsockname()[1]
        # Before any HELLO: a frame from an unknown address is refused.
        got = _send(hub, b"hello there", board)
        assert got == [] and hub.refused == 1
        assert where in hub.problems[-1][1] and "no 0x00 delimiter" in hub.problems[-1][1]
        got = _send(hub, _hello(3), board)
        assert [(link.node_id, len(lines)) for link, lines in got] == [(3, 1)]
        assert hub.addr_of[3] == board.getsockname()
        # Junk from a known board's address names the node too.
        _send(hub, b"\x01\x02\x00\x03\x00", board)
        assert hub.refused == 2 and "node 3's address" in hub.problems[-1][1] and where in hub.problems[-1][1]
        # A frame from node 3's address claiming to be node 4.
        hub.link(4)
        _send(hub, bytes(wire.encode(msgs.LOG, 4, wire.ADDR_GROUND, b"x")), board)
        assert hub.refused == 3 and "claims src 4" in hub.problems[-1][1]
        # The ground reaches the board at the learnt address.
        assert hub.send(3, _hello(3)) and board.recv(600) == _hello(3)
        assert not hub.send(4, _hello(3))  # no HELLO from node 4 yet: nowhere to send
    finally:
        board.close()


# ---- emulated boards over UDP -------------------------------------------------


@needs_boards
def test_emulated_boards_over_udp_run_a_scenario_and_pass(tmp_path):
    from hil.rig import emulated_udp_backend

    from ground.run import Run

    sc = scenario.load_text(SC, str(tmp_path / "udp-small.yaml"))
    boards = emulated_udp_backend(sc, str(tmp_path / "boards"))
    junk = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    junk.bind(("127.0.0.1", 0))
    junk_at = "127.0.0.1:%d" % junk.getsockname()[1]
    try:
        hub = boards.boards[1].open_link[0].hub
        r = Run(sc, str(tmp_path / "run"), mode=boards.mode, boards=boards.boards, plot=False)
        r.on_start.append(lambda run: junk.sendto(b"not a frame", (hub.host, hub.port)))
        res = r.execute()
        logs = boards.logs()
    finally:
        boards.stop()
        junk.close()
    assert res.ok, (res.failures, res.status)
    # The junk datagram was refused, once, and the trace names its sender.
    _, events, _ = trace.read(str(tmp_path / "run" / "trace.jsonl"))
    refused = [e for e in events if e["kind"] == "node" and e["event"] == "refused"]
    assert len(refused) == 1 and junk_at in refused[0]["detail"], refused
    assert "not a frame" in refused[0]["detail"] and refused[0]["node"] is None
    header, events, torn = trace.read(str(tmp_path / "run" / "trace.jsonl"))
    assert not torn and events[-1]["status"] == "ok"
    assert {e["node"] for e in events if e["kind"] == "node" and e["event"] == "hello"} == {1, 2, 3}
    sent = [e for e in events if e["kind"] == "frame" and e["fate"] == "sent"]
    assert {e["src"] for e in sent} >= {1, 2, 3}
    assert [e for e in events if e["kind"] == "frame" and e["fate"] == "delivered" and e["to"] in (1, 2, 3)]
    for nid, log in logs.items():  # the console stayed on the pty: the board said where its frames go
        assert b"fleetloop: frames over udp to 127.0.0.1:" in log, (nid, log[-300:])


@needs_boards
def test_a_board_on_usb_while_the_rig_expects_udp_is_named(tmp_path):
    from hil import emulated_run, flash
    from hil.emulated import EmulatedBoard

    sc = scenario.load_text(SC.replace("nodes: [1, 2, 3]", "nodes: [1]"), "udp-one.yaml")
    hub = UdpHub("127.0.0.1")
    bdir = tmp_path / "node1"
    flash.write_image(str(bdir), version=(2, 0), label="2.0",
                      board_config=emulated_run.udp_board_config(sc, 1, hub, transport="usb"))
    b = EmulatedBoard(str(bdir), name="node1").start()
    try:
        with pytest.raises(ValueError) as e:
            emulated_run.boot_udp({1: b}, hub, timeout_s=8)
        assert "node1 (node 1" in str(e.value) and "serial port" in str(e.value) and hub.address in str(e.value)
    finally:
        b.stop()
        hub.close()


@needs_boards
def test_a_board_on_udp_while_the_rig_expects_serial_is_named(tmp_path):
    from hil import emulated_run, flash
    from hil.emulated import EmulatedBoard

    sc = scenario.load_text(SC.replace("nodes: [1, 2, 3]", "nodes: [1]"), "udp-one.yaml")
    hub = UdpHub("127.0.0.1")
    bdir = tmp_path / "node1"
    flash.write_image(str(bdir), version=(2, 0), label="2.0", board_config=emulated_run.udp_board_config(sc, 1, hub))
    b = EmulatedBoard(str(bdir), name="node1").start()
    try:
        with pytest.raises(ValueError) as e:
            emulated_run.boot_and_wait_hello(b, 1, timeout_s=8)
        assert 'transport "udp"' in str(e.value) and "node 1" in str(e.value) and "serial port" in str(e.value)
    finally:
        b.stop()
        hub.close()


class Relay:
    """A UDP relay on loopback between the boards and the hub, that reorders
    and drops some of the boards' frames: a real network's doing, on real
    sockets. One upstream socket per board, so the hub sees one address per
    board. Every `hold_every`th frame of a board (JOURNAL frames excepted:
    the replay needs them whole) is held back until two more have passed;
    every `drop_every`th is dropped."""

    def __init__(self, hub, hold_every=9, drop_every=13, after=4):
        import threading

        self.hub_addr = (hub.host, hub.port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.address = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.up = {}  # board address -> upstream socket
        self.count = {}
        self.held = {}  # board address -> [datagram, passed since]
        self.hold_every, self.drop_every, self.after = hold_every, drop_every, after
        self.dropped = self.reordered = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _from_board(self, data, addr):
        up = self.up.get(addr)
        if up is None:
            up = self.up[addr] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            up.bind(("127.0.0.1", 0))
            up.connect(self.hub_addr)
        try:
            f = wire.decode(data[:-1])
            journal = f.type == msgs.JOURNAL
        except wire.ProtocolError:
            journal = False
        n = self.count[addr] = self.count.get(addr, 0) + (0 if journal else 1)
        held = self.held.get(addr)
        if not journal and n > self.after and addr not in self.held and n % self.hold_every == 0:
            self.held[addr] = [data, 0]
            return
        if not journal and n > self.after and n % self.drop_every == 0:
            self.dropped += 1
            return
        up.send(data)
        if held is not None and not journal:
            held[1] += 1
            if held[1] == 2:
                up.send(held[0])
                self.reordered += 1
                del self.held[addr]

    def _loop(self):
        import select

        while not self._stop.is_set():
            socks = [self.sock] + list(self.up.values())
            r, _, _ = select.select(socks, [], [], 0.1)
            for s in r:
                try:
                    data, addr = s.recvfrom(4096)
                except OSError:
                    continue
                if s is self.sock:
                    self._from_board(data, addr)
                else:
                    board = next(a for a, u in self.up.items() if u is s)
                    self.sock.sendto(data, board)

    def close(self):
        self._stop.set()
        self._thread.join(5)
        for s in [self.sock] + list(self.up.values()):
            s.close()


@needs_boards
def test_frames_the_network_reorders_or_loses_are_recorded(tmp_path):
    from hil.emulated_run import start_udp_farm

    sc = scenario.load_text(SC.replace("faults:\n  - {at_s: 12, crash: coordinator, cluster: 1}\n", ""),
                            str(tmp_path / "udp-relay.yaml"))
    hub = UdpHub("127.0.0.1")
    relay = Relay(hub)
    farm = start_udp_farm(sc, str(tmp_path / "boards"), hub=hub, ground=relay.address)
    try:
        res = run(sc, str(tmp_path / "run"), mode="emulated", boards=farm.devices(), plot=False)
    finally:
        farm.stop()
        relay.close()
    assert relay.dropped and relay.reordered and hub.refused == 0, hub.problems
    print("relay dropped %d, reordered %d; hub lost %d, reordered %d" % (relay.dropped, relay.reordered, hub.lost, hub.reordered))
    _, events, _ = trace.read(str(tmp_path / "run" / "trace.jsonl"))
    lost = [e for e in events if e["kind"] == "frame" and e.get("reason") == "net_lost"]
    reordered = [e for e in events if e["kind"] == "node" and e["event"] == "reordered"]
    # Every drop the relay made before the run's last LOST_AFTER frames is a recorded loss;
    # every frame it held back is a recorded reordering (a few fall in the boot, before the run).
    assert 0 < len(lost) <= relay.dropped
    assert 0 < len(reordered) <= relay.reordered
    sent = {e["id"]: e for e in events if e["kind"] == "frame" and e["fate"] == "sent"}
    assert all(sent[e["id"]]["src"] in (1, 2, 3) and "never arrived" in sent[e["id"]]["lost"] for e in lost)
    assert "arrived after" in reordered[0]["detail"]
    assert res.status == "ok"


@needs_boards
def test_a_rig_whose_entries_say_transport_udp_runs_them_over_udp(tmp_path, capsys):
    from ground import cli

    rig = tmp_path / "rig-udp.yaml"
    rig.write_text("rig: udp-three\nconfig: {transport: udp}\nboards:\n" + "".join(
        "  - {name: e%d, kind: emulated_pico, emulated: true, node_id: %d, cluster: 1}\n" % (n, n) for n in (1, 2, 3)))
    sc = tmp_path / "udp-small.yaml"
    sc.write_text(SC)
    out = tmp_path / "run"
    code = cli.main(["run", str(sc), "--rig", str(rig), "--out", str(out), "--quiet"])
    cap = capsys.readouterr()
    assert code == 0, cap.out + cap.err
    import json

    cfg = json.loads((out / "boards" / "emulated" / "e2" / "board.json").read_text())
    assert cfg["transport"] == "udp" and cfg["ground"].startswith("127.0.0.1:")
    header, events, _ = trace.read(str(out / "trace.jsonl"))
    assert {e["node"] for e in events if e["kind"] == "node" and e["event"] == "hello"} == {1, 2, 3}
    assert events[-1]["status"] == "ok"


@pytest.mark.parametrize("cfg, where", [
    ({"transport": "udp"}, 'key "ground": missing'),
    ({"transport": "udp", "ground": "host-without-port"}, 'key "ground": must be "host:port"'),
    ({"transport": "udp", "ground": "10.0.0.1:99999"}, 'key "ground": must be "host:port"'),
    ({"transport": "udp", "ground": "10.0.0.1:7400", "wifi": {"ssid": "lab", "pass": "x"}}, 'key "wifi.pass": unknown'),
    ({"transport": "usb", "ground": "10.0.0.1:7400"}, 'key "ground": given but transport is "usb"'),
    ({"transport": "radio"}, 'key "transport": must be "usb", "uart" or "udp"'),
])
def test_board_json_for_udp_is_checked_naming_the_key(cfg, where):
    from runtime import boardcfg  # firmware/ is on sys.path through ground.firmware

    with pytest.raises(boardcfg.ConfigError) as e:
        boardcfg.parse_board(dict({"cluster": 1, "members": [1]}, **cfg), "board.json")
    assert str(e.value).startswith("board.json: " + where), str(e.value)


def test_board_json_for_udp_parses():
    from runtime import boardcfg

    b = boardcfg.parse_board({"cluster": 1, "members": [1], "transport": "udp", "ground": "192.168.4.1:7400",
                              "wifi": {"ssid": "lab", "password": "secret"}})
    assert b.ground == ("192.168.4.1", 7400) and b.wifi == {"ssid": "lab", "password": "secret", "timeout_ms": 20000}


@needs_boards
def test_the_board_link_reads_datagrams_without_allocating_under_192k(tmp_path):
    # The board side under the real unix port: a CPython "ground" sends
    # frames (and some junk) in lockstep; the board's UdpLink waits and reads
    # each into its buffer; the heap must not grow while it does.
    import subprocess
    import sys

    ground = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ground.bind(("127.0.0.1", 0))
    ground.settimeout(20)
    script = tmp_path / "board.py"
    script.write_text('''
import gc, sys
from runtime.link_udp import UdpLink
link = UdpLink("127.0.0.1", %d)
link.write(b"hi\\x00")
got = 0
grew = 0
bad = 0
while got < 500:
    gc.collect()
    before = gc.mem_alloc()
    if not link.wait(5000):
        break
    n = link.read()
    if got >= 10:  # after a warm-up: the first ipoll and readinto set up what they keep
        grew += gc.mem_alloc() - before
    if n and link.buf[n - 1] == 0:
        got += 1
    link.write(b"k\\x00")  # lockstep: the ground sends the next one now
print("got", got, "grew", grew, "bad", link.bad_datagrams)
''' % ground.getsockname()[1])
    firmware_dir = str(Path(__file__).resolve().parents[2] / "firmware")
    mpy = str(Path(sys.executable).parent / "micropython")
    proc = subprocess.Popen([mpy, "-X", "heapsize=192K", str(script)], env=dict(os.environ, MICROPYPATH=firmware_dir),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        data, board = ground.recvfrom(64)
        assert data == b"hi\x00"
        frame = _hello(1)
        for i in range(500):
            if i % 50 == 0:
                ground.sendto(b"junk without delimiter", board)
                assert ground.recvfrom(64)[0] == b"k\x00"
            ground.sendto(frame, board)
            assert ground.recvfrom(64)[0] == b"k\x00"
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        ground.close()
    words = out.decode().split()
    assert proc.returncode == 0 and words[0] == "got", err.decode()
    got, grew, bad = int(words[1]), int(words[3]), int(words[5])
    assert got == 500 and bad == 10, out
    assert grew == 0, out  # wait() and read() allocate nothing: readinto a preallocated buffer


@needs_boards
def test_a_board_that_loses_power_comes_back_on_a_new_port_and_is_learnt_again(tmp_path):
    from hil.rig import emulated_udp_backend

    text = SC.replace("  - {at_s: 12, crash: coordinator, cluster: 1}", "  - {at_s: 6, power_cut: 2, duration_s: 4}")
    sc = scenario.load_text(text, str(tmp_path / "udp-power.yaml"))
    boards = emulated_udp_backend(sc, str(tmp_path / "boards"))
    try:
        hub = boards.boards[1].open_link[0].hub
        before = hub.addr_of[2]
        res = run(sc, str(tmp_path / "run"), mode=boards.mode, boards=boards.boards, plot=False)
        after = hub.addr_of[2]
    finally:
        boards.stop()
    assert res.ok, (res.failures, res.status)
    assert before != after  # a new interpreter, a new socket: the HELLO after power-on taught the hub
    _, events, _ = trace.read(str(tmp_path / "run" / "trace.jsonl"))
    hellos = [e for e in events if e["kind"] == "frame" and e["fate"] == "sent" and e["src"] == 2
              and e["type"] == "hello"]
    assert len(hellos) >= 2
    # Frames reach node 2 again after it came back.
    back_ns = 10 * 10**9
    assert [e for e in events if e["kind"] == "frame" and e["fate"] == "delivered" and e["to"] == 2
            and e["mission_ns"] > back_ns + 2 * 10**9]
