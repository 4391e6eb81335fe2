"""Emulated Raspberry Pi Pico boards: a serial device that stock tools open.

CI has no Picos. An EmulatedBoard gives stock ``mpremote`` and pyserial a
pseudo-terminal that behaves, on the wire, like a Pico running MicroPython's
rp2 port, with the MicroPython unix port running the firmware behind it::

    mpremote / pyserial
         |  /dev/pts/N, and the stable symlink <folder>.tty
    pty master <-- supervisor thread --> pipes <-- micropython -X heapsize=192K _emuboot.py
                   (one per board; blocks in poll; never a busy loop)

The supervisor holds the pty (so the device path outlives every interpreter),
copies bytes both ways unmodified, turns a host 0x03 into SIGINT while the
board's code runs with its interrupt character enabled (at the REPL, and
after ``micropython.kbd_intr(-1)``, 0x03 is passed on as data), and starts a
fresh interpreter whenever the old one soft-reboots. ``board_lib/_emuboot.py`` is the board's boot sequence and
REPL (pyexec's bytes); ``board_lib/machine.py`` stands in for rp2's machine
module, and its machine.reset(), WDT and Pin writes reach the supervisor over
a control pipe.

The power state is a small table (_TRANSITIONS); it and the two pure helpers
that the supervisor runs on every chunk, split_interrupt() and
parse_control(), are in hil/emulated_rules.py (and importable from here), so
they can be tested byte by byte.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import queue
import select
import signal
import subprocess
import sys
import threading
import time
import tty
import weakref
from pathlib import Path
from typing import Callable

from hil.emulated_io import BoardIO
from hil.emulated_rules import (  # noqa: F401  (the board's states, events and errors: this module's API too)
    _API_EVENTS, _BOOT, _FORGET, _KILL, _TRANSITIONS, CRASH, HALTED, OFF, POWER_CUT, POWER_ON, PWRON_RESET, RESET,
    RESET_REQUEST, RUNNING, SOFT_REBOOT, STOPPED, WDT_EXPIRED, WDT_RESET, BoardError, BoardStateError, ControlError,
    ControlMessage, parse_control, split_interrupt,
)

BOARD_LIB = Path(__file__).resolve().with_name("board_lib")
_EMUBOOT = BOARD_LIB / "_emuboot.py"

_MODE_FRIENDLY = 0  # _emuboot's modes; also exit code - _EXIT_SOFT
_EXIT_SOFT = 64

ROM_IMAGE = "rom/romfs.img"  # in the board's folder; _emuboot mounts it at /rom
# A Pico build with ROMFS (MICROPY_HW_ROMFS_BYTES): 256K of its 2 MB flash,
# taken from littlefs. The firmware's ROM image is ~110 KB.
ROM_PARTITION_BYTES = 256 * 1024

_IN_QUEUE_MAX = 64 * 1024  # host bytes held while the board's stdin pipe is full
_COMMAND_TIMEOUT_S = 10.0


_prctl: Callable[..., int] | None
try:  # the interpreter must not outlive its supervisor thread, even on SIGKILL
    import ctypes

    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (ImportError, OSError, AttributeError):  # not Linux/glibc: no safety net
    _prctl = None
_PR_SET_PDEATHSIG = 1
_SIGKILL = int(signal.SIGKILL)


def _die_with_parent() -> None:
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, _SIGKILL)


def parse_heap(heap: str | int) -> int:
    """Bytes of a heap size as `micropython -X heapsize` takes it: 196608,
    "192K", "1M"; ValueError naming the value otherwise."""
    if isinstance(heap, int):
        return heap
    text = str(heap).strip()
    scale = {"K": 1024, "M": 1024 * 1024}.get(text[-1:].upper(), 1)
    digits = text[:-1] if scale > 1 else text
    if not digits.isdigit():
        raise ValueError(f"heap size {heap!r}: want bytes, or a number with K or M (192K)")
    return int(digits) * scale


def heap_bytes_for(heap: str | int, rom_bytes: int) -> int:
    """The heapsize to start the interpreter with so that, once it holds a
    ROM image of rom_bytes in one block, `heap` is left for Python objects:
    the image plus the GC's tables for it (4 bits per 32-byte block on the
    64-bit port: 1/64), rounded up to 1K. A Pico's ROM is flash, not heap."""
    base = parse_heap(heap)
    if rom_bytes <= 0:
        return base
    extra = rom_bytes + rom_bytes // 64 + 64
    return base + (extra + 1023) // 1024 * 1024


