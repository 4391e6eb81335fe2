"""Power through labgrid (hil/labgrid_power.py): a place's NetworkPowerPort,
switched by labgrid's own NetworkPowerDriver, so a scenario's power_cut /
power_on faults reach a board behind a labgrid place. For real: a labgrid
coordinator on loopback, an exporter serving emulated boards' ptys through
Debian's ser2net and each board's power as a NetworkPowerPort (model
simplerest) of an EmulatedPdu, the HTTP power switch of emulated boards
(the one stand-in: no physical switch exists here; see its docstring).

Skipped, with the reason, without labgrid or ser2net; failed instead when
HIL_REQUIRE_LABGRID=1 (.ci/run sets it)."""

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from hil import rigfile

REPO = Path(__file__).resolve().parents[2]
HAVE_BOARDS = (Path(sys.executable).parent / "micropython").exists()
NODES = (1, 2, 3, 4)  # the bench's power-cut test wants four boards

SC = '''
name: lab-power
seed: 3
duration_s: 60
time_scale: 5
election_timeout_ms: 2000
clusters:
  - {id: 1, nodes: [1, 2, 3]}
links:
  intra_cluster: {delay_ms: 50}
faults:
  - {at_s: 20, power_cut: 3, duration_s: 10}
'''


def _missing():
    if not HAVE_BOARDS:
        return "needs the MicroPython unix port in .venv (make venv)"
    from hil.labgrid_lab import missing

    return missing()


def _skip_or_fail():
    why = _missing()
    if why:
        if os.environ.get("HIL_REQUIRE_LABGRID") == "1":
            pytest.fail("HIL_REQUIRE_LABGRID=1 but " + why)
        pytest.skip(why)


def _board(folder, nid):
    from hil import flash
    from hil.emulated import EmulatedBoard

    flash.write_image(str(folder), board_config={"node_id": nid, "cluster": 1, "members": list(NODES),
                                                  "watchdog_ms": 0})
    return EmulatedBoard(folder, name="b%d" % nid).start()


def _wait_state(board, state, timeout_s=20.0):
    deadline = time.monotonic() + timeout_s
    while board.state != state and time.monotonic() < deadline:
        time.sleep(0.05)
    # What a board that never got there printed: a halted one's last words.
    assert board.state == state, (repr(board), board.events, board.log[-1500:])
    return board.state


# ---- the power switch alone: labgrid's driver against the emulated boards' switch ------------


def test_labgrids_power_driver_switches_an_emulated_board(tmp_path):
    _skip_or_fail()
    from hil.labgrid_power import EmulatedPdu, PlacePower

    b = _board(tmp_path / "b1", 1)
    pdu = EmulatedPdu({4: b}).start()
    try:
        power = PlacePower("pico-1", {"model": "simplerest", "host": pdu.url, "index": "4"})
        assert power.get() is True
        power.off()
        assert b.state == "off" and power.get() is False
        power.on()
        assert _wait_state(b, "running") == "running" and power.get() is True
        assert pdu.switched == [(4, "off"), (4, "on")] and power.switched == ["off", "on"]
        # An outlet the switch does not have: the HTTP error, naming the place and the switch.
        bad = PlacePower("pico-9", {"model": "simplerest", "host": pdu.url, "index": "9"})
        with pytest.raises(RuntimeError, match=r"place pico-9's power switch \(NetworkPowerPort simplerest http://"
                                               r"127.0.0.1:\d+/power/\{index\}/\{value\}, index 9\): switching it off "
                                               r"failed: 404"):
            bad.off()
    finally:
        pdu.stop()
        b.stop()


def test_a_switch_that_never_answers_is_named_after_the_timeout():
    _skip_or_fail()
    from hil.labgrid_power import PlacePower, PowerError

    mute = socket.socket()
    mute.bind(("127.0.0.1", 0))
    mute.listen(1)  # accepts the connection, never answers
    try:
        url = "http://127.0.0.1:%d/power/{index}/{value}" % mute.getsockname()[1]
        power = PlacePower("pico-7", {"model": "simplerest", "host": url, "index": "0"}, timeout_s=1.0)
        with pytest.raises(PowerError, match=r"place pico-7's power switch .*: switching it off: no answer within 1 s"):
            power.off()
    finally:
        mute.close()


