"""The rules an emulated Pico follows, without I/O: its power states and
events, the transition table (what each event does in each state), its
errors, and the two byte helpers its supervisor runs on every chunk
(split_interrupt, parse_control). hil/emulated.py runs them; they are module
functions and a table so they can be tested byte by byte.
"""

from __future__ import annotations

from typing import NamedTuple

# Board power states.
OFF = "off"  # no interpreter; the device path stays, host bytes are dropped
RUNNING = "running"
HALTED = "halted"  # the interpreter died on its own: a hard-faulted Pico
STOPPED = "stopped"  # stop() was called; the device path is gone

# Events. The first three are the API's; the rest come from the board.
POWER_ON = "power_on"
POWER_CUT = "power_cut"
RESET = "reset"  # the RUN pin / reset button
RESET_REQUEST = "reset_request"  # machine.reset()
WDT_EXPIRED = "wdt_expired"
SOFT_REBOOT = "soft_reboot"  # the interpreter exited with _EXIT_SOFT + mode
CRASH = "crash"  # the interpreter exited any other way

# Steps of a transition, run in this order.
_KILL = "kill"  # SIGKILL the interpreter at once, mid-write or not
_FORGET = "forget"  # drop queued input, disarm the watchdog, forget pin levels
_BOOT = "boot"  # start an interpreter

# machine.reset_cause() values (rp2).
PWRON_RESET = 1
WDT_RESET = 3

# Every transition of a board's power state: (state, event) -> (next state,
# steps, reset cause of the boot; None keeps the previous one). The rules:
#  - a cold boot (power on, reset, watchdog, machine.reset()) starts in the
#    friendly REPL, so main.py runs; it forgets queued input, the watchdog and
#    the pins, as a re-enumerating USB device and a reset chip would;
#  - a soft reboot keeps them all and boots in the REPL mode the interpreter
#    exited in (raw: main.py is skipped, as on rp2);
#  - rp2's machine.reset() goes through the watchdog, so it reports WDT_RESET;
#    the RUN pin reports PWRON_RESET;
#  - the watchdog keeps counting when the CPU has crashed, and resets it;
#  - anything not in the table is an error: the API caller's (BoardStateError)
#    for power_on/power_cut/reset, the emulation's (BoardError) otherwise.
_TRANSITIONS = {
    (OFF, POWER_ON): (RUNNING, (_FORGET, _BOOT), PWRON_RESET),
    (RUNNING, POWER_CUT): (OFF, (_KILL, _FORGET), None),
    (HALTED, POWER_CUT): (OFF, (_FORGET,), None),
    (RUNNING, RESET): (RUNNING, (_KILL, _FORGET, _BOOT), PWRON_RESET),
    (HALTED, RESET): (RUNNING, (_FORGET, _BOOT), PWRON_RESET),
    (RUNNING, RESET_REQUEST): (RUNNING, (_KILL, _FORGET, _BOOT), WDT_RESET),
    (RUNNING, WDT_EXPIRED): (RUNNING, (_KILL, _FORGET, _BOOT), WDT_RESET),
    (HALTED, WDT_EXPIRED): (RUNNING, (_FORGET, _BOOT), WDT_RESET),
    (RUNNING, SOFT_REBOOT): (RUNNING, (_BOOT,), None),
    (RUNNING, CRASH): (HALTED, (), None),
}
_API_EVENTS = (POWER_ON, POWER_CUT, RESET)


class BoardStateError(RuntimeError):
    """The caller asked for something the board's state does not allow
    (reset() while off, power_on() while on, start() twice)."""


class BoardError(RuntimeError):
    """The emulation itself failed: no interpreter, a dead supervisor, or no
    answer in time."""


class ControlError(ValueError):
    """A control-pipe line from the board's machine stand-in made no sense."""


def split_interrupt(data: bytes, interrupt_enabled: bool) -> tuple[bytes, bool]:
    """What the board's stdin gets from host bytes ``data``, and whether to
    raise KeyboardInterrupt.

    With the interrupt character enabled, 0x03 is not data: like rp2's USB
    receive callback, it empties what is still queued and schedules the
    interrupt, so only the bytes after the last 0x03 go on. Disabled
    (``micropython.kbd_intr(-1)``), every byte is data.
    """
    if not interrupt_enabled:
        return data, False
    last = data.rfind(b"\x03")
    if last < 0:
        return data, False
    return data[last + 1 :], True


class ControlMessage(NamedTuple):
    """One line on the control pipe: kind E (code runs: a 0x03 may interrupt
    it), I (the REPL waits: a 0x03 is a character), R (machine.reset()),
    W (watchdog armed, value = timeout ms), F (watchdog fed), D (watchdog
    disabled) or P (output pin level, value = GPIO number)."""

    kind: str
    value: int = 0
    level: int = 0


def parse_control(line: bytes) -> ControlMessage:
    """One control line from board_lib/machine.py or _emuboot.py, without its
    newline: ``E``, ``I``, ``R``, ``F``, ``D``, ``W<ms>`` or ``P<gpio>=<0|1>``.
    Raises ControlError for anything else."""
    kind = line[:1]
    try:
        if line in (b"E", b"I", b"R", b"F", b"D"):
            return ControlMessage(line.decode())
        if kind == b"W":
            timeout_ms = int(line[1:])
            if timeout_ms > 0:
                return ControlMessage("W", timeout_ms)
        elif kind == b"P":
            gpio, _, level = line[1:].partition(b"=")
            if level in (b"0", b"1"):
                return ControlMessage("P", int(gpio), int(level))
    except ValueError:
        pass
    raise ControlError(f"bad control line {line[:40]!r}")
