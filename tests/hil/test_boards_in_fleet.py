"""Boards inside a simulated fleet (`boards: {cluster: N}`, ground/mixed.py):
3 emulated Picos (the MicroPython unix port behind ptys, the real
firmware/main.py) are one cluster of a 100-node fleet whose other 97 nodes
run in-process, in real time at time_scale 2, one router and one trace.
About 20 s of wall time (15 s of it the run: 30 mission s at 2x; the
boards elect within 3 mission s, the market's first round reaches them at
4 s and a round comes every 12 s, so 30 s holds three). Scale 2
leaves the calibration's guard (ground/mixed.py: half the in-process pace,
about 12x here unloaded) room for a host loaded several times over."""

import json
import os
from collections import Counter
from pathlib import Path

import pytest

from ground import cli, scenario, trace
from ground import mixed
from tests.ground.test_mixed import board_cluster, elector_cluster, fleet_text

HAVE_BOARDS = (Path(os.sys.executable).parent / "micropython").exists()
pytestmark = pytest.mark.skipif(not HAVE_BOARDS, reason="needs the MicroPython unix port in .venv (make venv)")


def test_three_emulated_boards_are_one_cluster_of_a_100_node_simulated_fleet(tmp_path, capsys):
    c = board_cluster(scenario.load_text(fleet_text(1), "fleet.yaml"), sizes=(3,))
    p = tmp_path / "fleet.yaml"
    p.write_text(fleet_text(c, scale=2).replace("duration_s: 60", "duration_s: 30"))
    out = tmp_path / "run"
    code = cli.main(["run", str(p), "--emulated", "3", "--out", str(out), "--no-plot", "-q"])
    text = capsys.readouterr().out
    assert code == 0, text

    header, events, torn = trace.read(str(out / "trace.jsonl"))
    assert not torn and header["mode"] == "emulated" and events[-1]["status"] == "ok"
    boards = {int(n) for n, v in header["nodes"].items() if v["link"] != "sim"}
    sc = scenario.load(str(p))
    assert boards == set(sc.clusters[c]) and len(header["nodes"]) == 100  # the rest in-process

    sent = {e["id"]: e for e in events if e["kind"] == "frame" and e["fate"] == "sent"}
    crossed = Counter()  # (type, from a board, to a board) of each delivery between nodes
    for e in events:
        if e["kind"] == "frame" and e["fate"] == "delivered" and e.get("to"):
            s = sent[e["id"]]
            crossed[(s["type"], s["src"] in boards, e["to"] in boards)] += 1
    # The boards elected a coordinator among themselves, over the router...
    assert crossed[("coordinator", True, True)] >= 1
    assert {e["src"] for e in sent.values() if e["type"] == "heartbeat"} >= boards
    # ... heard the region's market (its electors are in-process nodes) and bid in it
    assert crossed[("prices", False, True)] >= 3
    assert crossed[("bid", True, False)] >= 3
    # ... while the in-process clusters ran their own elections
    assert crossed[("coordinator", False, False)] >= len(sc.clusters) - 1

    m = json.loads((out / "metrics.json").read_text())
    rt = m["realtime"]
    assert rt["time_scale"] == 2 and rt["lateness"]["n"] > 1000
    assert 0 <= rt["lateness"]["p50_ms"] <= rt["lateness"]["p99_ms"] <= rt["lateness"]["max_ms"]
    assert "real time scale 2x: timers late p50" in (out / "metrics.txt").read_text()  # the terminal table
    prom = (out / "metrics.prom").read_text()
    assert [x for x in prom.splitlines() if x.startswith("fleetloop_realtime_lateness_seconds{quantile=\"0.99\"")]
    cal = json.loads((out / "calibration.json").read_text())
    assert cal["board_nodes"] == sorted(boards) and cal["max_time_scale"] >= 2


