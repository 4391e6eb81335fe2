"""Labgrid places as rig boards (hil/labgrid_places.py, hil/rigfile.py `place:`),
for real: a labgrid coordinator on loopback, two exporters ("hostA", "hostB")
serving emulated boards' ptys through Debian's ser2net, a place per board;
`ground run --rig` and the pytest plugin run through them. A taken place, a
missing place, a coordinator that refuses or never answers, and an exporter
that went away each give one error naming the place or coordinator, and
after each (and after Ctrl-C and SIGTERM) no place stays acquired.

Skipped, with the reason, without labgrid or ser2net; failed instead when
HIL_REQUIRE_LABGRID=1 (.ci/run sets it: CI installs both, from .ci/run and
pyproject.toml's dev extra, so there the tests must run).
"""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ground.yamlfile import ConfigError
from plugin_sessions import run_plugin
from hil import rigfile

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parents[2]
HAVE_BOARDS = (Path(sys.executable).parent / "micropython").exists()

SMALL = '''
name: small
seed: 3
duration_s: 40
time_scale: 10
election_timeout_ms: 2000
clusters:
  - {id: 1, nodes: [1, 2, 3], lineages: [0, 1]}
links:
  intra_cluster: {delay_ms: 100, jitter: uniform, jitter_ms: 10}
'''

# board -> (exporter "host", place)
LAYOUT = {1: ("hostA", "pico-1"), 2: ("hostA", "pico-2"), 3: ("hostB", "pico-3")}


def _missing():
    if not HAVE_BOARDS:
        return "needs the MicroPython unix port in .venv (make venv)"
    from hil.labgrid_lab import missing

    return missing()


def rig_text(coordinator, places=None, extra=""):
    places = places or {nid: p for nid, (_, p) in LAYOUT.items()}
    lines = ["rig: lab", "coordinator: '%s'" % coordinator, extra, "boards:"]
    for nid, place in sorted(places.items()):
        lines.append("  - {name: b%d, kind: pico, place: %s, node_id: %d, cluster: 1}" % (nid, place, nid))
    return "\n".join(x for x in lines if x) + "\n"


# ---- the rig file: place entries (no labgrid needed) ---------------------------------------


def test_place_entries_parse_with_the_rigs_or_their_own_coordinator(tmp_path):
    p = tmp_path / "rig.yaml"
    p.write_text("rig: lab\ncoordinator: 'lab-host:20408'\nboards:\n"
                 "  - {name: a, kind: pico, place: pico-1, node_id: 1, cluster: 1}\n"
                 "  - {name: b, kind: pico, place: pico-2, coordinator: other, node_id: 2, cluster: 1}\n"
                 "  - {name: c, kind: pico, url: 'socket://h:1', node_id: 3, cluster: 1}\n")
    rig = rigfile.load(p)
    a, b, c = rig.boards
    assert (a.place, a.coordinator) == ("pico-1", "lab-host:20408")
    assert (b.place, b.coordinator) == ("pico-2", "other")
    assert c.place is None and c.coordinator is None and a.port_text == "labgrid place pico-1"
    # Not acquired: the port says who acquires it, naming the board and its line.
    with pytest.raises(rigfile.RigError, match=r"rig.yaml:4: board a \(node 1\) is labgrid place pico-1, not acquired"):
        rig.port(a)
    rig.place_urls["a"] = "rfc2217://h:5?ign_set_control"
    assert rig.port(a) == "rfc2217://h:5?ign_set_control"


@pytest.mark.parametrize("entry,line,text", [
    ("{name: a, kind: pico, place: p1, url: 'socket://h:1', node_id: 1, cluster: 1}", 3,
     "exactly one of serial, url, emulated: true, place (got url, place)"),
    ("{name: a, kind: pico, place: 7, node_id: 1, cluster: 1}", 3, "a.place: expected a labgrid place name"),
    ("{name: a, kind: pico, url: 'socket://h:1', coordinator: 'h:1', node_id: 1, cluster: 1}", 3,
     "only a place entry has a coordinator"),
    ("{name: a, kind: pico, place: p1, coordinator: 'h:port', node_id: 1, cluster: 1}", 3,
     "expected a labgrid coordinator address HOST:PORT, got 'h:port'"),
    ("{name: a, kind: emulated_pico, place: p1, node_id: 1, cluster: 1}", 3, "kind emulated_pico is emulated"),
])  # fmt: skip
def test_bad_place_entries_name_the_line(tmp_path, entry, line, text):
    p = tmp_path / "rig.yaml"
    p.write_text("rig: bad\nboards:\n  - %s\n" % entry)
    with pytest.raises(ConfigError) as e:
        rigfile.load(p)
    assert "rig.yaml:%d" % line in str(e.value) and text in str(e.value)


