"""`ground chaos`: random fault schedules over scenarios, run and judged.

    ground chaos SCENARIO... --schedules N --seed S [--rate KIND=PER_H ...] [--mission-s X]
                 [--workers W] [--timeout-s T] [--out DIR] [--as-is] [--gates]

For each base scenario, schedules S .. S+N-1 (ground/chaos_schedules.py: the
base with random faults of every kind inserted) run in virtual time, each in
its own worker process (at most --workers at once, default the machine's
cores; one killed after --timeout-s wall seconds counts as a hang). Each run's
trace goes through the history checker (ground/history.py). A schedule is
judged:

  crash       the run, the metrics or the checker raised (internal error):
              the traceback is kept; or the worker died or hung (timeout)
  violation   a history invariant broke, by name (one_coordinator = split
              brain, lease_exclusive = double allocation, ...)
  gate        a scenario gate failed (docs/METRICS.md): only with --gates
  pass        none of these

By default a schedule is judged by crashes and the history invariants (the
safety rules) only. A scenario's gates are its author's figures for the
faults the author planned (failover_T_p99 within 3 T, no market refusals);
chaos adds crashes, partitions, skews and blackouts the author did not plan,
under which missing those figures is legitimate. The gates a schedule missed
are still reported (not judged); --gates judges them too.

It prints a line per failing schedule as it finishes, a table by seed and a
summary, and writes each failing schedule as DIR/<name>.yaml, which `ground
run` runs as it is (same seed, same faults, virtual time: the same trace),
plus its run folder DIR/<name>/ (trace, metrics, history.txt, traceback.txt).
Passing runs' folders are deleted: traces of failing runs only.
DIR/chaos.json holds every schedule's verdict. `--as-is` runs the given
scenarios unchanged, once each, judged the same way: how to re-judge a
written schedule, history checker included.

Exit status: 0 when every schedule passed, 1 when any failed, 2 on bad input.
Never imports hil (the engine stands alone).
"""

import json
import multiprocessing
import multiprocessing.connection
import os
import shutil
import sys
import time
import traceback

from ground import chaos_schedules as gen
from ground.sigint import SafeInterrupt

DEFAULT_TIMEOUT_S = 600.0  # wall seconds one schedule may take before it counts as hung
SPLIT_BRAIN = "one_coordinator"
DOUBLE_ALLOCATION = "lease_exclusive"


class Job:
    """One schedule to run: its id, scenario text and where its run goes."""

    def __init__(self, base_path, seed, name, text, faults, where=None):
        self.base_path = base_path
        self.where = where or name + ".yaml"  # the path its errors name and its relative paths start from
        self.seed = seed
        self.name = name
        self.text = text
        self.faults = faults  # {kind: count}


class Verdict:
    """What one schedule did. `kind` is crash, violation, gate or pass;
    `violations` {invariant: [messages]}, `gates` [failure strings],
    `error` the traceback (crash)."""

    def __init__(self, job, kind, wall_s, violations=None, gates=None, error="", run_dir=None):
        self.job = job
        self.kind = kind
        self.wall_s = wall_s
        self.violations = violations or {}
        self.gates = gates or []
        self.error = error
        self.run_dir = run_dir
        self.file = None  # the reproducing scenario file, once written

    def summary(self):
        if self.kind == "crash":
            last = [x for x in self.error.strip().splitlines() if x.strip()]
            return "crash: " + (last[-1] if last else "?")
        parts = ["%s x%d" % (k, len(v)) for k, v in sorted(self.violations.items())]
        parts += self.gates
        return "; ".join(parts) if parts else "ok"

    def to_dict(self):
        return {"scenario": self.job.base_path, "seed": self.job.seed, "name": self.job.name, "result": self.kind,
                "violations": self.violations, "gates": self.gates, "error": self.error, "wall_s": round(self.wall_s, 3),
                "faults": self.job.faults, "file": self.file}


# ---- one schedule, in a worker process ---------------------------------------


