# The board shell (firmware/main.py + firmware/runtime/) on the real
# MicroPython unix port, driven from CPython as a board would be by the ground.
#
# Each test starts `micropython -X heapsize=192K firmware/main.py` with a
# temporary board folder as its current directory (board.json there, state/
# written there) and MICROPYPATH = firmware + the machine stand-in
# (hil/board_lib when it exists, else a tiny machine.py written here). The
# serial line is a pty in raw mode with ISIG on, as close as the unix port
# gets to a Pico's USB CDC: 0x03 becomes SIGINT, every other byte passes
# untouched. A few tests use plain pipes; there 0x03 arrives as a byte and
# the shell's link raises KeyboardInterrupt itself (runtime/link_usb.py).
#
# Frames are decoded with the firmware's own codec under CPython. Every wait
# has a timeout; no test asserts how fast anything is.

import fcntl
import json
import os
import pty
import random
import select
import shutil
import subprocess
import termios
import time

import pytest

from node import msgs, wire
from node import node as node_mod
from runtime import store
from runtime.shell import STARVED_MS

pytestmark = pytest.mark.timeout(60)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIRMWARE = os.path.join(ROOT, "firmware")
MAIN = os.path.join(FIRMWARE, "main.py")
MICROPYTHON = os.path.join(ROOT, ".venv", "bin", "micropython")
BOARD_LIB = os.path.join(ROOT, "hil", "board_lib")
WAIT_S = 20  # the longest any single expectation may take

_STAND_IN = '''\
# Test-only stand-in for the rp2 machine module (hil/board_lib did not exist).
class Pin:
    OUT = 1
    IN = 0
    def __init__(self, id, mode=-1, *args, **kwargs):
        self.id = id
        self.level = 0
    def value(self, level=None):
        if level is None:
            return self.level
        self.level = 1 if level else 0
class WDT:
    def __init__(self, id=0, timeout=5000):
        self.timeout = timeout
    def feed(self):
        pass
def unique_id():
    return b"\\xe6\\x61\\x41\\x03\\xe7\\x45\\x2d\\x2f"
'''

if not os.path.exists(MICROPYTHON):
    pytest.skip("no MicroPython unix port in .venv", allow_module_level=True)


@pytest.fixture
def machine_path(tmp_path):
    """Folder holding the `machine` stand-in for the unix port."""
    if os.path.exists(os.path.join(BOARD_LIB, "machine.py")):
        return BOARD_LIB
    folder = tmp_path / "stand_in"
    folder.mkdir()
    (folder / "machine.py").write_text(_STAND_IN)
    return str(folder)


def board_json(**values):
    cfg = {"node_id": 1, "cluster": 5, "members": [1], "election_timeout_ms": 200}
    cfg.update(values)
    return {k: v for k, v in cfg.items() if v is not None}


def make_board(tmp_path, cfg):
    folder = tmp_path / "board"
    folder.mkdir()
    if cfg is not None:
        text = cfg if isinstance(cfg, str) else json.dumps(cfg)
        (folder / "board.json").write_text(text)
    return folder


def _env(machine_path):
    env = dict(os.environ)
    env["MICROPYPATH"] = FIRMWARE + ":" + machine_path
    return env


def _raw_with_isig(fd):
    """cfmakeraw, then ISIG back on with only VINTR (0x03) live: frames may
    carry 0x1A and 0x1C, which must not become SIGTSTP / SIGQUIT."""
    iflag, oflag, cflag, lflag, ispeed, ospeed, cc = termios.tcgetattr(fd)
    iflag &= ~(
        termios.IGNBRK | termios.BRKINT | termios.PARMRK | termios.ISTRIP | termios.INLCR
        | termios.IGNCR | termios.ICRNL | termios.IXON | termios.IXOFF | termios.IXANY
    )
    oflag &= ~termios.OPOST
    lflag &= ~(termios.ECHO | termios.ECHONL | termios.ICANON | termios.IEXTEN)
    lflag |= termios.ISIG
    cflag &= ~(termios.CSIZE | termios.PARENB)
    cflag |= termios.CS8
    cc = list(cc)
    cc[termios.VMIN] = 1
    cc[termios.VTIME] = 0
    cc[termios.VINTR] = b"\x03"
    cc[termios.VQUIT] = b"\x00"  # _POSIX_VDISABLE on Linux
    cc[termios.VSUSP] = b"\x00"
    termios.tcsetattr(fd, termios.TCSANOW, [iflag, oflag, cflag, lflag, ispeed, ospeed, cc])


