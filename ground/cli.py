"""`ground` command line.

    ground run SCENARIO [--sim | --emulated [N] | --rig RIG.yaml] [--seed S] [--out DIR]
    ground metrics TRACE [--out DIR]      # recompute metrics/reports from a trace
    ground export-pcap TRACE [-o OUT.pcapng] [--time mission|wall] [--allow-torn]
    ground replay-frames TRACE --node N [--into sim|DEVICE] [--time-scale X] [--allow-torn]
    ground replay-run TRACE [--out DIR]
(docs/TRACE_TOOLS.md: the trace tools.)

Exit status: 0 when the run finished and every gate passed, 1 when a gate or
invariant failed, 2 on bad input (the message names file:line, node or link).
The replay commands exit 0 when the replay is identical, 1 when it differs.
"""

import argparse
import os
import sys
import time

from ground.yamlfile import ConfigError


def _default_out(name):
    return os.path.join("runs", "%s-%s" % (name, time.strftime("%Y%m%d-%H%M%S")))


def cmd_run(args):
    from ground import run as run_mod
    from ground import scenario as scenario_mod

    sc = scenario_mod.load(args.scenario)
    out = args.out or _default_out(sc.name)
    boards, mode, farm = None, "sim", None
    if args.emulated is not None:
        from ground import emulated_run

        mode = "emulated"
        farm = emulated_run.start_farm(sc, os.path.join(out, "boards"), count=args.emulated)
        boards = farm.devices()
    elif args.rig:
        from hil import rig as rig_mod

        mode = "rig"
        boards = rig_mod.load(args.rig).devices_for(sc)
    progress = None if args.quiet else run_mod.print_progress()
    print("ground run: %s (%d nodes, %g mission s, seed %d, %s) -> %s"
          % (sc.name, len(sc.nodes), sc.duration_s, args.seed if args.seed is not None else sc.seed, mode, out))
    try:
        result = run_mod.run(sc, out, mode=mode, seed=args.seed, boards=boards, progress=progress)
    finally:
        if farm is not None:
            farm.stop()
    if progress:
        sys.stderr.write("\n")
    print(open(os.path.join(out, "metrics.txt")).read(), end="")
    if result.failures:
        for f in result.failures:
            print("FAIL: " + f)
        return 1
    print("PASS: %s (trace %s)" % (sc.name, os.path.join(out, "trace.jsonl")))
    return 0


def cmd_metrics(args):
    from ground import metrics, report, trace

    header, events, torn = trace.read(args.trace)
    m = metrics.compute(header, events)
    out = args.out or os.path.dirname(os.path.abspath(args.trace))
    report.write_reports(out, header, m, events)
    print(open(os.path.join(out, "metrics.txt")).read(), end="")
    if torn:
        print("note: %s: the last line was torn (the run was cut off); metrics cover what was recorded" % args.trace)
    return 0


def cmd_export_pcap(args):
    from ground import pcap

    out = args.output
    if out is None:
        base = args.trace[:-len(".jsonl")] if args.trace.endswith(".jsonl") else args.trace
        out = base + ".pcapng"
    r = pcap.export(args.trace, out, time=args.time, allow_torn=args.allow_torn)
    print("ground export-pcap: %s -> %s: %d packets (%d frame fates, %d events), %s time%s"
          % (args.trace, out, r.packets, r.frames, r.events, args.time,
             "; the trace's last line was torn, exported the events before it" if r.torn else ""))
    print("  tshark -X lua_script:%s -r %s" % (os.path.relpath(_LUA), out))
    return 0


_LUA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools", "wireshark", "fleetloop.lua")


def cmd_replay_frames(args):
    from ground import replay

    r = replay.replay_frames(args.trace, args.node, into=args.into, allow_torn=args.allow_torn,
                             time_scale=args.time_scale, wait_hello_s=args.wait_hello,
                             say=lambda text: print(text, file=sys.stderr, flush=True))
    print(r.report())
    return 0 if r.identical else 1


def cmd_replay_run(args):
    from ground import replay

    r = replay.replay_run(args.trace, out_dir=args.out)
    print(r.report())
    return 0 if r.identical else 1


def main(argv=None):
    p = argparse.ArgumentParser(prog="ground", description="fleetloop ground harness")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run a scenario")
    r.add_argument("scenario")
    g = r.add_mutually_exclusive_group()
    g.add_argument("--sim", action="store_true", help="in-process nodes in virtual time (default)")
    g.add_argument("--emulated", nargs="?", type=int, const=0, default=None, metavar="N",
                   help="emulated Picos (one per scenario node; N only checks the count)")
    g.add_argument("--rig", metavar="RIG.yaml", help="real boards described by a rig file")
    r.add_argument("--seed", type=int)
    r.add_argument("--out", metavar="DIR")
    r.add_argument("--quiet", action="store_true", help="no live progress line")
    r.set_defaults(fn=cmd_run)
    m = sub.add_parser("metrics", help="recompute metrics and reports from a trace")
    m.add_argument("trace")
    m.add_argument("--out", metavar="DIR")
    m.set_defaults(fn=cmd_metrics)
    e = sub.add_parser("export-pcap", help="write a trace as pcapng for Wireshark (tools/wireshark/fleetloop.lua)")
    e.add_argument("trace")
    e.add_argument("-o", "--output", metavar="OUT.pcapng", help="default: the trace's name with .pcapng")
    e.add_argument("--time", choices=("mission", "wall"), default="mission",
                   help="packet timestamps: mission time since mission 0 (default) or the trace's wall_ns")
    e.add_argument("--allow-torn", action="store_true", help="export a trace whose last line was cut off")
    e.set_defaults(fn=cmd_export_pcap)
    f = sub.add_parser("replay-frames", help="feed one node's recorded input frames to a node and diff its output")
    f.add_argument("trace")
    f.add_argument("--node", type=int, required=True, metavar="N")
    f.add_argument("--into", default="sim", metavar="sim|DEVICE",
                   help="sim: the in-process core in virtual time (default); else a pyserial URL, in real time")
    f.add_argument("--time-scale", type=float, metavar="X", help="real-time replay: mission s per wall s (default: the trace's)")
    f.add_argument("--wait-hello", type=float, default=30.0, metavar="S",
                   help="device replay: wait this long for the board's HELLO (reset it then); 0: start at once")
    f.add_argument("--allow-torn", action="store_true", help="replay a trace whose last line was cut off")
    f.set_defaults(fn=cmd_replay_frames)
    rr = sub.add_parser("replay-run", help="re-run a sim trace's scenario and compare the traces byte for byte")
    rr.add_argument("trace")
    rr.add_argument("--out", metavar="DIR", help="keep the re-run in DIR (a new folder); default: discard it")
    rr.set_defaults(fn=cmd_replay_run)
    from ground import chaos  # `ground chaos`: random fault schedules, run and judged (docs/CHAOS.md)
    c = sub.add_parser("chaos", help="random fault schedules over scenarios, run in virtual time and judged")
    chaos.add_arguments(c), c.set_defaults(fn=chaos.main)
    args = p.parse_args(argv)
    try:
        return args.fn(args)
    except (ConfigError, ValueError, OSError) as e:
        print("ground: error: %s" % e, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
