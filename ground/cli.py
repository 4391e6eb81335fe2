"""`ground` command line: parse the arguments, run one verb, exit with a code
that says what happened (ground/exitcodes.py; listed in `ground --help`).

    ground run SCENARIO [--sim | --emulated [N] [--transport usb|udp] | --rig RIG.yaml] [--seed S] [--out DIR [--force]]
                        [--no-plot] [--precise-time] [--lean] [--workers N] [--shards N] [--ray-address ADDR]
                        [--trace-clusters C,C] [--shard-python PY]
    ground metrics TRACE [--out DIR [--force]] [--no-plot] [--allow-torn]
    ground export-pcap TRACE [-o OUT.pcapng] [--force] [--time mission|wall] [--allow-torn]
    ground replay-frames TRACE --node N [--into sim|DEVICE] [--time-scale X] [--allow-torn]
    ground replay-run TRACE [--out DIR] [--allow-torn]
    ground expand FLEET.yaml [--out FILE [--force]]
    ground sweep FLEET.yaml --sizes 100,500,2000 [--duration-s S] [--workers N] [--shard-python PY] [--out DIR]
    ground --version;  -q / -v on every verb
(docs/CLI.md: conventions; docs/TRACE_TOOLS.md: the trace tools.)

Conventions every verb keeps: nothing already written is overwritten unless
--force (a run's folder, a run's reports); a torn trace (the run was cut off
mid-write) is refused naming file:line unless --allow-torn; a file that
cannot be read reads `cannot read: PATH (reason)`.
"""

import argparse
import os
import sys
import time
import traceback

from ground import exitcodes
from ground.exitcodes import InputError, fresh_folder, readable

PROG = "ground"

RUN_EPILOG = """progress line (on stderr, redrawn in place on a terminal):
  mission    120.0/240 s  50%  elapsed    2.0s  rate   61.3x  ETA    2.0s  frames    1234  coord c1:n2/t2 c2:-
  rate: mission seconds per wall second; ETA: wall time left at that rate;
  c1:n2/t2: cluster 1's coordinator is node 2 in election term 2 (c2:- none known yet).

"""


def _default_out(name):
    base = os.path.join("runs", "%s-%s" % (name, time.strftime("%Y%m%d-%H%M%S")))
    out, n = base, 1
    while os.path.exists(out):  # two runs in one second: never share a folder
        n += 1
        out = "%s-%d" % (base, n)
    return out


def _say(args, text):
    """A line for people (stderr), unless -q."""
    if not args.quiet:
        print(text, file=sys.stderr, flush=True)