def _take_pty_as_ctty():
    # In the child: a new session whose controlling terminal is the pty on
    # fd 0, so the line discipline's SIGINT reaches this process.
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Board:
    """A running firmware/main.py; collects its frames and text."""

    def __init__(self, folder, machine_path, use_pty=True):
        self.folder = folder
        self.splitter = wire.FrameSplitter()
        self.frames = []
        self.raw = bytearray()
        self.closed = False
        args = [MICROPYTHON, "-X", "heapsize=192K", MAIN]
        if use_pty:
            master, slave = pty.openpty()
            _raw_with_isig(slave)
            self.proc = subprocess.Popen(
                args, cwd=folder, env=_env(machine_path), stdin=slave, stdout=slave,
                stderr=subprocess.PIPE, preexec_fn=_take_pty_as_ctty,
            )
            os.close(slave)
            self._in = self._out = master
        else:
            self.proc = subprocess.Popen(
                args, cwd=folder, env=_env(machine_path), stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            )
            self._in = self.proc.stdin.fileno()
            self._out = self.proc.stdout.fileno()
        self.use_pty = use_pty

    def send(self, data):
        os.write(self._in, bytes(data))

    def send_frame(self, type, src, dst, payload):
        self.send(wire.encode(type, src, dst, payload))

    def _pump(self, timeout_s):
        if self.closed:
            return False
        ready, _, _ = select.select([self._out], [], [], timeout_s)
        if not ready:
            return True
        try:
            data = os.read(self._out, 4096)
        except OSError:  # EIO: the pty's other side has gone
            data = b""
        if not data:
            self.closed = True
            return False
        self.raw += data
        for line in self.splitter.feed(data):
            try:
                self.frames.append(wire.decode(line))
            except wire.ProtocolError as e:
                raise AssertionError("board sent an undecodable frame (%s): %r" % (e, line))
        return True

    def expect(self, match, what, timeout_s=WAIT_S, start=0):
        """The first frame from index `start` on that `match`es; fails after timeout_s."""
        deadline = time.monotonic() + timeout_s
        seen = start
        while True:
            for i in range(seen, len(self.frames)):
                if match(self.frames[i]):
                    return self.frames[i]
            seen = len(self.frames)
            left = deadline - time.monotonic()
            if left <= 0 or not self._pump(min(left, 0.2)) and self.closed:
                raise AssertionError(
                    "no %s within %ss; got %s" % (what, timeout_s, [msgs.name(f.type) for f in self.frames])
                )

    def wait_exit(self, timeout_s=WAIT_S):
        deadline = time.monotonic() + timeout_s
        while self.proc.poll() is None and time.monotonic() < deadline:
            self._pump(0.1)
        while self._pump(0):
            pass
        rc = self.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        return rc, self.proc.stderr.read().decode(errors="replace")

    def text_after_frames(self):
        """What the board printed after its last frame (the REPL's text)."""
        raw = bytes(self.raw)
        return raw[raw.rfind(b"\x00") + 1 :].decode(errors="replace")

    def kill(self):
        """Stop the process and release its files; safe to call twice."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()
        if self.use_pty and self._in is not None:
            os.close(self._in)
            self._in = self._out = None
        self.closed = True


@pytest.fixture
def start(machine_path):
    boards = []

    def _start(folder, use_pty=True):
        b = Board(str(folder), machine_path, use_pty)
        boards.append(b)
        return b

    yield _start
    for b in boards:  # always, even when the test failed
        b.kill()


def is_type(type, src=None, dst=None):
    def match(f):
        return f.type == type and (src is None or f.src == src) and (dst is None or f.dst == dst)

    return match


def read_state(folder, name):
    """The value runtime.store would give the board at its next boot, read
    without touching the files (Store.read() may finish an interrupted
    commit, which must not race the running board)."""
    best = None
    for suffix in ("", ".tmp", ".bak"):
        try:
            with open(os.path.join(str(folder), "state", name + suffix), "rb") as f:
                seq, value = store.decode(f.read())
        except (OSError, ValueError):
            continue
        if best is None or seq > best[0]:
            best = (seq, bytes(value))
    return None if best is None else best[1]


# ---- boot -------------------------------------------------------------------


def test_boot_says_hello_to_the_ground_first(tmp_path, start):
    board = start(make_board(tmp_path, board_json(hw_gen=2, lineage=3)))
    hello = board.expect(lambda f: True, "first frame")
    assert hello.type == msgs.HELLO
    assert hello.src == 1 and hello.dst == wire.ADDR_GROUND
    hw_gen, fw_major, fw_minor, lineage, proto_min, proto_max, cluster = msgs.unpack(msgs.HELLO, hello.payload)
    assert (hw_gen, lineage, cluster) == (2, 3, 5)
    from node.config import protocols  # firmware version -> the protocols it speaks

    assert (proto_min, proto_max) == protocols((fw_major, fw_minor))
    assert hello.version == proto_max  # a node sends at its newest
    assert board.raw[:1] == b"\x00"  # a delimiter first: ends any boot banner


def test_version_json_goes_into_hello(tmp_path, start):
    folder = make_board(tmp_path, board_json())
    (folder / "version.json").write_text(json.dumps({"version": [3, 7], "label": "3.7.0-test"}))
    board = start(folder)
    hello = board.expect(is_type(msgs.HELLO, dst=wire.ADDR_GROUND), "HELLO")
    assert msgs.unpack(msgs.HELLO, hello.payload)[1:3] == (3, 7)
    # firmware 3.x speaks protocols 1..3 (node/config.py PROTOCOLS) and sends at 3
    assert msgs.unpack(msgs.HELLO, hello.payload)[4:6] == (1, 3) and hello.version == 3


def test_nothing_but_frames_on_stdout(tmp_path, start):
    board = start(make_board(tmp_path, board_json()))
    board.expect(is_type(msgs.TELEMETRY), "TELEMETRY")
    # Every 0x00-delimited piece so far decoded as a frame (expect() fails on
    # anything else), and no text slipped in between.
    text = bytes(board.raw)
    assert text[:1] == b"\x00" and text.count(b"\x00") == len(board.frames) + 1
    # The shell's boot note travels inside a LOG frame; nowhere else.
    for piece in text.split(b"\x00"):
        if piece and wire.decode(piece).type != msgs.LOG:
            assert b"fleetloop" not in piece and b"Traceback" not in piece


# ---- election and persistence -----------------------------------------------


def test_single_member_cluster_elects_itself_and_persists_term_and_vote(tmp_path, start):
    folder = make_board(tmp_path, board_json())
    board = start(folder)
    hb = board.expect(
        lambda f: f.type == msgs.HEARTBEAT and msgs.unpack(msgs.HEARTBEAT, f.payload)[3] == msgs.ROLE_COORDINATOR,
        "HEARTBEAT with role coordinator",
    )
    term, coordinator = msgs.unpack(msgs.HEARTBEAT, hb.payload)[:2]
    assert term >= 1 and coordinator == 1
    assert hb.dst == wire.cluster_addr(5)
    saved_term, voted_for, _counter = node_mod.restore(read_state(folder, "node1"))
    assert saved_term >= term and voted_for == 1
    assert read_state(folder, "identity") == b"\x01\x00"


def test_restart_keeps_the_term(tmp_path, start):
    folder = make_board(tmp_path, board_json())
    first = start(folder)
    first.expect(is_type(msgs.COORDINATOR), "COORDINATOR")
    first.kill()
    term1 = node_mod.restore(read_state(folder, "node1"))[0]
    second = start(folder)
    coord = second.expect(is_type(msgs.COORDINATOR), "COORDINATOR after restart")
    assert msgs.unpack(msgs.COORDINATOR, coord.payload)[0] > term1


def test_vote_is_persisted_before_it_is_sent(tmp_path, start):
    # Two members; the test plays node 2. A long election timeout keeps node
    # 1 a quiet follower, so the only vote on the line is the one we ask for.
    folder = make_board(tmp_path, board_json(members=[1, 2], election_timeout_ms=600000))
    board = start(folder)
    board.expect(is_type(msgs.HELLO), "HELLO")
    board.send_frame(msgs.VOTE_REQUEST, 2, 1, msgs.pack(msgs.VOTE_REQUEST, 7))
    vote = board.expect(is_type(msgs.VOTE, dst=2), "VOTE for node 2")
    assert msgs.unpack(msgs.VOTE, vote.payload) == (7, 2, 1)
    # The vote was on flash by the time it could be seen on the line.
    term, voted_for, _ = node_mod.restore(read_state(folder, "node1"))
    assert (term, voted_for) == (7, 2)
    # And a second candidate in the same term is refused, also after a restart.
    board.kill()
    again = start(folder)
    again.expect(is_type(msgs.HELLO), "HELLO after restart")
    again.send_frame(msgs.VOTE_REQUEST, 2, 1, msgs.pack(msgs.VOTE_REQUEST, 7))
    vote = again.expect(is_type(msgs.VOTE, dst=2), "VOTE after restart")
    assert msgs.unpack(msgs.VOTE, vote.payload) == (7, 2, 1)  # same candidate: granted again


def test_garbage_on_the_line_is_survived(tmp_path, start):
    folder = make_board(tmp_path, board_json(members=[1, 2], election_timeout_ms=600000))
    board = start(folder)
    board.expect(is_type(msgs.HELLO), "HELLO")
    rng = random.Random(5)
    junk = bytes(rng.choice([b for b in range(256) if b != 3]) for _ in range(3000))
    board.send(junk + b"\x00")
    bad_crc = bytearray(wire.encode(msgs.VOTE_REQUEST, 2, 1, msgs.pack(msgs.VOTE_REQUEST, 4)))
    bad_crc[3] ^= 0x40
    board.send(bad_crc)
    board.send_frame(msgs.PREVOTE_REQUEST, 2, 1, msgs.pack(msgs.PREVOTE_REQUEST, 9))
    prevote = board.expect(is_type(msgs.PREVOTE, dst=2), "PREVOTE after junk")
    assert msgs.unpack(msgs.PREVOTE, prevote.payload) == (9, 2, 1)


def test_config_frame_sets_the_time_scale(tmp_path, start):
    # 10 mission minutes of election timeout: at wall speed no election
    # within this test's waits. At 6000 mission s per wall s it is 0.1-0.2 s.
    folder = make_board(tmp_path, board_json(election_timeout_ms=600000))
    board = start(folder)
    board.expect(is_type(msgs.HELLO), "HELLO")
    board.send_frame(msgs.CONFIG, wire.ADDR_GROUND, 1, msgs.pack(msgs.CONFIG, 6000000, 0))
    coord = board.expect(is_type(msgs.COORDINATOR), "COORDINATOR at 6000x")
    assert msgs.unpack(msgs.COORDINATOR, coord.payload)[0] >= 1


def test_node_id_falls_back_to_the_chip_unique_id(tmp_path, start):
    # No node_id: the id comes from machine.unique_id(); the error line for a
    # members list without it names the id, so the test needs no knowledge
    # of the stand-in's unique id.
    folder = make_board(tmp_path, board_json(node_id=None, members=[1]))
    first = start(folder, use_pty=False)
    first.wait_exit()
    line = bytes(first.raw).decode().strip()
    assert "(from unique_id) is not listed" in line, line
    derived = int(line.split("node ")[1].split(" ")[0])
    assert read_state(folder, "identity") == derived.to_bytes(2, "little")
    (folder / "board.json").write_text(json.dumps(board_json(node_id=None, members=[derived])))
    board = start(folder)
    hello = board.expect(is_type(msgs.HELLO), "HELLO")
    assert hello.src == derived


# ---- Ctrl-C and end of input -------------------------------------------------


def test_ctrl_c_on_a_pty_stops_the_loop_with_keyboard_interrupt(tmp_path, start):
    board = start(make_board(tmp_path, board_json()))
    board.expect(is_type(msgs.HEARTBEAT), "HEARTBEAT")
    board.send(b"\x03")  # the pty's line discipline sends SIGINT
    rc, _ = board.wait_exit()
    # The unix port prints the traceback on stdout, as a board prints it on
    # its console: after the last frame.
    assert "KeyboardInterrupt" in board.text_after_frames()
    assert rc == 130  # the unix port's exit status for an uncaught KeyboardInterrupt


def test_ctrl_c_through_a_pipe_stops_the_loop_with_keyboard_interrupt(tmp_path, start):
    # No line discipline: 0x03 arrives as a byte; frames never contain one,
    # so the link turns it into KeyboardInterrupt as a board's USB stack would.
    board = start(make_board(tmp_path, board_json()), use_pty=False)
    board.expect(is_type(msgs.HEARTBEAT), "HEARTBEAT")
    board.send(b"\x03")
    rc, _ = board.wait_exit()
    assert "KeyboardInterrupt" in board.text_after_frames()
    assert rc == 130


def test_end_of_input_ends_the_loop_quietly(tmp_path, start):
    board = start(make_board(tmp_path, board_json()), use_pty=False)
    board.expect(is_type(msgs.HELLO), "HELLO")
    board.proc.stdin.close()
    rc, stderr = board.wait_exit()
    assert rc == 0 and stderr == ""


# ---- bad configuration ------------------------------------------------------

_BAD = [
    ("missing file", None, "board.json: missing"),
    ("not json", "{node_id: 1", "board.json: not valid JSON"),
    ("missing key", board_json(members=None), 'board.json: key "members": missing'),
    ("unknown key", board_json(membres=[1]), 'board.json: key "membres": unknown key'),
    ("wrong type", board_json(cluster="5"), 'board.json: key "cluster": must be of type int'),
    ("out of range", board_json(watchdog_ms=20000), 'board.json: key "watchdog_ms": 20000 out of range'),
    ("bad transport", board_json(transport="can"), 'board.json: key "transport"'),
    ("uart without pins", board_json(transport="uart"), 'board.json: key "uart": missing'),
    ("not a member", board_json(node_id=9), 'board.json: key "members": node 9 (from board.json) is not listed'),
    ("bad hex key", board_json(auth_key="xyz"), 'board.json: key "auth_key": must be hex digits'),
    ("market elector off the roster", board_json(market={"roster": [1], "electors": [2], "units": [1] * 8}),
     "board.json: market: elector 2 is not in the roster"),
    ("market argument unknown", board_json(market={"roster": [1], "electors": [1], "units": [1] * 8, "sloth_ms": 5}),
     "board.json: market: "),
]


@pytest.mark.parametrize("why,cfg,expected", _BAD, ids=[b[0] for b in _BAD])
def test_bad_board_json_prints_one_line_naming_file_and_key(tmp_path, start, why, cfg, expected):
    board = start(make_board(tmp_path, cfg), use_pty=False)
    rc, stderr = board.wait_exit()
    out = bytes(board.raw).decode()
    lines = out.splitlines()
    assert len(lines) == 1, out
    assert lines[0].startswith("fleetloop: ") and expected in lines[0], lines[0]
    assert lines[0].endswith("-- loop not started")
    assert rc == 0 and stderr == ""  # no traceback: back to the REPL


def test_bad_version_json_names_the_file_and_key(tmp_path, start):
    folder = make_board(tmp_path, board_json())
    (folder / "version.json").write_text(json.dumps({"version": [1]}))
    board = start(folder, use_pty=False)
    rc, _ = board.wait_exit()
    assert bytes(board.raw).decode().strip() == (
        'fleetloop: version.json: key "version": must be [major, minor] -- loop not started'
    )


# ---- inside the loop (MicroPython, fake clock and link) ------------------------

_INSIDE = r'''
import gc, json, sys
import main
from node import msgs, wire
from runtime.clock import MissionClock

T = [0]  # fake ticks_ms

class FakeLink:
    """Scripted input; a wait() is a sleep: fake time jumps by its timeout."""
    def __init__(self):
        self.pending = b""
        self.buf = bytearray(128)
        self._mv = memoryview(self.buf)
        self.waits = []
        self.out = 0
    def wait(self, timeout_ms):
        if self.waits is not None:
            self.waits.append(timeout_ms)
        if self.pending:
            return True
        T[0] += timeout_ms if timeout_ms > 0 else 0
        return False
    def read(self):
        n = min(len(self.pending), len(self.buf))
        self.buf[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        return n
    def view(self, n):
        return self._mv[:n]
    def write(self, data):
        self.out += 1

def run(mode):
    link = FakeLink()
    clock = MissionClock(1000, lambda: T[0], lambda a, b: a - b)
    gc.collect()
    before = gc.mem_alloc()
    sh = main.build(link=link, clock=clock)
    gc.collect()
    built = gc.mem_alloc() - before
    sh.watchdog.start()
    result = {"built_bytes": built, "heap_bytes": gc.mem_alloc() + gc.mem_free()}
    if mode != "idle":
        link.waits = None
    if mode == "idle":
        # 10 s of wall time with nothing arriving: how often does it wake?
        while T[0] < 10000:
            sh.step()
        result["steps"] = sh.iterations
        result["zero_waits"] = sum(1 for w in link.waits if w == 0)
        result["min_wait_after_boot"] = min(link.waits[1:])
        result["frames_out"] = link.out
    elif mode == "starve":
        # Out of heap for good: a test-side hog takes every free block, and a
        # heartbeat arrives at every step (100 ms of wall time), so no
        # iteration can finish. The loop must give up (raise) after
        # runtime.shell.STARVED_MS without a watchdog, and never with one.
        hb = wire.encode(msgs.HEARTBEAT, 2, wire.cluster_addr(5),
                         msgs.pack(msgs.HEARTBEAT, 3, 2, 1, msgs.ROLE_COORDINATOR, 0, 1, 0, 0))
        for _ in range(20):  # boot and settle first, with heap to spare
            T[0] += 100
            sh.step()
        hog = None  # a chain of pairs: a list's buffer could not grow long before the heap is full
        for size in (4096, 256, 32, 16, 1):
            try:
                while True:
                    hog = (hog, bytearray(size))
            except MemoryError:
                pass
        first = T[0]
        raised = None
        while T[0] - first < 20000:
            link.pending = hb
            T[0] += 100
            try:
                sh.step()
            except MemoryError:
                raised = T[0] - first
                break
        hog = None
        gc.collect()
        result["raised_after_ms"] = raised
        result["out_of_memory"] = sh.out_of_memory
        result["watchdog_running"] = sh.watchdog.running
    else:
        # A busy follower: node 2 heartbeats as coordinator of term 3 every
        # 50 ms of wall time. Live heap (after a collection) at every step;
        # its high-water mark, and whether it grows between step 1000 and 3000.
        hb = wire.encode(msgs.HEARTBEAT, 2, wire.cluster_addr(5),
                         msgs.pack(msgs.HEARTBEAT, 3, 2, 1, msgs.ROLE_COORDINATOR, 0, 1, 0, 0))
        high = None
        for i in range(3000):
            if i % 5 == 0:
                link.pending += hb
            T[0] += 10
            sh.step()
            gc.collect()
            live = gc.mem_alloc()
            high = live if high is None or live > high else high
            if i == 999:
                result["alloc_after_1000"] = live
        result["alloc_after_3000"] = live
        result["live_high_water"] = high
        result["role"] = sh.node.wire_role()
        result["coordinator"] = sh.node.coordinator
    print(json.dumps(result))

run(sys.argv[1])
'''


def _inside(tmp_path, machine_path, mode, cfg):
    """Run _INSIDE in a board's layout: the firmware and `machine` copied into
    the board's folder and imported by relative path, as a Pico holds them at
    its root. (Each imported module keeps its file name in the heap: from a
    checkout the figures grew with the checkout's path, 1.5 KB for 52 more
    characters.)"""
    folder = make_board(tmp_path, cfg)
    shutil.copytree(FIRMWARE, folder, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(os.path.join(machine_path, "machine.py"), folder / "machine.py")
    script = tmp_path / "inside.py"
    script.write_text(_INSIDE)
    env = dict(os.environ, MICROPYPATH=".")
    proc = subprocess.run(
        [MICROPYTHON, "-X", "heapsize=192K", str(script), mode],
        cwd=str(folder), env=env, capture_output=True, timeout=WAIT_S,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    return json.loads(proc.stdout.decode().strip().splitlines()[-1])


def test_the_loop_sleeps_until_something_is_due(tmp_path, machine_path):
    # Single member, T = 1000 mission ms: heartbeats every 250 ms, telemetry
    # and state every 1000 ms, watchdog feeds every 1250 ms. Ten seconds hold
    # about 40 + 10 + 10 + 8 wakeups; a busy loop would never let fake time
    # pass at all (a zero wait does not advance it).
    r = _inside(tmp_path, machine_path, "idle", board_json(election_timeout_ms=1000))
    assert r["steps"] < 150, r
    assert r["zero_waits"] <= 1, r  # only the very first: the core has not booted
    assert r["min_wait_after_boot"] >= 1, r
    assert r["frames_out"] > 40, r


def test_a_loop_out_of_heap_for_good_gives_up_unless_a_watchdog_will_reset_it(tmp_path, machine_path):
    # A board whose every iteration runs out of heap used to spin silently at
    # 100 % CPU (an elector board coordinating a 100-node region did, with
    # no watchdog: the ground saw only `silent`, "it printed nothing else").
    # Now, with no watchdog, it raises after STARVED_MS, so main.py records
    # and prints it; with a watchdog it goes on, unfed, and the watchdog resets it.
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    r = _inside(tmp_path / "a", machine_path, "starve", board_json(election_timeout_ms=1000, watchdog_ms=0))
    assert not r["watchdog_running"] and r["raised_after_ms"] is not None, r
    assert STARVED_MS <= r["raised_after_ms"] <= STARVED_MS + 200, r
    assert r["out_of_memory"] >= STARVED_MS // 100, r  # every step out of heap until then
    r = _inside(tmp_path / "b", machine_path, "starve", board_json(election_timeout_ms=1000, watchdog_ms=2000))
    assert r["watchdog_running"] and r["raised_after_ms"] is None and r["out_of_memory"] >= 190, r


def test_heap_use_under_192k_is_bounded(tmp_path, machine_path):
    r = _inside(tmp_path, machine_path, "busy", board_json(members=[1, 2], election_timeout_ms=1000))
    print("board shell heap (192K): %s" % r)
    assert r["role"] in (msgs.ROLE_FOLLOWER, msgs.ROLE_STANDBY) and r["coordinator"] == 2, r
    assert r["alloc_after_3000"] - r["alloc_after_1000"] < 1024, r  # no growth per frame
    assert r["live_high_water"] < r["heap_bytes"] // 2, r  # half the heap left for bursts


_UNITS = r"""
import json
from node import msgs
from runtime.clock import MissionClock
from runtime.led import StatusLed

