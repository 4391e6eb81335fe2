# Run under the MicroPython unix port with -X heapsize=192K: heap free and
# high-water mark while a 20-node cluster runs in one process. Prints JSON.
import gc
import sys

sys.path.insert(0, "tests/core")
sys.path.insert(0, "firmware")
gc.collect()
start_alloc = gc.mem_alloc()
from mesh import Mesh  # noqa: E402

gc.collect()
after_import = gc.mem_alloc()
m = Mesh(20, seed=1, delay_ms=5, jitter_ms=10)
gc.collect()
after_nodes = gc.mem_alloc()
high_water = after_nodes  # live bytes after a collection, the most seen
for _ in range(600):  # 60 mission seconds in 100 ms steps
    m.run_for(100)
    gc.collect()
    if gc.mem_alloc() > high_water:
        high_water = gc.mem_alloc()
crashed = m.agreed_coordinator()
m.crash(crashed)
m.run_for(5000)
gc.collect()
print(
    '{"heap_total": %d, "import_bytes": %d, "nodes_bytes": %d, "free_after_gc": %d, "high_water": %d, "coordinator_after_crash": %d}'
    % (
        gc.mem_free() + gc.mem_alloc(),
        after_import - start_alloc,
        after_nodes - after_import,
        gc.mem_free(),
        high_water,
        m.agreed_coordinator() or 0,
    )
)
