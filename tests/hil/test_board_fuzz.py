"""`hil fuzz` (hil/fuzz.py, hil/fuzz_lines.py) against one real emulated Pico:
the MicroPython unix port running the flashed firmware behind a pty, opened
with pyserial. No wall-clock bounds: every wait in the fuzzer has its own
timeout, and the tests assert counts."""

import json
import os
import random

import pytest
import serial

from ground import protocol as P
from hil import cli, fuzz
from hil import fuzz_lines as FL

pytestmark = pytest.mark.timeout(600)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if not os.path.exists(os.path.join(ROOT, ".venv", "bin", "micropython")):
    pytest.skip("no MicroPython unix port in .venv", allow_module_level=True)

KEY = bytes.fromhex("00112233445566778899aabbccddeeff")


@pytest.fixture
def emulated(tmp_path):
    t = fuzz.EmulatedTarget(str(tmp_path))
    port = serial.serial_for_url(t.board.device, timeout=0, write_timeout=20)
    try:
        yield t, port, fuzz.target_from(t.board_json)
    finally:
        port.close()
        t.stop()


def test_hostile_lines_are_owed_what_the_ground_codec_says():
    target = FL.Target(1, 1, [1, 2, 3], KEY, require_auth=True)
    gen = FL.Hostile(target, random.Random(5))
    owed = {}
    for cat in FL.CATEGORIES:
        for _ in range(200):
            line, want = gen.make(cat)
            assert b"\x00" not in line and b"\x03" not in line  # one line each, never a Ctrl-C
            owed.setdefault(cat, set()).add(want.reason)
    assert owed["bad_crc"] == {"crc"}
    assert owed["bad_tag"] == {"tag"}
    assert owed["unsigned"] == {"no_auth"}
    assert owed["oversize"] == {"too_long"}  # over the line buffer (cut, counted) or the body limit
    assert owed["bad_fields"] == {"payload", "type", "version", "address"}  # never a valid frame
    assert owed["stranger"] == {"unknown_src"}  # valid frames from outside its rosters: refused before anything is kept
    ping, want = gen.ping()
    assert want.reason == FL.ACCEPT and want.answer and P.parse_line(ping, key=KEY).msg["term"] == want.id
    gen.answered.append(ping)
    line, want = gen.make("replay")
    assert line == ping and want.reason == "replay"  # the same bytes again: a replay, for ever


def test_fuzz_counts_every_reject_and_the_board_stays_alive(emulated):
    t, port, target = emulated
    fz = fuzz.Fuzzer(port, target, seed=3, board=t.board, checkpoint=500)
    r = fz.run(lines=3000)
    assert r.lines >= 3000 and set(r.sent) == set(FL.CATEGORIES) | {"ping"}
    assert r.owed_counted > 2000 and r.board_counted == r.owed_counted, r.format()  # every reject counted
    assert set(r.board_by_counter) == {name for name, _ in fuzz.COUNTERS}  # a version-3 board: counters by reason
    assert r.board_by_counter == r.owed_by_counter and r.owed_by_counter["replayed"] > 0, r.format()
    assert r.owed_by_counter["unknown_src"] > 0 and r.owed_by_counter["long_lines"] > 0
    assert not r.mismatches and r.inexact == 0
    assert r.unanswered == 0 and r.answered == r.pings >= 6  # alive: every ping answered
    assert r.accepted == {}, r.format()  # no forged, mutated, replayed or stranger's frame acted on
    assert r.crashes == r.memory_errors == r.reboots_unasked == 0, r.format()
    assert sum(r.owed.values()) == r.lines and r.ok


def test_ctrl_c_stops_the_board_and_a_soft_reboot_brings_it_back(emulated):
    t, port, target = emulated
    fz = fuzz.Fuzzer(port, target, seed=4, board=t.board, checkpoint=400)
    r = fz.run(lines=800, ctrl_c_every=400)
    assert r.ctrl_c == 2 and r.ctrl_c_stopped == 2, r.format()
    assert r.reboots_asked >= 2 and r.reboots_unasked == 0 and r.crashes == 0
    assert r.unanswered == 0 and r.answered == r.pings