T = [0]
c = MissionClock(1000, lambda: T[0], lambda a, b: a - b)
r = {}
T[0] = 500
r["at_500"] = c.now_ms()
c.set_scale(60000)            # 60 mission s per wall s from here on
r["after_rescale"] = c.now_ms()
T[0] = 510
r["10ms_later"] = c.now_ms()
r["wait_for_600"] = c.wall_wait_ms(600)   # 600 mission ms -> 10 wall ms
r["wait_for_1"] = c.wall_wait_ms(1)       # rounds up: never wakes early
c.set_scale(0)
T[0] = 9000
r["stopped"] = c.now_ms()
r["wait_stopped"] = c.wall_wait_ms(5)

class Pin:
    def __init__(self):
        self.levels = []
    def value(self, v):
        self.levels.append(v)

pin = Pin()
led = StatusLed(pin)
r["coord"] = [led.show(msgs.ROLE_COORDINATOR, 0), pin.levels[-1]]
r["follower"] = [led.show(msgs.ROLE_FOLLOWER, 0), pin.levels[-1]]
r["standby_0"] = [led.show(msgs.ROLE_STANDBY, 0), pin.levels[-1]]
r["standby_600"] = [led.show(msgs.ROLE_STANDBY, 600), pin.levels[-1]]
r["writes"] = len(pin.levels)
led.show(msgs.ROLE_FOLLOWER, 700)
led.show(msgs.ROLE_FOLLOWER, 800)
r["writes_after_repeat"] = len(pin.levels)
print(json.dumps(r))
"""


def test_mission_clock_and_status_led_under_micropython(tmp_path, machine_path):
    script = tmp_path / "units.py"
    script.write_text(_UNITS)
    proc = subprocess.run(
        [MICROPYTHON, "-X", "heapsize=192K", str(script)], cwd=str(tmp_path), env=_env(machine_path),
        capture_output=True, timeout=WAIT_S,
    )
    assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()
    r = json.loads(proc.stdout)
    assert r["at_500"] == 500 and r["after_rescale"] == 500  # no jump on a scale change
    assert r["10ms_later"] == 500 + 600
    assert r["wait_for_600"] == 10 and r["wait_for_1"] == 1
    assert r["stopped"] == 1100 and r["wait_stopped"] is None  # scale 0: mission time stands
    assert r["coord"] == [None, 1] and r["follower"] == [None, 0]
    assert r["standby_0"] == [500, 1] and r["standby_600"] == [400, 0]
    assert r["writes_after_repeat"] == r["writes"]  # the pin is written on changes only


def test_journal_comes_before_the_frames_it_explains(tmp_path, start):
    # board.json "journal": true: the shell reports every core call with the
    # mission ms it passed; the journal frame of a poll goes out before that
    # poll's frames, and a received line is named by its crc32.
    import binascii

    board = start(make_board(tmp_path, board_json(journal=True, members=[1, 2])))
    hello = board.expect(lambda f: f.type == msgs.HELLO, "HELLO")
    first = board.frames.index(hello)
    assert first > 0 and board.frames[0].type == msgs.JOURNAL and board.frames[0].dst == wire.ADDR_GROUND
    start0, entries = msgs.unpack_journal(board.frames[0].payload)
    assert start0 == 0 and entries[0] == (msgs.J_BOOT, 0, 0)  # fresh: nothing saved yet
    assert msgs.J_LOG in [k for k, _, _ in entries]  # the boot note, which became a LOG frame
    beat = wire.encode(msgs.HEARTBEAT, 2, wire.cluster_addr(5), msgs.pack(msgs.HEARTBEAT, 0, 0, 0, 0, 0, 1, 0, 0))
    board.send(beat)
    want = binascii.crc32(bytes(beat[:-1]))
    n = len(board.frames)
    board.expect(lambda f: f.type == msgs.JOURNAL and any(e[0] == msgs.J_RX and e[2] == want
                                                           for e in msgs.unpack_journal(f.payload)[1]),
                 "a journal naming the heartbeat", start=n)
    # Entries are numbered without gaps, each poll's count matches what followed.
    expect_first = 0
    for i, f in enumerate(board.frames):
        if f.type != msgs.JOURNAL:
            continue
        got_first, entries = msgs.unpack_journal(f.payload)
        assert got_first == expect_first
        expect_first += len(entries)
        polls = [arg for kind, _, arg in entries if kind == msgs.J_POLL]
        after = 0
        for g in board.frames[i + 1:]:
            if g.type == msgs.JOURNAL:
                break
            after += 1
        if i + 1 + after < len(board.frames):  # a complete batch: the last poll's frames all followed
            assert after == polls[-1], (i, entries, after)
    times = [t for f in board.frames if f.type == msgs.JOURNAL
             for kind, t, _ in msgs.unpack_journal(f.payload)[1] if kind in (msgs.J_POLL, msgs.J_RX)]
    assert times == sorted(times) and times[-1] > 0  # the board's mission ms, monotonic
