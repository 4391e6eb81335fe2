"""What a lean shard's memory is made of as the mission goes: its link
pipelines by tier (intra-cluster, intra-region, inter-region, to the
ground) and its peak RSS, each mission second, for a fleet description at
a given size (default scenarios/fleet-sweep.yaml): docs/FLEET.md, why the
50,000-node row ran out of memory while regions announced their rounds to
the whole fleet, and what it holds since they announce to their own
clusters.

A link's pipeline is made when its first frame is sent, so the count says
which frames reach whom (a broadcast: every node of the fleet).

Run: python -m bench.link_census [--nodes 6000] [--mission-s 6] [FLEET.yaml]
Not a test: it asserts nothing; it prints figures and the machine.
"""

import argparse
import collections
import os
import resource
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bench.machine_info import describe  # noqa: E402
from ground import fleetrun, sweep  # noqa: E402
from ground.shard import Shard  # noqa: E402


def tiers(sc, pipelines):
    """Counter of the pipelines' links by tier."""
    by = collections.Counter()
    cluster = {n: s.cluster for n, s in sc.nodes.items()}
    region = sc.cluster_region
    for s, d in pipelines:
        if d == 0:
            by["ground"] += 1
        elif cluster[s] == cluster[d]:
            by["cluster"] += 1
        elif region.get(cluster[s]) == region.get(cluster[d]):
            by["region"] += 1
        else:
            by["inter-region"] += 1
    return by


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.link_census", description=__doc__.split("\n\n")[0])
    ap.add_argument("fleet", nargs="?", default=os.path.join(ROOT, "scenarios", "fleet-sweep.yaml"))
    ap.add_argument("--nodes", type=int, default=6000, help="fleet size (default 6000)")
    ap.add_argument("--mission-s", type=int, default=6, help="mission seconds (default 6)")
    a = ap.parse_args(argv)
    sc, _, note = sweep.load_at(a.fleet, a.nodes, duration_s=a.mission_s)
    print("link_census on " + describe())
    print("%s at %d nodes: %d clusters, %d regions%s; one shard" % (a.fleet, len(sc.nodes), len(sc.clusters),
                                                                  len(sc.regions), " (%s)" % note if note else ""))
    sh = Shard(sc, sc.seed, 0, sorted(sc.clusters), fleetrun.units_of(sc))
    c0 = time.process_time()
    for k in range(1, a.mission_s + 1):
        sh.advance(k * 10 ** 9, last=k == a.mission_s)
        by = tiers(sc, sh._pipelines)
        n = len(sh._pipelines)
        print("  %3d mission s: %6.1f CPU s, peak RSS %5d MB, %7d pipelines (%.1f a node): %s" % (
            k, time.process_time() - c0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024, n,
            n / len(sc.nodes), ", ".join("%s %d" % kv for kv in sorted(by.items()))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
