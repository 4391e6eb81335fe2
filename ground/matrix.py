"""`ground matrix`: one scenario run under every mix of firmware versions that may run together.

    ground matrix SCENARIO --versions 1.4,2.0,2.1 [--workers W] [--timeout-s T] [--out DIR [--force]]

A mix is a set of the listed versions. The mixes run are, in this order:

  uniform   each listed version alone (every node runs it): the baseline a
            mixed result is read against
  pair      every pair of listed versions
  all       the whole list, when it has 3 or more versions
  largest   when the whole list may not run together: each largest subset
            (3 versions or more) that may, e.g. 1.4+2.0+2.1 and 2.0+2.1+4.0
            of 1.4,2.0,2.1,4.0

A mix may run together when its majors lie within 3 consecutive majors
(max major - min major <= 2, so also at most 3 majors at once, the
loader's rule, ground/scenario.py MAX_MAJOR_VERSIONS): 1.4 with 3.0 may,
1.4 with 4.0 may not. A mix that may not is listed "not allowed" and not
run; a list where no pair may run together is refused (exit 2).

How a mix of k versions v0..vk-1 (in the order listed) is laid over the
scenario, deterministically: the clusters, by id, take v0, v1, ... in turn
as their firmware; and one cluster is mixed, its nodes (in the order the
scenario lists them) taking v0, v1, ... in turn, so every version of the mix
meets every other inside one cluster, where nodes talk most. The mixed
cluster is the one with the most nodes (the lowest id of those). Every
`firmware:` of the scenario (clusters and `nodes:` overrides) is replaced.

Each mix runs in virtual time (as `ground run --sim`), in its own worker
process (ground/chaos.py's pool: at most --workers at once, a hang killed
after --timeout-s), and its trace goes through the history checker. The
table has a row per mix and a column per gate (PASS/FAIL with the value)
plus the checker's verdict. DIR/matrix.json has it all; DIR/<i>-<mix>/ is
each mix's run folder and DIR/<mix>.yaml its scenario (`ground run` runs
it as it is). Exit 1 when an allowed mix fails a gate or the checker, or
crashes; 0 else; 2 on bad input. Never imports hil.
"""

import copy
import itertools
import json
import os
import sys
import time

from ground import chaos
from ground import chaos_schedules as gen
from ground import scenario as scenario_mod
from ground.exitcodes import InputError, fresh_folder, readable

MAX_MAJOR_SPAN = 2  # majors of one mix lie within 3 consecutive majors (DESIGN.md: at most 3 at once)


class Mix:
    """One set of versions: its kind (uniform, pair, all, largest), its versions in
    list order, whether they may run together, and its name (1.4+2.0)."""

    def __init__(self, kind, versions):
        self.kind = kind
        self.versions = tuple(versions)
        majors = [major(v) for v in versions]
        self.allowed = max(majors) - min(majors) <= MAX_MAJOR_SPAN
        self.name = "+".join(self.versions)

    def why_not(self):
        lo, hi = min(major(v) for v in self.versions), max(major(v) for v in self.versions)
        return "majors %d and %d are %d apart; a mix's majors must lie within 3 consecutive majors" % (lo, hi, hi - lo)


def major(version):
    return int(version.split(".")[0])


def parse_versions(text):
    """'1.4,2.0,2.1' -> ['1.4', '2.0', '2.1']; InputError naming the bad value."""
    out = []
    for item in str(text).split(","):
        v = item.strip()
        a, dot, b = v.partition(".")
        if not (dot and a.isdigit() and b.isdigit()):
            raise InputError("--versions %s: %r is not a firmware version 'major.minor' (e.g. 1.4)" % (text, v))
        v = "%d.%d" % (int(a), int(b))
        if v in out:
            raise InputError("--versions %s: %s is listed twice" % (text, v))
        out.append(v)
    if len(out) < 2:
        raise InputError("--versions %s: give at least 2 versions to mix (e.g. 1.4,2.0)" % text)
    return out


def mixes(versions):
    """The mixes of a version list, in run order (see the module comment)."""
    out = [Mix("uniform", (v,)) for v in versions]
    out += [Mix("pair", p) for p in itertools.combinations(versions, 2)]
    if len(versions) >= 3:
        out.append(Mix("all", versions))
    if not out[-1].allowed and len(versions) >= 4:
        out += largest(versions)
    return out


def largest(versions):
    """The largest subsets of 3 or more versions that may run together, in
    list order, for a list that may not run whole: [Mix("largest", ...)],
    every subset of the largest size that is allowed ([] when none of 3 is)."""
    for k in range(len(versions) - 1, 2, -1):
        found = [Mix("largest", c) for c in itertools.combinations(versions, k)]
        found = [m for m in found if m.allowed]
        if found:
            return found
    return []


