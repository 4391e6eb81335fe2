"""The ``hil`` command: ``python -m hil VERB ...``.

One verb per entry in COMMANDS: a name, a function that adds the verb's
arguments to its argparse subparser, and a function that runs it and returns
the exit code. A new verb (``flash``, ...) is one more entry.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import Callable, NamedTuple


class Command(NamedTuple):
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _emulate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("count", type=int, help="how many boards")
    parser.add_argument(
        "--dir", type=Path, default=Path("boards/emulated"),
        help="where the board folders (each board's flash) and .tty symlinks go (default: boards/emulated)",
    )  # fmt: skip
    parser.add_argument("--prefix", default="pico", help="board names: PREFIX0, PREFIX1, ... (default: pico)")
    parser.add_argument("--heap", default="192K", help="MicroPython heap size (default: 192K, a Pico's)")
    parser.add_argument("--micropython", default=None, help="the MicroPython unix port (default: next to this Python)")


def _emulate(args: argparse.Namespace) -> int:
    from hil.emulated import BoardError, EmulatedBoard

    if args.count < 1:
        print("hil emulate: COUNT must be at least 1", file=sys.stderr)
        return 2
    done = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        done.set()

    stop_signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # SIGHUP: its terminal closed
    previous = {sig: signal.signal(sig, on_signal) for sig in stop_signals}
    boards: list[EmulatedBoard] = []
    try:
        for i in range(args.count):
            name = f"{args.prefix}{i}"
            board = EmulatedBoard(args.dir / name, name=name, heap=args.heap, micropython=args.micropython)
            boards.append(board)
            board.start()
            print(f"{board.name}\t{board.device}\t{board.link}", flush=True)
        print(
            f"{len(boards)} emulated board(s) running; try: mpremote connect {boards[0].link} repl\n"
            "Ctrl-C or SIGTERM stops them.",
            flush=True,
        )
        while not done.wait(3600):
            pass
    except BoardError as exc:
        print(f"hil emulate: {exc}", file=sys.stderr)
        return 1
    finally:
        for board in boards:
            board.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


COMMANDS = [
    Command("emulate", "run N emulated Picos until Ctrl-C / SIGTERM", _emulate_arguments, _emulate),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hil", description="fleetloop hardware-in-the-loop tools")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for command in COMMANDS:
        sub = verbs.add_parser(command.name, help=command.help, description=command.help)
        command.add_arguments(sub)
        sub.set_defaults(run=command.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