def test_no_replay_is_accepted_across_power_cuts(emulated):
    t, port, target = emulated
    fz = fuzz.Fuzzer(port, target, seed=5, board=t.board, checkpoint=300)
    r = fz.run(lines=900, power_cut_every=300)
    assert r.power_cuts == 3 and r.replays_after_boot > 0 and r.unanswered == 0
    assert r.replays_after_boot_accepted == 0 and r.accepted == {}, r.format()
    assert r.inexact == 0 and not r.mismatches and r.board_by_counter == r.owed_by_counter, r.format()
    assert r.reboots_asked == 3 and r.reboots_unasked == 0 and r.answered == r.pings  # fresh pings clear the floor


def test_the_verb_on_a_port_reports_and_exits_by_the_result(emulated, tmp_path, capsys):
    t, port, target = emulated
    port.close()
    out = tmp_path / "fuzz.json"
    rc = cli.main(["fuzz", t.board.device, "--board-json", t.board_json, "--lines", "600", "--checkpoint", "300",
                   "--json", str(out)])
    printed = capsys.readouterr().out
    data = json.loads(out.read_text())
    assert rc == (0 if data["ok"] else 1) and "owed by reason:" in printed
    assert data["lines"] >= 600 and data["board_counted"] == data["owed_counted"] > 0
    assert cli.main(["fuzz", t.board.device]) == 2  # no board.json: one line, exit 2
    assert "--board-json" in capsys.readouterr().err


def test_the_fuzzer_signs_as_a_hardened_peer_moving_to_its_next_block_on_hello():
    target = FL.Target(1, 1, [1, 2, 3], KEY, require_auth=True)
    gen = FL.Hostile(target, random.Random(1), counter_base=3 * FL.wire.BLOCK + 17)
    gen.peer_booted()
    assert gen.counter == 4 * FL.wire.BLOCK  # past the floor a rebooted board restored (the end of our block)
    gen.peer_booted()
    assert gen.counter == 4 * FL.wire.BLOCK  # none of this block used yet: no block burnt
    ping, want = gen.ping()
    assert want.reason == FL.ACCEPT and P.parse_line(ping, key=KEY).counter == 4 * FL.wire.BLOCK


def test_the_target_speaks_what_the_flashed_version_speaks(tmp_path):
    (tmp_path / "board.json").write_text(json.dumps({"node_id": 1, "cluster": 1, "members": [1, 2]}))
    for version, proto in (((1, 0), 1), ((2, 3), 2), ((3, 0), 3)):
        (tmp_path / "version.json").write_text(json.dumps({"version": list(version)}))
        assert fuzz.target_from(str(tmp_path / "board.json")).proto_max == proto


def test_a_crash_is_named_by_its_innermost_frame():
    text = (b'\r\nTraceback (most recent call last):\r\n  File "main.py", line 95, in step\r\n'
            b'  File "node/wire.py", line 226, in accept\r\nMemoryError: memory allocation failed\r\n>>> ')
    assert fuzz.crash_kind(text) == "MemoryError at node/wire.py:226 in accept"
    assert fuzz.crash_kind(b"Traceback (most recent call last):\r\nUnicodeError: \r\n>>> ") == \
        "UnicodeError (no frames: at the REPL)"


def test_a_flood_of_strangers_does_not_exhaust_the_board(emulated):
    t, port, target = emulated
    fz = fuzz.Fuzzer(port, target, seed=6, board=t.board, checkpoint=500, mix=fuzz.parse_mix(
        ["%s=0" % c for c in FL.CATEGORIES] + ["stranger=1"]))
    r = fz.run(lines=4000)
    assert r.sent.get("stranger", 0) >= 4000 and r.unanswered == 0
    assert r.crashes == r.memory_errors == 0, r.format()


def test_after_a_reboot_the_model_refuses_what_is_below_the_floor_seen_or_not():
    w = FL.SpecWindow()
    assert w.accept(1, 150) and w.accept(1, 149)
    assert w.accept(1, 180)  # never seen: fresh before a reboot
    w.reboot()
    assert not w.accept(1, 190)  # never seen, but below the floor (the end of 180's block): the board refuses it
    assert w.accept(1, FL.wire.BLOCK) and not w.accept(1, FL.wire.BLOCK)