def mixed_cluster(data):
    """The id of the cluster whose nodes are mixed: the most nodes, lowest id."""
    return min(data["clusters"], key=lambda c: (-len(c["nodes"]), c["id"]))["id"]


def apply_mix(data, mix):
    """A copy of the scenario data with the mix's firmware laid over it."""
    out = copy.deepcopy(data)
    vs = mix.versions
    mixed = mixed_cluster(out)
    overrides = {}
    for nid, o in (out.get("nodes") or {}).items():
        o = {k: v for k, v in (o or {}).items() if k != "firmware"}
        if o:
            overrides[nid] = o
    for i, c in enumerate(sorted(out["clusters"], key=lambda c: c["id"])):
        c["firmware"] = vs[i % len(vs)]
        if c["id"] == mixed and len(vs) > 1:
            for j, nid in enumerate(c["nodes"]):
                overrides.setdefault(nid, {})["firmware"] = vs[j % len(vs)]
    if overrides:
        out["nodes"] = overrides
    else:
        out.pop("nodes", None)
    out["name"] = "%s-%s" % (data.get("name", "scenario"), mix.name)
    return out


def make_jobs(path, versions):
    """(base, [(mix, Job or None)]): a Job per allowed mix, None for one not
    allowed. InputError/ConfigError on bad input, before anything runs."""
    from ground import metrics

    base = gen.load_base(readable(path))
    if "fleet" in base.data:
        line = next((i for i, t in enumerate(base.sc.text.splitlines(), 1) if t.startswith("fleet:")), 1)
        raise InputError("%s:%d: fleet: gives this scenario's firmware as shares (docs/FLEET.md), so matrix cannot lay"
                         " versions over it; expand it first (ground expand) and give the explicit scenario" % (path, line))
    metrics.evaluate({"flat": {}}, base.sc.gates)  # an unknown gate is the scenario's fault: say so before any run
    ms = mixes(versions)
    if not any(m.allowed for m in ms if m.kind != "uniform"):
        raise InputError("--versions %s: no two of these may run together (%s); list versions whose majors are at"
                         " most %d apart" % (",".join(versions), ms[-1].why_not(), MAX_MAJOR_SPAN))
    out = []
    for m in ms:
        if not m.allowed:
            out.append((m, None))
            continue
        data = apply_mix(base.data, m)
        where = "%s [mix %s]" % (path, m.name)
        text = gen.to_yaml(data)
        scenario_mod.load_text(text, where)  # e.g. a rollout's images with the mix would pass 3 majors: file named
        out.append((m, chaos.Job(path, base.sc.seed, data["name"], text, {}, where)))
    return base, out


# ---- the verb ----------------------------------------------------------------------


def add_arguments(p):
    p.add_argument("scenario", help="the scenario file whose clusters get the versions")
    p.add_argument("--versions", required=True, metavar="V,V,...",
                   help="firmware versions 'major.minor', comma-separated (at least 2), e.g. 1.4,2.0,2.1")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), metavar="W",
                   help="mixes run at once, one process each (default %d)" % min(2, os.cpu_count() or 1))
    p.add_argument("--timeout-s", type=float, default=chaos.DEFAULT_TIMEOUT_S, metavar="T",
                   help="wall seconds one mix may take before it counts as hung (default %g)" % chaos.DEFAULT_TIMEOUT_S)
    p.add_argument("--out", metavar="DIR", help="run folders, scenarios and matrix.json (default runs/matrix-NAME-TIME);"
                   " must be new or empty")
    p.add_argument("--force", action="store_true", help="write into an --out folder that already has files")


