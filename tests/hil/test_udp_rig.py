"""A Pico W in a rig (hil/rig_udp.py): the run's UDP hub bound where the rig's
`udp:` key says, the ground address and Wi-Fi settings in board.json, the
Wi-Fi password read from an environment variable or a file, and the firmware's
Wi-Fi join and its failures.

What runs for real: the hub on this machine's own interface address, and a
`kind: pico_w` board reached by `url:` (configured by mpremote, soft-reset,
frames over UDP to that address) that is an emulated Pico (the MicroPython
unix port running the real firmware) behind its pty. The unix port has no
`network` module, so that board skips the Wi-Fi join and says so. The join
itself runs against a stand-in `network` module (no radio exists here; its
docstring says so) to check its timeout and its one-line failure."""

import json
import os
import sys
import time
from pathlib import Path

import pytest

from ground import scenario, trace
from ground.links import LinkError
from ground.yamlfile import ConfigError
from hil import rig_udp, rigfile

REPO = Path(__file__).resolve().parents[2]
HAVE_BOARDS = (Path(sys.executable).parent / "micropython").exists()
needs_boards = pytest.mark.skipif(not HAVE_BOARDS, reason="needs the MicroPython unix port in .venv (make venv)")
OWN = rig_udp.own_address()  # this machine's address on its default route, or None (loopback only)
ENV = "FLEETLOOP_TEST_WIFI_PASSWORD"

SC = """\
name: picow
seed: 5
duration_s: 16
time_scale: 8
election_timeout_ms: 2000
clusters:
  - {id: 1, nodes: [1, 2, 3]}
links:
  intra_cluster: {delay_ms: 100}
gates:
  split_brain: {max: 0}
"""


def _rig(tmp_path, text):
    p = tmp_path / "rig.yaml"
    p.write_text(text)
    return p


PICOW = ("  - {name: w1, kind: pico_w, url: 'socket://lab:1', node_id: 1, cluster: 1,\n"
         "     config: {transport: udp, wifi: %s}}\n")


# ---- the rig file: udp: and wifi: (no boards needed) ----------------------------------------


def test_udp_key_defaults_to_loopback_and_reads_bind_port_ground(tmp_path):
    rig = rigfile.load(_rig(tmp_path, "boards:\n" + PICOW % "{ssid: lab, password_env: %s}" % ENV))
    assert (rig.udp.bind, rig.udp.port, rig.udp.ground) == ("127.0.0.1", 0, None)
    rig = rigfile.load(_rig(tmp_path, "udp: {bind: 0.0.0.0, port: 7400, ground: 10.1.2.3}\nboards:\n"
                            + PICOW % "{ssid: lab, password_env: %s}" % ENV))
    assert (rig.udp.bind, rig.udp.port, rig.udp.ground) == ("0.0.0.0", 7400, "10.1.2.3")


@pytest.mark.parametrize("udp, line, text", [
    ("{bind: lab-host}", 1, "rig.udp.bind: expected an IPv4 address of this machine (or 0.0.0.0), got 'lab-host'"),
    ("{port: 70000}", 1, "rig.udp.port: expected a port 0..65535"),
    ("{ground: '10.0.0.1:7400'}", 1, "rig.udp.ground: expected the host boards send to (an address or name, no port)"),
    ("{colour: red}", 1, "unknown key 'colour'"),
    ("7400", 1, "rig.udp: expected a mapping"),
])
def test_bad_udp_settings_name_the_line(tmp_path, udp, line, text):
    with pytest.raises(ConfigError) as e:
        rigfile.load(_rig(tmp_path, "udp: %s\nboards:\n" % udp + PICOW % "{ssid: lab, password: x}"))
    assert ("rig.yaml:%d:" % line) in str(e.value) and text in str(e.value), str(e.value)


