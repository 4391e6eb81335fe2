"""Core hardening on live emulated Picos (hil.emulated: the MicroPython unix
port behind a pty, 192K heap, flashed with the .mpy image as `hil flash`
writes it): replay protection across real resets and power cuts, hostile
input that must all be counted and never stop or reboot the board, and a
board holding a seat in a 1,000-node region taking signed traffic from
every roster node and a flood of unknown ids.

The test plays the other nodes: it signs frames with the fleet key as they
would (firmware/node/wire.py, under CPython) and reads the board's
TELEMETRY (protocol 3: u32 refusal counters, heap). Every wait has a
timeout; nothing here asserts how fast anything is.
"""

import os
import random
import select
import time

import pytest

from ground import firmware
from hil import emulated_run
from hil import flash as flash_mod
from hil.emulated import EmulatedBoard

wire = firmware.wire
msgs = firmware.msgs

pytestmark = pytest.mark.timeout(600)

KEY = bytes(range(1, 33))
AUTH = wire.Auth(KEY)
WAIT_S = 30
HEAP = 192 * 1024


class Line:
    """The test's end of a board's serial line: sends lines, keeps every
    frame the board sent (this boot's and later ones), in order."""

    def __init__(self, board, node_id):
        self.board = board
        self.node_id = node_id
        port, splitter, lines = board.open_port
        self.port, self.splitter = port, splitter
        self.frames = []
        self._take(lines)

    def _take(self, lines):
        for line in lines:
            try:
                self.frames.append(wire.decode(line))
            except wire.ProtocolError:
                pass  # a boot banner, a traceback: not a frame

    def pump(self, timeout_s=0.0):
        r, _, _ = select.select([self.port.fileno()], [], [], timeout_s)
        if r:
            self._take(self.splitter.feed(self.port.read(self.port.in_waiting or 1)))

    def send(self, data):
        """Write all of `data`, reading what the board says meanwhile (so
        neither side's buffer fills up and blocks the other)."""
        view = memoryview(bytes(data))
        deadline = time.monotonic() + WAIT_S
        while view:
            _, w, _ = select.select([], [self.port.fileno()], [], 0.05)
            if w:
                n = os.write(self.port.fileno(), view[:4096])
                view = view[n:]
                deadline = time.monotonic() + WAIT_S
            self.pump()
            assert time.monotonic() < deadline, "board %s took no input for %d s" % (self.board.name, WAIT_S)

    def expect(self, match, what, start=0, timeout_s=WAIT_S):
        deadline = time.monotonic() + timeout_s
        while True:
            for f in self.frames[start:]:
                if match(f):
                    return f
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("%s: no %s within %d s; board log ends %r"
                                     % (self.board.name, what, timeout_s, bytes(self.board.log[-400:])))
            self.pump(min(left, 0.2))

    def telemetry(self, after=None, timeout_s=WAIT_S):
        """The fields of the first TELEMETRY sent after frame index `after`
        (default: from now on)."""
        start = len(self.frames) if after is None else after
        f = self.expect(lambda f: f.type == msgs.TELEMETRY and f.src == self.node_id, "TELEMETRY", start, timeout_s)
        names = msgs.layout(msgs.TELEMETRY, f.version)[2]
        return dict(zip(names, msgs.unpack(msgs.TELEMETRY, f.payload, f.version)))

    def telemetry_until(self, done, timeout_s=120):
        """TELEMETRY after TELEMETRY until `done(fields)` (the board has
        handled what was sent) or the timeout; the last one either way."""
        deadline = time.monotonic() + timeout_s
        while True:
            t = self.telemetry()
            if done(t) or time.monotonic() > deadline:
                return t

    def hellos(self):
        return [i for i, f in enumerate(self.frames) if f.type == msgs.HELLO and f.src == self.node_id
                and f.dst == wire.ADDR_GROUND]


