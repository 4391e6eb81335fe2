"""A staged rollout on emulated Picos (scenarios/rollout-boards.yaml through
`ground run --emulated`): the orchestrator (ground/rollout_run.py) sends
UPD_* frames through the router over each board's pty, the boards stage the
image, unpack it into a slot, soft-reset into it as a trial and confirm it,
or crash and are reverted by boot. Judged from what the nodes themselves
said (their HELLOs and UPD_ACKs in the trace), not from the orchestrator's
rollout events, and from each board's flash: the images are the compiled
firmware (hil/update_image.py, built by the board back-end), so after the
run each board's boot pointer names a confirmed slot that holds the good
build's modules, each file with its sha256. The run is the scenario with
90 s validation windows instead of 120 s and 330 mission s instead of 480
(_scenario below): about 85 s of wall time instead of 125 s, for the same
story (a step advances when its window has passed and it is deployed,
whichever is later; the bad build is reverted about 60 mission s into its
step, inside the 90 s window, and rolled back about 45 mission s before the
end: at 285 s in a run on the shared 2-core machine, every board's last
HELLO by then; the run was 360 s, 75 of them after the rollback)."""

import hashlib
import json
import os
from pathlib import Path

import pytest

from ground import cli, flim, scenario, trace
from ground import protocol as P
from hil import update_image

HAVE_BOARDS = (Path(os.sys.executable).parent / "micropython").exists()
pytestmark = [pytest.mark.skipif(not HAVE_BOARDS, reason="needs the MicroPython unix port in .venv (make venv)"),
              pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
GOOD, BAD = (1, 1), (1, 2)


def _versions_said(events):
    """[(mission_ns, node, (major, minor))] from each node's HELLOs and UPD_ACKs, in order."""
    out = []
    for e in events:
        if e.get("kind") == "frame" and e.get("fate") == "sent" and e.get("type") in ("hello", "upd_ack"):
            m = e.get("msg") or {}
            if e["type"] == "upd_ack":  # the trace keeps its bytes: decode them as the ground does
                m = P.parse_line(bytes.fromhex(e["hex"])).msg
            if "fw_major" in m:
                out.append((e["mission_ns"], e["src"], (m["fw_major"], m["fw_minor"])))
    return out


def _pointer(board_dir):
    """state/boot.ptr: JSON, a newline, its crc32 (firmware/runtime/slots.py)."""
    text = (board_dir / "state" / "boot.ptr").read_text()
    return json.loads(text[: text.rfind("\n")])


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _scenario(tmp_path):
    """scenarios/rollout-boards.yaml with 90 s windows and 330 mission s. On
    boards a step of two nodes deploys in about 73 mission s (each node ~21 s
    of transfer, then its 20 s confirmation), so the good build's two steps
    end when deployed or at 90 s, and the bad build's canary step (start
    ~220 s) has its trial reverted ~60 s in, inside its window (an analysis
    every 90/7 s): aborted and rolled back by ~300 s. A run cut too short
    fails the test below (a board whose last word is not 1.1, no abort), it
    does not pass it."""
    text = (ROOT / "scenarios" / "rollout-boards.yaml").read_text()
    assert "\nduration_s: 480\n" in text and "\n  window_s: 120\n" in text
    path = tmp_path / "rollout-boards-short.yaml"
    path.write_text(text.replace("\nduration_s: 480\n", "\nduration_s: 330\n").replace("\n  window_s: 120\n",
                                                                                          "\n  window_s: 90\n"))
    return path


def test_a_good_build_reaches_every_board_and_a_bad_one_is_rolled_back_where_it_ran(tmp_path, capsys):
    out = tmp_path / "run"
    path = _scenario(tmp_path)
    code = cli.main(["run", str(path), "--emulated", "6", "--out", str(out), "--quiet"])
    text = capsys.readouterr().out
    assert code == 0, text
    header, events, torn = trace.read(str(out / "trace.jsonl"))
    assert header["mode"] == "emulated" and not torn
    said = _versions_said(events)
    nodes = {1, 2, 3, 4, 5, 6}
    # The good build reached every board: each said so itself.
    assert {n for _, n, v in said if v == GOOD} == nodes
    # The bad build ran somewhere (its canary cluster), not everywhere ...
    ran_bad = {n for _, n, v in said if v == BAD}
    assert ran_bad and ran_bad < nodes
    clusters = {1: {1, 2}, 2: {3, 4}, 3: {5, 6}}
    assert any(ran_bad <= c for c in clusters.values()), ran_bad  # one cluster: the canary
    # ... and every board that ran it said the good version again afterwards, last.
    for n in ran_bad:
        last_bad = max(t for t, m, v in said if m == n and v == BAD)
        after = [v for t, m, v in said if m == n and t > last_bad]
        assert after and after[-1] == GOOD, (n, after[-3:])
    # Each board's last word is the good build.
    for n in nodes:
        assert [v for _, m, v in said if m == n][-1] == GOOD, n
    # The boards' soft reboots (install, revert, rollback) are reboots, not protocol errors.
    assert not [e for e in events if e.get("kind") == "node" and e.get("event") == "bad_frame"]
    assert [e for e in events if e.get("kind") == "node" and e.get("event") == "rebooted"]

    # The boards got the compiled firmware, not a version.json-only image: the
    # image the run sent is byte for byte the one `hil image build` makes.
    key = scenario.load(str(path)).auth_key
    good = update_image.build(GOOD, key)
    manifest = flim.read(good, key)
    assert len(manifest["files"]) > 20 and any(f[0].endswith(".mpy") for f in manifest["files"])
    starts = {e["image"]: e for e in events if e.get("kind") == "rollout" and e.get("event") == "start"}
    assert starts["1.1"]["board_image_sha256"] == hashlib.sha256(good).hexdigest()
    assert starts["1.2"]["board_image_bytes"] > 100_000
    # Each board now runs from a slot holding that image's files (boot.py
    # puts the pointer's slot first on sys.path), each with its sha256: the
    # slot it confirmed, or the one a reverted trial of the bad build fell back to.
    for n in sorted(nodes):
        board = out / "boards" / ("node%d" % n)
        p = _pointer(board)
        assert p["state"] in ("confirmed", "reverted") and p["slot"] in ("a", "b"), (n, p)
        slot = board / "slots" / p["slot"]
        assert (slot / "ok").exists(), n
        for name, size, sha in manifest["files"]:
            assert (slot / name).stat().st_size == size and _sha(slot / name) == sha, (n, name)
        assert json.loads((slot / "version.json").read_text())["version"] == list(GOOD), n
        assert json.loads((slot / "manifest.json").read_text())["digest"] == manifest["digest"], n