def judge(text, where, run_dir, judge_gates=True):
    """Run one scenario text in virtual time into run_dir and judge it:
    (kind, violations, gates, error). Exceptions are the verdict, not raised.
    `gates` lists the gates the run missed either way; they make the kind
    "gate" only when judge_gates."""
    from ground import history
    from ground import run as run_mod
    from ground import scenario as scenario_mod

    try:
        sc = scenario_mod.load_text(text, where)
        res = run_mod.run(sc, run_dir)
        rep = history.check(os.path.join(run_dir, "trace.jsonl"), scenario=sc.name)
    except Exception:
        return "crash", {}, [], traceback.format_exc()
    violations = {}
    for v in rep.violations:
        violations.setdefault(v.invariant, []).append(v.message)
    with open(os.path.join(run_dir, "history.txt"), "w") as f:
        f.write(rep.format() + "\n")
    if violations:
        return "violation", violations, list(res.failures), ""
    if res.failures and judge_gates:
        return "gate", {}, list(res.failures), ""
    return "pass", {}, list(res.failures), ""


def _worker(conn, text, where, run_dir, judge_gates):
    try:
        out = judge(text, where, run_dir, judge_gates)
    except BaseException:  # not reached: judge() catches; a last word all the same
        out = ("crash", {}, [], traceback.format_exc())
    conn.send(out)
    conn.close()


# ---- the pool -------------------------------------------------------------------


def run_jobs(jobs, work_dir, workers, timeout_s, on_done=None, judge_gates=True):
    """Run every job, at most `workers` processes at once, each in its own
    process (fresh state; a hang or a hard crash costs only that job). A job
    still running after timeout_s wall seconds is killed: a crash (hang).
    Calls on_done(verdict) as each finishes; returns the verdicts in job order.
    judge_gates: a missed scenario gate fails the job (judge()). Ctrl-C
    raises KeyboardInterrupt here, between jobs, with every worker killed
    (ground/sigint.py says why not wherever it lands)."""
    ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    pending = list(enumerate(jobs))
    pending.reverse()
    running = {}  # conn -> (index, job, process, started, run_dir)
    verdicts = [None] * len(jobs)
    with SafeInterrupt() as stop:
        try:
            _pool(ctx, work_dir, pending, running, verdicts, workers, timeout_s, on_done, judge_gates, stop)
        finally:
            for conn, (_, _, p, _, _) in running.items():  # interrupted: leave no worker behind
                p.kill()
                p.join(5)
                conn.close()
    return verdicts


def _pool(ctx, work_dir, pending, running, verdicts, workers, timeout_s, on_done, judge_gates, stop):
    """run_jobs' loop: start jobs, wait for verdicts (or Ctrl-C), judge timeouts."""
    while pending or running:
        stop.check()
        while pending and len(running) < workers:
            i, job = pending.pop()
            run_dir = os.path.join(work_dir, "%d-%s" % (i, job.name))  # unique even if two names are not
            shutil.rmtree(run_dir, ignore_errors=True)
            os.makedirs(run_dir)
            rd, wr = ctx.Pipe(duplex=False)
            p = ctx.Process(target=_worker, args=(wr, job.text, job.where, run_dir, judge_gates),
                            daemon=True)
            p.start()
            running[rd] = (i, job, p, time.monotonic(), run_dir)
            wr.close()
        soonest = min(started for _, _, _, started, _ in running.values()) + timeout_s
        ready = multiprocessing.connection.wait(list(running) + stop.fds,
                                                timeout=max(0.05, soonest - time.monotonic()))
        now = time.monotonic()
        for conn in list(running):
            i, job, p, started, run_dir = running[conn]
            if conn in ready:
                try:
                    kind, violations, gates, error = conn.recv()
                except (EOFError, OSError):
                    p.join(5)
                    kind, violations, gates, error = "crash", {}, [], (
                        "the worker process died without a verdict (exit code %s): a hard crash of the"
                        " interpreter or the OOM killer" % p.exitcode)
            elif now - started >= timeout_s:
                p.kill()
                kind, violations, gates, error = "crash", {}, [], (
                    "hang: still running after %.0f wall s (--timeout-s); killed" % timeout_s)
            else:
                continue
            conn.close()
            p.join(5)
            del running[conn]
            v = Verdict(job, kind, now - started, violations, gates, error, run_dir)
            verdicts[i] = v
            if on_done is not None:
                on_done(v)


