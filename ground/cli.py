"""`ground` command line.

    ground run SCENARIO [--sim | --emulated [N] | --rig RIG.yaml] [--seed S] [--out DIR]
    ground metrics TRACE [--out DIR]      # recompute metrics/reports from a trace

Exit status: 0 when the run finished and every gate passed, 1 when a gate or
invariant failed, 2 on bad input (the message names file:line, node or link).
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
    args = p.parse_args(argv)
    try:
        return args.fn(args)
    except (ConfigError, ValueError, OSError) as e:
        print("ground: error: %s" % e, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
