"""`ground run SCENARIO --emulated --transport udp`: emulated Picos (the
MicroPython unix port running the real firmware) on transport udp without a
rig file, from the command line; and the switch refused where it means
nothing."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ground import trace

REPO = Path(__file__).resolve().parents[2]
HAVE_BOARDS = (Path(sys.executable).parent / "micropython").exists()
needs_boards = pytest.mark.skipif(not HAVE_BOARDS, reason="needs the MicroPython unix port in .venv (make venv)")

SC = """\
name: udp-cli
seed: 5
duration_s: 20
time_scale: 10
election_timeout_ms: 2000
clusters:
  - {id: 1, nodes: [1, 2, 3]}
links:
  intra_cluster: {delay_ms: 100}
faults:
  - {at_s: 10, crash: coordinator, cluster: 1}
gates:
  split_brain: {max: 0}
"""


def _ground(*args):
    return subprocess.run([sys.executable, "-m", "ground", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)  # fmt: skip


@needs_boards
@pytest.mark.timeout(280)
def test_ground_run_emulated_over_udp_from_the_command_line(tmp_path):
    sc = tmp_path / "udp-cli.yaml"
    sc.write_text(SC)
    out = tmp_path / "run"
    r = _ground("run", str(sc), "--emulated", "3", "--transport", "udp", "--out", str(out), "--no-plot", "-q")
    assert r.returncode == 0, r.stdout + r.stderr
    header, events, torn = trace.read(str(out / "trace.jsonl"))
    assert not torn and events[-1]["status"] == "ok"
    assert header["mode"] == "emulated"
    # Every node's link is its UDP address, learnt from its HELLO: not a pty.
    links = {n: header["nodes"][str(n)]["link"] for n in (1, 2, 3)}
    assert all(link.startswith("udp://127.0.0.1:") for link in links.values()), links
    assert len(set(links.values())) == 3
    for n in (1, 2, 3):
        cfg = json.loads((out / "boards" / ("node%d" % n) / "board.json").read_text())
        assert cfg["transport"] == "udp" and cfg["ground"].startswith("127.0.0.1:"), cfg
    assert {e["node"] for e in events if e["kind"] == "node" and e["event"] == "hello"} == {1, 2, 3}


@needs_boards
@pytest.mark.timeout(280)
def test_transport_usb_is_the_serial_path(tmp_path):
    sc = tmp_path / "udp-cli.yaml"
    sc.write_text(SC.replace("duration_s: 20", "duration_s: 6").replace("faults:\n  - {at_s: 10, crash: coordinator,"
                                                                        " cluster: 1}\n", ""))
    out = tmp_path / "run"
    r = _ground("run", str(sc), "--emulated", "--transport", "usb", "--out", str(out), "--no-plot", "-q")
    assert r.returncode == 0, r.stdout + r.stderr
    header, _, _ = trace.read(str(out / "trace.jsonl"))
    assert not any(header["nodes"][str(n)]["link"].startswith("udp://") for n in (1, 2, 3)), header["nodes"]


@pytest.mark.parametrize("extra", [[], ["--sim"], ["--rig", "boards/rig-emulated-8-udp.yaml"]])
def test_transport_without_emulated_is_bad_input(tmp_path, extra):
    sc = tmp_path / "udp-cli.yaml"
    sc.write_text(SC)
    r = _ground("run", str(sc), *extra, "--transport", "udp", "--out", str(tmp_path / "run"))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "--transport udp: only with --emulated" in r.stderr
    assert not os.path.exists(tmp_path / "run")  # nothing started, nothing written


def test_an_unknown_transport_is_refused_by_the_parser(tmp_path):
    r = _ground("run", "x.yaml", "--emulated", "--transport", "lora")
    assert r.returncode == 2 and "invalid choice: 'lora'" in r.stderr