# ---- the verb ----------------------------------------------------------------------


def add_arguments(p):
    p.add_argument("scenario", nargs="+", help="base scenario file(s); schedules are generated over each")
    p.add_argument("--schedules", type=int, default=100, metavar="N", help="schedules per scenario (default 100)")
    p.add_argument("--seed", type=int, default=1, metavar="S", help="first schedule seed: S .. S+N-1 (default 1)")
    p.add_argument("--rate", action="append", default=[], metavar="KIND=PER_H",
                   help="faults of KIND per mission hour (KIND one of all, %s; default %g each); repeatable"
                   % (", ".join(gen.KINDS), gen.DEFAULT_RATE_PER_H))
    p.add_argument("--mission-s", type=float, metavar="X", help="mission length in mission s (default: each scenario's)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, metavar="W",
                   help="schedules run at once, one process each (default: the cores, %d)" % (os.cpu_count() or 1))
    p.add_argument("--timeout-s", type=float, default=DEFAULT_TIMEOUT_S, metavar="T",
                   help="wall seconds one schedule may take before it counts as a hang (default %g)" % DEFAULT_TIMEOUT_S)
    p.add_argument("--out", metavar="DIR", help="failing schedules and chaos.json (default runs/chaos-<time>)")
    p.add_argument("--as-is", action="store_true", help="run the scenarios unchanged, once each, and judge them")
    p.add_argument("--gates", action="store_true",
                   help="a missed scenario gate fails the schedule too (default: judged by crashes and history"
                   " invariants only; missed gates are reported)")


def make_jobs(args):
    """The jobs for the command line; ValueError/ConfigError on bad input."""
    if args.schedules < 0:
        raise ValueError("--schedules %d: must be >= 0" % args.schedules)
    if args.mission_s is not None and not args.mission_s > 0:
        raise ValueError("--mission-s %r: must be > 0 mission seconds" % args.mission_s)
    rates = gen.parse_rates(args.rate)
    from ground import metrics

    jobs = []
    for path in args.scenario:
        base = gen.load_base(path)
        metrics.evaluate({"flat": {}}, base.sc.gates)  # an unknown gate is the base's fault: say so before any run
        if args.as_is:
            jobs.append(Job(path, base.sc.seed, base.sc.name, gen.to_yaml(base.data), gen.kinds_in(base.data), path))
            continue
        if "fleet" in base.data:  # its faults are generated from fleet: (docs/FLEET.md): none can be added
            line = next((i for i, t in enumerate(base.sc.text.splitlines(), 1) if t.startswith("fleet:")), 1)
            raise ValueError("%s:%d: fleet: generates this scenario's faults (docs/FLEET.md), so chaos cannot add"
                             " its own; judge it as it is with --as-is, or give the fleet's churn rates" % (path, line))
        if args.mission_s is not None:  # the base itself must make sense that short, before any fault is added
            trimmed = gen.schedule(base, args.seed, {}, args.mission_s)
            try:
                gen.scenario_mod.load_text(gen.to_yaml(trimmed), "%s at --mission-s %g" % (path, args.mission_s))
            except ValueError as e:  # its line is the shortened copy's: the message says which
                raise ValueError("--mission-s %g is too short for %s: %s" % (args.mission_s, path, e)) from None
        for seed in range(args.seed, args.seed + args.schedules):
            data = gen.schedule(base, seed, rates, args.mission_s)
            text = gen.to_yaml(data)
            gen.check_text(text, data["name"] + ".yaml")
            jobs.append(Job(path, seed, data["name"], text, gen.kinds_in(data)))
    return jobs, rates


