"""How often CPython's cyclic garbage collector runs while a run's clock
runs (`Run.execute`): less often than the interpreter's default.

A run allocates container objects all the time (trace events, metric views,
timer entries, the core's frames) and keeps many (the events it recorded,
every node's tables), yet almost none of them form reference cycles: the
1,000-node `--sim` benchmark (bench/bench_fleet.py) frees fewer than a
thousand objects by cycle collection in 60 mission s. With the default
thresholds (700, 10, 10) the collector still ran about 1,400 young and 11
full collections per 20 mission s there, walking every live container each
full time: 10-15 % of the run's CPU. Inside `during_run()` a young
collection waits for GEN0 net allocations and a full one for GEN2 older
collections (and CPython's own rule that a quarter of the long-lived
objects be new), so cycles are still collected, later; reference counting
frees everything else at once as before. The thresholds the process had are
put back when the block ends, however it ends.

Nothing here reads or changes what a run does, only when the collector
looks: traces, metrics and verdicts are the same.
"""

import gc
from contextlib import contextmanager

GEN0 = 20_000  # net container allocations before a young collection (default 700)
GEN1 = 10  # young collections before a middle one (the default)
GEN2 = 100  # middle collections before a full one (default 10)


@contextmanager
def during_run():
    """The collector's thresholds for a run's clock loop, restored after
    (under PyPy, whose collector has no thresholds: as it is)."""
    if not hasattr(gc, "get_threshold"):
        yield
        return
    before = gc.get_threshold()
    gc.set_threshold(GEN0, GEN1, GEN2)
    try:
        yield
    finally:
        gc.set_threshold(*before)