def cmd_run(args):
    from ground import backends
    from ground import run as run_mod
    from ground import scenario as scenario_mod
    from ground.progress import Progress

    if args.transport is not None and args.emulated is None:
        raise InputError("--transport %s: only with --emulated (a rig file says its boards' transport in its"
                         " config: {transport: udp}; docs/BOARDS.md)" % args.transport)
    sc = scenario_mod.load(readable(args.scenario))
    out = fresh_folder(args.out, args.force) if args.out else _default_out(sc.name)
    if _lean(args, sc):  # the lean fleet path (ground/fleetrun.py, docs/FLEET_RUN.md)
        from ground import fleetcli

        return fleetcli.run(sc, out, args)
    if args.precise_time and args.emulated is None and not args.rig:
        _say(args, "ground run: note: --precise-time only matters in real time (--emulated, --rig); this is --sim")
    board_sc = sc
    if sc.boards is not None and (args.emulated is not None or args.rig):
        board_sc = _boards_in_fleet(args, sc, out)
    elif sc.boards is not None:
        _say(args, "ground run: note: %s: boards: only matters with --emulated or --rig; every node runs in-process"
             % sc.boards["where"])
    elif args.emulated and args.emulated > len(sc.nodes) and sc.replication is not None:
        pass  # the rest are spare boards, off until a daughter needs one (docs/CONTAINMENT.md)
    elif args.emulated and args.emulated != len(sc.nodes):
        raise InputError("%s: --emulated %d, but the scenario has %d nodes (one board per node); to put boards in"
                         " as one cluster of a larger fleet, give the scenario boards: {cluster: N} (docs/FLEET.md)"
                         % (sc.path, args.emulated, len(sc.nodes)))
    # Boards come from a registered back-end (ground/backends.py; hil/ provides them).
    boards = None
    try:
        if args.emulated is not None:
            name = "emulated-udp" if args.transport == "udp" else "emulated"
            boards = backends.start(name, board_sc, os.path.join(out, "boards"), args.emulated)
        elif args.rig:
            boards = backends.start("rig", board_sc, os.path.join(out, "boards"), readable(args.rig))
    except RuntimeError as e:  # hil.emulated.BoardError: a board that would not start or boot, named
        if args.verbose:
            traceback.print_exc()
        print("FAIL: boards: %s" % e)
        return exitcodes.FAILED
    mode = boards.mode if boards is not None else "sim"
    progress = None if args.quiet else Progress(sys.stderr)
    cpu0, wall0 = time.process_time(), time.monotonic()  # this process only: not the emulated boards
    _say(args, "ground run: %s (%d nodes, %g mission s, seed %d, %s) -> %s"
         % (sc.name, len(sc.nodes), sc.duration_s, args.seed if args.seed is not None else sc.seed, mode, out))
    try:
        result = run_mod.run(sc, out, mode=mode, seed=args.seed, boards=boards and boards.boards, progress=progress,
                             plot=not args.no_plot, precise_time=args.precise_time,
                             update_image=boards.update_image if boards is not None and boards.has_update_images
                             else None, spare_board=boards.spare_board if boards is not None else None)
    finally:
        if boards is not None:
            boards.stop()
    if progress:
        progress.done()
    if not args.quiet:
        with open(os.path.join(out, "metrics.txt"), encoding="utf-8") as f:
            print(f.read(), end="")
    if args.verbose:
        wall = time.monotonic() - wall0
        print("reports: %s" % ", ".join(sorted(n for n in os.listdir(out) if not n.startswith("."))))
        print("harness: %.1f s CPU over %.1f s wall (%.0f%% of a core; boards not included)"
              % (time.process_time() - cpu0, wall, 100.0 * (time.process_time() - cpu0) / wall if wall else 0))
    if result.failures:
        for f in result.failures:
            print("FAIL: " + f)
        # Ctrl-C: the run kept what it recorded (trace, reports) and says so; the exit says who stopped it
        return exitcodes.INTERRUPTED if result.status == "interrupted" else exitcodes.FAILED
    print("PASS: %s (trace %s)" % (sc.name, os.path.join(out, "trace.jsonl")))
    return exitcodes.OK


def _boards_in_fleet(args, sc, out):
    """`boards: {cluster: N}` with --emulated/--rig (ground/mixed.py): refuse an
    elector seat of a region too large for a board, a board count that is
    not the cluster's, a time scale this host cannot keep (a calibration, written to calibration.json); the
    scenario as the board layer sees it."""
    import json

    from ground import mixed

    mixed.check(sc)
    want = mixed.nodes(sc)
    if args.emulated and args.emulated != len(want):
        raise InputError("%s: --emulated %d, but boards.cluster %d has %d nodes (one board per node: %s)"
                         % (sc.boards["where"], args.emulated, sc.boards["cluster"], len(want),
                            ", ".join(map(str, want))))
    _say(args, "ground run: calibrating: the fleet's %d nodes in-process for %g mission s..."
         % (len(sc.nodes), min(mixed.CALIBRATE_S, sc.duration_s)))
    cal = mixed.calibrate(sc, args.seed)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "calibration.json"), "w", encoding="utf-8") as f:
        json.dump(dict(cal.as_dict(), time_scale=sc.time_scale, board_cluster=sc.boards["cluster"],
                       board_nodes=want, board_electors=sorted(mixed.elector_seats(sc))), f, indent=1)
    mixed.refuse_scale(sc, cal)
    seats = mixed.elector_seats(sc)
    _say(args, "ground run: boards are cluster %d (nodes %s%s), %d nodes in-process; this host keeps %.1fx real time"
         " in-process now, time_scale %g (at most %g)" % (sc.boards["cluster"], ", ".join(map(str, want)),
                                                      "".join("; %d is an elector of region %d" % (n, r)
                                                              for n, r in sorted(seats.items())),
                                                      len(sc.nodes) - len(want), cal.pace, sc.time_scale,
                                                      cal.max_scale))
    return mixed.board_view(sc)