def main(args):
    if args.workers < 1:
        raise ValueError("--workers %d: at least 1" % args.workers)
    jobs, rates = make_jobs(args)
    out = args.out or os.path.join("runs", "chaos-" + time.strftime("%Y%m%d-%H%M%S"))
    work = os.path.join(out, ".work")
    os.makedirs(work, exist_ok=True)
    print("ground chaos: %d schedule(s) over %s, %d worker(s), timeout %g s, judged by %s -> %s"
          % (len(jobs), ", ".join(args.scenario), args.workers, args.timeout_s,
             "crashes, invariants and gates" if args.gates else "crashes and invariants (--gates: gates too)", out),
          flush=True)
    started = time.monotonic()
    progress = None if args.quiet else Progress(len(jobs), started)
    finished = []  # verdicts as they come: what an interrupted run still writes

    def done(v):
        finished.append(v)
        _keep_or_drop(v, out, args, rates)
        if v.kind != "pass":
            _say(progress, "  seed %-8d %-9s %s%s" % (v.job.seed, v.kind.upper(), v.job.name,
                                                       "  " + _short(v.summary()) if v.summary() else ""))
        if progress:
            progress.step(v)

    try:
        verdicts = run_jobs(jobs, work, args.workers, args.timeout_s, done, args.gates)
    except KeyboardInterrupt:
        # Nothing already judged is lost: the report and chaos.json of the schedules that finished.
        _write(out, args, rates, sorted(finished, key=lambda v: jobs.index(v.job)), time.monotonic() - started,
               interrupted=True)
        print("\nground chaos: interrupted after %d of %d schedule(s); their verdicts are in %s"
              % (len(finished), len(jobs), os.path.join(out, "chaos.json")), file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if progress:
        progress.finish()
    _write(out, args, rates, verdicts, time.monotonic() - started)
    return 0 if all(v.kind == "pass" for v in verdicts) else 1


def _write(out, args, rates, verdicts, wall_s, interrupted=False):
    """Print the report and write chaos.json for these verdicts."""
    print(report(verdicts, wall_s, args.workers, args.gates), flush=True)
    with open(os.path.join(out, "chaos.json"), "w") as f:
        json.dump({"scenarios": args.scenario, "seed": args.seed, "schedules": args.schedules, "rates_per_h": rates,
                   "mission_s": args.mission_s, "workers": args.workers, "gates_judged": args.gates,
                   "wall_s": round(wall_s, 3),
                   "interrupted": interrupted, "verdicts": [v.to_dict() for v in verdicts]}, f, indent=1)


def _keep_or_drop(v, out, args, rates):
    """A failing schedule's run folder moves to DIR/<name>/ and its scenario
    is written as DIR/<name>.yaml; a passing one's folder is deleted."""
    if v.kind == "pass":
        shutil.rmtree(v.run_dir, ignore_errors=True)
        return
    name = v.job.name
    if os.path.exists(os.path.join(out, name + ".yaml")):  # two bases (or --as-is files) of one name
        name = "%s-%s" % (name, os.path.basename(v.run_dir).split("-", 1)[0])
    keep = os.path.join(out, name)
    shutil.rmtree(keep, ignore_errors=True)
    shutil.move(v.run_dir, keep)
    v.run_dir = keep
    if v.error:
        with open(os.path.join(keep, "traceback.txt"), "w") as f:
            f.write(v.error)
    v.file = os.path.join(out, name + ".yaml")
    how = ("the unchanged scenario" if args.as_is else "chaos schedule %d over %s, rates per mission hour %s"
           % (v.job.seed, v.job.base_path, " ".join("%s=%g" % kv for kv in sorted(rates.items()))))
    head = ["%s: %s" % (v.kind, v.summary()), how, "",
            "Reproduce: python -m ground run %s" % v.file,
            "  (virtual time: the same seed and faults give the same trace; gates fail it as here)",
            "Judge it as chaos did (history checker too): python -m ground chaos --as-is%s %s"
            % (" --gates" if args.gates else "", v.file)]
    with open(v.file, "w") as f:
        f.write("".join("# %s\n" % x if x else "#\n" for x in "\n".join(head).splitlines()))
        f.write(v.job.text)


def report(verdicts, wall_s, workers, gates_judged=True):
    """The table by seed (failing schedules) and the summary, as text."""
    lines = []
    failing = [v for v in verdicts if v.kind != "pass"]
    if failing:
        lines.append("%-8s %-9s %-32s %s" % ("SEED", "RESULT", "SCHEDULE", "WHAT"))
        for v in failing:
            lines.append("%-8d %-9s %-32s %s" % (v.job.seed, v.kind, v.job.name, _short(v.summary(), 200)))
            lines.append("%8s %-9s %s" % ("", "", v.file))
    n = len(verdicts)
    by_kind = {k: sum(1 for v in verdicts if v.kind == k) for k in ("pass", "crash", "violation", "gate")}
    invariants, gates, faults = {}, {}, {}
    for v in verdicts:
        for name, msgs in v.violations.items():
            invariants[name] = invariants.get(name, 0) + 1
        for g in v.gates:
            key = g.split(" ", 1)[0]
            gates[key] = gates.get(key, 0) + 1
        for k, c in v.job.faults.items():
            faults[k] = faults.get(k, 0) + c
    hangs = sum(1 for v in verdicts if v.kind == "crash" and v.error.startswith("hang:"))
    lines.append("")
    lines.append("chaos: %d schedule(s) in %.1f wall s (%d worker(s), %.2f s per schedule)"
                 % (n, wall_s, workers, wall_s / n if n else 0.0))
    lines.append("  passed %d, crashes %d (hangs %d), invariant violations %d, gate failures only %d%s"
                 % (by_kind["pass"], by_kind["crash"], hangs, by_kind["violation"], by_kind["gate"],
                    "" if gates_judged else " (gates not judged: --gates judges them)"))
    lines.append("  split brain (one_coordinator): %d schedule(s); double allocation (lease_exclusive): %d schedule(s)"
                 % (invariants.get(SPLIT_BRAIN, 0), invariants.get(DOUBLE_ALLOCATION, 0)))
    if invariants:
        lines.append("  violations by invariant (schedules): " + ", ".join("%s %d" % kv for kv in sorted(invariants.items())))
    if gates:
        lines.append("  %s by metric (schedules): " % ("gate failures" if gates_judged else "gates missed, not judged")
                     + ", ".join("%s %d" % kv for kv in sorted(gates.items())))
    lines.append("  faults run by kind: " + ", ".join("%s %d" % (k, faults.get(k, 0)) for k in gen.KINDS))
    return "\n".join(lines)


def _short(text, width=120):
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 3] + "..."