def _start(tmp_path, cfg, name="node1"):
    built = flash_mod.build(str(tmp_path / ".image"))
    folder = tmp_path / name
    flash_mod.write_image(str(folder), version=(3, 0), label="3.0-hardening", board_config=cfg, built=built)
    board = EmulatedBoard(str(folder), name=name).start()
    try:
        emulated_run.boot_and_wait_hello(board, cfg["node_id"])
    except BaseException:
        board.stop()
        raise
    return board, Line(board, cfg["node_id"])


def _board_cfg(**extra):
    cfg = {"node_id": 1, "cluster": 1, "members": [1, 2, 3], "election_timeout_ms": 2000, "seed": 7,
           "auth_key": KEY.hex(), "require_auth": True, "watchdog_ms": 0}
    cfg.update(extra)
    return cfg


def _signed(type, src, dst, payload, counter, seq=0):
    return bytes(wire.encode(type, src, dst, payload, seq, AUTH, counter, 1))


# The replay tests read the board's counters from its TELEMETRY, several per
# reboot: a TELEMETRY every 500 ms, not every election timeout (2 s), keeps
# their waits short; what the board accepts and refuses does not change.
REPLAY_CFG = {"telemetry_ms": 500}


def _coordinator(src, term, counter):
    return _signed(msgs.COORDINATOR, src, wire.cluster_addr(1), msgs.pack(msgs.COORDINATOR, term, 0), counter)


def _reboot(board, line, how):
    n = len(line.hellos())
    start = len(line.frames)
    if how == "power_cut":
        board.power_cut()
        board.power_on()
    else:
        board.reset()
    line.expect(lambda f: f.type == msgs.HELLO and f.src == 1 and f.dst == wire.ADDR_GROUND, "HELLO after " + how,
                start)
    assert len(line.hellos()) == n + 1
    return start


# ---- replay across reboots ---------------------------------------------------------


