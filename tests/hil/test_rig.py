"""Board kinds and rigs (hil/boards.py, hil/rig.py): plain data loaded from
YAML, every mistake named by file:line, boards found by USB serial number.

No test here needs a real Pico: the USB port list is passed in (or
monkeypatched) where a test needs one, and emulated boards stand in for the
rest. Every emulated board is stopped by its fixture, pass or fail.
"""

from __future__ import annotations

import re
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from ground import scenario as scenario_mod
from ground.yamlfile import ConfigError
from hil import boards, cli
from hil import rig as rig_mod

REPO = Path(__file__).resolve().parents[2]
RIG8 = REPO / "boards" / "rig-emulated-8.yaml"
PICOS = REPO / "boards" / "rig-example-picos.yaml"
MICROPYTHON = Path(sys.executable).with_name("micropython")

pytestmark = pytest.mark.timeout(120)


def write(tmp_path: Path, text: str, name: str = "rig-test.yaml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def port(device: str, serial_number: str) -> boards.Port:
    return boards.Port(device, serial_number, 0x2E8A, 0x0005, "Board in FS mode")


# -- board kinds -------------------------------------------------------------------


def test_every_shipped_kind_loads_as_plain_data():
    kinds = boards.kinds()
    assert set(kinds) == {"pico", "pico_w", "pico2", "emulated_pico"}
    pico = kinds["pico"]
    assert pico.mpy_march == "armv6m" and pico.heap_bytes == 192 * 1024 and pico.transport == "usb"
    assert (pico.usb_vid, pico.usb_pid) == (0x2E8A, 0x0005)
    assert "radio" in kinds["pico_w"].features and "radio" not in pico.features
    assert kinds["pico2"].mpy_march == "armv7emsp"
    assert kinds["emulated_pico"].emulated and "power_control" in kinds["emulated_pico"].features
    with pytest.raises(Exception):
        pico.heap_bytes = 1  # frozen: resources are data, not state


def test_kind_file_with_unknown_key_names_file_and_line(tmp_path):
    p = write(tmp_path, """\
        kind: mypico
        mcu: rp2040
        heap_bytes: 196608
        transport: usb
        reset: soft
        led_pinn: 25
        """, "mypico.yaml")  # fmt: skip
    with pytest.raises(ConfigError, match=r"mypico\.yaml:6: .*unknown key 'led_pinn'"):
        boards.load_kind(str(p))


def test_kind_file_with_unknown_feature_or_march_names_the_line(tmp_path):
    base = "kind: k\nmcu: rp2040\nheap_bytes: 196608\ntransport: usb\nreset: soft\n"
    (tmp_path / "k.yaml").write_text(base + "features: [radio, teleport]\n")
    with pytest.raises(ConfigError, match=r"k\.yaml:6: .*unknown feature 'teleport'"):
        boards.load_kind(str(tmp_path / "k.yaml"))
    (tmp_path / "k.yaml").write_text(base + "mpy_march: armv9\n")
    with pytest.raises(ConfigError, match=r"k\.yaml:6: .*armv9"):
        boards.load_kind(str(tmp_path / "k.yaml"))


def test_find_port_is_mpremote_connect_id():
    ports = [port("/dev/ttyACM0", "AAA"), port("/dev/ttyACM1", "BBB")]
    assert boards.find_port("BBB", ports).device == "/dev/ttyACM1"
    assert boards.find_port("CCC", ports) is None


def test_attached_lists_real_ports_as_plain_tuples():
    for p in boards.attached():  # whatever this host has; usually nothing
        assert isinstance(p.device, str)


# -- rig files --------------------------------------------------------------------------


def test_shipped_rigs_load():
    r8 = rig_mod.load(RIG8)
    assert [b.name for b in r8.boards] == ["pico%d" % i for i in range(8)]
    assert all(b.emulated and b.serial is None and b.url is None for b in r8.boards)
    assert [b.node_id for b in r8.boards] == list(range(1, 9))
    assert r8.board("pico5").members == (5, 6, 7, 8) and r8.board("pico5").cluster == 2
    assert r8.board("pico3").role == "auditor"
    assert r8.emulated_dir == str(REPO / "boards" / "emulated")
    picos = rig_mod.load(PICOS)
    a = picos.board("pico-a")
    assert a.serial == "E6614C311B4A2B2F" and a.kind == "pico" and "watchdog" in a.features
    assert picos.board("picow-lab").url.startswith("rfc2217://") and "radio" in picos.board("picow-lab").features
    assert picos.board("pico2-lab").url.startswith("socket://")
    assert picos.board("pico-c").version == (1, 1) and a.version is None and picos.version == (1, 0)


def test_board_json_comes_from_the_entry_the_kind_and_config():
    r = rig_mod.load(RIG8)
    cfg = r.board_json(r.board("pico1"))
    assert cfg == {"node_id": 2, "cluster": 1, "members": [1, 2, 3, 4], "lineage": 1, "hw_gen": 1,
                   "transport": "usb", "led_pin": "LED", "election_timeout_ms": 2000}  # fmt: skip


@pytest.mark.parametrize(
    "entry, line, message",
    [
        ("{name: a, kind: pico, serial: 'X1', node_id: 1, cluster: 1, colour: red}", 4, "unknown key 'colour'"),
        ("{name: a, kind: pico, serial: 'X1', url: 'socket://h:1', node_id: 1, cluster: 1}", 4, "exactly one of serial, url"),
        ("{name: a, kind: pico, node_id: 1, cluster: 1}", 4, "exactly one of serial, url"),
        ("{name: a, kind: pico, serial: 'X1', node_id: 0, cluster: 1}", 4, "node_id: 0 is outside"),
        ("{name: a, kind: picoo, serial: 'X1', node_id: 1, cluster: 1}", 4, "no board kind 'picoo'"),
        ("{name: a, kind: pico, serial: 'X1', node_id: 1, cluster: 1, version: 1.10}", 4, "as a string"),
        ("{name: a, kind: pico, serial: 12345, node_id: 1, cluster: 1}", 4, "serial number as a string"),
        ("{name: a, kind: pico, emulated: true, node_id: 1, cluster: 1}", 4, "needs an emulated board kind"),
        ("{name: a, kind: pico, serial: 'X1', node_id: 1, cluster: 1, features: [lasers]}", 4, "unknown feature"),
        ("{name: a, kind: pico, serial: 'X1', node_id: 1, cluster: 1, config: {watchdog_sec: 5}}", 4,
         "unknown key 'watchdog_sec'"),
        ("{name: a, kind: pico, serial: 'X1', node_id: 1, cluster: 1, config: {watchdog_ms: 50}}", 4,
         'watchdog_ms.*refuse|watchdog_ms'),
        ("{name: a, kind: pico, serial: 'X1', node_id: 1, cluster: 1, config: 5}", 4, "config: expected a mapping, got 5"),
        ("{name: a, kind: pico, serial: 'X1', node_id: 1, cluster: 1, members: [2, 3]}", 4, "its own node 1"),
        ("{name: a, kind: pico, serial: 'X1', node_id: 1, cluster: 1, code: rom}", 4, "code: 'rom' is not one of romfs, files"),
    ],
)  # fmt: skip
def test_bad_board_entry_names_file_and_line(tmp_path, entry, line, message):
    p = write(tmp_path, "rig: t\nversion: '1.0'\nboards:\n  - %s\n" % entry)
    with pytest.raises(ConfigError) as e:
        rig_mod.load(p)
    assert str(e.value).startswith("%s:%d:" % (p, line)), str(e.value)
    assert re.search(message, str(e.value)), str(e.value)


def test_unknown_top_level_key_and_duplicates_name_their_lines(tmp_path):
    p = write(tmp_path, """\
        rig: t
        boards:
          - {name: a, kind: pico, serial: 'X1', node_id: 1, cluster: 1}
        flashing: fast
        """)  # fmt: skip
    with pytest.raises(ConfigError, match=r"rig-test\.yaml:4: rig: unknown key 'flashing'"):
        rig_mod.load(p)
    p = write(tmp_path, """\
        boards:
          - {name: a, kind: pico, serial: 'X1', node_id: 1, cluster: 1}
          - {name: b, kind: pico, serial: 'X2', node_id: 1, cluster: 1}
          - {name: a, kind: pico, serial: 'X3', node_id: 3, cluster: 1}
        """)  # fmt: skip
    with pytest.raises(ConfigError, match=r"rig-test\.yaml:3: .*node 1 is already board a"):
        rig_mod.load(p)


def test_a_board_json_the_board_would_refuse_is_refused_at_load(tmp_path):
    # The firmware's own parser (runtime/boardcfg.py) checks what the flasher would write.
    p = write(tmp_path, """\
        boards:
          - name: a
            kind: pico
            serial: "X1"
            node_id: 1
            cluster: 1
            config: {election_timeout_ms: 1000, heartbeat_ms: 900}
        """)  # fmt: skip
    with pytest.raises(ConfigError, match=r"rig-test\.yaml:\d+: board a: the board would refuse .*heartbeat_ms"):
        rig_mod.load(p)


# -- where the boards are ---------------------------------------------------------------


def test_missing_names_the_serial_numbers_of_picos_not_attached(monkeypatch):
    r = rig_mod.load(PICOS)
    monkeypatch.setattr(boards, "attached", lambda: [])  # this host: no Pico on USB
    assert r.missing() == [("pico-a", "E6614C311B4A2B2F"), ("pico-b", "E6614C311B4A2B3C"),
                           ("pico-c", "E6614C311B4A2B47")]  # fmt: skip
    # One of them plugged in (and an unrelated USB serial adapter):
    ports = [port("/dev/ttyACM3", "E6614C311B4A2B3C"), port("/dev/ttyUSB0", "A50285BI")]
    assert r.missing(ports) == [("pico-a", "E6614C311B4A2B2F"), ("pico-c", "E6614C311B4A2B47")]


def test_missing_with_the_real_port_list_names_every_absent_pico():
    r = rig_mod.load(PICOS)
    present = {p.serial_number for p in boards.attached()}
    expected = [(b.name, b.serial) for b in r.boards if b.serial and b.serial not in present]
    assert r.missing() == expected


def scenario(nodes: dict[int, int], path: str = "scenario.yaml") -> SimpleNamespace:
    return SimpleNamespace(path=path, nodes={n: SimpleNamespace(cluster=c) for n, c in nodes.items()})


def test_devices_for_maps_node_ids_to_ports_and_urls(monkeypatch):
    r = rig_mod.load(PICOS)
    monkeypatch.setattr(boards, "attached", lambda: [port("/dev/ttyACM0", "E6614C311B4A2B2F"),
                                                      port("/dev/ttyACM1", "E6614C311B4A2B47")])  # fmt: skip
    assert r.devices_for(scenario({1: 1, 3: 1, 4: 1, 5: 1})) == {
        1: "/dev/ttyACM0", 3: "/dev/ttyACM1", 4: "rfc2217://labhost.example:4001", 5: "socket://labhost.example:4002"}


def test_devices_for_names_a_node_the_rig_lacks_and_an_absent_board(monkeypatch):
    r = rig_mod.load(PICOS)
    monkeypatch.setattr(boards, "attached", lambda: [])
    with pytest.raises(ConfigError, match=r"scenario\.yaml: the scenario's node 9 has no board in rig"):
        r.devices_for(scenario({4: 1, 9: 1}))
    with pytest.raises(rig_mod.RigError, match=r"rig-example-picos\.yaml:\d+: board pico-b \(pico, node 2\): "
                                               r"USB serial number E6614C311B4A2B3C is not attached"):  # fmt: skip
        r.devices_for(scenario({2: 1}))
    with pytest.raises(ConfigError, match=r"board picow-lab is node 4 of cluster 1, but scenario .* cluster 2"):
        r.devices_for(scenario({4: 2}))


def test_devices_for_a_real_scenario():
    sc = scenario_mod.load_text(textwrap.dedent("""\
        name: two-clusters
        duration_s: 10
        clusters:
          - {id: 1, nodes: [1, 2, 3, 4]}
          - {id: 2, nodes: [5, 6, 7, 8]}
        """), "two.yaml")  # fmt: skip
    r = rig_mod.load(RIG8)
    with pytest.raises(rig_mod.RigError, match=r"board pico0 \(node 1\) is emulated and not running"):
        r.devices_for(sc)


@pytest.mark.skipif(not MICROPYTHON.exists(), reason="needs .venv/bin/micropython")
def test_start_emulated_runs_the_emulated_entries_and_devices_for_finds_them(tmp_path):
    r = rig_mod.load(RIG8)
    started = r.start_emulated(tmp_path, only=["pico0", "pico5"])
    try:
        assert [b.name for b in started] == ["pico0", "pico5"]
        assert all(b.folder == tmp_path / b.name for b in started)
        assert r.devices_for(scenario({1: 1, 6: 2})) == {1: started[0].device, 6: started[1].device}
    finally:
        for b in started:
            b.stop()
    r.running.clear()


# -- hil boards ---------------------------------------------------------------------------


def test_hil_boards_lists_missing_picos_and_exits_1(monkeypatch, capsys):
    monkeypatch.setattr(boards, "attached", lambda: [port("/dev/ttyACM7", "E6614C311B4A2B3C")])
    assert cli.main(["boards", str(PICOS)]) == 1
    out, err = capsys.readouterr()
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert "MISSING" in lines["pico-a"] and "E6614C311B4A2B2F" in lines["pico-a"]
    assert "attached at /dev/ttyACM7" in lines["pico-b"]
    assert "rfc2217://labhost.example:4001" in lines["picow-lab"]
    assert "2 of 5 board(s) missing" in err


def test_hil_boards_bad_rig_file_exits_2_naming_the_line(tmp_path, capsys):
    p = write(tmp_path, "boards:\n  - {name: a, kind: pico, serial: 'X', node_id: 1, cluster: 1, colour: red}\n")
    assert cli.main(["boards", str(p)]) == 2
    assert "%s:2:" % p in capsys.readouterr().err


def test_a_market_section_the_core_would_refuse_is_refused_at_load(tmp_path):
    # Beyond board.json's keys, the values must make the core's Config (here
    # a market whose elector is not in its roster), as main.py builds it.
    p = write(tmp_path, """\
        boards:
          - name: a
            kind: pico
            serial: "X1"
            node_id: 1
            cluster: 1
            config: {market: {roster: [1], electors: [2], units: [1, 1, 1, 1, 1, 1, 1, 1]}}
        """)  # fmt: skip
    with pytest.raises(ConfigError, match=r"rig-test\.yaml:\d+: board a: the board would refuse .*market: elector 2"):
        rig_mod.load(p)