def _lean(args, sc):
    """--lean, --workers, --ray-address, --trace-clusters; or --sim above
    LEAN_AUTO_NODES nodes (a fleet)."""
    from ground.fleetrun import LEAN_AUTO_NODES, lean_refusal

    asked = (args.lean or args.workers is not None or args.shards is not None or args.ray_address or args.trace_clusters
             or args.shard_python)
    if asked and (args.emulated is not None or args.rig):
        raise InputError("--lean/--workers/--shards/--ray-address/--trace-clusters/--shard-python run in-process nodes:"
                         " not with %s"
                         % ("--emulated" if args.emulated is not None else "--rig"))
    if asked:
        return True
    if sc.wire_ids is not None and args.emulated is None and not args.rig:
        return True  # addressing: region: only the lean path carries it (ground/wireids.py)
    if args.emulated is None and not args.rig and len(sc.nodes) > LEAN_AUTO_NODES:
        why = lean_refusal(sc)
        if why is None:
            return True
        _say(args, "ground run: note: %d nodes, but the lean path cannot run this scenario (%s): the full --sim path"
             " runs it" % (len(sc.nodes), why))
    return False


def cmd_metrics(args):
    from ground import metrics, report, trace

    header, events, torn = trace.read(readable(args.trace), allow_torn=args.allow_torn)
    if torn:
        _say(args, "ground metrics: note: %s: the last line was torn (the run was cut off); the metrics cover the "
             "%d complete events before it" % (args.trace, len(events)))
    if args.out:
        fresh_folder(args.out, args.force)
    _say(args, "ground metrics: computing the metrics of %d events..." % len(events))
    m = metrics.compute(header, events)
    if args.out:
        run_id = os.path.basename(os.path.dirname(os.path.abspath(args.trace)))  # the run the trace is from
        paths = report.write_reports(args.out, header, m, events, plot=not args.no_plot, run_id=run_id)
        text = open(paths["table"], encoding="utf-8").read()
    else:
        text = report.format_table(m, header.get("regions"))
    print(text, end="")  # the verb's result: printed with -q too
    if args.out:
        _say(args, "ground metrics: wrote %s in %s" % (", ".join(os.path.basename(p) for p in paths.values()), args.out))
    else:
        _say(args, "ground metrics: wrote no files (the run's own reports are as the run left them); "
             "--out DIR writes metrics.json/.prom/.txt%s there" % ("" if args.no_plot else " and timeline.png"))
    return exitcodes.OK


def cmd_export_pcap(args):
    from ground import pcap

    readable(args.trace)
    out = args.output
    if out is None:
        base = args.trace[:-len(".jsonl")] if args.trace.endswith(".jsonl") else args.trace
        out = base + ".pcapng"
    if os.path.exists(out) and not args.force:
        raise InputError("%s: exists; give another -o OUT.pcapng, or --force to replace it" % out)
    r = pcap.export(args.trace, out, time=args.time, allow_torn=args.allow_torn)
    print("ground export-pcap: %s -> %s: %d packets (%d frame fates, %d events), %s time%s"
          % (args.trace, out, r.packets, r.frames, r.events, args.time,
             "; the trace's last line was torn, exported the events before it" if r.torn else ""))
    if not args.quiet and os.path.exists(_LUA):  # a source checkout has the dissector; a wheel does not
        print("  tshark -X lua_script:%s -r %s" % (os.path.relpath(_LUA), out))
    return exitcodes.OK


_LUA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools", "wireshark", "fleetloop.lua")


def cmd_replay_frames(args):
    from ground import replay

    if args.into != "sim" and "://" not in args.into and not os.path.exists(args.into):
        raise InputError("no such device: %s (--into)" % args.into)  # as a rig's absent port reads
    r = replay.replay_frames(readable(args.trace), args.node, into=args.into, allow_torn=args.allow_torn,
                             time_scale=args.time_scale, wait_hello_s=args.wait_hello,
                             say=lambda text: _say(args, text))
    print(r.report())
    return exitcodes.OK if r.identical else exitcodes.FAILED