def test_a_captured_frame_is_refused_after_resets_and_power_cuts_and_fresh_ones_still_pass(tmp_path):
    board, line = _start(tmp_path, _board_cfg(**REPLAY_CFG))
    try:
        boots = board.boots
        captured = _coordinator(2, 5, 40)  # node 2's frame, "captured from the link"
        line.send(captured)
        t = line.telemetry_until(lambda t: t["term"] == 5)
        assert (t["term"], t["coordinator"]) == (5, 2), t  # accepted and followed
        assert os.path.exists(tmp_path / "node1" / "state" / "seen1")  # the ceiling went to flash
        counter = 41
        for how in ("power_cut", "reset", "power_cut"):
            start = _reboot(board, line, how)
            # The board's boot HELLO went to its cluster: node 2, hearing it,
            # moves to its next counter block (a node does so in _peer_booted).
            hello = line.expect(lambda f: f.type == msgs.HELLO and f.dst == wire.cluster_addr(1), "cluster HELLO",
                                start)
            assert hello.counter is not None
            line.send(captured)  # the replay
            line.send(_coordinator(2, 5, counter))  # a frame node 2 sent before it heard the HELLO: below the floor
            t = line.telemetry_until(lambda t: t["rejects"] >= 2)
            assert t["coordinator"] != 2, (how, t)  # neither was followed
            assert t["replayed"] == 2 and t["rejects"] == 2, (how, t)  # counted since this boot
            counter = (counter // wire.BLOCK + 1) * wire.BLOCK  # node 2's next block
            line.send(_coordinator(2, 5, counter))  # fresh: accepted at once
            t = line.telemetry_until(lambda t: t["coordinator"] == 2, timeout_s=WAIT_S)
            assert (t["coordinator"], t["replayed"]) == (2, 2), (how, t)
            counter += 1
        assert board.boots == boots + 3  # the three reboots asked for, no other
    finally:
        board.stop()


def test_a_ground_frame_replayed_after_a_reset_or_power_cut_is_refused(tmp_path):
    # The ground (source 0) has a ceiling too, in blocks of wire.GROUND_BLOCK:
    # a CONFIG captured from the ground link does nothing after a reboot.
    board, line = _start(tmp_path, _board_cfg(**REPLAY_CFG))
    try:
        def config(counter):
            return _signed(msgs.CONFIG, wire.ADDR_GROUND, 1, msgs.pack(msgs.CONFIG, 1000, 0), counter)

        counter = 5 * wire.GROUND_BLOCK + 3
        captured = config(counter)
        line.send(captured)
        line.send(config(counter + 1))
        line.telemetry()
        t = line.telemetry()  # the second from now: both lines were read before it (the shell reads, then polls)
        assert t["rejects"] == 0, t  # both accepted
        replays = 0
        for how in ("reset", "power_cut"):
            _reboot(board, line, how)
            line.send(captured)  # the replay
            t = line.telemetry_until(lambda t: t["replayed"] >= 1)
            assert (t["replayed"], t["rejects"]) == (1, 1), (how, t)
            counter = (counter // wire.GROUND_BLOCK + 1) * wire.GROUND_BLOCK  # the ground's next block
            line.send(config(counter))  # fresh: accepted
            line.send(captured)  # and the replay again, after it: still refused
            t = line.telemetry_until(lambda t: t["rejects"] >= 2)
            assert (t["replayed"], t["rejects"]) == (2, 2), (how, t)
            replays += 2
            counter += 1
        assert replays == 4
    finally:
        board.stop()


# ---- hostile input -------------------------------------------------------------------


_NOT_0_OR_3 = bytes(b for b in range(256) if b not in (0, 3))


def _hostile_lines(rng, n, first_counter):
    """n lines (each with its 0x00), each of which a node must refuse, and
    the reasons it must give, by name. None has a 0x00 inside, so each is
    exactly one line on the wire, and none a raw 0x03: on USB that byte is
    the operator's Ctrl-C by design (docs/PROTOCOL.md "Escape": frames never
    carry it, so mpremote can always get in); it stops the loop, as asked."""
    out = []
    reasons = {}
    counter = first_counter
    good = _coordinator(2, 9, 1)[:-1]
    kinds = ("junk", "long", "crc", "tag", "stranger", "replay", "no_auth", "escape")
    for k in range(n):
        kind = kinds[k % len(kinds)]
        if kind == "junk":  # random bytes, no zero: cobs/escape/short/crc ...
            body = bytes(rng.choice(_NOT_0_OR_3) for _ in range(rng.randrange(1, 60)))
            try:
                wire.decode(body, AUTH, True)
                continue  # (never: a random line with a valid crc and tag)
            except wire.ProtocolError as e:
                reason = wire.ERROR_NAMES[e.code]
        elif kind == "long":  # over MAX_LINE: the splitter cuts it
            body = bytes([rng.choice(_NOT_0_OR_3)]) * (wire.MAX_LINE + 1 + rng.randrange(0, 300))
            reason = "too_long"
        elif kind == "crc":
            b = bytearray(good)
            b[3] ^= 0x40 if b[3] not in (0x40, 0x43, 0x5B) else 0x20
            body = bytes(b)
            try:
                wire.decode(body, AUTH, True)
                continue
            except wire.ProtocolError as e:
                reason = wire.ERROR_NAMES[e.code]
        elif kind == "tag":
            body = bytes(wire.encode(msgs.COORDINATOR, 2, wire.cluster_addr(1), msgs.pack(msgs.COORDINATOR, 9, 0), 0,
                                     wire.Auth(b"not the fleet key"), counter, 1)[:-1])
            reason = "tag"
        elif kind == "stranger":  # validly signed, from outside the rosters
            body = _coordinator(rng.randrange(1000, 0xEFFF), 9, counter)[:-1]
            reason = "unknown_src"
        elif kind == "replay":
            body = _coordinator(3, 0, 5)[:-1]  # the same frame again and again (accepted once, before the flood)
            reason = "replay"
        elif kind == "no_auth":
            body = bytes(wire.encode(msgs.COORDINATOR, 3, wire.cluster_addr(1), msgs.pack(msgs.COORDINATOR, 9, 0))[:-1])
            reason = "no_auth"
        else:  # an escape byte followed by neither 01 nor 02
            body = b"\x1b\x07" + good
            reason = "escape"
        counter += 1
        out.append(body + b"\x00")
        reasons[reason] = reasons.get(reason, 0) + 1
    return out, reasons


def test_hostile_lines_are_all_counted_and_never_stop_or_reboot_the_board(tmp_path):
    # FLEETLOOP_HOSTILE_LINES=1000000 runs the million (about 5 minutes here)
    n_lines = int(os.environ.get("FLEETLOOP_HOSTILE_LINES", "24000"))
    board, line = _start(tmp_path, _board_cfg(election_timeout_ms=1000))
    try:
        boots = board.boots
        line.send(_coordinator(3, 0, 5))  # accepted once; replayed in the flood
        line.expect(lambda f: f.type == msgs.HEARTBEAT, "a heartbeat after it")
        before = line.telemetry()
        assert before["rejects"] == 0, before
        rng = random.Random(17)
        lines, reasons = _hostile_lines(rng, n_lines, 100)
        chunk = 2000
        for i in range(0, len(lines), chunk):
            line.send(b"".join(lines[i:i + chunk]))
        # Everything sent has been handled once a TELEMETRY counts it all.
        want = len(lines)
        t = line.telemetry_until(lambda t: t["rejects"] >= want, timeout_s=300)
        print("hostile lines: %d; reasons sent %s; board: %s" % (want, reasons, t))
        assert t["rejects"] == want, (t, reasons)
        assert t["long_lines"] == reasons["too_long"] and t["unknown_src"] == reasons["unknown_src"]
        assert t["replayed"] == reasons["replay"], (t, reasons)
        assert t["bad_frames"] == min(want, 0xFFFF)
        assert t["coordinator"] != 2 and t["term"] == 0  # no forged or replayed frame was followed
        assert t["heap_min"] > HEAP // 4, t
        assert board.boots == boots and board.state == "running", (board.boots, board.events)
        assert len(line.hellos()) == 1  # no reboot, asked or not
        assert b"MemoryError" not in bytes(board.log) and b"Traceback" not in bytes(board.log)
    finally:
        board.stop()


# ---- a 1,000-node region ----------------------------------------------------------------


def _region_cfg(n, node_id):
    units = [79 * n // 1000 + 1, 131 * n // 1000 + 1, 79 * n // 1000 + 1, 27 * n // 1000 + 1,
             228 * n // 1000 + 1, 70 * n // 1000 + 1, 53 * n // 1000 + 1, 209 * n // 1000 + 1]
    members = [1, 2, 3, 4, 5] if node_id <= 5 else [node_id, node_id + 1, node_id + 2]
    return _board_cfg(node_id=node_id, members=members, election_timeout_ms=2000,
                      market={"roster": list(range(1, n + 1)), "electors": [1, 2, 3, 4, 5], "units": units})


# (who, region size, node id). The emulated board is a Pico built with ROMFS
# (docs/EMULATED_BOARD.md): the firmware's modules run in place from its ROM
# partition, so an elector with the market tier boots in 192K. It is the
# 64-bit unix port (pointers and object headers twice a Pico's, 32-byte GC
# blocks) and the emulation's own ~24 KB sit in the heap: a trader of a
# 1,000-node region keeps ~70 KB free at its lowest, an elector of a 150-node
# region ~41 KB. bench/mpy/heap_seat_run.py measures the largest region one
# board coordinates over mission hours; docs/HEAP.md states it.
REGIONS = [pytest.param("trader", 1000, 6, id="trader"),
           pytest.param("elector", 150, 1, id="elector")]
# The goal (issue #14) is a low-water mark above 25 % of a Pico's 192K. The
# 64-bit emulation spends about twice a Pico's heap on the same objects, so
# here the bound is 16 KB kept free through it all (measured: docs/HEAP.md).
HEAP_FLOOR = 16 * 1024


@pytest.mark.parametrize("who,n_region,node_id", REGIONS)
def test_a_region_node_takes_every_roster_node_and_a_flood_of_strangers(tmp_path, who, n_region, node_id):
    board, line = _start(tmp_path, _region_cfg(n_region, node_id), name="node%d" % node_id)
    line.node_id = node_id
    try:
        boots = board.boots
        region = wire.cluster_addr(0xE00 | 1)
        hello = msgs.pack(msgs.HELLO, 1, 3, 0, 0, 1, 3, 1)
        senders = [src for src in range(1, n_region + 1) if src != node_id]
        line.send(b"".join(_signed(msgs.HELLO, src, region if who == "elector" and src <= 5 else node_id, hello, 7)
                           for src in senders))
        # who can send to it: an elector hears the whole roster, a trader its
        # cluster and the electors; the rest of the roster is unknown to it
        known = len(senders) if who == "elector" else len([s for s in senders if s <= 5 or s in (7, 8)])
        strangers = [_signed(msgs.HELLO, src, node_id, hello, 7) for src in range(n_region + 1, n_region + 20001)]
        for i in range(0, len(strangers), 2000):
            line.send(b"".join(strangers[i:i + 2000]))
        unknown = len(senders) - known + len(strangers)
        t = line.telemetry_until(lambda t: t["unknown_src"] >= unknown, timeout_s=300)
        print("%s of a %d-node region after %d roster + %d unknown frames: %s"
              % (who, n_region, len(senders), len(strangers), t))
        assert t["unknown_src"] == unknown and t["rejects"] == unknown, t
        assert t["replayed"] == 0, t  # every frame from who can send to it: taken
        assert t["heap_min"] > HEAP_FLOOR, t
        assert board.boots == boots and len(line.hellos()) == 1
        assert b"MemoryError" not in bytes(board.log)
        seen = (tmp_path / ("node%d" % node_id) / "state" / ("seen%d" % node_id)).read_bytes()
        assert len(seen) >= 12 + 8 + 6 * known  # a ceiling for each
    finally:
        board.stop()


# ---- a crash is reported, not hidden ------------------------------------------------------


def test_a_crash_prints_its_traceback_for_the_harness_and_the_next_boot_reports_it(tmp_path):
    import types

    from ground import links

    board, line = _start(tmp_path, _board_cfg())
    try:
        folder = tmp_path / "node1"
        # The next term/vote write cannot create its file: a store failure the
        # shell must not paper over (it would send unpersisted frames).
        (folder / "state" / "node1.tmp").mkdir()
        line.send(_coordinator(2, 7, 50))  # a higher term: the board must persist it
        assert board.wait_output(b">>> ", timeout_s=WAIT_S), bytes(board.log[-400:])
        text = links.SerialLink.text_tail(types.SimpleNamespace(_tail=bytearray(board.log[-links.TAIL_BYTES:])))
        assert "StoreError: state/node1" in text, text  # the traceback's end: what the `silent` event carries
        assert "StoreError" in (folder / "crash.txt").read_text()
        (folder / "state" / "node1.tmp").rmdir()
        start = _reboot(board, line, "reset")
        note = line.expect(lambda f: f.type == msgs.LOG and "crashed before this boot" in msgs.unpack_log(f.payload),
                           "LOG about the crash", start)
        assert "StoreError" in msgs.unpack_log(note.payload)
        assert not (folder / "crash.txt").exists() and (folder / "crash.old.txt").exists()  # reported once
    finally:
        board.stop()
