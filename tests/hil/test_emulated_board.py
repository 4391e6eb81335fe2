"""The emulated Pico (hil/emulated.py), driven by the real clients: stock
mpremote as a subprocess and pyserial on the pty.

Every wait has a timeout and every test a pytest-timeout; no test bounds how
long anything takes. Each board is stopped by the fixture, pass or fail.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import serial
from hypothesis import given
from hypothesis import strategies as st

from hil.emulated import (
    HALTED,
    OFF,
    RUNNING,
    PWRON_RESET,
    WDT_RESET,
    BoardStateError,
    ControlError,
    ControlMessage,
    EmulatedBoard,
    parse_control,
    split_interrupt,
)

BIN = Path(sys.executable).parent
MPREMOTE = BIN / "mpremote"
MICROPYTHON = BIN / "micropython"
REPO = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(
        not (MPREMOTE.exists() and MICROPYTHON.exists()),
        reason="needs .venv/bin/mpremote and .venv/bin/micropython (make venv)",
    ),
]


@pytest.fixture
def make_board(tmp_path):
    boards: list[EmulatedBoard] = []

    def make(main_py: str | None = None, name: str = "pico") -> EmulatedBoard:
        folder = tmp_path / name
        folder.mkdir()
        if main_py is not None:
            (folder / "main.py").write_text(main_py)
        board = EmulatedBoard(folder, name=name)
        boards.append(board)
        board.start()
        return board

    yield make
    for board in boards:
        board.stop()


def mpremote(board: EmulatedBoard, *args: str, timeout_s: float = 30) -> str:
    result = subprocess.run(
        [str(MPREMOTE), "connect", str(board.device), *args], capture_output=True, timeout=timeout_s
    )
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result.stdout.decode()


def read_until(port: serial.Serial, needle: bytes, timeout_s: float = 10) -> bytes:
    data = b""
    deadline = time.monotonic() + timeout_s
    port.timeout = 0.1
    while needle not in data:
        assert time.monotonic() < deadline, f"no {needle!r} from the board; got {data[-400:]!r}"
        data += port.read(port.in_waiting or 1)
    return data


def boot_count(board: EmulatedBoard) -> int:
    path = board.folder / "boots.txt"
    return len(path.read_text()) if path.exists() else 0


COUNT_BOOTS = 'f = open("boots.txt", "a")\nf.write("x")\nf.close()\n'


# -- the pure helpers --------------------------------------------------------


def test_split_interrupt_passes_everything_when_disabled():
    data = bytes(range(256))
    assert split_interrupt(data, False) == (data, False)


def test_split_interrupt_keeps_only_bytes_after_the_last_ctrl_c():
    assert split_interrupt(b"ab\x03cd\x03ef", True) == (b"ef", True)
    assert split_interrupt(b"abc", True) == (b"abc", False)
    assert split_interrupt(b"\x03", True) == (b"", True)


def test_split_interrupt_byte_by_byte():
    for byte in b"ab\x03c":
        forward, interrupt = split_interrupt(bytes([byte]), True)
        assert interrupt == (byte == 3)
        assert forward == (b"" if byte == 3 else bytes([byte]))


def test_parse_control_reads_every_message():
    assert parse_control(b"E") == ControlMessage("E")
    assert parse_control(b"I") == ControlMessage("I")
    assert parse_control(b"R") == ControlMessage("R")
    assert parse_control(b"F") == ControlMessage("F")
    assert parse_control(b"D") == ControlMessage("D")
    assert parse_control(b"W500") == ControlMessage("W", 500)
    assert parse_control(b"P25=1") == ControlMessage("P", 25, 1)


@pytest.mark.parametrize("line", [b"", b"W", b"W0", b"Wx", b"P25", b"P25=2", b"Px=1", b"EE", b"B", b"\xff"])
def test_parse_control_rejects_junk(line):
    with pytest.raises(ControlError):
        parse_control(line)


@given(st.binary(max_size=24))
def test_parse_control_any_bytes_give_a_message_or_a_control_error(line):
    try:
        message = parse_control(line)
    except ControlError:
        return
    assert message.kind in ("E", "I", "R", "F", "D", "W", "P")


# -- stock mpremote ----------------------------------------------------------


def test_mpremote_fs_cp_ls_cat_exec_and_soft_reset(make_board, tmp_path):
    board = make_board()
    local = tmp_path / "hello.txt"
    local.write_bytes(b"hello board\n")
    mpremote(board, "fs", "cp", str(local), ":hello.txt")
    assert (board.folder / "hello.txt").read_bytes() == b"hello board\n"
    listing = mpremote(board, "fs", "ls")
    assert "hello.txt" in listing and " 12 hello.txt" in listing  # size, as littlefs reports
    # print() output is cooked to "\r\n" by the board, as on a Pico
    assert mpremote(board, "fs", "cat", ":hello.txt") == "hello board\r\n"
    assert mpremote(board, "exec", "print(6 * 7)") == "42\r\n"
    mpremote(board, "soft-reset")
    assert mpremote(board, "eval", "1 + 2") == "3\r\n"
    mpremote(board, "fs", "cp", ":hello.txt", str(tmp_path / "back.txt"))
    assert (tmp_path / "back.txt").read_bytes() == b"hello board\n"


def test_mpremote_exec_error_is_reported_like_a_pico(make_board):
    board = make_board()
    result = subprocess.run(
        [str(MPREMOTE), "connect", board.device, "exec", "1/0"], capture_output=True, timeout=30
    )
    assert result.returncode == 1
    assert b"ZeroDivisionError: divide by zero\r\n" in result.stdout


def test_mpremote_mount_serves_local_files_to_the_board(make_board, tmp_path):
    board = make_board()
    local = tmp_path / "local"
    local.mkdir()
    (local / "modx.py").write_text("X = 5\n")
    out = mpremote(board, "mount", str(local), "exec", "import modx; print(modx.X * 7)")
    assert out.endswith("35\r\n")


def test_mpremote_through_the_stable_symlink(make_board):
    board = make_board()
    assert board.link == board.folder.with_name("pico.tty")
    assert os.readlink(board.link) == board.device
    result = subprocess.run(
        [str(MPREMOTE), "connect", str(board.link), "exec", "print('via link')"],
        capture_output=True,
        timeout=30,
    )
    assert result.stdout == b"via link\r\n"


# -- boot, reboot, reset, power ----------------------------------------------


def test_main_py_runs_at_boot_soft_reboot_and_reset_but_not_after_raw_soft_reset(make_board):
    board = make_board(COUNT_BOOTS)
    assert board.wait_output(b">>> ")
    assert boot_count(board) == 1
    with serial.Serial(board.device) as port:
        port.write(b"\x04")  # Ctrl-D at the friendly REPL
        read_until(port, b"MPY: soft reboot\r\n")
        assert b"Raspberry Pi Pico" in read_until(port, b">>> ")
    assert boot_count(board) == 2

    mark = board.log_size
    board.reset()
    assert board.wait_output(b">>> ", since=mark)
    assert boot_count(board) == 3

    mpremote(board, "soft-reset")  # a soft reset from the raw REPL skips main.py, as on rp2
    assert boot_count(board) == 3
    assert board.events == ["power_on", "soft_reboot", "reset", "soft_reboot"]


def test_each_soft_reboot_gets_a_fresh_heap_and_fresh_modules(make_board):
    board = make_board()
    mpremote(board, "exec", "import sys; sys.modules['marker'] = sys; big = bytearray(100000)")
    out = mpremote(board, "exec", "import sys, gc; gc.collect(); print('marker' in sys.modules, gc.mem_free() > 150000)")
    assert out == "False True\r\n"


def test_power_cut_then_power_on_boots_again(make_board):
    board = make_board(COUNT_BOOTS + 'f = open("data.bin", "ab")\nwhile True:\n    f.write(b"0123456789")\n')
    assert _wait(lambda: (board.folder / "data.bin").exists())
    board.power_cut()  # mid-write
    assert board.state == OFF
    size = (board.folder / "data.bin").stat().st_size
    with serial.Serial(board.device) as port:
        port.write(b"\x03print(1)\r")  # an unpowered board reads nothing
        time.sleep(0.2)
        assert port.in_waiting == 0
        assert (board.folder / "data.bin").stat().st_size == size
        with pytest.raises(BoardStateError):
            board.reset()
        board.power_on()
        assert board.state == RUNNING
        assert _wait(lambda: boot_count(board) == 2)
        port.write(b"\x03")
        read_until(port, b"KeyboardInterrupt")
        port.write(b"print(6 * 7)\r")
        read_until(port, b"42")


def test_a_crashed_interpreter_halts_the_board_until_reset(make_board):
    board = make_board()
    # --no-follow: the board will never finish this exec
    mpremote(board, "exec", "--no-follow", "import os; os.system('kill -SEGV $PPID')")
    assert _wait(lambda: board.state == HALTED)
    assert board.crash_status == -signal.SIGSEGV and "halted (exit status -11)" in repr(board)
    board.reset()
    assert mpremote(board, "exec", "print('back')") == "back\r\n"


# -- Ctrl-C and binary stdio --------------------------------------------------


def test_ctrl_c_interrupts_an_endless_loop_in_main_py(make_board):
    board = make_board('print("looping")\nwhile True:\n    pass\n')
    assert board.wait_output(b"looping")
    with serial.Serial(board.device) as port:
        port.write(b"\x03")
        out = read_until(port, b">>> ")
        assert b"KeyboardInterrupt" in out
        port.write(b"print(6 * 7)\r")
        assert b"42" in read_until(port, b">>> ")


def test_ctrl_c_interrupts_code_run_from_the_raw_repl(make_board):
    board = make_board()
    with serial.Serial(board.device) as port:
        port.write(b"\r\x03\r\x01")
        read_until(port, b"raw REPL; CTRL-B to exit\r\n>")
        port.write(b"import time\nwhile True:\n    time.sleep_ms(10)\n\x04")
        read_until(port, b"OK")
        port.write(b"\x03")
        out = read_until(port, b"\x04>")
        assert b"KeyboardInterrupt" in out
        port.write(b"print(6 * 7)\x04")
        assert read_until(port, b"\x04>").startswith(b"OK42\r\n\x04\x04>")


def test_a_late_ctrl_c_at_the_repl_is_one_ctrl_c_and_loses_none_of_the_bytes_after_it(make_board):
    # The race: the host's 0x03 reaches the supervisor while it still thinks
    # code runs, so it sends SIGINT, but the code has just ended and the
    # REPL waits for input; the interrupt is handled with the bytes sent
    # after the 0x03 already in the pipe. It must act as one Ctrl-C (a fresh
    # prompt, not a restarted REPL) and cancel nothing else. Made certain
    # here by stopping the board while the SIGINT and the bytes arrive, which
    # makes the interrupt land while the REPL waits for input, or (on a
    # loaded machine) in the REPL's code just before it. The other form, handled
    # just before a read that then takes a byte without blocking, cannot be
    # arranged from outside; under load it lost that byte about once in 60
    # runs of test_machine_reset_is_a_hard_reset_through_the_watchdog ("mport
    # machine"), and none in 360 once _rx waited in poll.
    board = make_board()
    assert board.wait_output(b">>> ")
    with serial.Serial(board.device) as port:
        mark = board.log_size
        pid = board._proc.pid
        os.kill(pid, signal.SIGSTOP)
        try:
            os.kill(pid, signal.SIGINT)  # as the supervisor sends it for a 0x03
            command = b"print(6 * 7)\r"
            port.write(command)
            assert _wait(lambda: _queued_for_board(board) == len(command)), _queued_for_board(board)
        finally:
            os.kill(pid, signal.SIGCONT)
        assert board.wait_output(b"42\r\n>>> ", since=mark)
    out = board.log[mark:]  # the log holds all of this short run
    assert out == b"\r\n>>> print(6 * 7)\r\n42\r\n>>> ", out  # one Ctrl-C's fresh prompt, not a restarted REPL
    assert board.state == RUNNING and board.events == ["power_on"]


def _queued_for_board(board: EmulatedBoard) -> int:
    import fcntl
    import termios

    count = bytearray(4)
    fcntl.ioctl(board._stdin_drain, termios.FIONREAD, count)
    return int.from_bytes(count, sys.byteorder)


ECHO_MAIN = """
import micropython, select, sys
micropython.kbd_intr(-1)  # 0x03 is data from here on, as on a Pico
poller = select.poll()
poller.register(sys.stdin, select.POLLIN)
buf = bytearray(64)
sys.stdout.buffer.write(b"READY\\n")
while True:
    if poller.poll(1000):
        n = sys.stdin.buffer.readinto(buf, 1)
        sys.stdout.buffer.write(buf[:n])
