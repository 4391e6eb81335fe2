"""The real router per recipient, compared across versions of the code: each
given tree (a git revision, unpacked with `git archive` into a temporary
folder, or a folder; "." is this working tree) runs the same workload in its
own process, the rounds of all trees interleaved so a busy shared host skews
them alike; medians and the spread per tree, and each against the first.

    python -m bench.bench_router_trees [--rounds N] [--frames N] [TREE ...]

Default trees: ab96ba7 (the last generated-code link stages), HEAD, "." .
The workload (real_router, also a row of bench/bench_links.py): a Router on
a VirtualClock, one cluster of 9 nodes; node 1 sends a 60-byte LOG frame to
its cluster every 800 us of virtual time, so each of the 8 links carries one
frame every 100 us (~13,000 in flight at 1.3 s); from_node decodes and
records it, then each recipient's pipeline and clock.call_at, and the
delivery; trace records discarded. Figures: recipients per CPU second of
the worker process, for the "typical" link (delay + normal jitter + loss)
and "all stages" (bench_links.py's TYPICAL and FULL).
Not a test: it asserts nothing, it prints figures and the machine.
"""

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MS = 1_000_000
GAP_NS = 100_000
DATA = bytes(range(1, 61))
TYPICAL = {"delay_ms": 1300, "jitter": "normal", "jitter_ms": 50, "reorder": False, "loss": 0.01}
FULL = {
    "delay_ms": 1300, "jitter": "normal", "jitter_ms": 50, "reorder": False, "loss": 0.01,
    "gilbert": {"p_good_to_bad": 0.001, "p_bad_to_good": 0.3}, "duplicate": 0.001,
    "corrupt": {"bitflip": 0.001, "drop_bytes": 0.0005, "garbage": 0.0005},
    "rate_bps": 10_000_000, "queue_bytes": None,
}
DEFAULT_TREES = ("ab96ba7", "HEAD", ".")


class _NullLink:
    """An in-process node's link that takes every frame and does nothing."""

    def __init__(self, node_id):
        self.node_id = node_id
        self.up = True

    def deliver(self, data, now_ms):
        pass


def real_router(n, spec, recipients=8):
    """ground/router.py as it is (whichever `ground` is first on sys.path):
    recipients per CPU second; see the module's docstring."""
    from ground import firmware, router, scenario
    from ground.clock import VirtualClock

    wire, msgs = firmware.wire, firmware.msgs
    nodes = list(range(1, recipients + 2))
    # T clears the light round trip (ground/guards.py refuses one that does not); the router never reads it
    sc = scenario.load_text("name: bench_links\nseed: 1\nduration_s: 10\nelection_timeout_ms: 10000\n"
                            "clusters:\n  - {id: 1, nodes: %s}\nlinks:\n  intra_cluster: %s\n"
                            % (json.dumps(nodes), json.dumps(spec)))
    clock = VirtualClock()
    rt = router.Router(sc, clock, lambda event: None, 1)
    for i in nodes:
        rt.add(_NullLink(i))
    line = bytes(wire.encode(msgs.LOG, 1, wire.ADDR_CLUSTER | 1, DATA[:40], 1)[:-1])
    frames = max(1, n // recipients)
    step = GAP_NS * recipients
    run_until, from_node = clock.run_until, rt.from_node
    now = 0
    t0 = time.process_time()
    for _ in range(frames):
        now += step
        run_until(now)
        from_node(1, line)
    run_until(now + 10 * 1300 * MS)
    return frames * recipients / (time.process_time() - t0)


def _worker(tree, n):
    sys.path.insert(0, tree)
    print(json.dumps({"typical": real_router(n, TYPICAL), "all stages": real_router(n, FULL)}))


def _unpack(rev, into):
    """A folder holding `rev` of this repository (or the folder given)."""
    if rev == ".":
        return ROOT
    if os.path.isdir(rev):
        return os.path.abspath(rev)
    folder = os.path.join(into, rev.replace("/", "_"))
    os.makedirs(folder)
    archive = subprocess.run(["git", "-C", ROOT, "archive", rev, "ground", "firmware", "pyproject.toml"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    if archive.returncode:
        raise SystemExit("bench_router_trees: %s is not a git revision of %s nor a folder: %s"
                         % (rev, ROOT, archive.stderr.decode(errors="replace").strip()))
    subprocess.run(["tar", "-x", "-C", folder], input=archive.stdout, check=True, timeout=120)
    return folder


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--worker"]:
        _worker(argv[1], int(argv[2]))
        return 0
    rounds, frames = 7, 40_000
    if "--rounds" in argv:
        i = argv.index("--rounds")
        rounds = int(argv[i + 1])
        del argv[i:i + 2]
    if "--frames" in argv:
        i = argv.index("--frames")
        frames = int(argv[i + 1])
        del argv[i:i + 2]
    trees = argv or list(DEFAULT_TREES)
    sys.path.insert(0, ROOT)
    from bench.machine_info import describe

    print("bench_router_trees on " + describe())
    tmp = tempfile.mkdtemp(prefix="router-trees-")
    try:
        folders = [_unpack(t, tmp) for t in trees]
        runs = {t: {} for t in trees}
        for r in range(rounds):
            for t, folder in zip(trees, folders):
                out = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", folder, str(frames)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=600, cwd=folder)
                if out.returncode:
                    raise SystemExit("bench_router_trees: tree %s failed: %s" % (t, out.stderr.decode()[-400:]))
                for k, v in json.loads(out.stdout.decode().strip().splitlines()[-1]).items():
                    runs[t].setdefault(k, []).append(v)
            print("  round %d of %d done" % (r + 1, rounds), file=sys.stderr)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("Real router (ground/router.py) per recipient, recipients per CPU second, median of %d interleaved rounds"
          " of %d recipients (8 per frame):" % (rounds, frames))
    for link in ("typical", "all stages"):
        first = None
        for t in trees:
            vals = sorted(runs[t][link])
            med = statistics.median(vals)
            first = first or med
            print("  %-10s %-12s %8.0f /s  %5.2f us  %5.3fx %-12s  min..max %.0f..%.0f"
                  % (link, t, med, 1e6 / med, med / first, trees[0], vals[0], vals[-1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