def test_a_rig_files_emulated_boards_are_the_cluster_too(tmp_path, capsys):
    """--rig: the rig's boards are the cluster's nodes, flashed with the
    .mpy image (the sources' market tier does not compile in 192K). 20
    mission s at 2x (the market's first round reaches the boards at about
    4 s and they bid at once, the second at 16 s): about 12 s of wall time."""
    sc = scenario.load_text(fleet_text(1), "fleet.yaml")
    c = board_cluster(sc, sizes=(3,))
    p = tmp_path / "fleet.yaml"
    p.write_text(fleet_text(c, scale=2).replace("duration_s: 60", "duration_s: 20"))
    rig = tmp_path / "rig.yaml"
    rig.write_text("rig: mixed\nboards:\n" + "".join(
        "  - {name: e%d, kind: emulated_pico, emulated: true, node_id: %d, cluster: %d}\n" % (n, n, c)
        for n in sc.clusters[c]))
    out = tmp_path / "run"
    code = cli.main(["run", str(p), "--rig", str(rig), "--out", str(out), "--no-plot", "-q"])
    assert code == 0, capsys.readouterr().out
    header, events, _ = trace.read(str(out / "trace.jsonl"))
    assert header["mode"] == "rig"
    boards = {int(n) for n, v in header["nodes"].items() if v["link"] != "sim"}
    assert boards == set(sc.clusters[c])
    sent = {e["id"]: e for e in events if e["kind"] == "frame" and e["fate"] == "sent"}
    heard = {sent[e["id"]]["type"] for e in events
             if e["kind"] == "frame" and e["fate"] == "delivered" and e.get("to") in boards}
    assert "prices" in heard and {e["src"] for e in sent.values() if e["type"] == "bid"} & boards
    rom = out / "boards" / "emulated" / ("e%d" % min(boards)) / "rom" / "romfs.img"  # the ROMFS layout (docs/HEAP.md)
    assert b"trader.mpy" in rom.read_bytes()  # the compiled market tier, not sources


def test_an_elector_board_takes_part_in_the_regions_market(tmp_path, capsys):
    """3 emulated Picos are a cluster holding one of the region's 3 elector
    seats in a fleet of ELECTOR_BOARD_MAX_NODES (46) nodes, 40 mission s in
    real time (1x: at 2x, on a loaded 2-core host, the region's first round
    sometimes did not complete within the run: market_rounds_complete 0): the
    board elector's market frames (ROUND_ACK as standby, or PRICES and AWARDs
    as the region's coordinator) cross the router to in-process nodes, and
    the in-process electors' come back. About 50 s of wall time."""
    n = mixed.ELECTOR_BOARD_MAX_NODES
    size = lambda text: text.replace("nodes: 100", "nodes: %d" % n).replace("duration_s: 60", "duration_s: 40")
    c = elector_cluster(scenario.load_text(size(fleet_text(1)), "fleet.yaml"))
    p = tmp_path / "fleet.yaml"
    p.write_text(size(fleet_text(c, scale=1)))
    sc = scenario.load(str(p))
    out = tmp_path / "run"
    code = cli.main(["run", str(p), "--emulated", str(len(sc.clusters[c])), "--out", str(out), "--no-plot", "-q"])
    assert code == 0, capsys.readouterr().out

    header, events, torn = trace.read(str(out / "trace.jsonl"))
    assert not torn and events[-1]["status"] == "ok"
    boards = {int(x) for x, v in header["nodes"].items() if v["link"] != "sim"}
    seats = boards & set(sc.regions[0].electors)
    assert boards == set(sc.clusters[c]) and len(seats) == 1 and len(header["nodes"]) == n
    assert json.loads((out / "calibration.json").read_text())["board_electors"] == sorted(seats)
    assert not [e for e in events if e.get("event") == "silent"]  # no board ran out of heap and fell quiet

    sent = {e["id"]: e for e in events if e["kind"] == "frame" and e["fate"] == "sent"}
    crossed = Counter()  # (type, from the board elector, to an in-process node)
    for e in events:
        if e["kind"] == "frame" and e["fate"] == "delivered" and e.get("to"):
            s = sent[e["id"]]
            if s["src"] in seats and e["to"] not in boards:
                crossed[(s["type"], "board->sim")] += 1
            elif e["to"] in seats and s["src"] not in boards:
                crossed[(s["type"], "sim->board")] += 1
    standby = crossed[("round_ack", "board->sim")] >= 1 and crossed[("award", "sim->board")] >= 1
    coordinator = (crossed[("prices", "board->sim")] >= 1 and crossed[("award", "board->sim")] >= 1
                   and crossed[("round_ack", "sim->board")] >= 1 and crossed[("bid", "sim->board")] >= 1)
    assert standby or coordinator, sorted(crossed.items())
    m = json.loads((out / "metrics.json").read_text())
    assert m["flat"]["market_rounds_complete"] >= 2
