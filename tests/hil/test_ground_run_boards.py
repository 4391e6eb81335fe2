"""`ground run --emulated` and `ground run --rig FILE` through the engine's
board back-ends (ground/backends.py -> hil/rig.py), on emulated Picos (the
MicroPython unix port behind ptys, the real firmware/main.py)."""

import os
from pathlib import Path

import pytest

from ground import backends, cli, trace

HAVE_BOARDS = (Path(os.sys.executable).parent / "micropython").exists()
pytestmark = pytest.mark.skipif(not HAVE_BOARDS, reason="needs the MicroPython unix port in .venv (make venv)")

SC = """\
name: cli-boards
seed: 4
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


def _scenario(tmp_path):
    p = tmp_path / "cli-boards.yaml"
    p.write_text(SC)
    return str(p)


def test_the_emulated_and_rig_back_ends_are_found_without_the_engine_naming_hil():
    assert {"emulated", "rig"} <= set(backends.names())
    assert backends.get("emulated").__module__ == "hil.rig" and backends.get("rig").__module__ == "hil.rig"


def test_ground_run_emulated_boots_one_board_per_node_and_stops_them(tmp_path, capsys):
    out = tmp_path / "run"
    code = cli.main(["run", _scenario(tmp_path), "--emulated", "3", "--out", str(out), "--quiet"])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "PASS: cli-boards" in text
    header, events, torn = trace.read(str(out / "trace.jsonl"))
    assert header["mode"] == "emulated" and not torn
    assert {e["node"] for e in events if e["kind"] == "node" and e["event"] == "hello"} == {1, 2, 3}
    assert events[-1]["status"] == "ok"
    # The boards were stopped: no board's pty link is left behind.
    assert not [p for p in (out / "boards").iterdir() if p.name.endswith(".tty")]


def test_ground_run_emulated_with_the_wrong_count_is_bad_input(tmp_path, capsys):
    code = cli.main(["run", _scenario(tmp_path), "--emulated", "5", "--out", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "--emulated 5, but the scenario has 3 nodes" in err and "cli-boards.yaml" in err


def test_ground_run_rig_configures_and_boots_the_rig_file_boards(tmp_path, capsys):
    rig = tmp_path / "rig-three.yaml"
    rig.write_text("rig: three\nboards:\n" + "".join(
        "  - {name: e%d, kind: emulated_pico, emulated: true, node_id: %d, cluster: 1}\n" % (n, n) for n in (1, 2, 3)))
    out = tmp_path / "run"
    code = cli.main(["run", _scenario(tmp_path), "--rig", str(rig), "--out", str(out), "--quiet"])
    text = capsys.readouterr().out
    assert code == 0, text
    header, events, _ = trace.read(str(out / "trace.jsonl"))
    assert header["mode"] == "rig"
    assert {e["node"] for e in events if e["kind"] == "node" and e["event"] == "hello"} == {1, 2, 3}
    # The scenario's timers went into each board's flash (its board.json), the rig's identity stayed.
    import json

    cfg = json.loads((out / "boards" / "emulated" / "e2" / "board.json").read_text())
    assert cfg["node_id"] == 2 and cfg["election_timeout_ms"] == 2000 and cfg["time_scale_milli"] == 10000


def test_ground_run_rig_without_a_board_for_a_node_names_it(tmp_path, capsys):
    rig = tmp_path / "rig-two.yaml"
    rig.write_text("rig: two\nboards:\n" + "".join(
        "  - {name: e%d, kind: emulated_pico, emulated: true, node_id: %d, cluster: 1}\n" % (n, n) for n in (1, 2)))
    code = cli.main(["run", _scenario(tmp_path), "--rig", str(rig), "--out", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "node 3 has no board in rig" in err and "rig-two.yaml" in err