def test_an_unknown_power_model_is_named():
    _skip_or_fail()
    from hil.labgrid_power import PlacePower, PowerError

    with pytest.raises(PowerError, match=r"place p's power switch \(NetworkPowerPort no-such-pdu .*refuses it"):
        PlacePower("p", {"model": "no-such-pdu", "host": "http://127.0.0.1:1/", "index": "0"})


@pytest.mark.timeout(120)
def test_a_power_switch_that_fails_mid_run_fails_the_run_naming_it_and_keeps_the_trace(tmp_path):
    """A board whose power switch refuses (nothing listens at its URL) when
    the scenario cuts its power: the run ends as failed, naming the place and
    the switch; what was recorded before is in the trace."""
    _skip_or_fail()
    from ground import scenario, trace
    from ground.run import Run
    from hil.labgrid_power import PlacePower
    from hil.rig import keep_boot_hello_only
    from hil.serialboard import SerialBoard
    from hil.labgrid_lab import free_port

    eb = _board(tmp_path / "b1", 1)
    try:
        dead = "http://127.0.0.1:%d/power/{index}/{value}" % free_port()
        power = PlacePower("pico-1", {"model": "simplerest", "host": dead, "index": "0"}, timeout_s=5.0)
        board = SerialBoard("b1", eb.device, power=power)
        board.boot_and_wait_hello(1, 30)
        keep_boot_hello_only(board, 1)
        sc = scenario.load_text("name: dead-pdu\nseed: 1\nduration_s: 10\ntime_scale: 5\nelection_timeout_ms: 2000\n"
                                "clusters:\n  - {id: 1, nodes: [1, 2, 3]}\nfaults:\n  - {at_s: 4, power_cut: 1}\n",
                                str(tmp_path / "dead-pdu.yaml"))
        res = Run(sc, str(tmp_path / "run"), mode="rig", boards={1: board}, plot=False).execute()
        board.close()
    finally:
        eb.stop()
    assert res.status == "failed"
    assert any("place pico-1's power switch (NetworkPowerPort simplerest %s, index 0): switching it off failed"
               % dead in f for f in res.failures), res.failures
    _, events, torn = trace.read(str(tmp_path / "run" / "trace.jsonl"))
    assert not torn and events[-1]["status"] == "failed" and "pico-1" in events[-1]["reason"]
    assert [e for e in events if e["kind"] == "node" and e["event"] == "hello" and e["node"] == 1]


# ---- through a labgrid place -------------------------------------------------------------------


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    _skip_or_fail()
    from hil.labgrid_lab import LocalLab
    from hil.labgrid_power import EmulatedPdu

    base = tmp_path_factory.mktemp("lab-power")
    boards, pdu = {}, None
    lab = LocalLab(base / "lab")
    try:
        for nid in NODES:
            boards[nid] = _board(base / ("b%d" % nid), nid)
        pdu = EmulatedPdu({nid: boards[nid] for nid in NODES}).start()
        lab.start()
        lab.add_exporter("hostA", {"pico-%d" % n: boards[n].link for n in NODES},
                         power={"pico-%d" % n: (pdu.url, n) for n in NODES})
        for nid in NODES:
            lab.add_place("pico-%d" % nid, "hostA", "pico-%d" % nid, power=True)
        lab.add_place("bare-3", "hostA", "pico-3")  # board 3's serial port, without its power port
        lab.boards, lab.pdu = boards, pdu
        yield lab
    finally:
        lab.stop()
        if pdu is not None:
            pdu.stop()
        for b in boards.values():
            b.stop()


@pytest.fixture
def released(lab):
    yield
    assert lab.acquired() == {}, "places left acquired"
    for b in lab.boards.values():  # every board powered again for the next test
        if b.state == "off":
            b.power_on()
        elif b.state == "halted":  # one test's crashed board is not the next test's failure
            b.reset()