def test_a_place_used_twice_names_both_boards(tmp_path):
    p = tmp_path / "rig.yaml"
    p.write_text("rig: bad\ncoordinator: 'h:1'\nboards:\n"
                 "  - {name: a, kind: pico, place: p1, node_id: 1, cluster: 1}\n"
                 "  - {name: b, kind: pico, place: p1, node_id: 2, cluster: 1}\n")
    with pytest.raises(ConfigError, match=r"rig.yaml:5.*board b: place p1 is already board a"):
        rigfile.load(p)


def test_a_place_without_any_coordinator_is_named(tmp_path, monkeypatch):
    from hil import labgrid_places

    monkeypatch.delenv("LG_COORDINATOR", raising=False)
    p = tmp_path / "rig.yaml"
    p.write_text("rig: lab\nboards:\n  - {name: a, kind: pico, place: p1, node_id: 1, cluster: 1}\n")
    (board,) = rigfile.load(p).boards
    with pytest.raises(rigfile.RigError, match=r"rig.yaml:3: board a is labgrid place p1 but names no coordinator"):
        labgrid_places.coordinator_of(board)
    monkeypatch.setenv("LG_COORDINATOR", "lab-host")
    assert labgrid_places.coordinator_of(board) == "lab-host:20408"


# ---- a lab on loopback ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    why = _missing()
    if why:
        if os.environ.get("HIL_REQUIRE_LABGRID") == "1":  # .ci/run: CI has both, so the tests must run there
            pytest.fail("HIL_REQUIRE_LABGRID=1 but " + why)
        pytest.skip(why)
    from hil import flash
    from hil.emulated import EmulatedBoard
    from hil.labgrid_lab import LocalLab

    base = tmp_path_factory.mktemp("lab")
    boards = {}
    lab = LocalLab(base / "lab")
    try:
        for nid in LAYOUT:
            folder = base / ("b%d" % nid)
            flash.write_image(str(folder), board_config={"node_id": nid, "cluster": 1, "members": [1, 2, 3],
                                                          "watchdog_ms": 0})
            boards[nid] = EmulatedBoard(folder, name="b%d" % nid).start()
        lab.start()
        for host in ("hostA", "hostB"):
            lab.add_exporter(host, {LAYOUT[n][1]: boards[n].link for n in LAYOUT if LAYOUT[n][0] == host})
        for nid, (host, place) in LAYOUT.items():
            lab.add_place(place, host, place)
        lab.boards = boards
        yield lab
    finally:
        lab.stop()
        for b in boards.values():
            b.stop()


@pytest.fixture
def released(lab):
    """Every test leaves no place acquired (checked after it)."""
    yield
    assert lab.acquired() == {}, "places left acquired"