"""


def test_binary_bytes_round_trip_unmodified_after_kbd_intr_off(make_board):
    board = make_board(ECHO_MAIN)
    assert board.wait_output(b"READY\n")
    payload = bytes(range(256)) * 4 + b"\x03\r\n\r\x04\x01\x02\x03\x03"
    with serial.Serial(board.device, timeout=10) as port:
        port.write(payload)
        assert port.read(len(payload)) == payload
    assert board.state == RUNNING


def test_print_is_cooked_to_crlf_and_the_binary_buffer_is_not(make_board):
    board = make_board()
    out = mpremote(board, "exec", "import sys\nprint('a\\nb')\nsys.stdout.buffer.write(b'c\\nd\\r\\n')")
    assert out == "a\r\nb\r\nc\nd\r\n"


# -- the filesystem -----------------------------------------------------------


def test_the_boards_root_is_its_folder_and_nothing_outside(make_board, tmp_path):
    board = make_board()
    out = mpremote(
        board,
        "exec",
        "import os\n"
        "open('/x.txt', 'w').write('hi')\n"
        "open('/../../up.txt', 'w').write('clamped')\n"
        "os.mkdir('/d'); os.chdir('/d'); open('../../y.txt', 'w').write('y')\n"
        "print(os.getcwd(), sorted(os.listdir('/')))",
    )
    assert out == "/d ['d', 'up.txt', 'x.txt', 'y.txt']\r\n"
    assert (board.folder / "x.txt").read_text() == "hi"
    assert (board.folder / "up.txt").read_text() == "clamped"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pico", "pico.tty"]


# -- machine stand-ins ---------------------------------------------------------


def test_unique_id_is_8_bytes_and_stable_per_folder(make_board):
    board = make_board()
    first = mpremote(board, "exec", "import machine; print(machine.unique_id().hex())").strip()
    board.reset()
    assert mpremote(board, "exec", "import machine; print(machine.unique_id().hex())").strip() == first
    assert bytes.fromhex(first) == board.unique_id and len(board.unique_id) == 8
    assert EmulatedBoard(board.folder).unique_id == board.unique_id


def test_pin_writes_reach_the_supervisor(make_board):
    board = make_board("import machine\nled = machine.Pin('LED', machine.Pin.OUT)\nled.on()\nprint('lit')\n")
    assert board.wait_output(b"lit")
    assert _wait(lambda: board.pins.get(25) == 1)
    # mpremote soft-resets first: the level survives it, as GPIO registers do
    out = mpremote(board, "exec", "import machine; p = machine.Pin(25, machine.Pin.OUT); print(p.value()); p.toggle()")
    assert out == "1\r\n"
    assert _wait(lambda: board.pins.get(25) == 0)
    board.reset()
    assert _wait(lambda: board.pins == {})


def test_machine_reset_is_a_hard_reset_through_the_watchdog(make_board):
    board = make_board(COUNT_BOOTS + "import machine\nprint('cause', machine.reset_cause())\n")
    assert board.wait_output(b"cause %d" % PWRON_RESET)
    mark = board.log_size
    with serial.Serial(board.device) as port:
        port.write(b"\r\x03import machine; machine.reset()\r")
        assert board.wait_output(b"cause %d" % WDT_RESET, since=mark), (repr(board), board.events, board.log[-800:])
    assert boot_count(board) == 2
    assert "reset_request" in board.events


def test_watchdog_resets_a_board_that_stops_feeding_it(make_board):
    main = (
        COUNT_BOOTS
        + "import machine, time\n"
        + "wdt = machine.WDT(timeout=500)\n"
        + "for i in range(100):\n    wdt.feed()\n    time.sleep_ms(20)\n"
        + "print('fed for 2 s, cause', machine.reset_cause())\n"
        + "while True:\n    time.sleep_ms(100)\n"
    )
    board = make_board(main)
    assert board.wait_output(b"fed for 2 s, cause %d" % PWRON_RESET, timeout_s=30)
    assert board.wait_output(b"fed for 2 s, cause %d" % WDT_RESET, timeout_s=30)
    assert board.events[:2] == ["power_on", "wdt_expired"]
    board.power_cut()  # or it resets forever


def test_watchdog_deinit_stands_in_for_disabling_it_by_register(make_board):
    main = (
        "import machine, time\n"
        "wdt = machine.WDT(timeout=100)\n"
        "wdt.deinit()\n"
        "print('disabled')\n"
        "time.sleep_ms(600)\n"
        "print('still here')\n"
    )
    board = make_board(main)
    assert board.wait_output(b"still here", timeout_s=30)
    assert board.events == ["power_on"]


def test_uart_and_freq_construct_and_say_what_they_do_not_model(make_board):
    board = make_board()
    out = mpremote(
        board,
        "exec",
        "import machine\n"
        "u = machine.UART(0, baudrate=9600)\n"
        "print(u.write(b'abc'), u.read(), u.any(), machine.freq())\n"
        "machine.idle()",
    )
    assert out == "3 None 0 125000000\r\n"


# -- the CLI -------------------------------------------------------------------


def test_cli_emulate_prints_the_boards_and_stops_them_on_sigterm(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "hil", "emulate", "2", "--dir", str(tmp_path / "boards")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        bufsize=0,
        cwd=REPO,
    )
    try:
        names = [line.split("\t") for line in _read_lines(proc, 2, timeout_s=30)]
        assert [n[0] for n in names] == ["pico0", "pico1"]
        assert all(n[1].startswith("/dev/pts/") for n in names)
        link = Path(names[1][2])
        assert link == tmp_path / "boards" / "pico1.tty" and os.readlink(link) == names[1][1]
        result = subprocess.run(
            [str(MPREMOTE), "connect", str(link), "exec", "print('cli')"], capture_output=True, timeout=30
        )
        assert result.stdout == b"cli\r\n"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert not link.exists() and not link.is_symlink()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _read_lines(proc: subprocess.Popen, count: int, timeout_s: float) -> list[str]:
    assert proc.stdout is not None
    data = b""
    deadline = time.monotonic() + timeout_s
    while data.count(b"\n") < count:
        remaining = deadline - time.monotonic()
        ready, _, _ = select.select([proc.stdout], [], [], max(0, remaining))
        assert ready, f"hil emulate printed only {data!r}"
        chunk = os.read(proc.stdout.fileno(), 4096)
        assert chunk, f"hil emulate exited after {data!r}"
        data += chunk
    return data.decode().split("\n")[:count]


def _wait(predicate, timeout_s: float = 10) -> bool:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


# -- a Pico built with ROMFS ----------------------------------------------------------------


def test_heap_sizes_parse_and_a_rom_partition_is_added_to_the_heap_not_taken_from_it():
    from hil.emulated import ROM_PARTITION_BYTES, heap_bytes_for, parse_heap

    assert parse_heap("192K") == 192 * 1024 and parse_heap("1M") == 1 << 20 and parse_heap(4096) == 4096
    with pytest.raises(ValueError, match="192Q"):
        parse_heap("192Q")
    assert heap_bytes_for("192K", 0) == 192 * 1024
    extra = heap_bytes_for("192K", ROM_PARTITION_BYTES) - 192 * 1024
    assert ROM_PARTITION_BYTES < extra <= ROM_PARTITION_BYTES * 65 // 64 + 1024


def test_a_romfs_image_is_mounted_at_rom_first_on_sys_path_and_outside_the_192k(tmp_path):
    from hil import flash

    built = flash.build(str(tmp_path / "image"))
    flash.write_image(str(tmp_path / "pico"), built=built)  # the romfs layout: modules in rom/romfs.img
    (tmp_path / "pico" / "main.py").unlink()
    with EmulatedBoard(tmp_path / "pico", name="pico") as board:
        out = mpremote(board, "exec", "import sys, os, gc; import node.wire; gc.collect(); print(sys.path[:2],"
                       " node.wire.__file__, gc.mem_free() > 150000, 'node' in os.listdir('/'),"
                       " sorted(os.listdir('/rom'))[:2])")  # fmt: skip
        assert out == "['/rom', '/rom/lib'] /rom/node/wire.mpy True False ['bootinfo.mpy', 'bootslot.mpy']\r\n"
        query = mpremote(board, "romfs", "query")  # stock mpremote finds the partition and the image in it
        assert "ROMFS0 partition has size 262144 bytes" in query and "ROMFS image size: " in query
    with EmulatedBoard(tmp_path / "pico", name="pico", romfs=False) as board:  # a build without ROMFS
        out = mpremote(board, "exec", "import sys, vfs; print(sys.path, hasattr(vfs, 'rom_ioctl'))")
        assert out == "['', '.frozen', '/lib'] False\r\n"