@pytest.mark.parametrize("wifi, text", [
    ("{ssid: lab, pasword_env: X}", "board w1: config.wifi: unknown key 'pasword_env'"),
    ("{ssid: lab, password: a, password_env: X}", "config.wifi: give one of password, password_env, password_file,"
                                                  " not password and password_env"),
    ("{ssid: '', password_env: X}", 'key "wifi.ssid": must be a non-empty string'),
    ("{ssid: lab, password_env: X, timeout_ms: 10}", 'key "wifi.timeout_ms": must be an integer 1000..120000'),
])
def test_bad_wifi_settings_name_the_board_and_line(tmp_path, wifi, text):
    with pytest.raises(ConfigError) as e:
        rigfile.load(_rig(tmp_path, "boards:\n" + PICOW % wifi))
    assert str(e.value).startswith("%s:3: " % (tmp_path / "rig.yaml")) and text in str(e.value), str(e.value)


def test_the_wifi_password_comes_from_the_environment_or_a_file_never_the_rig(tmp_path, monkeypatch):
    rig = rigfile.load(_rig(tmp_path, "boards:\n" + PICOW % "{ssid: lab, password_env: %s}" % ENV))
    monkeypatch.delenv(ENV, raising=False)
    with pytest.raises(rigfile.RigError, match=r"rig.yaml:2: board w1: config.wifi.password_env: "
                                               r"\$FLEETLOOP_TEST_WIFI_PASSWORD is not set \(the Wi-Fi password for 'lab'\)"):
        rig.board_json(rig.boards[0])
    monkeypatch.setenv(ENV, "s3cret")
    cfg = rig.board_json(rig.boards[0])
    assert cfg["wifi"] == {"ssid": "lab", "password": "s3cret"} and cfg["transport"] == "udp"
    # A file beside the rig (kept out of git by the lab), read when board.json is written.
    rig = rigfile.load(_rig(tmp_path, "boards:\n" + PICOW % "{ssid: lab, password_file: wifi.secret, timeout_ms: 5000}"))
    with pytest.raises(rigfile.RigError, match=r"board w1: config.wifi.password_file: cannot read .*wifi.secret"):
        rig.board_json(rig.boards[0])
    (tmp_path / "wifi.secret").write_text("from-file\n")
    assert rig.board_json(rig.boards[0])["wifi"] == {"ssid": "lab", "password": "from-file", "timeout_ms": 5000}
    # What the board's own parser accepts (firmware/runtime/boardcfg.py, run under CPython).
    from runtime import boardcfg

    b = boardcfg.parse_board(dict(rig.board_json(rig.boards[0]), ground="10.0.0.1:7400"), "board.json")
    assert b.wifi == {"ssid": "lab", "password": "from-file", "timeout_ms": 5000}


@pytest.mark.parametrize("entry, text", [
    ("  - {name: p1, kind: pico, url: 'socket://lab:1', node_id: 1, cluster: 1, config: {transport: udp}}\n",
     "board p1 (%s:2, kind pico) is on transport udp but has no radio: a Pico W (kind pico_w)"),
    ("  - {name: w1, kind: pico_w, url: 'socket://lab:1', node_id: 1, cluster: 1, config: {transport: udp}}\n",
     "board w1 (%s:2) is on transport udp and has no Wi-Fi settings: add config: {wifi:"),
])
def test_a_real_board_on_udp_without_radio_or_wifi_cannot_run(tmp_path, entry, text):
    from hil.rig import CannotRun, FileRig

    path = _rig(tmp_path, "boards:\n" + entry)
    sc = scenario.load_text(SC.replace("nodes: [1, 2, 3]", "nodes: [1]"), str(tmp_path / "sc.yaml"))
    with pytest.raises(CannotRun) as e:
        FileRig(str(path), lambda: str(tmp_path))._udp_hub(sc, {1: "socket://lab:1"})
    assert text % path in str(e.value), str(e.value)