def _ground(*args, **kw):
    return subprocess.run([sys.executable, "-m", "ground", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300, **kw)  # fmt: skip


def _files(tmp_path, rig):
    (tmp_path / "small.yaml").write_text(SMALL)
    (tmp_path / "rig.yaml").write_text(rig)
    return str(tmp_path / "small.yaml"), str(tmp_path / "rig.yaml")


@pytest.mark.timeout(240)
def test_ground_run_through_labgrid_places(lab, released, tmp_path):
    import json

    sc, rig = _files(tmp_path, rig_text(lab.address))
    r = _ground("run", sc, "--rig", rig, "--out", str(tmp_path / "out"), "--no-plot")
    assert r.returncode == 0, r.stdout + r.stderr
    with open(tmp_path / "out" / "trace.jsonl") as f:
        header = json.loads(f.readline())
    links = {n: header["nodes"][str(n)]["link"] for n in LAYOUT}
    assert all(link.startswith("rfc2217://127.0.0.1:") for link in links.values()), links
    assert len(set(links.values())) == 3
    assert "hello" in (tmp_path / "out" / "trace.jsonl").read_text()


@pytest.mark.timeout(300)
def test_hil_flash_while_hold_keeps_the_places(lab, released, tmp_path):
    """`python -m hil.labgrid_places hold RIG -- hil flash {rig}`: the firmware
    goes to every board through its place; the places are held while the
    command runs (the held copy names their RFC2217 URLs) and released after."""
    (tmp_path / "rig.yaml").write_text(rig_text(lab.address))
    r = subprocess.run([sys.executable, "-m", "hil.labgrid_places", "hold", str(tmp_path / "rig.yaml"), "--",
                        sys.executable, "-m", "hil", "flash", "{rig}"], cwd=REPO, capture_output=True, text=True,
                       timeout=280)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    for nid in LAYOUT:
        assert ("b%d  ok:" % nid) in r.stdout and ("HELLO node %d v1.0" % nid) in r.stdout, r.stdout
    assert "holding pico-1 (b1), pico-2 (b2), pico-3 (b3)" in r.stderr
    assert sorted(os.listdir(tmp_path)) == ["rig.yaml"]  # the held copy is gone


@pytest.mark.timeout(300)
def test_ground_run_while_hold_runs_on_the_held_urls(lab, released, tmp_path):
    """`python -m hil.labgrid_places hold RIG -- ground run SC --rig {rig}`: the
    command gets a copy of the rig whose places are rfc2217:// url entries,
    which ground.links.open_serial opens like any pyserial URL (no handler of
    our own); the run passes through the places; they are released after."""
    import json

    sc, rig = _files(tmp_path, rig_text(lab.address))
    seen = {}

    def watch():  # the places are held by the hold process while the run goes
        deadline = time.monotonic() + 200
        while time.monotonic() < deadline and not seen:
            held = lab.acquired()
            if len(held) == 3:
                seen.update(held)
            time.sleep(0.5)

    import threading

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    r = subprocess.run([sys.executable, "-m", "hil.labgrid_places", "hold", rig, "--", sys.executable, "-m",
                        "ground", "run", sc, "--rig", "{rig}", "--out", str(tmp_path / "out"), "--no-plot", "-q"],
                       cwd=REPO, capture_output=True, text=True, timeout=280)  # fmt: skip
    t.join(5)
    assert r.returncode == 0, r.stdout + r.stderr
    assert sorted(seen) == ["pico-1", "pico-2", "pico-3"], seen
    with open(tmp_path / "out" / "trace.jsonl") as f:
        header = json.loads(f.readline())
    links = [header["nodes"][str(n)]["link"] for n in LAYOUT]
    assert all(x.startswith("rfc2217://127.0.0.1:") and x.endswith("?ign_set_control") for x in links), links
    assert "PASS: small" in r.stdout
    assert sorted(os.listdir(tmp_path)) == ["out", "rig.yaml", "small.yaml"]  # the held copy is gone


@pytest.mark.timeout(240)
def test_pytest_plugin_through_labgrid_places(lab, released, pytester):
    import matplotlib.backends.backend_agg  # noqa: F401  (numpy cannot be imported twice: tests/hil/test_plugin.py)

    rig = pytester.path / "rig-lab.yaml"
    rig.write_text(rig_text(lab.address))
    # Mission time at 2x, not 10x: ser2net, the exporter and the coordinator
    # share this machine's cores with the boards and the harness, and a frame's
    # wall-time hiccup is five times shorter in mission time.
    pytester.makepyfile(test_lab='''
        import pytest

        SC = %r.replace("time_scale: 10", "time_scale: 2")

        @pytest.mark.boards(3, kind="pico")
        def test_runs(harness, trace):
            with harness.start(SC.replace("duration_s: 40", "duration_s: 20")) as live:
                live.wait_for(lambda f: f.agreed(1), timeout_s=15, what="a coordinator")
            harness.check(live.result, split_brain={"max": 0})
            assert trace.read()[0]["nodes"]["1"]["link"].startswith("rfc2217://")

        @pytest.mark.boards(3, kind="pico")
        def test_fails_on_purpose(harness):
            res = harness.run(SC.replace("duration_s: 40", "duration_s: 10"))
            assert res.ok, res.failures
            assert False, "on purpose"
    ''' % SMALL)
    r = run_plugin(pytester, "--rig=%s" % rig, "--hil-out", str(pytester.path / "hil"))
    r.assert_outcomes(passed=1, failed=1)


@pytest.mark.timeout(120)
def test_a_taken_place_is_named_and_the_others_are_released(lab, tmp_path):
    lab.client("-p", "pico-2", "acquire", user="alice")
    try:
        sc, rig = _files(tmp_path, rig_text(lab.address))
        r = _ground("run", sc, "--rig", rig, "--out", str(tmp_path / "out"))
        assert r.returncode == 2, r.stdout + r.stderr
        err = r.stderr.strip().splitlines()
        assert len(err) == 1, r.stderr
        assert "rig.yaml:5: board b2 (labgrid place pico-2, coordinator %s): place pico-2 is taken: acquired by" \
            % lab.address in err[0] and "/alice" in err[0]
        assert lab.acquired() == {"pico-2": lab.acquired()["pico-2"]}  # pico-1 was acquired first, then released
    finally:
        lab.client("-p", "pico-2", "release", user="alice")
    assert lab.acquired() == {}


@pytest.mark.timeout(120)
def test_a_missing_place_is_named(lab, released, tmp_path):
    sc, rig = _files(tmp_path, rig_text(lab.address, {1: "pico-1", 2: "pico-9", 3: "pico-3"}))
    r = _ground("run", sc, "--rig", rig, "--out", str(tmp_path / "out"))
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.count("\n") == 1, r.stderr
    assert "board b2 (labgrid place pico-9, coordinator %s): no place 'pico-9' on coordinator" % lab.address in r.stderr
    assert "its places: pico-1, pico-2, pico-3" in r.stderr


@pytest.mark.timeout(120)
def test_a_coordinator_that_refuses_is_named(lab, released, tmp_path):
    from hil.labgrid_lab import free_port

    dead = "127.0.0.1:%d" % free_port()
    sc, rig = _files(tmp_path, rig_text(dead))
    r = _ground("run", sc, "--rig", rig, "--out", str(tmp_path / "out"))
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.count("\n") == 1, r.stderr
    assert "board b1 (labgrid place pico-1, coordinator %s): coordinator %s does not answer" % (dead, dead) in r.stderr


@pytest.mark.timeout(120)
def test_a_coordinator_that_never_answers_times_out_naming_it(lab, released, tmp_path):
    """A port that accepts and then says nothing (a hung coordinator): the
    wait ends at the timeout, the error names the coordinator."""
    from hil.labgrid_places import Places

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)
    address = "127.0.0.1:%d" % silent.getsockname()[1]
    try:
        (tmp_path / "rig.yaml").write_text(rig_text(address))
        with pytest.raises(rigfile.RigError) as e:
            Places(rigfile.load(tmp_path / "rig.yaml"), timeout_s=2.0).acquire()
        assert "board b1 (labgrid place pico-1, coordinator %s): coordinator %s: no answer within 2 s" \
            % (address, address) in str(e.value)
    finally:
        silent.close()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupted_run_releases_its_places(lab, released, tmp_path, sig):
    sc, rig = _files(tmp_path, rig_text(lab.address))
    # SIGINT's default action back in the child: a test run started in the background (nohup, `make test &`)
    # has it ignored, and Python keeps an ignored SIGINT ignored (as tests/ground/test_chaos.py)
    p = subprocess.Popen([sys.executable, "-m", "ground", "run", sc, "--rig", rig, "--out", str(tmp_path / "out")],
                         cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    try:
        # Wait until the run holds all three places (polling the coordinator, as another client would).
        for _ in range(200):
            if len(lab.acquired()) == 3 or p.poll() is not None:
                break
            time.sleep(0.2)
        assert len(lab.acquired()) == 3, "the run never held its places"
        p.send_signal(sig)
        out, _ = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode != 0, out


@pytest.mark.timeout(180)
def test_an_exporter_that_went_away_is_named(lab, released, tmp_path):
    lab.stop_exporter("hostB")
    try:
        sc, rig = _files(tmp_path, rig_text(lab.address))
        r = _ground("run", sc, "--rig", rig, "--out", str(tmp_path / "out"))
        assert r.returncode == 2, r.stdout + r.stderr
        assert r.stderr.count("\n") == 1, r.stderr
        assert "board b3 (labgrid place pico-3, coordinator %s): place pico-3: no exporter offers" % lab.address \
            in r.stderr and "hostB/pico-3/NetworkSerialPort" in r.stderr
    finally:
        lab.add_exporter("hostB", {"pico-3": lab.boards[3].link})


@pytest.mark.timeout(180)
def test_an_exporter_lost_during_a_run_is_named_after_it(lab, released, tmp_path):
    """hostB goes away while the run goes on: the run keeps what it recorded
    (its trace), then `ground run` ends with one error naming the board, the
    place and the exporter, and every place is released."""
    sc, rig = _files(tmp_path, rig_text(lab.address))
    Path(sc).write_text(SMALL.replace("duration_s: 40", "duration_s: 100"))
    trace = tmp_path / "out" / "trace.jsonl"
    p = subprocess.Popen([sys.executable, "-m", "ground", "run", sc, "--rig", rig, "--out", str(tmp_path / "out"),
                          "--no-plot", "-q"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(600):  # the run has started recording
            if p.poll() is not None or (trace.exists() and trace.stat().st_size > 2000):
                break
            time.sleep(0.1)
        assert p.poll() is None, p.communicate()
        lab.stop_exporter("hostB")
        out, err = p.communicate(timeout=150)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        lab.add_exporter("hostB", {"pico-3": lab.boards[3].link})
    assert p.returncode == 2, out + err
    assert err.count("\n") == 1, err
    assert "lost during the run: board b3 (labgrid place pico-3, coordinator %s): its exporter hostB went away" \
        % lab.address in err
    import json

    last = json.loads(trace.read_text().splitlines()[-1])
    assert last["kind"] == "end"  # the run finished and its trace is whole
    assert (tmp_path / "out" / "metrics.txt").exists()