def main(args):
    if args.workers < 1:
        raise InputError("--workers %d: at least 1" % args.workers)
    if not args.timeout_s > 0:
        raise InputError("--timeout-s %r: must be > 0 wall seconds" % args.timeout_s)
    versions = parse_versions(args.versions)
    base, planned = make_jobs(args.scenario, versions)
    out = fresh_folder(args.out, args.force) if args.out else os.path.join(
        "runs", "matrix-%s-%s" % (base.sc.name, time.strftime("%Y%m%d-%H%M%S")))
    os.makedirs(out, exist_ok=True)
    jobs = [j for _, j in planned if j is not None]
    skipped = [m for m, j in planned if j is None]
    if not args.quiet:
        print("ground matrix: %s over %s: %d mix(es) to run, %d not allowed, %d worker(s) -> %s"
              % (base.sc.name, ",".join(versions), len(jobs), len(skipped), args.workers, out), flush=True)
    for m, j in planned:
        if j is not None:
            with open(os.path.join(out, m.name + ".yaml"), "w") as f:
                f.write("# ground matrix: %s with mix %s (%s)\n" % (args.scenario, m.name, m.kind) + j.text)
    started = time.monotonic()
    progress = None if args.quiet else chaos.Progress(len(jobs), started, label="matrix", unit="mixes")
    by_job = {}  # id(job) -> verdict, as each finishes: what an interrupted matrix still writes

    def done(v):
        by_job[id(v.job)] = v
        if progress:
            progress.step(v)

    try:
        chaos.run_jobs(jobs, out, args.workers, args.timeout_s, done)
    except KeyboardInterrupt:
        _write(out, args, versions, base, planned, by_job, started, interrupted=True)
        print("\nground matrix: interrupted after %d of %d mix(es); their results are in %s"
              % (len(by_job), len(jobs), os.path.join(out, "matrix.json")), file=sys.stderr)
        return 130
    if progress:
        progress.finish()
    rows = _write(out, args, versions, base, planned, by_job, started)
    failing = [r for r in rows if r["allowed"] and r["result"] != "pass"]
    if not args.quiet:
        print("matrix: %d mix(es) run, %d failing, %d not allowed; %s"
              % (len(jobs), len(failing), len(skipped), os.path.join(out, "matrix.json")))
    return 1 if failing else 0


def _write(out, args, versions, base, planned, by_job, started, interrupted=False):
    """Print the table and write matrix.json for the mixes that finished; the rows."""
    rows = []
    for m, j in planned:
        if j is None or id(j) in by_job:
            rows.append(row(m, by_job.get(id(j)), base.sc.gates, out))
        else:
            rows.append({"mix": m.name, "kind": m.kind, "versions": list(m.versions), "allowed": True,
                         "result": "not run"})
    print(table(rows, sorted(base.sc.gates)), flush=True)
    with open(os.path.join(out, "matrix.json"), "w") as f:
        json.dump({"scenario": args.scenario, "versions": versions, "workers": args.workers, "interrupted": interrupted,
                   "wall_s": round(time.monotonic() - started, 3), "gates": base.sc.gates, "mixes": rows}, f, indent=1)
    return rows


def row(mix, verdict, gates, out):
    """One mix's results as plain data (matrix.json, the table)."""
    r = {"mix": mix.name, "kind": mix.kind, "versions": list(mix.versions), "allowed": mix.allowed}
    if verdict is None:
        r.update(result="not allowed", why=mix.why_not())
        return r
    flat = {}
    try:
        with open(os.path.join(verdict.run_dir, "metrics.json"), encoding="utf-8") as f:
            flat = json.load(f).get("flat", {})
    except (OSError, ValueError):
        pass  # a crashed run has no metrics: its cells say so
    cells = {}
    for name in sorted(gates):
        value = flat.get(name)
        failed = any(g.split(" ", 1)[0] == name for g in verdict.gates)
        cells[name] = {"value": value, "ok": not failed and value is not None}
    r.update(result=verdict.kind, gates=cells, failures=verdict.gates, violations=verdict.violations,
             error=verdict.error, run_dir=os.path.relpath(verdict.run_dir, out), scenario=mix.name + ".yaml",
             wall_s=round(verdict.wall_s, 3))
    return r


def _num(v):
    if v is None:
        return "-"
    return "%d" % v if float(v).is_integer() else "%.3g" % v


def table(rows, gate_names):
    """The pass/fail table as text: a row per mix, a column per gate, the history checker last."""
    head = ["MIX", "KIND"] + gate_names + ["HISTORY"]
    lines = []
    for r in rows:
        if not r["allowed"] or r["result"] == "not run":
            lines.append([r["mix"], r["kind"], r["result"]])
            continue
        if r["result"] == "crash":
            last = [x for x in r["error"].strip().splitlines() if x.strip()]
            lines.append([r["mix"], r["kind"]] + ["CRASH"] * len(gate_names) + ["CRASH: " + (last[-1] if last else "?")])
            continue
        cells = ["%s %s" % ("PASS" if c["ok"] else "FAIL", _num(c["value"])) for c in
                 (r["gates"][n] for n in gate_names)]
        hist = ("FAIL " + ",".join("%s x%d" % (k, len(v)) for k, v in sorted(r["violations"].items()))
                if r["violations"] else "PASS")
        lines.append([r["mix"], r["kind"]] + cells + [hist])
    widths = [max(len(str(x[i])) for x in [head] + lines if i < len(x)) for i in range(len(head))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(cols, widths)).rstrip() for cols in [head] + lines)