def test_the_hub_binds_where_the_rig_says_and_tells_boards_a_reachable_address():
    # Loopback by default: fine for emulated boards, refused for Pico Ws (no Wi-Fi reaches it).
    hub, ground = rig_udp.open_hub(rig_udp.UdpSettings(), real=False)
    try:
        assert hub.host == "127.0.0.1" and ground == hub.address
    finally:
        hub.close()
    with pytest.raises(ConfigError, match=r"rig.yaml:1: rig.udp: Pico Ws on Wi-Fi cannot reach this machine's loopback"):
        rig_udp.open_hub(rig_udp.UdpSettings(where="rig.yaml:1"), real=True)
    # Every address, told as the ground's: this machine's own on its default route (or the rig's `ground`).
    if OWN is not None:
        hub, ground = rig_udp.open_hub(rig_udp.UdpSettings(bind="0.0.0.0"), real=True)
        try:
            assert hub.host == "0.0.0.0" and ground == "%s:%d" % (OWN, hub.port)
        finally:
            hub.close()
    hub, ground = rig_udp.open_hub(rig_udp.UdpSettings(bind="0.0.0.0", ground="picow-gw.lab"), real=True)
    hub.close()
    assert ground == "picow-gw.lab:%d" % hub.port
    # An address this machine does not have: the bind fails, naming it.
    with pytest.raises(LinkError, match=r"udp: cannot bind 203.0.113.9:0: "):
        rig_udp.open_hub(rig_udp.UdpSettings(bind="203.0.113.9"), real=False)


# ---- a pico_w entry over url:, on the machine's own address -------------------------------------


@needs_boards
@pytest.mark.timeout(280)
def test_a_pico_w_entry_runs_over_udp_to_the_hub_on_this_machines_address(tmp_path, monkeypatch, capsys):
    """Three `kind: pico_w` entries reached by `url:` (emulated Picos behind
    their ptys, so: configured by mpremote, soft-reset at the REPL, like a
    real board), on transport udp with Wi-Fi settings; the hub bound on
    0.0.0.0 and the boards told this machine's own interface address (or,
    with only loopback, 127.0.0.1 by the rig's `ground:`)."""
    from ground import cli
    from hil import flash
    from hil.emulated import EmulatedBoard

    host = OWN or "127.0.0.1"
    monkeypatch.setenv(ENV, "s3cret")
    boards = []
    try:
        for n in (1, 2, 3):
            folder = tmp_path / ("b%d" % n)
            flash.write_image(str(folder), board_config={"node_id": n, "cluster": 1, "members": [1, 2, 3],
                                                          "watchdog_ms": 0})
            boards.append(EmulatedBoard(folder, name="b%d" % n).start())
        rig = _rig(tmp_path, "rig: picow\nudp: {bind: 0.0.0.0%s}\nconfig: {transport: udp, wifi: {ssid: lab, "
                             "password_env: %s}}\nboards:\n" % ("" if OWN else ", ground: 127.0.0.1", ENV) + "".join(
            "  - {name: w%d, kind: pico_w, url: '%s', node_id: %d, cluster: 1}\n" % (n, b.device, n)
            for n, b in zip((1, 2, 3), boards)))
        (tmp_path / "sc.yaml").write_text(SC)
        out = tmp_path / "run"
        code = cli.main(["run", str(tmp_path / "sc.yaml"), "--rig", str(rig), "--out", str(out), "--no-plot", "-q"])
        cap = capsys.readouterr()
        assert code == 0, cap.out + cap.err
        on_board = [json.loads((tmp_path / ("b%d" % n) / "board.json").read_text()) for n in (1, 2, 3)]
        logs = [bytes(b.log) for b in boards]
    finally:
        for b in boards:
            b.stop()
    port = int(on_board[0]["ground"].rsplit(":", 1)[1])
    for cfg in on_board:  # what mpremote wrote to each board
        assert cfg["transport"] == "udp" and cfg["ground"] == "%s:%d" % (host, port), cfg
        assert cfg["wifi"] == {"ssid": "lab", "password": "s3cret"}, cfg
    kept = (out / "boards" / "repl" / "w1" / "board.json").read_text()  # the run's copy: no password
    assert "s3cret" not in kept and json.loads(kept)["wifi"]["ssid"] == "lab"
    header, events, torn = trace.read(str(out / "trace.jsonl"))
    assert not torn and events[-1]["status"] == "ok"
    links = {n: header["nodes"][str(n)]["link"] for n in (1, 2, 3)}
    assert all(link.startswith("udp://%s:" % host) for link in links.values()), links
    assert {e["node"] for e in events if e["kind"] == "node" and e["event"] == "hello"} == {1, 2, 3}
    for log in logs:  # the unix port has no radio: it said so, and where its frames go
        assert b"fleetloop: frames over udp to %s:%d" % (host.encode(), port) in log, log[-400:]
    notes = [e["msg"]["text"] for e in events if e["kind"] == "frame" and e["fate"] == "sent" and "text" in e.get("msg", {})]
    assert sum("udp: no network module" in t for t in notes) == 3, notes  # each board's LOG note, over udp


