# A cluster election and failover, run by the MicroPython unix port at a
# Pico's heap: `micropython -X heapsize=192K tools/demo_cluster.py [nodes]`.
# Prints each coordinator change in mission time.
import sys

sys.path.insert(0, "tests/core")
sys.path.insert(0, "firmware")
from mesh import Mesh  # noqa: E402

n = int(sys.argv[1]) if len(sys.argv) > 1 else 8
m = Mesh(n, seed=7, delay_ms=20, jitter_ms=30, loss_per_mille=20)
shown = 0


def show():
    global shown
    for t, node, term in m.events[shown:]:
        print("%8.3f s  node %2d is coordinator of term %d (standby: node %d)" % (t / 1000, node, term, m.nodes[node].standby))
    shown = len(m.events)


m.run_for(10000)
show()
leader = m.agreed_coordinator()
print("%8.3f s  node %2d crashes" % (m.now / 1000, leader))
m.crash(leader)
m.run_for(10000)
show()
print("%8.3f s  node %2d restarts from its persisted term and vote" % (m.now / 1000, leader))
m.restart(leader)
m.run_for(10000)
show()
print("%8.3f s  %d nodes agree on coordinator %s; one state digest: %s; split-brain terms: %d"
      % (m.now / 1000, n, m.agreed_coordinator(), len(m.digests()) == 1, len(m.split_brains())))
