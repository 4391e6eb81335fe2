# mpy-heap: 384K (a region of real Nodes in one process under faults; a board holds one node)
# Seeded fault schedules over a small region of real Nodes (tests/core/
# faultsched.py, on tests/core/federation.py): the schedules that leased a
# slot twice before issue #17's fix do not, and the market keeps selling.
# `.venv/bin/python tests/core/faultsched.py N` (from the repository root)
# runs N of them and prints the rate.
# CPython and MicroPython.
import gc

import faultsched


def test_seeded_fault_schedules_never_lease_a_slot_twice():
    # Seeds whose schedules leased a slot twice before the fix (three
    # electors; crashes, power cuts, partitions, blackouts, byzantine claims).
    completes = 0
    seeds = (3, 30, 53)
    for seed in seeds:
        gc.collect()  # the last schedule's region goes before the next is built (a 192K heap)
        r = faultsched.run_schedule(seed)
        assert r.double == 0, (seed, r.first_double, r.log)
        assert r.split == [], (seed, r.split)
        completes += r.completes
    assert completes > 0  # and the market went on selling