# ---- the Wi-Fi join (the stand-in radio) -------------------------------------------------------

FAKE_NETWORK = '''"""network: a stand-in for the Pico W's network module on the emulated Pico.
No radio exists here: this WLAN never joins. Its status after connect() is
STATUS (a CYW43 link state); the firmware's join must give up and say why."""
STA_IF = 0
STATUS = %d


class WLAN:
    def __init__(self, interface):
        self._active = False
        self._status = 0

    def active(self, on=None):
        if on is not None:
            self._active = on
        return self._active

    def isconnected(self):
        return False

    def connect(self, ssid, password):
        self._status = STATUS

    def status(self):
        return self._status

    def ifconfig(self):
        return ("0.0.0.0", "0.0.0.0", "0.0.0.0", "0.0.0.0")
'''


@needs_boards
@pytest.mark.parametrize("status, said", [
    (-3, "'lab' not joined after"),  # at once: a wrong password will not get better
    (1, "'lab' not joined within 1000 ms: joining (status 1)"),
])
def test_a_wifi_join_that_fails_says_one_line_and_starts_no_loop(tmp_path, status, said):
    from hil import flash
    from hil.emulated import EmulatedBoard

    folder = tmp_path / "w1"
    flash.write_image(str(folder), board_config={
        "node_id": 1, "cluster": 1, "members": [1], "watchdog_ms": 0, "transport": "udp", "ground": "127.0.0.1:9",
        "wifi": {"ssid": "lab", "password": "wrong", "timeout_ms": 1000}})
    (folder / "network.py").write_text(FAKE_NETWORK % status)
    b = EmulatedBoard(folder, name="w1").start()
    try:
        deadline = time.monotonic() + 60
        while b"loop not started" not in bytes(b.log) and time.monotonic() < deadline:
            time.sleep(0.1)
        log = bytes(b.log).decode(errors="replace")
    finally:
        b.stop()
    line = [x for x in log.splitlines() if "loop not started" in x]
    assert len(line) == 1, log[-600:]
    assert line[0].startswith('fleetloop: board.json: key "wifi": ') and said in line[0], line[0]
    if status == -3:
        assert "wrong password (status -3)" in line[0]
    assert "frames over udp" not in log  # no link opened, no frames sent


JOINING_NETWORK = '''"""network: a stand-in for the Pico W's network module on the emulated Pico.
No radio exists here: this WLAN "joins" at once (status 3, the CYW43 link
up) and reports loopback as its address; the frames then go over the host's
loopback, as on any emulated board."""
STA_IF = 0


class WLAN:
    def __init__(self, interface):
        self._up = False

    def active(self, on=None):
        return True

    def isconnected(self):
        return self._up

    def connect(self, ssid, password):
        self._up = True

    def status(self):
        return 3 if self._up else 0

    def ifconfig(self):
        return ("127.0.0.1", "255.0.0.0", "127.0.0.1", "127.0.0.1")
'''


