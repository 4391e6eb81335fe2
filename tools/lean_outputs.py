"""Before/after check of the lean path's outputs: runs a few small lean runs
(ground/fleetrun.py) and saves, or compares with what was saved, their
fleet.json, metrics.json and trace.jsonl byte for byte. For a change meant
to make the lean path faster without changing what it computes: save with
the code before it, check with the code after.

    python -m tools.lean_outputs --save /tmp/lean-before    # on the old code
    python -m tools.lean_outputs --check /tmp/lean-before   # on the new code: exit 1 on any difference
    python -m tools.lean_outputs --check /tmp/lean-before --shard-python .venv-pypy/bin/python  # shards on PyPy

The runs: bench_fleet's generated fleet (1,000 nodes, 10 mission s, three
traced clusters), tests/ground/test_fleetrun.py's 200-node fleet with its
faults (every cluster traced) on 1 and 3 shards, and with one traced
cluster (the others' frames take the shard's hot path) on 1 and 2 shards, and the library scenarios
the lean path takes that exercise its other ways (frame faults, intent,
containment, mixed firmware, regions).
"""

import argparse
import filecmp
import os
import shutil
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from ground import fleetrun, scenario  # noqa: E402

FILES = ("fleet.json", "metrics.json", "trace.jsonl")
LIBRARY = ("byzantine.yaml", "containment-sever.yaml", "version-skew.yaml", "tier3-intent.yaml",
           "power-cuts.yaml", "market-clusters.yaml", "light-delay.yaml")


def runs():
    """[(name, scenario, fleetrun.run keyword arguments)]."""
    from bench.bench_fleet import fleet_text as bench_text
    from tests.ground.test_fleetrun import FAULTS, fleet_text

    out = [("bench1000", scenario.load_text(bench_text(duration_s=10), "<lean_outputs bench1000>"), {})]
    sc = scenario.load_text(fleet_text(200, duration_s=18, faults=FAULTS), "<lean_outputs faults200>")
    out += [("faults200", sc, {}), ("faults200-3shards", sc, {"shards": 3}),
            ("faults200-traced1", sc, {"traced": [1]}), ("faults200-traced1-2shards", sc, {"traced": [1], "shards": 2})]
    out.append(("version-skew-traced1", scenario.load("scenarios/version-skew.yaml"), {"traced": [1]}))
    for name in LIBRARY:
        out.append((name[:-5], scenario.load("scenarios/" + name), {}))  # relative: the trace header names it
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m tools.lean_outputs", description=__doc__.split("\n\n")[0])
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--save", metavar="DIR", help="write the runs' outputs under DIR")
    g.add_argument("--check", metavar="DIR", help="compare the runs' outputs with those saved under DIR")
    ap.add_argument("--shard-python", metavar="PY", help="run the shards under this Python (ground/shard_host.py)")
    a = ap.parse_args(argv)
    a.save, a.check = (os.path.abspath(x) if x else x for x in (a.save, a.check))
    os.chdir(ROOT)
    tmp = tempfile.mkdtemp(prefix="lean_outputs_")
    differ = []
    try:
        for name, sc, kw in runs():
            d = os.path.join(tmp, name)
            fleetrun.run(sc, d, shard_python=a.shard_python, **kw)
            for fn in FILES:
                got = os.path.join(d, fn)
                if a.save:
                    os.makedirs(os.path.join(a.save, name), exist_ok=True)
                    shutil.copyfile(got, os.path.join(a.save, name, fn))
                else:
                    want = os.path.join(a.check, name, fn)
                    same = os.path.exists(want) and filecmp.cmp(got, want, shallow=False)
                    if not same:
                        differ.append("%s/%s" % (name, fn))
            print("%-22s %s" % (name, "saved" if a.save else ("differs" if any(x.startswith(name + "/")
                                                                                 for x in differ) else "identical")),
                  flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if differ:
        print("DIFFERENT: %s" % ", ".join(differ))
        return 1
    print("saved" if a.save else "every output identical")
    return 0


if __name__ == "__main__":
    sys.exit(main())