def cmd_replay_run(args):
    from ground import replay, trace

    _, events, torn = trace.read(readable(args.trace), allow_torn=args.allow_torn)  # one rule for torn traces
    if torn:
        _say(args, "ground replay-run: note: %s: the last line was torn; the re-run is compared with the %d "
             "complete events before it (it differs from there on)" % (args.trace, len(events)))
    _say(args, "ground replay-run: re-running %s in virtual time..." % args.trace)
    r = replay.replay_run(args.trace, out_dir=args.out)
    print(r.report())
    return exitcodes.OK if r.identical else exitcodes.FAILED


def cmd_expand(args):
    from ground import fleetdesc

    text = fleetdesc.explicit_yaml(readable(args.fleet))  # docs/FLEET.md
    if not args.out:
        print(text, end="")
        return exitcodes.OK
    if os.path.exists(args.out) and not args.force:
        raise InputError("%s: exists; give another --out FILE, or --force to replace it" % args.out)
    if os.path.dirname(args.out):
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(text)
    _say(args, "ground expand: %s -> %s (%s)" % (args.fleet, args.out, text.splitlines()[0].split(": ", 1)[-1].rstrip(".")))
    return exitcodes.OK


def _positive(text):
    """argparse type: a number > 0 (a time scale)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("want a number > 0, got %r" % text) from None
    if not 0 < v < float("inf"):
        raise argparse.ArgumentTypeError("want a number > 0, got %s" % text)
    return v


def _common(parser, top=False):
    # -q/-v before or after the verb: on the subparsers they default to
    # SUPPRESS, so a verb without them keeps what the top level parsed.
    d = {} if top else {"default": argparse.SUPPRESS}
    parser.add_argument("-q", "--quiet", action="store_true", help="only results and errors: no progress, no notes", **d)
    parser.add_argument("-v", "--verbose", action="count", help="more detail; a traceback with an input error too", **d)


def _torn(parser, what):
    parser.add_argument("--allow-torn", action="store_true",
                        help="%s a trace whose last line was cut off (default: refused, exit 2)" % what)


def build_parser():
    fmt = argparse.RawDescriptionHelpFormatter
    p = argparse.ArgumentParser(prog=PROG, description="fleetloop ground harness", epilog=exitcodes.EPILOG,
                                formatter_class=fmt)
    p.add_argument("--version", action="version", version=exitcodes.version(PROG))
    _common(p, top=True)
    p.set_defaults(quiet=False, verbose=0)
    sub = p.add_subparsers(dest="cmd", required=True, metavar="VERB")

    def verb(name, help_, epilog=""):
        v = sub.add_parser(name, help=help_, description=help_, epilog=epilog + exitcodes.EPILOG, formatter_class=fmt)
        _common(v)
        return v

    r = verb("run", "run a scenario", RUN_EPILOG)
    r.add_argument("scenario")
    g = r.add_mutually_exclusive_group()
    g.add_argument("--sim", action="store_true", help="in-process nodes in virtual time (default)")
    g.add_argument("--emulated", nargs="?", type=int, const=0, default=None, metavar="N",
                   help="emulated Picos (one per scenario node; N only checks the count)")
    g.add_argument("--rig", metavar="RIG.yaml", help="real boards described by a rig file")
    r.add_argument("--transport", choices=("usb", "udp"), default=None,
                   help="with --emulated: where the boards' frames go, their serial port (usb, default) or one UDP"
                        " datagram per frame to the ground on loopback (udp)")
    r.add_argument("--seed", type=int)
    r.add_argument("--out", metavar="DIR", help="the run folder (default: runs/NAME-DATE-TIME); must be new or empty")
    r.add_argument("--force", action="store_true", help="write into an --out folder that already has files")
    r.add_argument("--no-plot", action="store_true", help="skip timeline.png (the slowest report to draw)")
    r.add_argument("--precise-time", action="store_true",
                   help="real time: spin before every timer for sub-ms lateness (up to a whole core); "
                        "default: polite, spinning at most 25%% of the wall time")
    r.add_argument("--lean", action="store_true",
                   help="the lean fleet path: counters, a trace of a few clusters (default above %d nodes;"
                        " docs/FLEET_RUN.md)" % 2000)
    r.add_argument("--workers", type=int, metavar="N", help="lean path on N cores: N processes on a local Ray "
                   "(1: in-process, no Ray)")
    r.add_argument("--shards", type=int, metavar="N", help="lean path: N shards, whole regions each (default: about"
                   " one per 40 nodes, at least one per worker; docs/FLEET_RUN.md \"Shard size\")")
    r.add_argument("--ray-address", metavar="ADDR", help="lean path on an existing Ray cluster")
    r.add_argument("--trace-clusters", metavar="C,C,...", help="lean path: the clusters whose frames are traced")
    r.add_argument("--shard-python", metavar="PY", help="lean path: run the shards under this Python, in a process of"
                   " their own per worker; `this`: in this one; default `auto`: .venv-pypy's PyPy (`make pypy`) for"
                   " runs of 200,000 node-mission-s and more (docs/FLEET_RUN.md \"Shards on PyPy\")")
    r.set_defaults(fn=cmd_run)

    m = verb("metrics", "recompute a trace's metrics: print the table; --out DIR writes the reports there")
    m.add_argument("trace")
    m.add_argument("--out", metavar="DIR", help="write metrics.json/.prom/.txt and timeline.png into DIR (new or empty)")
    m.add_argument("--force", action="store_true", help="write into an --out folder that already has files "
                                                         "(the run's own folder included)")
    m.add_argument("--no-plot", action="store_true", help="with --out: skip timeline.png")
    _torn(m, "measure")
    m.set_defaults(fn=cmd_metrics)

    e = verb("export-pcap", "write a trace as pcapng for Wireshark (tools/wireshark/fleetloop.lua)")
    e.add_argument("trace")
    e.add_argument("-o", "--output", metavar="OUT.pcapng", help="default: the trace's name with .pcapng")
    e.add_argument("--force", action="store_true", help="replace an existing OUT.pcapng")
    e.add_argument("--time", choices=("mission", "wall"), default="mission",
                   help="packet timestamps: mission time since mission 0 (default) or the trace's wall_ns")
    _torn(e, "export")
    e.set_defaults(fn=cmd_export_pcap)

    f = verb("replay-frames", "feed one node's recorded input frames to a node and diff its output")
    f.add_argument("trace")
    f.add_argument("--node", type=int, required=True, metavar="N")
    f.add_argument("--into", default="sim", metavar="sim|DEVICE",
                   help="sim: the in-process core in virtual time (default); else a pyserial URL, in real time")
    f.add_argument("--time-scale", type=_positive, metavar="X", help="real-time replay: mission s per wall s (default: the trace's)")
    f.add_argument("--wait-hello", type=float, default=30.0, metavar="S",
                   help="device replay: wait this long for the board's HELLO (reset it then); 0: start at once")
    _torn(f, "replay")
    f.set_defaults(fn=cmd_replay_frames)

    rr = verb("replay-run", "re-run a sim trace's scenario and compare the traces byte for byte")
    rr.add_argument("trace")
    rr.add_argument("--out", metavar="DIR", help="keep the re-run in DIR (a new folder); default: discard it")
    _torn(rr, "re-run")
    rr.set_defaults(fn=cmd_replay_run)

    x = verb("expand", "write a fleet description's explicit scenario (docs/FLEET.md): readable, diffable, loads back"
                       " to the same scenario")
    x.add_argument("fleet", metavar="FLEET.yaml")
    x.add_argument("--out", metavar="FILE", help="write it there (default: stdout)")
    x.add_argument("--force", action="store_true", help="replace an existing --out FILE")
    x.set_defaults(fn=cmd_expand)

    from ground import sweep  # `ground sweep`: overhead by fleet size (docs/FLEET.md)

    w = verb("sweep", "run one fleet description at several sizes: coordination overhead per size beside the"
                      " design's table")
    sweep.add_arguments(w)
    w.set_defaults(fn=sweep.main)

    from ground import chaos  # `ground chaos`: random fault schedules, run and judged (docs/CHAOS.md)

    c = verb("chaos", "random fault schedules over scenarios, run in virtual time and judged")
    chaos.add_arguments(c)
    c.set_defaults(fn=chaos.main)

    from ground import matrix  # `ground matrix`: a scenario under every allowed mix of versions (docs/UPDATES.md)

    x = verb("matrix", "run a scenario under every mix of firmware versions that may run together, in virtual time;"
                       " a pass/fail table per gate")
    matrix.add_arguments(x)
    x.set_defaults(fn=matrix.main)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    return exitcodes.main_wrapper(PROG, args.fn, args, verbose=args.verbose)


if __name__ == "__main__":
    sys.exit(main())
