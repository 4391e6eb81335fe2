"""The ``hil`` command: ``python -m hil VERB ...``.

One verb per entry in COMMANDS: a name, a function that adds the verb's
arguments to its argparse subparser, and a function that runs it and returns
the exit code. A new verb is one more entry.

    hil emulate N [--dir DIR] [--pdu [ADDRESS]]     emulated Picos (and their power switch) until Ctrl-C
    hil flash RIG.yaml [--version 1.0] [--only NAME...] [--check]
    hil boards RIG.yaml                             attached / missing, with ports
    hil check TRACE [--scenario NAME] [--json] [--allow-torn]   a run's history invariants (ground/history.py)
    hil --version;  -q / -v on every verb
    hil fuzz PORT --board-json F | --emulate        hostile input to a board (hil/fuzz.py)
    hil image build OUT [--version 1.1] [--key HEX] [--test-build --defect NAME]   an update image (hil/update_image.py)
    hil image show IMAGE [--key HEX]                 its manifest, checked

Exit codes are ground/exitcodes.py's, listed in `hil --help`: 0 all is well,
1 a board failed (flash), is missing (boards) or an invariant broke (check),
2 bad input (the message names file:line, board or node), 3 a bug (the
traceback is printed), 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Callable, NamedTuple

from ground import exitcodes


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
    parser.add_argument("--no-romfs", action="store_true",
                        help="emulate a MicroPython built without ROMFS (no ROM partition: code must be files)")
    parser.add_argument("--pdu", metavar="ADDRESS", nargs="?", const="127.0.0.1", default=None,
                        help="also serve the boards' power switch on ADDRESS (default 127.0.0.1): labgrid's"
                             " NetworkPowerPort, model simplerest, index = board number (hil/labgrid_power.py)")


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
    pdu = None
    try:
        for i in range(args.count):
            name = f"{args.prefix}{i}"
            board = EmulatedBoard(args.dir / name, name=name, heap=args.heap, micropython=args.micropython,
                                  romfs=not args.no_romfs)
            boards.append(board)
            board.start()
            print(f"{board.name}\t{board.device}\t{board.link}", flush=True)
        if args.pdu is not None:
            from hil.labgrid_power import EmulatedPdu

            try:
                pdu = EmulatedPdu(dict(enumerate(boards)), host=args.pdu).start()
            except OSError as exc:
                print(f"hil emulate: --pdu {args.pdu}: cannot serve the power switch: {exc}", file=sys.stderr)
                return 2
            print(f"power switch: {pdu.url} (labgrid NetworkPowerPort: model simplerest, index = board number)",
                  flush=True)
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
        if pdu is not None:
            pdu.stop()
        for board in boards:
            board.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def _check_arguments(parser: argparse.ArgumentParser) -> None:
    from ground import history

    history.add_arguments(parser)
    parser.add_argument("--allow-torn", action="store_true",
                        help="check a trace whose last line was cut off (default: refused, exit 2); "
                             "the torn line is still reported as a `trace` violation")


def _check(args: argparse.Namespace) -> int:
    from ground import history, trace

    if not args.allow_torn and os.path.isfile(args.trace):
        # the same rule for a torn trace as every ground verb (trace.torn_message)
        reader = trace.TraceReader(args.trace)
        try:
            complete = sum(1 for _ in reader) - 1
        except (trace.TraceError, OSError):
            complete = None  # history.check reports what is wrong with it
        if reader.torn and complete is not None:
            raise exitcodes.InputError(trace.torn_message(args.trace, max(0, complete)))
    return history.main(args)


def _flash_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("rig", metavar="RIG.yaml", help="the rig file (boards/rig-*.yaml)")
    parser.add_argument("--version", metavar="MAJOR.MINOR",
                        help="firmware version to write into version.json (default: each board's, the rig's, else 1.0)")
    parser.add_argument("--label", help='version.json label (default: "MAJOR.MINOR")')
    parser.add_argument("--only", nargs="+", metavar="NAME", help="flash only these boards")
    parser.add_argument("--check", action="store_true",
                        help="change nothing: say what a flash would copy, and whether an earlier one was cut")
    parser.add_argument("--timeout", type=float, default=None, metavar="S",
                        help="seconds for each mpremote call (default: 60)")  # fmt: skip
    parser.add_argument("--code", choices=("romfs", "files"), default=None,
                        help="where the modules go: the board's ROM partition (romfs; files on a MicroPython without"
                             " ROMFS) or flash (files); default: each board's `code` in the rig, else romfs")


def _flash(args: argparse.Namespace) -> int:
    from ground.yamlfile import ConfigError
    from hil import flash
    from hil import rig as rig_mod

    try:
        rig = rig_mod.load(exitcodes.readable(args.rig))
        version = rig_mod.version_tuple(args.version) if args.version else None
        chosen = [rig.board(n) for n in args.only] if args.only else list(rig.boards)
    except (ConfigError, ValueError) as exc:
        print(f"hil flash: {exc}", file=sys.stderr)
        return 2
    started = []
    try:
        # Emulated boards nobody serves are started here, flashed and stopped;
        # their folders (the rig's emulated_dir) keep the image.
        idle = [b.name for b in chosen if b.emulated and not _served(rig, b)]
        if idle:
            started = rig.start_emulated(only=idle)
            print(f"hil flash: started emulated {', '.join(idle)} in {rig.emulated_dir} (stopped when done)",
                  file=sys.stderr)  # fmt: skip
        shown = flash.Progress([b.name for b in chosen])

        def progress(name: str, phase: str, text: str = "") -> None:
            # a failure's reason is printed once, in the table below
            if not args.quiet:
                shown(name, phase, "(below)" if phase == "failed" else text)

        kw = {"call_timeout_s": args.timeout} if args.timeout else {}
        if args.code:
            kw["code"] = args.code
        results = flash.flash_rig(rig, version=version, label=args.label, only=args.only, progress=progress,
                                  check_only=args.check, **kw)  # fmt: skip
    except KeyboardInterrupt:
        print("hil flash: interrupted; `hil flash RIG --check` says what each board has", file=sys.stderr)
        return 130
    finally:
        for board in started:
            board.stop()
    width = max((len(r.name) for r in results), default=4)
    for r in results:
        if r.note:
            print(f"hil flash: {r.note}", file=sys.stderr)
        print(f"{r.name:<{width}}  {r.summary()}")
    failed = [r for r in results if not r.ok]
    if failed:
        print(f"hil flash: {len(failed)} of {len(results)} board(s) failed", file=sys.stderr)
        return 1
    return 0


def _served(rig, board) -> bool:  # type: ignore[no-untyped-def]
    from hil import rig as rig_mod

    try:
        rig.port(board)
        return True
    except rig_mod.RigError:
        return False


def _shown(path: str) -> str:
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def _boards_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("rig", metavar="RIG.yaml", help="the rig file (boards/rig-*.yaml)")


def _boards(args: argparse.Namespace) -> int:
    from ground.yamlfile import ConfigError
    from hil import boards as boards_mod
    from hil import rig as rig_mod

    try:
        rig = rig_mod.load(exitcodes.readable(args.rig))
    except ConfigError as exc:
        print(f"hil boards: {exc}", file=sys.stderr)
        return 2
    ports = boards_mod.attached()
    rows = [("BOARD", "KIND", "NODE", "CLUSTER", "ROLE", "WHERE", "STATUS")]
    missing = 0
    for b in rig.boards + rig.spares:
        if b.spare and b.emulated:
            where, status = _shown(rig.emulated_folder(b)), "spare, off until a daughter needs it"
        elif b.serial:
            p = boards_mod.find_port(b.serial, ports)
            where = f"serial {b.serial}"
            status = f"attached at {p.device}" if p else "MISSING"
            missing += p is None
        elif b.url:
            where, status = b.url, "URL (not checked)"
        elif b.place:
            where, status = f"labgrid place {b.place}", f"at {b.coordinator or '$LG_COORDINATOR'} (not checked)"
        else:
            where = _shown(rig.emulated_folder(b))
            try:
                status = f"running at {rig.port(b)}"
            except rig_mod.RigError:
                status = "emulated, not running (hil flash starts it)"
        node, cluster = ("-", "-") if b.spare else (str(b.node_id), str(b.cluster))
        rows.append((b.name, b.kind, node, cluster, b.role, where, status))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1])
    if missing:
        print(f"hil boards: {missing} of {len(rig.boards) + len(rig.spares)} board(s) missing", file=sys.stderr)
        return 1
    return 0


COMMANDS = [
    Command("emulate", "run N emulated Picos until Ctrl-C / SIGTERM", _emulate_arguments, _emulate),
    Command("check", "check a run trace's history invariants (ground/history.py)", _check_arguments, _check),
    Command("flash", "deploy the firmware to a rig's boards through mpremote, in parallel", _flash_arguments, _flash),
    Command("boards", "list a rig's boards: attached, missing, running, with their ports", _boards_arguments, _boards),
    Command("fuzz", "hostile input to a live board: rejects by reason, liveness, crash text (hil/fuzz.py)",
            lambda p: __import__("hil.fuzz").fuzz.add_arguments(p), lambda a: __import__("hil.fuzz").fuzz.main(a)),
    Command("image", "build or show an update image: manifest, digests, fleet-key tag (docs/UPDATES.md)",
            lambda p: __import__("hil.update_image").update_image.add_arguments(p),
            lambda a: __import__("hil.update_image").update_image.main(a)),
]


def _common(parser: argparse.ArgumentParser, top: bool = False) -> None:
    # -q/-v before or after the verb (on a verb they default to SUPPRESS, so
    # the top level's value stands unless the verb is given its own)
    d = {} if top else {"default": argparse.SUPPRESS}
    parser.add_argument("-q", "--quiet", action="store_true", help="only results and errors: no progress", **d)
    parser.add_argument("-v", "--verbose", action="count", help="more detail; a traceback with an input error too", **d)


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="hil", description="fleetloop hardware-in-the-loop tools",
                                     epilog=exitcodes.EPILOG, formatter_class=fmt)
    parser.add_argument("--version", action="version", version=exitcodes.version("hil"))
    _common(parser, top=True)
    parser.set_defaults(quiet=False, verbose=0)
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for command in COMMANDS:
        sub = verbs.add_parser(command.name, help=command.help, description=command.help, epilog=exitcodes.EPILOG,
                               formatter_class=fmt)
        command.add_arguments(sub)
        _common(sub)
        sub.set_defaults(run=command.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return exitcodes.main_wrapper("hil", args.run, args, verbose=args.verbose)


if __name__ == "__main__":
    sys.exit(main())