class Progress:
    """Schedules done, failing, elapsed and ETA on stderr: one line redrawn
    in place on a terminal (at most 4 times a second), else a line every 10%."""

    def __init__(self, total, started, stream=sys.stderr, label="chaos", unit="schedules"):
        self.label, self.unit = label, unit  # `ground matrix` counts mixes with it
        self.total = total
        self.started = started
        self.stream = stream
        self.tty = stream.isatty()
        self.done = 0
        self.failing = 0
        self._shown = 0.0
        self._tenth = -1

    def step(self, verdict):
        self.done += 1
        self.failing += verdict.kind != "pass"
        now = time.monotonic()
        if self.tty and now - self._shown < 0.25 and self.done < self.total:
            return
        tenth = 10 * self.done // max(1, self.total)
        if not self.tty and tenth == self._tenth:
            return
        self._shown, self._tenth = now, tenth
        elapsed = now - self.started
        eta = elapsed / self.done * (self.total - self.done)
        line = "  %s %d/%d %s, %d failing, %.0f s elapsed, ETA %.0f s" % (
            self.label, self.done, self.total, self.unit, self.failing, elapsed, eta)
        self.stream.write(("\r" + line + "   ") if self.tty else line + "\n")
        self.stream.flush()

    def clear(self):
        if self.tty:
            self.stream.write("\r" + " " * 79 + "\r")

    def finish(self):
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _say(progress, text):
    if progress:
        progress.clear()
    print(text, flush=True)
