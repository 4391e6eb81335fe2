"""Stress one race of the emulated Pico (hil/emulated.py): a Ctrl-C sent as
main.py ends, followed at once by a command for the REPL.

Each round boots a board whose main.py prints its reset cause, then writes
``\\r\\x03import machine; machine.reset()\\r`` and waits for the board to come
back with the watchdog's reset cause, as
tests/hil/test_emulated_board.py::test_machine_reset_is_a_hard_reset_through_the_watchdog
does. The supervisor may still think code runs when the 0x03 comes, so the
board gets a SIGINT just as its REPL starts; before the fix in
board_lib/_emuboot.py _rx, the REPL could lose the byte after the 0x03
("mport machine"). The race needs a loaded machine: run several at once,
beside other work (the fix's figures came from 6 of these beside two busy
loops)::

    .venv/bin/python -m tools.ctrl_c_race --rounds 40

Prints each failing round's board output and "lost N of M"; exit status 1
if any round failed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import serial

from hil.emulated import PWRON_RESET, WDT_RESET, EmulatedBoard

MAIN_PY = "import machine\nprint('cause', machine.reset_cause())\n"


def one_round(folder: Path) -> bytes | None:
    """None if the board came back through the watchdog; else what it printed."""
    (folder / "main.py").write_text(MAIN_PY)
    board = EmulatedBoard(folder, name="pico")
    board.start()
    try:
        if not board.wait_output(b"cause %d" % PWRON_RESET, timeout_s=30):
            return board.log
        mark = board.log_size
        with serial.Serial(board.device) as port:
            port.write(b"\r\x03import machine; machine.reset()\r")
            if board.wait_output(b"cause %d" % WDT_RESET, timeout_s=30, since=mark):
                return None
        return board.log
    finally:
        board.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=40, help="boards booted one after another (default 40)")
    args = parser.parse_args(argv)
    lost = 0
    with tempfile.TemporaryDirectory(prefix="ctrl-c-race-") as tmp:
        for i in range(args.rounds):
            folder = Path(tmp) / str(i)
            folder.mkdir()
            out = one_round(folder)
            if out is not None:
                lost += 1
                print("round %d: the board did not come back through the watchdog; it printed:\n%s"
                      % (i, out[-600:].decode(errors="replace")))
    print("lost %d of %d" % (lost, args.rounds))
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
