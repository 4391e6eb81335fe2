"""The bytes an emulated Pico's supervisor moves, one half of EmulatedBoard
(hil/emulated.py; this is its base class, run only in the supervisor
thread): host bytes from the pty to the board's stdin, a 0x03 turned into
SIGINT while the board's code runs; the board's output to the pty and to
the log; and the control pipe from board_lib/machine.py (watchdog, pins,
machine.reset()).
"""

from __future__ import annotations

import errno
import os
import signal
import time

from hil.emulated_rules import RESET_REQUEST, RUNNING, ControlError, parse_control, split_interrupt

_CTRL_C = 0x03
_OUT_QUEUE_MAX = 64 * 1024  # board bytes held while nobody reads the pty
_LOG_MAX = 1024 * 1024  # tail of the board's output kept in .log
_CONTROL_LINE_MAX = 256
_WDT_SLACK = 17 / 16  # machine.WDT sends feeds at most once per timeout/16


class BoardIO:
    """EmulatedBoard's byte and control-pipe handlers (attributes set by EmulatedBoard.__init__)."""

    # -- bytes --------------------------------------------------------------

    def _read_host(self) -> None:
        try:
            data = os.read(self._master, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            if exc.errno == errno.EIO:  # no slave open: cannot happen while we hold it
                return
            raise
        if self._state != RUNNING:
            return  # an unpowered or crashed board reads nothing
        enabled = _CTRL_C in data and self._interrupt_enabled()
        data, interrupt = split_interrupt(data, enabled)
        if interrupt:
            self._drop_input()
            if self._proc is not None and not self._sigint_pending():
                self._sigint_cpu_ticks = self._cpu_ticks()
                self._proc.send_signal(signal.SIGINT)
        self._in_queue += data
        self._write_stdin()

    def _interrupt_enabled(self) -> bool:
        # As in pyexec, only running code can be interrupted; the REPL reads
        # 0x03 as a character. And the unix port's kbd_intr(3) installs a
        # SIGINT handler while kbd_intr(-1) restores the default action, so
        # the kernel's record of caught signals is the board's setting.
        if self._proc is None or not self._executing:
            return False
        try:
            with open(f"/proc/{self._proc.pid}/status", "rb") as f:
                status = f.read()
            start = status.index(b"SigCgt:") + 7
            caught = int(status[start : status.index(b"\n", start)], 16)
        except (OSError, ValueError):
            return False
        return bool(caught & (1 << (signal.SIGINT - 1)))

    def _sigint_pending(self) -> bool:
        # Whether the last SIGINT may not have become a KeyboardInterrupt yet.
        # The unix port's handler only marks the interrupt pending, and the
        # VM raises it at its next check; a second SIGINT before then makes
        # the port exit(1), where a Pico would just schedule the same
        # interrupt again. So a 0x03 is dropped (a Pico's no-op) until the
        # board has shown it got past the first: it reported code starting
        # or ending (E, I), or it has run code since: its CPU time moved on by
        # more than a clock tick (a tick's worth of bytecode passes many of
        # the VM's checks; one tick more can be the handler alone, charged
        # across a tick's boundary). A board that waits for the CPU, or waits
        # in a call with the interrupt still pending, uses none, so it stays
        # protected however long the host waits (the fixed 0.25 s this used
        # to allow is not a bound on a loaded machine). The cost: a program
        # that catches the interrupt and then only sleeps gets its next
        # Ctrl-C once it has run about 20 ms of code (docs/EMULATED_BOARD.md).
        if self._sigint_cpu_ticks is None:
            return False
        if self._cpu_ticks() > self._sigint_cpu_ticks + 1:
            self._sigint_cpu_ticks = None
            return False
        return True

    def _cpu_ticks(self) -> int:
        # The interpreter's user + system CPU time in clock ticks; -1 when it
        # is gone (its next boot starts with no SIGINT outstanding).
        assert self._proc is not None
        try:
            with open(f"/proc/{self._proc.pid}/stat", "rb") as f:
                fields = f.read().rpartition(b")")[2].split()
            return int(fields[11]) + int(fields[12])  # utime, stime: stat(5) fields 14 and 15
        except (OSError, ValueError, IndexError):
            return -1

    def _write_stdin(self) -> None:
        if not self._in_queue:
            return
        try:
            written = os.write(self._stdin_w, self._in_queue)
        except BlockingIOError:
            return
        del self._in_queue[:written]

    def _drop_input(self) -> None:
        self._in_queue.clear()
        try:
            while os.read(self._stdin_drain, 65536):
                pass
        except BlockingIOError:
            pass

    def _read_output(self) -> bool:
        try:
            data = os.read(self._out_r, 65536)
        except BlockingIOError:
            return False
        if not data:
            return False
        with self._log_cond:  # one step for readers: on the pty and in the log
            self._write_host(data)
            self._log += data
            self._log_total += len(data)
            if len(self._log) > _LOG_MAX:
                del self._log[: len(self._log) - _LOG_MAX]
            self._log_cond.notify_all()
        return True

    def _write_host(self, data: bytes) -> None:
        if self._out_queue:
            self._out_queue += data
            data = bytes(self._out_queue)
            self._out_queue.clear()
        if not data:
            return
        try:
            written = os.write(self._master, data)
        except BlockingIOError:
            written = 0
        rest = data[written:]
        room = _OUT_QUEUE_MAX - len(self._out_queue)
        self._out_queue += rest[:room]
        self.dropped_output_bytes += max(0, len(rest) - room)

    # -- control pipe -------------------------------------------------------

    def _read_control(self, live: bool) -> None:
        try:
            while chunk := os.read(self._ctl_r, 4096):
                self._control_buf += chunk
        except BlockingIOError:
            pass
        while (end := self._control_buf.find(b"\n")) >= 0:
            line = bytes(self._control_buf[:end])
            del self._control_buf[: end + 1]
            self._control(line, live)
        if len(self._control_buf) > _CONTROL_LINE_MAX:  # garbage with no newline
            self._control_buf.clear()
            self.control_errors += 1

    def _discard_control(self) -> None:
        try:
            while os.read(self._ctl_r, 4096):
                pass
        except BlockingIOError:
            pass
        self._control_buf.clear()

    def _control(self, line: bytes, live: bool) -> None:
        try:
            message = parse_control(line)
        except ControlError:
            self.control_errors += 1
            return
        if message.kind in ("E", "I") and live:
            self._executing = message.kind == "E"
            self._sigint_cpu_ticks = None  # the board got past any SIGINT sent before
        elif message.kind == "R" and live:
            self._apply(RESET_REQUEST)
        elif message.kind == "W":
            self._wdt_timeout_s = message.value / 1000
            self._wdt_fed = time.monotonic()
        elif message.kind == "F" and self._wdt_timeout_s is not None:
            self._wdt_fed = time.monotonic()
        elif message.kind == "D":
            self._wdt_timeout_s = None
        elif message.kind == "P":
            self._pins[message.value] = message.level

    def _wdt_deadline(self) -> float:
        assert self._wdt_timeout_s is not None
        return self._wdt_fed + self._wdt_timeout_s * _WDT_SLACK