def _rig(tmp_path, address, places=None, features="[power_control]"):
    places = places or {n: "pico-%d" % n for n in NODES}
    text = "rig: lab-power\ncoordinator: '%s'\nboards:\n" % address + "".join(
        "  - {name: b%d, kind: pico, place: %s, node_id: %d, cluster: 1, features: %s}\n" % (n, p, n, features)
        for n, p in sorted(places.items()))
    (tmp_path / "rig.yaml").write_text(text)
    return str(tmp_path / "rig.yaml")


def test_a_held_place_switches_its_boards_power(lab, released, tmp_path):
    from hil.labgrid_places import Places

    places = Places(rigfile.load(_rig(tmp_path, lab.address)))
    places.acquire()
    try:
        assert sorted(places.power) == ["b1", "b2", "b3", "b4"]
        places.power["b2"].off()
        assert lab.boards[2].state == "off" and lab.boards[1].state == "running"
        places.power["b2"].on()
        assert _wait_state(lab.boards[2], "running") == "running"
    finally:
        places.release()
    assert lab.pdu.switched[-2:] == [(2, "off"), (2, "on")]


def test_power_control_on_a_place_without_a_power_port_is_named(lab, released, tmp_path):
    from hil.labgrid_places import Places

    rig = rigfile.load(_rig(tmp_path, lab.address, {1: "pico-1", 3: "bare-3"}))
    with pytest.raises(rigfile.RigError, match=r"rig.yaml:5: board b3 says power_control, but labgrid place bare-3 "
                                               r"\(coordinator 127.0.0.1:\d+\) has no power port"):
        Places(rig).acquire()
    # (released checks that pico-1, acquired first, was given back)


@pytest.mark.timeout(280)
def test_ground_run_power_cut_reaches_the_board_through_its_place(lab, released, tmp_path):
    """A scenario's power_cut of node 3 for 10 mission s, run with `ground run
    --rig` on labgrid places: labgrid's driver switches the place's outlet off
    and on, the board boots from flash and says HELLO again, the run passes."""
    (tmp_path / "sc.yaml").write_text(SC)
    before = len(lab.pdu.switched)
    r = subprocess.run([sys.executable, "-m", "ground", "run", str(tmp_path / "sc.yaml"), "--rig",
                        _rig(tmp_path, lab.address), "--out", str(tmp_path / "out"), "--no-plot", "-q"],
                       cwd=REPO, capture_output=True, text=True, timeout=270)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert lab.pdu.switched[before:] == [(3, "off"), (3, "on")]
    events = [json.loads(x) for x in (tmp_path / "out" / "trace.jsonl").read_text().splitlines()[1:]]
    faults = [(e["fault"], e["node"]) for e in events if e["kind"] == "fault"]
    assert faults == [("power_cut", 3), ("power_on", 3)], faults
    cut = next(e["mission_ns"] for e in events if e["kind"] == "fault" and e["fault"] == "power_on")
    hellos = [e for e in events if e["kind"] == "node" and e["event"] == "hello" and e["node"] == 3]
    assert [h for h in hellos if h["mission_ns"] >= cut], hellos  # it booted again after its power came back


@pytest.mark.timeout(290)
def test_the_bench_power_cut_test_runs_on_labgrid_places_with_power(lab, released, tmp_path):
    """tests/bench/test_bench_power_cut.py, `needs("power_control")`, skipped
    on real boards without power control, runs on a rig of four labgrid
    places whose entries say power_control: its live power cut of the
    coordinator goes through labgrid's driver to the board's outlet."""
    before = len(lab.pdu.switched)
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
                        "tests/bench/test_bench_power_cut.py", "--rig", _rig(tmp_path, lab.address),
                        "--hil-out", str(tmp_path / "hil")], cwd=REPO, capture_output=True, text=True,
                       timeout=280)  # fmt: skip
    assert r.returncode == 0 and "1 passed" in r.stdout, r.stdout[-3000:] + r.stderr[-2000:]
    switched = lab.pdu.switched[before:]
    assert [s for _, s in switched] == ["off", "on"] and switched[0][0] == switched[1][0], switched