@needs_boards
@pytest.mark.timeout(120)
def test_a_failed_join_reaches_the_ground_at_the_next_boot_that_joins(tmp_path):
    from ground import firmware, udplink
    from ground.udplink import UdpHub
    from hil import flash
    from hil.emulated import EmulatedBoard

    wire, msgs = firmware.wire, firmware.msgs
    hub = UdpHub("127.0.0.1")
    hub.link(1)
    folder = tmp_path / "w1"
    flash.write_image(str(folder), board_config={
        "node_id": 1, "cluster": 1, "members": [1], "watchdog_ms": 0, "transport": "udp", "ground": hub.address,
        "wifi": {"ssid": "lab", "password": "x", "timeout_ms": 1000}})
    (folder / "network.py").write_text(FAKE_NETWORK % -2)
    b = EmulatedBoard(folder, name="w1").start()
    try:
        deadline = time.monotonic() + 60
        while b"loop not started" not in bytes(b.log) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "no access point with that SSID (status -2)" in (folder / "wifi_failed.txt").read_text()
        # The access point is back: the next boot joins, and tells the ground what happened before.
        b.power_cut()
        (folder / "network.py").write_text(JOINING_NETWORK)
        hub.forget()
        b.power_on()
        seen = udplink.wait_hellos(hub, [1], 60)[1]
        texts = []
        deadline = time.monotonic() + 30
        while not any("did not join" in t for t in texts) and time.monotonic() < deadline:
            for line in seen:
                f = wire.decode(line)
                if f.type == msgs.LOG:
                    texts.append(msgs.unpack_log(f.payload))
            time.sleep(0.1)
            seen = [x for _, lines in hub.read() for x in lines]
    finally:
        b.stop()
        hub.close()
    assert any(t.startswith("udp: joined lab as 127.0.0.1") for t in texts), texts
    assert any("udp: the boot before this one did not join: board.json: key \"wifi\": 'lab' not joined after" in t
               and "no access point with that SSID (status -2)" in t for t in texts), texts
    assert not (folder / "wifi_failed.txt").exists()  # reported once


@needs_boards
@pytest.mark.timeout(180)
def test_a_pico_w_that_cannot_join_is_named_with_what_its_console_said(tmp_path, monkeypatch):
    """The rig's boot of its udp boards times out on a board whose join failed
    (the stand-in `network` says wrong password): the error names the node
    and quotes the board's one console line."""
    from hil import flash, rig as rig_mod
    from hil.emulated import EmulatedBoard

    monkeypatch.setattr(rig_mod, "BOOT_TIMEOUT_S", 8.0)
    folder = tmp_path / "w1"
    flash.write_image(str(folder), board_config={"node_id": 1, "cluster": 1, "members": [1], "watchdog_ms": 0})
    (folder / "network.py").write_text(FAKE_NETWORK % -3)
    b = EmulatedBoard(folder, name="w1").start()
    try:
        path = _rig(tmp_path, "udp: {ground: 127.0.0.1}\nboards:\n  - {name: w1, kind: pico_w, url: '%s', node_id: 1,"
                              " cluster: 1, config: {transport: udp, wifi: {ssid: lab, password: wrong}}}\n" % b.device)
        sc = scenario.load_text(SC.replace("nodes: [1, 2, 3]", "nodes: [1]"), str(tmp_path / "sc.yaml"))
        fr = rig_mod.FileRig(str(path), lambda: str(tmp_path / "rigdir"))
        try:
            with pytest.raises(RuntimeError) as e:
                fr.prepare(sc, str(tmp_path / "repl"))
        finally:
            fr.close()
    finally:
        b.stop()
    text = str(e.value)
    assert "no HELLO from node 1 within 8 s" in text, text
    assert ("board w1 (node 1, console %s) said: fleetloop: board.json: key \"wifi\": 'lab' not joined after" % b.device
            in text and "wrong password (status -3) -- loop not started" in text), text


@needs_boards
@pytest.mark.timeout(200)
def test_hil_flash_flashes_a_udp_board_on_usb_for_its_hello_check(tmp_path, monkeypatch):
    """`hil flash` reads each board's HELLO on its serial port: a board on
    transport udp is flashed with board.json on usb (no ground address, no
    Wi-Fi password on it yet); the run writes its udp board.json."""
    from hil import flash

    monkeypatch.delenv(ENV, raising=False)  # the flash does not need the password
    path = _rig(tmp_path, "config: {transport: udp, wifi: {ssid: lab, password_env: %s}}\nboards:\n"
                          "  - {name: e1, kind: emulated_pico, emulated: true, node_id: 1, cluster: 1}\n" % ENV)
    rig = rigfile.load(path)
    rig.start_emulated(tmp_path / "boards")
    try:
        results = flash.flash_rig(rig)
    finally:
        rig.stop_emulated()
    assert [(r.name, r.ok) for r in results] == [("e1", True)], [r.error for r in results]
    cfg = json.loads((tmp_path / "boards" / "e1" / "board.json").read_text())
    assert cfg["transport"] == "usb" and "ground" not in cfg and "wifi" not in cfg, cfg
