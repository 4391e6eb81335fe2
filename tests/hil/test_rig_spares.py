"""Spare boards named by a rig file, and spares over UDP (docs/BOARDS.md "Spare
boards", docs/CONTAINMENT.md "Daughters on boards"; hil/rig_spares.py).

The runs use scenarios/replication-boards.yaml with its auction slot halved
and 20 mission s (each parent completes a daughter at about 12 s): three
nodes on three emulated boards, one spare. Each run is about 21 s of wall
time; the spare must boot as the first daughter, say HELLO and JOIN from
that board, be admitted by a coordinator's ROSTER and heartbeat in the
cluster; the other two daughters find no spare left (daughter_lost,
no_spare_board). The spare behind a power switch (a `url:` entry, its power
through labgrid's NetworkPowerDriver and the emulated boards' switch) takes
about 5 s; the refusals need no boards."""

import json
import os
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ground import cli, trace
from ground.yamlfile import ConfigError
from hil import rigfile

ROOT = Path(__file__).resolve().parents[2]
HAVE_BOARDS = (Path(sys.executable).parent / "micropython").exists()
needs_boards = pytest.mark.skipif(not HAVE_BOARDS, reason="needs the MicroPython unix port in .venv (make venv)")

NODES = """\
  - {name: pico0, kind: emulated_pico, emulated: true, node_id: 1, cluster: 1, lineage: 0}
  - {name: pico1, kind: emulated_pico, emulated: true, node_id: 2, cluster: 1, lineage: 1}
  - {name: pico2, kind: emulated_pico, emulated: true, node_id: 3, cluster: 1, lineage: 2}
"""


def _rig(tmp_path, spares, head="", nodes=NODES):
    path = tmp_path / "rig-spares.yaml"
    path.write_text("rig: spares\n" + head + "boards:\n" + nodes + spares)
    return str(path)


def _scenario(tmp_path):
    """replication-boards.yaml, its daughters twice as soon (slot 1.2 s), 20 mission s."""
    text = (ROOT / "scenarios" / "replication-boards.yaml").read_text()
    assert "slot_ms: 2400 " in text and "\nduration_s: 40\n" in text
    path = tmp_path / "replication-short.yaml"
    path.write_text(text.replace("slot_ms: 2400 ", "slot_ms: 1200 ").replace("\nduration_s: 40\n", "\nduration_s: 20\n"))
    return str(path)


# ---- the rig file: spare entries and their refusals (no boards) ---------------------------------


def test_spare_entries_are_kept_apart_from_the_rigs_nodes(tmp_path):
    rig = rigfile.load(_rig(tmp_path, "  - {name: spare0, kind: emulated_pico, emulated: true, spare: true}\n"
                                      "  - {name: spare1, kind: pico, url: /dev/null, spare: true,"
                                      " config: {transport: udp}}\n"))
    assert [b.name for b in rig.boards] == ["pico0", "pico1", "pico2"]
    assert [(s.name, s.spare, s.node_id, s.role) for s in rig.spares] == [("spare0", True, 0, "spare"),
                                                                        ("spare1", True, 0, "spare")]
    assert all(b.members == (1, 2, 3) and not b.spare for b in rig.boards)  # a spare is in no cluster's roster
    assert rig.by_node(0) is None and rig.spares[1].where.endswith(":7")
    # A spare on a labgrid place is acquired with the rig's other places.
    from hil.labgrid_places import Places

    placed = rigfile.load(_rig(tmp_path, "  - {name: spare9, kind: pico, place: pico-9, coordinator: 'h:1',"
                                         " spare: true}\n"))
    assert [b.name for b in Places(placed).boards] == ["spare9"]


@pytest.mark.parametrize("entry, line, text", [
    ("{name: s, kind: emulated_pico, emulated: true, spare: true, node_id: 4}", 6,
     "board s: a spare board has no node_id: the daughter it takes brings its id, cluster, lineage and firmware"),
    ("{name: s, kind: emulated_pico, emulated: true, spare: true, cluster: 1}", 6, "a spare board has no cluster"),
    ("{name: s, kind: emulated_pico, emulated: true, spare: true, lineage: 2}", 6, "a spare board has no lineage"),
    ("{name: s, kind: emulated_pico, emulated: true, spare: yes please}", 6,
     "board s.spare: expected true or false, got 'yes please'"),
    ("{name: s, kind: emulated_pico, emulated: true, spare: true, config: {transport: radio}}", 6,
     "board s: the board would refuse its board.json"),
    ("{name: s, kind: emulated_pico, spare: true}", 6, "give exactly one of serial, url, emulated: true, place (got none)"),
])  # fmt: skip
def test_a_bad_spare_entry_is_refused_naming_its_line(tmp_path, entry, line, text):
    path = _rig(tmp_path, "  - %s\n" % entry)
    with pytest.raises(ConfigError) as e:
        rigfile.load(path)
    assert str(e.value).startswith("%s:%d: " % (path, line)) and text in str(e.value), str(e.value)


