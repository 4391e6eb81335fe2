"""Flashing (hil/flash.py) through stock mpremote onto emulated Picos.

The spec, one test each:
  - eight boards flash in parallel, each boots and says HELLO with its node
    id and the version flashed; a second flash copies nothing; a new version
    for one board shows in that board's HELLO and touches no other board;
  - a flash cut while copying leaves the previous firmware whole and
    bootable; a flash cut inside the commit leaves a journal, and the check
    names exactly the files not in place; the next flash finishes either;
  - switching from .py to .mpy removes the .py files that would shadow them;
  - bad input ends in an error naming the board and its port, never a hang:
    a board that is absent, a board that answers garbage.
The plan and the board-side scripts are also tested alone (no board).

Every wait has a timeout and every test a pytest-timeout; no test bounds how
long anything takes. Tests flash a snapshot of firmware/ (others may be
editing it meanwhile). Every emulated board and pty is closed by its fixture.
"""

from __future__ import annotations

import json
import os
import pty
import shutil
import socket
import subprocess
import sys
import threading
import tty
from pathlib import Path

import pytest
import serial

from hil import cli, flash
from hil import rig as rig_mod
from hil.flash import ImageFile

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
MICROPYTHON = BIN / "micropython"
HAVE_TOOLS = MICROPYTHON.exists() and (BIN / "mpremote").exists()

pytestmark = pytest.mark.timeout(240)
needs_boards = pytest.mark.skipif(not HAVE_TOOLS, reason="needs .venv/bin/micropython and mpremote (make venv)")


# -- helpers ---------------------------------------------------------------------------