@pytest.mark.timeout(120)
def test_hil_emulate_serves_its_boards_power_switch(tmp_path):
    """`hil emulate 2 --pdu`: the boards and their power switch in one
    process, for an exporter's NetworkPowerPort; switched here over HTTP the
    way labgrid's simplerest backend does it."""
    if not HAVE_BOARDS:
        pytest.skip("needs the MicroPython unix port in .venv (make venv)")
    import re
    import signal
    import urllib.request

    p = subprocess.Popen([sys.executable, "-m", "hil", "emulate", "2", "--dir", str(tmp_path), "--pdu"], cwd=REPO,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        url, lines = None, []
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            line = p.stdout.readline()
            if not line:
                break
            lines.append(line)
            m = re.match(r"power switch: (http://127\.0\.0\.1:\d+/power/\{index\}/\{value\}) \(labgrid", line)
            url = m and m.group(1)
        assert url, lines

        def get(index, value=""):
            with urllib.request.urlopen(url.format(index=index, value=value).rstrip("/"), timeout=10) as r:
                return r.read().decode()

        assert get(1) == "1"
        assert get(1, "0") == "0" and get(1) == "0" and get(0) == "1"  # only board 1 went off
        assert get(1, "1") == "1" and get(1) == "1"
    finally:
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    assert not list(tmp_path.glob("*.tty"))  # the boards stopped with it



@pytest.mark.timeout(200)
def test_a_spare_place_is_kept_off_and_switched_on_for_a_daughter(lab, released, tmp_path):
    """A rig's spare on a labgrid place (docs/BOARDS.md "Spare boards"):
    FileRig acquires it with the node places and switches it off for the
    run; the BoardSet's spare_board, as a run calls it for a daughter,
    switches it on through labgrid's driver, writes the daughter's
    board.json over the place's RFC 2217 port with mpremote, soft-resets it
    and gets node 4's HELLO; after the run it is off again and every place
    released. (The whole run with a daughter on an emulated spare:
    tests/hil/test_rig_spares.py; these lab boards hold the plain image,
    too big for a market scenario at 192K.)"""
    from ground import firmware, scenario
    from hil.rig import FileRig

    text = "rig: lab-spare\ncoordinator: '%s'\nboards:\n" % lab.address + "".join(
        "  - {name: b%d, kind: pico, place: pico-%d, node_id: %d, cluster: 1}\n" % (n, n, n) for n in (1, 2, 3))
    text += "  - {name: s4, kind: pico, place: pico-4, spare: true, features: [power_control]}\n"
    (tmp_path / "rig.yaml").write_text(text)
    sc = scenario.load_text(SC, str(tmp_path / "sc.yaml"))
    before = len(lab.pdu.switched)
    rig = FileRig(str(tmp_path / "rig.yaml"), lambda: str(tmp_path / "emulated"))
    try:
        boards = rig.prepare(sc, str(tmp_path / "repl"))
        try:
            assert sorted(boards.boards) == [1, 2, 3] and lab.boards[4].state == "off"
            assert lab.pdu.switched[before:] == [(4, "off")]
            daughter = {"node_id": 4, "cluster": 1, "members": [1, 2, 3, 4], "lineage": 2, "hw_gen": 1,
                        "election_timeout_ms": 2000, "watchdog_ms": 0}
            b = boards.spare_board(4, daughter, (1, 0), "1.0")
            assert b.name == "s4" and boards.boards[4] is b and lab.boards[4].state == "running"
            assert lab.pdu.switched[before:] == [(4, "off"), (4, "on")]
            f = firmware.wire.decode(b.open_port[2][0])
            assert (f.src, f.type) == (4, firmware.msgs.HELLO)
            cfg = json.loads((tmp_path / "repl" / "s4" / "board.json").read_text())
            assert cfg["node_id"] == 4 and cfg["members"] == [1, 2, 3, 4] and cfg["lineage"] == 2
            assert boards.spare_board(5, dict(daughter, node_id=5), (1, 0), "1.0") is None  # one spare only
        finally:
            boards.stop()
        assert lab.pdu.switched[before:] == [(4, "off"), (4, "on"), (4, "off")]
    finally:
        rig.close()