def test_ground_run_refuses_a_bad_spare_entry_before_any_board_starts(tmp_path, capsys):
    rig = _rig(tmp_path, "  - {name: spare0, kind: emulated_pico, emulated: true, spare: true, node_id: 4}\n")
    out = tmp_path / "run"
    assert cli.main(["run", _scenario(tmp_path), "--rig", rig, "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "%s:6: board spare0: a spare board has no node_id" % rig in err, err
    assert not (out / "boards").exists()  # refused at load: no board was flashed or started


def test_a_rig_of_spares_only_is_refused(tmp_path):
    path = _rig(tmp_path, "", nodes="  - {name: s, kind: emulated_pico, emulated: true, spare: true}\n")
    with pytest.raises(ConfigError, match=r"rig-spares.yaml:\d+: rig.boards: every board is a spare"):
        rigfile.load(path)


def test_a_spares_board_json_is_its_entrys_with_the_daughters_on_top(tmp_path):
    from hil.rig_spares import RigSpares

    rig = rigfile.load(_rig(tmp_path, "  - {name: s, kind: emulated_pico, emulated: true, spare: true,"
                                      " config: {transport: udp, watchdog_ms: 5000, heartbeat_ms: 300}}\n",
                            head="config: {election_timeout_ms: 2500}\n"))
    daughter = {"node_id": 4, "cluster": 1, "members": [1, 2, 3, 4], "lineage": 2, "hw_gen": 3,
                "election_timeout_ms": 1000, "watchdog_ms": 0, "replication": {"parent": 3}}
    cfg = RigSpares(rig, None, str(tmp_path), {}).board_json(rig.spares[0], daughter)
    assert cfg["node_id"] == 4 and cfg["members"] == [1, 2, 3, 4] and cfg["lineage"] == 2 and cfg["hw_gen"] == 3
    assert cfg["replication"] == {"parent": 3} and cfg["election_timeout_ms"] == 1000  # the scenario's, over the rig's
    assert cfg["transport"] == "udp" and cfg["watchdog_ms"] == 5000 and cfg["heartbeat_ms"] == 300  # the rig's


# ---- daughters on a rig's spare boards ---------------------------------------------------------------


def _daughter_ran_on(out, board):
    """The first daughter ran on spare `board`, the two later ones were not placed; its id."""
    header, events, torn = trace.read(str(out / "trace.jsonl"))
    assert not torn
    node = [e for e in events if e.get("kind") == "node"]
    added = [e for e in node if e["event"] == "node_added"]
    assert len(added) == 1, added
    nid, parent = added[0]["node"], added[0]["parent"]
    assert nid not in (1, 2, 3) and parent in (1, 2, 3)
    assert [(e["node"], e["board"]) for e in node if e["event"] == "board_added"] == [(nid, board)]

    def sent(**want):
        return [e for e in events if e.get("kind") == "frame" and e.get("fate") == "sent"
                and all(e.get(k) == v for k, v in want.items())]

    hellos, joins = sent(src=nid, type="hello"), sent(src=nid, type="join")
    assert hellos and joins and joins[0]["msg"]["parent"] == parent, "node %d sent no HELLO/JOIN" % nid
    assert min(e["mission_ns"] for e in hellos + joins) >= added[0]["mission_ns"]
    rosters = [e for e in sent(type="roster") if e["msg"]["node"] == nid]
    assert rosters and rosters[0]["src"] in (1, 2, 3) and rosters[0]["mission_ns"] > joins[0]["mission_ns"]
    assert sent(src=nid, type="heartbeat"), "node %d never took part in its cluster" % nid
    # The other parents' daughters, if they completed within the run (how many do depends on the
    # market's rounds, which a loaded host slows), found no spare left: recorded lost, not placed.
    lost = [e for e in node if e["event"] == "daughter_lost"]
    assert {e["node"] for e in lost} <= {1, 2, 3} - {parent} and len(lost) == len({e["node"] for e in lost})
    assert all(e["reason"] == "no_spare_board" for e in lost)
    return nid


@needs_boards
@pytest.mark.timeout(300)
@pytest.mark.parametrize("transport", ["usb", "udp"])
def test_a_daughter_boots_on_the_rig_files_spare_board(tmp_path, capsys, transport):
    head = "config: {transport: udp}\n" if transport == "udp" else ""
    rig = _rig(tmp_path, "  - {name: spare0, kind: emulated_pico, emulated: true, spare: true}\n", head=head)
    out = tmp_path / "run"
    code = cli.main(["run", _scenario(tmp_path), "--rig", rig, "--out", str(out), "--quiet", "--no-plot"])
    assert code == 0, capsys.readouterr().out
    nid = _daughter_ran_on(out, "spare0")
    cfg = json.loads((out / "boards" / "emulated" / "spare0" / "board.json").read_text())
    assert cfg["node_id"] == nid and cfg["transport"] == transport and nid in cfg["members"]
    if transport == "udp":  # its own hub on loopback, not the run's (which the other boards send to)
        ports = {json.loads((out / "boards" / "emulated" / b / "board.json").read_text())["ground"]
                 for b in ("pico0", "pico1", "pico2")}
        assert len(ports) == 1 and cfg["ground"].startswith("127.0.0.1:") and cfg["ground"] not in ports


@needs_boards
@pytest.mark.timeout(300)
def test_emulated_udp_boards_get_spares_too(tmp_path, capsys):
    out = tmp_path / "run"
    code = cli.main(["run", _scenario(tmp_path), "--emulated", "4", "--transport", "udp", "--out", str(out),
                     "--quiet", "--no-plot"])
    assert code == 0, capsys.readouterr().out
    nid = _daughter_ran_on(out, "spare1")
    cfg = json.loads((out / "boards" / "spare1" / "board.json").read_text())
    assert cfg["node_id"] == nid and cfg["transport"] == "udp"


# ---- a spare behind a power switch (the path of a USB, URL or labgrid place entry) -----------------


@needs_boards
@pytest.mark.timeout(120)
def test_a_spare_behind_a_power_switch_stays_off_until_a_daughter_switches_it_on(tmp_path):
    """A `url:` spare (an emulated board's pty, as a real board's port) whose
    power is labgrid's NetworkPowerDriver on the emulated boards' switch:
    switched off before the run, on for the daughter, its board.json written
    over its REPL with mpremote, its HELLO as the daughter, off after."""
    pytest.importorskip("labgrid")
    from hil import flash
    from hil.emulated import EmulatedBoard
    from hil.labgrid_power import EmulatedPdu, PlacePower
    from hil.rig_spares import RigSpares

    flash.write_image(str(tmp_path / "b"), board_config={"node_id": 9, "cluster": 1, "members": [9], "watchdog_ms": 0})
    b = EmulatedBoard(tmp_path / "b", name="b").start()
    pdu = EmulatedPdu({1: b}).start()
    spares = None
    try:
        rig = rigfile.load(_rig(tmp_path, "  - {name: s, kind: pico, url: '%s', spare: true}\n" % b.device))
        power = PlacePower("pico-s", {"model": "simplerest", "host": pdu.url, "index": "1"})
        spares = RigSpares(rig, None, str(tmp_path / "run"), {"s": power})
        spares.power_off()
        assert b.state == "off" and pdu.switched == [(1, "off")]
        daughter = {"node_id": 4, "cluster": 1, "members": [1, 2, 3, 4], "lineage": 2, "hw_gen": 3,
                    "watchdog_ms": 0, "election_timeout_ms": 1000}
        board = spares.power_on(4, daughter, (1, 0), "1.0")
        assert pdu.switched == [(1, "off"), (1, "on")] and board.name == "s" and board.power is power
        port, _, seen = board.open_port
        assert len(seen) == 1 and b"\x00" not in seen[0]  # its HELLO to the ground, as node 4 (keep_boot_hello_only)
        from ground import firmware

        f = firmware.wire.decode(seen[0])
        assert (f.src, f.type) == (4, firmware.msgs.HELLO)
        on_board = json.loads((tmp_path / "b" / "board.json").read_text())
        assert on_board["node_id"] == 4 and on_board["lineage"] == 2 and on_board["transport"] == "usb"
        assert json.loads((tmp_path / "b" / "version.json").read_text()) == {"version": [1, 0], "label": "1.0"}
        assert spares.power_on(5, dict(daughter, node_id=5), (1, 0), "1.0") is None  # no spare left
        spares.stop()
        deadline = time.monotonic() + 10
        while b.state != "off" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert b.state == "off" and pdu.switched[-1] == (1, "off")
    finally:
        if spares is not None:
            spares.stop()
        pdu.stop()
        b.stop()