_LIVE: "weakref.WeakSet[EmulatedBoard]" = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for board in list(_LIVE):
        board.stop()


class EmulatedBoard(BoardIO):
    """A Raspberry Pi Pico emulated with the MicroPython unix port, behind a
    pty that stock mpremote and pyserial open.

    ``folder`` is the board's flash: the board sees it as "/" and nothing
    outside it by path. ``romfs`` (default): the board's MicroPython is
    built with ROMFS, a 256K ROM partition whose contents are
    ``<folder>/rom/romfs.img`` (rom_image; hidden from the board's "/"),
    mounted at /rom and first on sys.path when it holds a ROMFS image, and
    written by ``vfs.rom_ioctl`` (``mpremote romfs deploy``); without it,
    the board has no ROMFS and its code must be files. ``device`` is the /dev/pts/N path (set by start());
    ``link`` a stable symlink to it, ``<folder>.tty`` unless given. Use as a
    context manager, or start() ... stop().

    Modelled: the rp2 REPL on the wire (banner, ``>>> ``, Ctrl-A raw REPL,
    raw-paste, Ctrl-B, Ctrl-C, Ctrl-D soft reboot: boot.py, then main.py
    unless the reboot came from the raw REPL, then the REPL, each soft
    reboot in a fresh interpreter with a fresh heap); Ctrl-C as
    KeyboardInterrupt that honours ``micropython.kbd_intr(-1)``; binary
    stdin/stdout unmodified both ways; select.poll on sys.stdin; the heap
    size (192K); hard reset, power cut (SIGKILL, even mid-write), power on;
    machine.WDT resets; the stand-ins in board_lib/machine.py.

    Not modelled:
      - sys.stdout.write() sends "\\n" where a Pico sends "\\r\\n": the unix
        port's sys.stdout cannot be replaced. print() and the REPL's output
        are cooked to "\\r\\n" as on a Pico (print is a Python wrapper of the
        built-in there), and sys.stdout.buffer is exact, as on a Pico;
      - sys.platform is "linux", sys.implementation._machine is the host's,
        and the unix port's built-in modules stand in for rp2's (it has
        socket and termios; it has no rp2, network, bluetooth or neopixel);
      - only 0x03 can be the interrupt character: kbd_intr(c) with another c
        disables interrupts;
      - a 0x03 while the last one's KeyboardInterrupt may still be pending
        is dropped, as a Pico would merge them (the unix port exits on a
        second SIGINT before it handled the first; BoardIO._sigint_pending);
      - timing: no baud rate, no CPU speed (the host runs the code as fast as
        it can), no USB latency;
      - a hard reset or power cut keeps the host's serial connection open (a
        real Pico drops off USB and comes back as a new device);
      - with nobody reading the pty, up to 64 KiB of output wait, then output
        is dropped (dropped_output_bytes); a Pico drops output as soon as no
        host has the port open, and blocks up to 500 ms when one is slow;
      - the filesystem is the host's: no flash size or wear, a power cut
        leaves whatever bytes the interpreter had written (littlefs would keep
        a file's old contents until it was closed), and symlinks inside the
        folder are followed;
      - the REPL has no history, cursor keys, tab completion or auto-indent;
      - the 192K heap also holds _emuboot and the machine stand-in (C in
        flash on a Pico): about 169 KB are free at the REPL, about 24 KB
        less than the heap size;
      - the ROM partition is a bytearray at the bottom of a heap made larger
        by its size, so the 192K stays for Python objects (gc.mem_free() is
        a Pico's; gc.mem_alloc() counts the partition too); the GC scans it
        as it scans any bytearray (a Pico's flash is not scanned);
      - a 0x03 sent in the instant running code ends can reach the REPL as a
        late Ctrl-C (a fresh prompt; the raw REPL clears its line);
      - a 0x03 that arrives in the few microseconds in which running code
        turns its interrupt character off may kill the interpreter (the board
        then shows as HALTED).
    """

    def __init__(
        self,
        folder: str | os.PathLike[str],
        name: str | None = None,
        heap: str | int = "192K",
        micropython: str | os.PathLike[str] | None = None,
        link: str | os.PathLike[str] | None = None,
        romfs: bool = True,
    ) -> None:
        self.folder = Path(folder).absolute()
        # A MicroPython built with ROMFS (vfs.rom_ioctl, /rom), or not.
        self.rom_bytes = ROM_PARTITION_BYTES if romfs else 0
        self.name = name or self.folder.name
        self.heap = heap
        self.micropython = str(micropython or Path(sys.executable).with_name("micropython"))
        self.link = Path(link).absolute() if link else self.folder.with_name(self.folder.name + ".tty")
        self.device: str | None = None
        self.unique_id = hashlib.sha256(
            b"fleetloop emulated pico " + os.fsencode(os.path.realpath(self.folder))
        ).digest()[:8]
        self.boots = 0  # interpreters started, soft reboots included
        self.events: list[str] = []  # every event applied, in order
        self.crash_status: int | None = None  # the last interpreter that died on its own: its exit status (-N: signal N)
        self.dropped_output_bytes = 0
        self.control_errors = 0
        self._state = OFF
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None
        self._commands: queue.SimpleQueue = queue.SimpleQueue()
        self._stop_requested = False
        self._proc: subprocess.Popen | None = None
        self._pidfd = -1
        self._executing = False
        self._mode = _MODE_FRIENDLY
        self._reset_cause = PWRON_RESET
        self._sigint_cpu_ticks: int | None = None  # CPU ticks when the last SIGINT went; None: none outstanding
        self._in_queue = bytearray()
        self._out_queue = bytearray()
        self._control_buf = bytearray()
        self._wdt_timeout_s: float | None = None
        self._wdt_fed = 0.0
        self._pins: dict[int, int] = {}
        self._log = bytearray()
        self._log_total = 0
        self._log_cond = threading.Condition()
        self._fds: list[int] = []
        self._poller = select.poll()
        self._masks: dict[int, int] = {}

    # -- API ---------------------------------------------------------------

    def start(self) -> "EmulatedBoard":
        """Create the pty and symlink, start the supervisor, power on."""
        if self._thread is not None:
            raise BoardStateError(f"{self.name}: already started")
        if not os.access(self.micropython, os.X_OK):
            raise BoardError(f"{self.name}: no MicroPython unix port at {self.micropython}")
        self.folder.mkdir(parents=True, exist_ok=True)
        self._master, self._slave = os.openpty()
        self._fds += [self._master, self._slave]
        tty.setraw(self._slave)  # no echo, no CR/LF translation, no signals
        os.set_blocking(self._master, False)
        self.device = os.ttyname(self._slave)
        self._stdin_r, self._stdin_w = self._pipe()
        os.set_blocking(self._stdin_w, False)
        # A second open file description of the stdin pipe's read end, so the
        # supervisor can empty the pipe (Ctrl-C) without making the board's
        # own reads non-blocking.
        self._stdin_drain = os.open(f"/proc/self/fd/{self._stdin_r}", os.O_RDONLY | os.O_NONBLOCK)
        self._fds.append(self._stdin_drain)
        self._out_r, self._out_w = self._pipe()
        os.set_blocking(self._out_r, False)
        self._ctl_r, self._ctl_w = self._pipe()
        os.set_blocking(self._ctl_r, False)
        self._wake_r, self._wake_w = self._pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._make_link()
        for fd in (self._wake_r, self._out_r, self._ctl_r):
            self._watch(fd, select.POLLIN)
        self._thread = threading.Thread(target=self._supervise, name=f"emulated-{self.name}", daemon=True)
        self._thread.start()
        _LIVE.add(self)
        self.power_on()
        return self

    def stop(self) -> None:
        """Kill the interpreter, stop the supervisor, remove the pty and the
        symlink. Safe to call twice."""
        if self._thread is None or self._state == STOPPED:
            return
        self._stop_requested = True
        self._wake()
        self._thread.join(_COMMAND_TIMEOUT_S)
        if self._thread.is_alive():  # never seen; do not leave the child behind
            self._kill()
        self._state = STOPPED
        _LIVE.discard(self)
        try:
            if self.link.is_symlink() and os.readlink(self.link) == self.device:
                self.link.unlink()
        except OSError:
            pass
        for fd in self._fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds = []

    def reset(self) -> None:
        """Hard reset (the RUN pin): kill the interpreter, boot again; main.py runs."""
        self._call(RESET)

    def power_cut(self) -> None:
        """SIGKILL the interpreter at once, wherever it is; the board stays off."""
        self._call(POWER_CUT)

    def power_on(self) -> None:
        """Boot from cold; main.py runs."""
        self._call(POWER_ON)

    @property
    def state(self) -> str:
        return self._state

    @property
    def pid(self) -> int | None:
        """Process id of the running interpreter (changes at every boot), or None."""
        proc = self._proc
        return None if proc is None else proc.pid

    @property
    def pins(self) -> dict[int, int]:
        """Level of each output pin: what the board last wrote, kept over soft
        reboots (GPIO registers survive them), forgotten at a cold boot."""
        return dict(self._pins)

    @property
    def log(self) -> bytes:
        """The last MiB of what the board printed (whether or not a host read it)."""
        with self._log_cond:
            return bytes(self._log)

    @property
    def log_size(self) -> int:
        """Bytes printed since start(); a mark for wait_output(since=...)."""
        with self._log_cond:
            return self._log_total

    def wait_output(self, needle: bytes, timeout_s: float = 10.0, since: int = 0) -> bool:
        """Wait until the board has printed ``needle`` after byte ``since`` of
        its output; False after timeout_s."""
        deadline = time.monotonic() + timeout_s
        with self._log_cond:
            while True:
                start = max(0, since - (self._log_total - len(self._log)))
                if self._log.find(needle, start) >= 0:
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._log_cond.wait(remaining)

    def __enter__(self) -> "EmulatedBoard":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        crashed = f" (exit status {self.crash_status})" if self._state == HALTED else ""
        return f"<EmulatedBoard {self.name} {self._state}{crashed} {self.device}>"

    # -- commands into the supervisor thread --------------------------------

    def _call(self, event: str) -> None:
        if self._thread is None or self._state == STOPPED:
            raise BoardStateError(f"{self.name}: not started")
        if not self._thread.is_alive():
            raise BoardError(f"{self.name}: supervisor died: {self._failure!r}")
        done = threading.Event()
        box: list[BaseException] = []
        self._commands.put((event, done, box))
        self._wake()
        if not done.wait(_COMMAND_TIMEOUT_S):
            raise BoardError(f"{self.name}: supervisor did not answer {event} in {_COMMAND_TIMEOUT_S} s")
        if box:
            raise box[0]

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b".")
        except BlockingIOError:
            pass  # already awake

    def _run_commands(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        while True:
            try:
                event, done, box = self._commands.get_nowait()
            except queue.Empty:
                return
            try:
                self._apply(event)
            except (BoardStateError, BoardError) as exc:
                box.append(exc)
            finally:
                done.set()

    # -- the supervisor -----------------------------------------------------

    def _supervise(self) -> None:
        try:
            while not self._stop_requested:
                self._poll_once()
        except BaseException as exc:  # recorded for the API; the finally cleans up
            self._failure = exc
        finally:
            self._kill()
            while True:  # nobody waits forever on a dead supervisor
                try:
                    _, done, box = self._commands.get_nowait()
                except queue.Empty:
                    break
                box.append(BoardError(f"{self.name}: supervisor stopped"))
                done.set()

    def _poll_once(self) -> None:
        master = select.POLLOUT if self._out_queue else 0
        if len(self._in_queue) < _IN_QUEUE_MAX:
            master |= select.POLLIN
        self._watch(self._master, master)
        self._watch(self._stdin_w, select.POLLOUT if self._in_queue else 0)
        timeout_ms = None
        if self._wdt_timeout_s is not None:
            timeout_ms = max(0, int((self._wdt_deadline() - time.monotonic()) * 1000) + 1)
        ready = dict(self._poller.poll(timeout_ms))
        child = self._proc  # handlers below may replace it (and reuse its pidfd's number)
        if self._wake_r in ready:
            self._run_commands()
        if self._ctl_r in ready:
            self._read_control(live=True)
        if self._out_r in ready:
            self._read_output()
        if self._master in ready:
            mask = ready[self._master]
            if mask & select.POLLOUT:
                self._write_host(b"")
            if mask & select.POLLIN:
                self._read_host()
            elif mask & (select.POLLHUP | select.POLLERR):
                raise BoardError(f"{self.name}: pty master hung up")  # we hold the slave: never
        if self._stdin_w in ready:
            self._write_stdin()
        if self._proc is child and self._pidfd in ready:
            self._child_exited()
        if self._wdt_timeout_s is not None and time.monotonic() >= self._wdt_deadline():
            self._apply(WDT_EXPIRED)

    def _apply(self, event: str) -> None:
        try:
            next_state, steps, cause = _TRANSITIONS[(self._state, event)]
        except KeyError:
            error = BoardStateError if event in _API_EVENTS else BoardError
            raise error(f"{self.name}: no transition for {event} while {self._state}") from None
        self.events.append(event)
        for step in steps:
            if step == _KILL:
                self._kill()
            elif step == _FORGET:
                self._drop_input()
                self._wdt_timeout_s = None
                self._pins.clear()
                self._mode = _MODE_FRIENDLY
            elif step == _BOOT:
                self._spawn(self._reset_cause if cause is None else cause)
        self._state = next_state

    @property
    def rom_image(self) -> Path:
        """The contents of the board's ROM partition (a ROMFS image,
        hil/image.py; erased past the file's end), outside its flash
        stand-in. Used only when the board has ROMFS (rom_bytes > 0)."""
        return self.folder / ROM_IMAGE

    def heap_bytes_for_boot(self) -> int:
        """The interpreter's heap: the board's heap plus its ROM partition,
        which _emuboot holds in the heap's first block (heap_bytes_for)."""
        return heap_bytes_for(self.heap, self.rom_bytes)

    def _spawn(self, cause: int) -> None:
        argv = [
            self.micropython, "-X", f"heapsize={self.heap_bytes_for_boot()}", str(_EMUBOOT),
            str(self.folder), str(self._mode), str(self._ctl_w), self.unique_id.hex(), str(cause),
            ",".join(f"{gpio}={level}" for gpio, level in sorted(self._pins.items())), str(self.rom_bytes),
        ]  # fmt: skip
        try:
            self._proc = subprocess.Popen(
                argv,
                stdin=self._stdin_r,
                stdout=self._out_w,
                stderr=self._out_w,
                pass_fds=(self._ctl_w,),
                cwd=self.folder,
                start_new_session=True,  # a terminal's Ctrl-C is not the board's
                preexec_fn=_die_with_parent,
            )
        except OSError as exc:
            raise BoardError(f"{self.name}: cannot start {self.micropython}: {exc}") from exc
        self._pidfd = os.pidfd_open(self._proc.pid)
        self._watch(self._pidfd, select.POLLIN)
        self._executing = False  # until the board runs boot.py, main.py or REPL input
        self._sigint_cpu_ticks = None
        self._reset_cause = cause
        self.boots += 1

    def _kill(self) -> None:
        """The chip stops (power cut, RUN pin, watchdog, machine.reset()):
        what the interpreter printed goes into the log, and what had not yet
        reached the host is lost with the USB device, as on a Pico; so after
        a power_cut() nothing of this boot reaches the port any more."""
        if self._proc is None:
            return
        self._proc.kill()
        self._proc.wait()
        self._release_child()
        self._discard_control()  # what a dead interpreter asked for no longer holds
        while self._read_output():  # all it printed, before the next boot's output
            pass
        self._out_queue.clear()

    def _release_child(self) -> None:
        self._proc = None
        self._executing = False
        if self._pidfd >= 0:
            self._watch(self._pidfd, 0)
            os.close(self._pidfd)
            self._pidfd = -1

    def _child_exited(self) -> None:
        assert self._proc is not None
        returncode = self._proc.poll()
        if returncode is None:
            return
        self._release_child()
        self._read_control(live=False)  # pins and feeds it sent before exiting
        while self._read_output():  # what it printed comes before the next boot's
            pass
        if returncode in (_EXIT_SOFT, _EXIT_SOFT + 1):
            self._mode = returncode - _EXIT_SOFT
            self._apply(SOFT_REBOOT)
        else:
            self.crash_status = returncode
            self._apply(CRASH)

    # -- fds ----------------------------------------------------------------

    def _pipe(self) -> tuple[int, int]:
        r, w = os.pipe()
        self._fds += [r, w]
        return r, w

    def _watch(self, fd: int, mask: int) -> None:
        if self._masks.get(fd, 0) == mask:
            return
        if mask:
            self._poller.register(fd, mask)
            self._masks[fd] = mask
        else:
            self._poller.unregister(fd)
            del self._masks[fd]

    def _make_link(self) -> None:
        if self.link.is_symlink():
            self.link.unlink()
        elif self.link.exists():
            raise BoardError(f"{self.name}: {self.link} exists and is not a symlink")
        assert self.device is not None
        self.link.parent.mkdir(parents=True, exist_ok=True)
        self.link.symlink_to(self.device)