def snapshot_firmware(dest: Path) -> Path:
    shutil.copytree(REPO / "firmware", dest, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def change_module(firmware: Path, rel: str) -> None:
    """A change the compiled .mpy shows (a comment would not)."""
    with open(firmware / rel, "a") as f:
        f.write("\n_FLASH_TEST_CHANGE = %r\n" % rel)


def rig_file(tmp_path: Path, boards: list[str], extra: str = "", name: str = "rig-t.yaml") -> Path:
    p = tmp_path / name
    p.write_text("rig: t\nversion: '1.0'\nemulated_dir: emulated\nboards:\n" + "".join("  - %s\n" % b for b in boards)
                 + extra)  # fmt: skip
    return p


def emulated(name: str, node: int, cluster: int = 1, more: str = "") -> str:
    return "{name: %s, kind: emulated_pico, emulated: true, node_id: %d, cluster: %d%s}" % (name, node, cluster, more)


def hello_after_reset(board, node_id: int, timeout_s: float = 30) -> dict:
    """Hard-reset an emulated board with the port open; its HELLO's fields."""
    with serial.Serial(board.device, timeout=0.2) as ser:
        board.reset()
        return flash.read_hello(ser, node_id, timeout_s, board.name)


def by_name(results):
    return {r.name: r for r in results}


@pytest.fixture
def boards_of(tmp_path):
    """start(rig) -> the rig's emulated boards, running; all stopped at the end."""
    started = []

    def start(rig, only=None):
        bs = rig.start_emulated(tmp_path / "flash", only=only)
        started.extend(bs)
        return bs

    yield start
    for b in started:
        b.stop()


# -- the plan, alone -------------------------------------------------------------------


def img(*names: str) -> list[ImageFile]:
    return [ImageFile(n, "/nowhere/" + n, "h-" + n, 10) for n in names]


def test_plan_copies_what_differs_reuses_what_was_staged_and_removes_stale_files():
    files = img("boot.py", "main.py", "node/a.mpy", "node/b.mpy", "version.json")
    survey = {
        "files": {"boot.py": "h-boot.py", "main.py": "old", "node/a.mpy": None, "node/b.mpy": "h-node/b.mpy",
                  "version.json": "old"},
        "dirs": {"node": ["a.py", "b.mpy"]},  # node/a.py would shadow node/a.mpy
        "staged": {".flash/node/a.mpy": "h-node/a.mpy", ".flash/main.py": "torn", ".flash/x.mpy": "?"},
        "todo": None, "version": '{"version": [1, 0]}',
    }  # fmt: skip
    p = flash.plan(files, survey)
    assert p.unchanged == ["boot.py", "node/b.mpy"]
    assert p.reuse == ["node/a.mpy"]
    assert p.copy == ["main.py", "version.json"]  # a torn staged main.py is copied again
    assert p.missing == ["node/a.mpy"]
    assert p.remove == ["node/a.py"]
    assert p.leftovers == [".flash/x.mpy"]
    assert not p.up_to_date() and p.interrupted is None


def test_commit_order_puts_modules_first_then_removals_then_config_and_main_py_last():
    files = img("boot.py", "main.py", "node/a.mpy", "runtime/s.mpy", "board.json", "version.json")
    p = flash.Plan(copy=["main.py", "version.json", "node/a.mpy", "boot.py"], reuse=["runtime/s.mpy", "board.json"],
                   remove=["node/a.py"])  # fmt: skip
    steps = flash.commit_steps(p, files)
    assert [s[:3] for s in steps] == [
        ["mv", ".flash/node/a.mpy", "node/a.mpy"], ["mv", ".flash/runtime/s.mpy", "runtime/s.mpy"],
        ["rm", "node/a.py"],
        ["mv", ".flash/board.json", "board.json"], ["mv", ".flash/version.json", "version.json"],
        ["mv", ".flash/boot.py", "boot.py"], ["mv", ".flash/main.py", "main.py"],
    ]  # fmt: skip
    assert steps[0][3] == "h-node/a.mpy"


def test_an_interrupted_commit_is_reported_file_by_file():
    journal = json.dumps({"label": "1.1", "steps": [["mv", ".flash/node/a.mpy", "node/a.mpy", "h"], ["rm", "node/a.py"],
                                                    ["mv", ".flash/main.py", "main.py", "h"]]})  # fmt: skip
    survey = {"files": {}, "dirs": {"node": ["a.mpy", "a.py"]}, "staged": {".flash/main.py": "h"}, "todo": journal}
    assert flash.interrupted_commit(journal, survey) == {"label": "1.1", "pending": ["rm node/a.py", "main.py"], "steps": 3}
    text = flash.check_text({"interrupted": flash.interrupted_commit(journal, survey), "board_version": None})
    assert "INTERRUPTED commit of 1.1: not in place: rm node/a.py, main.py" in text


def run_on_unix_port(folder: Path, script: str) -> str:
    r = subprocess.run([str(MICROPYTHON), "-c", script], cwd=folder, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


@pytest.mark.skipif(not MICROPYTHON.exists(), reason="needs .venv/bin/micropython")
def test_board_scripts_survey_and_commit_under_micropython(tmp_path):
    (tmp_path / "node").mkdir()
    (tmp_path / "node" / "a.py").write_bytes(b"old")
    (tmp_path / "main.py").write_bytes(b"old main")
    run_on_unix_port(tmp_path, flash.stage_prep_script(["node"]))
    (tmp_path / ".flash" / "node" / "a.mpy").write_bytes(b"new a")
    (tmp_path / ".flash" / "main.py").write_bytes(b"new main")
    import hashlib

    sha = {k: hashlib.sha256(v).hexdigest() for k, v in {"a": b"new a", "main": b"new main"}.items()}
    out = run_on_unix_port(tmp_path, flash.survey_script(["main.py", "node/a.mpy"], ["node"]))
    survey = json.loads(out.split("@@SURVEY ", 1)[1])
    assert survey["files"] == {"main.py": hashlib.sha256(b"old main").hexdigest(), "node/a.mpy": None}
    assert survey["dirs"] == {"node": ["a.py"]}
    assert survey["staged"] == {".flash/node/a.mpy": sha["a"], ".flash/main.py": sha["main"]}
    steps = [["mv", ".flash/node/a.mpy", "node/a.mpy", sha["a"]], ["rm", "node/a.py"], ["mv", ".flash/main.py", "main.py", sha["main"]]]
    # A staged file that is not what was planned: nothing is renamed.
    bad = [["mv", ".flash/node/a.mpy", "node/a.mpy", "0" * 64]] + steps[1:]
    assert "@@BAD .flash/node/a.mpy" in run_on_unix_port(tmp_path, flash.commit_script(bad, "1.1", ["node"]))
    assert (tmp_path / "main.py").read_bytes() == b"old main" and not (tmp_path / "flash.todo").exists()
    # Cut after one step: the journal stays and says what is left.
    assert "@@COMMIT 1" in run_on_unix_port(tmp_path, flash.commit_script(steps, "1.1", ["node"], limit=1))
    assert (tmp_path / "flash.todo").exists() and (tmp_path / "node" / "a.mpy").read_bytes() == b"new a"
    out = run_on_unix_port(tmp_path, flash.survey_script(["main.py", "node/a.mpy"], ["node"]))
    survey = json.loads(out.split("@@SURVEY ", 1)[1])
    assert flash.interrupted_commit(survey["todo"], survey)["pending"] == ["rm node/a.py", "main.py"]
    # The rest, whole: files in place, stale file gone, .flash/ and the journal gone.
    remaining = steps[1:]
    assert "@@COMMIT 2" in run_on_unix_port(tmp_path, flash.commit_script(remaining, "1.1", ["node"]))
    assert (tmp_path / "main.py").read_bytes() == b"new main"
    assert sorted(os.listdir(tmp_path / "node")) == ["a.mpy"]
    assert not (tmp_path / ".flash").exists() and not (tmp_path / "flash.todo").exists()


def test_armv6m_bytecode_is_the_same_bytes_as_no_march(tmp_path):
    # Why emulated boards (x64 unix port) can run the very .mpy a Pico gets.
    fw = snapshot_firmware(tmp_path / "fw")
    a = flash.build(str(tmp_path / "a"), mpy=True, march="armv6m", firmware=str(fw))
    b = flash.build(str(tmp_path / "b"), mpy=True, march=None, firmware=str(fw))
    assert [(f.remote, f.sha256) for f in a] == [(f.remote, f.sha256) for f in b]
    assert {f.remote for f in a} >= {"boot.py", "main.py", "node/wire.mpy", "runtime/shell.mpy"}


# -- eight boards in parallel -------------------------------------------------------------


@pytest.fixture(scope="module")
def eight(tmp_path_factory):
    """The shipped 8-board rig, its boards running (flash = empty folders)."""
    tmp = tmp_path_factory.mktemp("eight")
    fw = snapshot_firmware(tmp / "fw")
    rig = rig_mod.load(REPO / "boards" / "rig-emulated-8.yaml")
    started = rig.start_emulated(tmp / "boards")
    try:
        yield rig, str(fw), started
    finally:
        for b in started:
            b.stop()


@needs_boards
def test_eight_boards_flash_in_parallel_and_each_says_hello(eight):
    rig, fw, started = eight
    seen: dict[str, list[str]] = {}
    results = flash.flash_rig(rig, firmware=fw, progress=lambda n, phase, text: seen.setdefault(n, []).append(phase))
    assert [r.name for r in results] == ["pico%d" % i for i in range(8)]
    for r, b in zip(results, rig.boards):
        assert r.ok, r.error
        assert r.hello["node"] == b.node_id and r.hello["cluster"] == b.cluster and r.hello["lineage"] == b.lineage
        assert (r.hello["fw_major"], r.hello["fw_minor"]) == (1, 0)
        # The romfs layout (the default): the modules went into the ROM partition.
        assert r.code == "romfs" and r.rom == "deployed" and r.note is None
        assert "main.py" in r.copied and "board.json" in r.copied and not any(c.endswith(".mpy") for c in r.copied)
        assert r.unchanged == 0
        assert seen[r.name][-1] == "done" and "stage" in seen[r.name] and "romfs" in seen[r.name]
        assert "hello" in seen[r.name]
    # The image is where the board shell expects it (docs/BOARD_SHELL.md).
    folder = started[2].folder
    assert json.loads((folder / "board.json").read_text())["node_id"] == 3
    assert json.loads((folder / "version.json").read_text()) == {"version": [1, 0], "label": "1.0"}
    assert not (folder / ".flash").exists() and not (folder / "flash.todo").exists()
    assert not (folder / "node" / "wire.mpy").exists() and not (folder / "node" / "wire.py").exists()
    rom = (folder / flash.EMU_ROM_IMAGE).read_bytes()
    assert rom[:3] == b"\xd2\xcd\x31" and b"node/wire.mpy" not in rom and b"wire.mpy" in rom


@needs_boards
def test_a_second_flash_copies_nothing(eight):
    rig, fw, _ = eight
    results = flash.flash_rig(rig, firmware=fw)
    for r in results:
        assert r.ok, r.error
        assert r.copied == [] and r.reused == [] and r.removed == [] and r.rom == "unchanged"
        assert r.unchanged == 4 and r.hello["fw_minor"] == 0  # boot.py, main.py, version.json, board.json


@needs_boards
def test_a_new_version_on_one_board_shows_in_its_hello_only(eight):
    rig, fw, started = eight
    results = flash.flash_rig(rig, version=(1, 1), only=["pico3"], firmware=fw)
    assert [r.name for r in results] == ["pico3"]
    r = results[0]
    assert r.ok, r.error
    assert r.copied == ["version.json"]
    assert (r.hello["node"], r.hello["fw_major"], r.hello["fw_minor"]) == (4, 1, 1)
    # The others still run 1.0, and a check says so without changing anything.
    checks = by_name(flash.check_rig(rig, firmware=fw))
    assert checks["pico3"].check["copy"] == ["version.json"]  # against the rig's 1.0
    assert all(checks[n].check["up_to_date"] for n in checks if n != "pico3")
    assert "board has 1.1" in checks["pico3"].summary()
    assert hello_after_reset(started[3], 4)["fw_minor"] == 1


# -- cut short ------------------------------------------------------------------------------


@pytest.fixture
def one_board(tmp_path, boards_of):
    """A one-board rig flashed with 1.0 from a firmware snapshot, in the
    files layout (its staging and journal carry every module)."""
    fw = snapshot_firmware(tmp_path / "fw")
    rig = rig_mod.load(rig_file(tmp_path, [emulated("solo", 7, more=", code: files")]))
    (board,) = boards_of(rig)
    (r,) = flash.flash_rig(rig, firmware=str(fw))
    assert r.ok, r.error
    return rig, fw, board


@needs_boards
def test_a_flash_killed_while_copying_leaves_the_previous_firmware_bootable(one_board):
    rig, fw, board = one_board
    change_module(fw, "node/msgs.py")
    change_module(fw, "runtime/shell.py")
    # SIGKILL the worker and its mpremote as the second file starts copying.
    (r,) = flash.flash_rig(rig, version=(1, 1), firmware=str(fw), faults={"solo": "kill-stage:1"})
    assert not r.ok and "board solo (node 7, /dev/pts/" in r.error and "killed by signal 9" in r.error
    # The firmware in place is whole: 1.0 boots.
    hello = hello_after_reset(board, 7)
    assert (hello["fw_major"], hello["fw_minor"]) == (1, 0)
    (c,) = flash.check_rig(rig, version=(1, 1), firmware=str(fw))
    assert c.ok and c.check["interrupted"] is None
    assert c.check["leftovers"] or c.check["reuse"]  # what the cut flash had staged
    assert "board has 1.0" in c.summary()
    # The next flash finishes the job, reusing what was staged intact.
    (r,) = flash.flash_rig(rig, version=(1, 1), firmware=str(fw))
    assert r.ok, r.error
    assert sorted(r.copied + r.reused) == ["node/msgs.mpy", "runtime/shell.mpy", "version.json"]
    assert r.reused, "the file staged before the kill is reused"
    assert r.hello["fw_minor"] == 1
    assert not (board.folder / ".flash").exists()


@needs_boards
def test_a_commit_cut_midway_is_reported_exactly_and_finished_by_the_next_flash(one_board):
    rig, fw, board = one_board
    change_module(fw, "node/msgs.py")
    change_module(fw, "runtime/shell.py")
    (r,) = flash.flash_rig(rig, version=(1, 1), firmware=str(fw), faults={"solo": "cut-commit:1"})
    assert not r.ok and "board solo" in r.error and "commit cut after 1 of 3 steps" in r.error
    board.power_cut()  # the cut the fault stands for
    board.power_on()
    (c,) = flash.check_rig(rig, version=(1, 1), firmware=str(fw))
    assert c.ok, c.error
    assert c.check["interrupted"]["pending"] == ["runtime/shell.mpy", "version.json"]
    assert c.check["interrupted"]["label"] == "1.1"
    assert "INTERRUPTED commit of 1.1: not in place: runtime/shell.mpy, version.json" in c.summary()
    (r,) = flash.flash_rig(rig, version=(1, 1), firmware=str(fw))
    assert r.ok, r.error
    assert r.copied == [] and sorted(r.reused) == ["runtime/shell.mpy", "version.json"]
    assert r.hello["fw_minor"] == 1
    assert not (board.folder / "flash.todo").exists()


# -- kinds, resets ------------------------------------------------------------------------------


@needs_boards
def test_switching_from_py_to_mpy_removes_the_py_files_that_would_shadow_them(tmp_path, boards_of):
    kind = (REPO / "boards" / "emulated_pico.yaml").read_text()
    (tmp_path / "emulated_py.yaml").write_text(kind.replace("kind: emulated_pico", "kind: emulated_py")
                                               + "mpy: false\n")  # fmt: skip
    fw = snapshot_firmware(tmp_path / "fw")
    py_rig = rig_mod.load(rig_file(tmp_path, [emulated("b", 1).replace("emulated_pico", "emulated_py")], name="rig-py.yaml"))
    (board,) = boards_of(py_rig)
    (r,) = flash.flash_rig(py_rig, firmware=str(fw))
    assert r.ok, r.error
    assert "node/wire.py" in r.copied and (board.folder / "node" / "wire.py").exists()
    board.stop()
    mpy_rig = rig_mod.load(rig_file(tmp_path, [emulated("b", 1, more=", code: files")], name="rig-mpy.yaml"))
    (board,) = boards_of(mpy_rig)
    (r,) = flash.flash_rig(mpy_rig, firmware=str(fw))
    assert r.ok, r.error
    assert "node/wire.py" in r.removed and "runtime/shell.py" in r.removed
    assert sorted(os.listdir(board.folder / "node")) == sorted(
        f[:-3] + ".mpy" for f in os.listdir(fw / "node") if f.endswith(".py"))


@needs_boards
def test_the_romfs_and_files_layouts_replace_each_other(tmp_path, boards_of):
    fw = snapshot_firmware(tmp_path / "fw")
    rig = rig_mod.load(rig_file(tmp_path, [emulated("r", 5)]))
    (board,) = boards_of(rig)
    rom_file = board.folder / flash.EMU_ROM_IMAGE
    (r,) = flash.flash_rig(rig, firmware=str(fw), code="files")
    assert r.ok, r.error
    assert r.code == "files" and r.rom is None and "node/wire.mpy" in r.copied and not rom_file.exists()
    # files -> romfs: the ROM gets the modules, the flash loses them (/rom would shadow them anyway)
    (r,) = flash.flash_rig(rig, firmware=str(fw))
    assert r.ok, r.error
    assert r.code == "romfs" and r.rom == "deployed" and "node/wire.mpy" in r.removed
    assert not (board.folder / "node" / "wire.mpy").exists() and rom_file.read_bytes()[:3] == b"\xd2\xcd\x31"
    # a changed module reaches the board through the ROM only
    change_module(fw, "node/msgs.py")
    (c,) = flash.check_rig(rig, firmware=str(fw))
    assert c.ok and c.check["rom"] == "deploy" and not c.check["up_to_date"]
    (r,) = flash.flash_rig(rig, firmware=str(fw))
    assert r.ok and r.rom == "deployed" and r.copied == [], (r.error, r.copied)
    assert b"_FLASH_TEST_CHANGE" in rom_file.read_bytes()
    # romfs -> files: the ROM image is erased, or its old code would come first on sys.path
    (r,) = flash.flash_rig(rig, firmware=str(fw), code="files")
    assert r.ok and r.rom == "erased" and r.code == "files" and "node/wire.mpy" in r.copied, r.error
    assert rom_file.read_bytes()[:3] == b"\xff\xff\xff" and (board.folder / "node" / "wire.mpy").exists()
    assert hello_after_reset(board, 5)["node"] == 5


@needs_boards
def test_a_board_without_romfs_gets_the_modules_as_files_and_the_flash_says_so(tmp_path):
    from hil.emulated import EmulatedBoard

    rig = rig_mod.load(rig_file(tmp_path, [emulated("plain", 6)]))
    board = EmulatedBoard(tmp_path / "plain", name="plain", romfs=False).start()  # MicroPython without ROMFS
    rig.running["plain"] = board
    try:
        (r,) = flash.flash_rig(rig, firmware=str(snapshot_firmware(tmp_path / "fw")))
        assert r.ok, r.error
        assert r.code == "files" and r.rom is None and "node/wire.mpy" in r.copied
        assert r.note.startswith("board plain (node 6, /dev/pts/") and "no ROMFS in its MicroPython" in r.note
        assert (board.folder / "node" / "wire.mpy").exists() and not (board.folder / flash.EMU_ROM_IMAGE).exists()
        assert r.hello["node"] == 6
    finally:
        board.stop()


@needs_boards
def test_hard_reset_through_mpremote_also_ends_in_hello(tmp_path, boards_of):
    rig = rig_mod.load(rig_file(tmp_path, [emulated("h", 9, more=", reset: hard")]))
    boards_of(rig)
    (r,) = flash.flash_rig(rig, firmware=str(snapshot_firmware(tmp_path / "fw")))
    assert r.ok, r.error
    assert r.hello["node"] == 9


# -- bad input -------------------------------------------------------------------------------------


def closed_tcp_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@needs_boards
def test_an_absent_board_is_named_with_its_port_and_nothing_hangs(tmp_path, monkeypatch):
    from hil import boards

    monkeypatch.setattr(boards, "attached", lambda: [])
    url = "socket://127.0.0.1:%d" % closed_tcp_port()
    rig = rig_mod.load(rig_file(tmp_path, [
        "{name: gone, kind: pico, serial: 'E6614C311B4A2B2F', node_id: 1, cluster: 1}",
        "{name: away, kind: pico, url: '%s', node_id: 2, cluster: 1}" % url,
    ]))  # fmt: skip
    gone, away = flash.flash_rig(rig, call_timeout_s=20)
    assert not gone.ok and "board gone (pico, node 1): USB serial number E6614C311B4A2B2F is not attached" in gone.error
    assert not away.ok and ("board away (node 2, %s)" % url) in away.error


class JunkBoard:
    """A pty whose other end prints junk and never a prompt."""

    def __init__(self) -> None:
        self.master, self.slave = pty.openpty()
        tty.setraw(self.slave)
        self.device = os.ttyname(self.slave)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        junk = bytes(range(32, 127)) + b"\r\n\x00\xff"
        while not self.stop.wait(0.02):
            try:
                os.read(self.master, 4096) if _readable(self.master) else None
                os.write(self.master, junk)
            except OSError:
                return

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        os.close(self.master)
        os.close(self.slave)


def _readable(fd: int) -> bool:
    import select

    return bool(select.select([fd], [], [], 0)[0])


@needs_boards
def test_a_board_that_answers_garbage_fails_naming_the_board_without_hanging(tmp_path):
    junk = JunkBoard()
    try:
        rig = rig_mod.load(rig_file(tmp_path, ["{name: noisy, kind: pico, url: '%s', node_id: 3, cluster: 1}" % junk.device]))
        (r,) = flash.flash_rig(rig, call_timeout_s=4)  # mpremote gets nothing it understands: the timeout ends it
    finally:
        junk.close()
    assert not r.ok
    assert r.error.startswith("board noisy (node 3, %s): mpremote survey" % junk.device), r.error


# -- the command line ------------------------------------------------------------------------------


@needs_boards
def test_hil_flash_starts_idle_emulated_boards_flashes_and_stops_them(tmp_path, capsys):
    rig = rig_file(tmp_path, [emulated("c0", 1), emulated("c1", 2)])
    assert cli.main(["flash", str(rig), "--version", "2.3"]) == 0
    out, err = capsys.readouterr()
    lines = dict(line.split(None, 1) for line in out.splitlines())
    assert lines["c0"].startswith("ok: ") and "HELLO node 1 v2.3" in lines["c0"]
    assert "HELLO node 2 v2.3" in lines["c1"]
    assert "started emulated c0, c1" in err
    assert json.loads((tmp_path / "emulated" / "c1" / "version.json").read_text())["version"] == [2, 3]
    assert not (tmp_path / "emulated" / "c0.tty").exists()  # stopped again
    assert cli.main(["flash", str(rig), "--version", "2.3", "--check"]) == 0
    assert "up to date" in capsys.readouterr().out
    assert cli.main(["flash", str(rig), "--version", "2.3", "--only", "c1", "--code", "files"]) == 0
    assert "; ROM erased; HELLO node 2 v2.3" in capsys.readouterr().out
    assert (tmp_path / "emulated" / "c1" / "node" / "wire.mpy").exists()
    assert cli.main(["flash", str(rig), "--only", "c9"]) == 2
    assert "no board named 'c9'" in capsys.readouterr().err


def test_progress_writes_one_line_per_phase_change_when_not_a_terminal():
    import io

    out = io.StringIO()
    p = flash.Progress(["a", "bb"], out)
    p("a", "stage", "1/3")
    p("a", "stage", "2/3")
    p("bb", "hello")
    p("a", "done", "ok")
    assert out.getvalue().splitlines() == ["a   stage  1/3", "bb  hello", "a   done   ok"]
