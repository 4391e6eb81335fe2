# Seeded fault schedules over a small region, in virtual time: the driver
# that found leases sold twice (issue #17), and counts how often they still are.
#
#     r = run_schedule(seed)      # one schedule on tests/core/federation.py
#     r.double, r.resyncs, r.split, r.log
#     .venv/bin/python tests/core/faultsched.py 300 [first_seed]   # from the repo root: a rate over N seeds
#
# A schedule mixes, at seeded times and for seeded lengths: crashes (a hang:
# the node stops, keeps its RAM and carries on), power cuts (a restart from
# the node's flash: its RAM, and so any ledger, is gone), partitions (a few
# nodes hear and reach nobody), blackouts (nobody hears anybody) and
# byzantine claims (a node claims, with AWARD_CLAIM, slots it never held).
# Electors, and the regional coordinator of the moment, are picked more often
# than other nodes: they are where a lease can be lost.
#
# A double lease is judged from the frames sent, as the history checker does
# (ground/history.py), not from the ledger: an AWARD sent to its holder is a
# lease from then on (lost on the way or not), a RELEASE by its holder frees
# the occurrences it names from `from_slot`; two holders of one (resource,
# slot) at once is a double lease. Runs under CPython and MicroPython.
import heapq
import sys

if __name__ == "__main__":  # run from the repository root: the firmware, and CPython's const() shim
    sys.path[1:1] = ["firmware", "ground/shims"]

from federation import Federation
from node import msgs, wire
from node.rng import Rng

SLOT = 12000
LEAD = 3000
UNITS = (1, 1, 1, 1, 2, 1, 1, 2)
CLUSTERS = ([1, 2], [3], [4])  # three electors (1, 3, 4): the smallest region with a majority


from leasewatch import Leases


class Result:
    def __init__(self, seed):
        self.seed = seed
        self.double = 0  # (resource, slot) pairs awarded to a second holder while held
        self.forgotten = 0  # of them, ones whose first holder had rebooted since (leasewatch.py)
        self.first_double = None  # (t_ms, resource, slot, holder, other holder)
        self.resyncs = 0  # ROUND_RESYNC broadcasts
        self.voids = 0
        self.completes = 0  # PRICES COMPLETE broadcasts: the market kept selling
        self.split = []  # regional terms with two coordinators
        self.log = []  # the schedule: (t_ms, what, node, length_ms)


def schedule(seed, n_faults=6, start_ms=2 * SLOT, end_ms=11 * SLOT):
    """[(t_ms, kind, node, length_ms)], sorted: the seeded fault schedule."""
    rng = Rng(seed * 104729 + 13)
    electors = [c[0] for c in CLUSTERS]
    ids = [i for c in CLUSTERS for i in c]
    kinds = ("crash", "power_cut", "partition", "blackout", "byzantine")
    out = []
    for _ in range(n_faults):
        t = rng.between(start_ms, end_ms)
        kind = kinds[rng.below(len(kinds))]
        pick = rng.below(4)
        node = -1 if pick == 0 else (electors[rng.below(len(electors))] if pick < 3 else ids[rng.below(len(ids))])
        out.append((t, kind, node, rng.between(SLOT // 4, 4 * SLOT)))
    out.sort()
    return out


def run_schedule(seed, end_ms=16 * SLOT, track_boots=False):
    """One seeded schedule; node -1 in the schedule means the regional
    coordinator of the moment (or an elector when there is none). With
    track_boots, Result.forgotten counts the double leases whose first
    holder had rebooted since its award (more memory: CPython)."""
    r = Result(seed)
    f = Federation([list(c) for c in CLUSTERS], UNITS, seed=seed, slot_ms=SLOT, steps_per_slot=6, lead_ms=LEAD,
                   horizon_slots=32, window_slots=16, delay_ms=5, jitter_ms=20, election_timeout_ms=1000)
    boots = {}
    leases = Leases(r, sum(UNITS), boots if track_boots else None)
    f.on_sent = leases.sent
    events = []  # (t_ms, action, node)
    for t, kind, node, length in schedule(seed):
        events.append((t, kind, node, length))
    events.sort()
    pending = []  # (t_ms, undo, node)
    rng = Rng(seed * 31 + 1)
    while events or pending:
        nxt = events[0][0] if events else None
        if pending and (nxt is None or pending[0][0] <= nxt):
            t, undo, node = pending.pop(0)
            f.run_until(t)
            if undo == "restart" and node in f.down:
                boots[node] = t
            _undo(f, undo, node)
            continue
        t, kind, node, length = events.pop(0)
        f.run_until(t)
        if node < 0:
            c = f.region_coordinator()
            node = c if c is not None else f.mcfg.electors[rng.below(len(f.mcfg.electors))]
        r.log.append((t, kind, node, length))
        undo = _apply(f, kind, node, rng)
        if undo is not None:
            pending.append((t + length, undo, node))
            pending.sort()
    f.run_until(end_ms)
    r.split = f.split_brains()
    return r


def _apply(f, kind, node, rng):
    if kind == "crash":
        if node in f.down:
            return None
        f.crash(node, lose_in_flight=bool(rng.below(2)))
        return "resume"
    if kind == "power_cut":
        if node in f.down:
            return None
        f.crash(node, lose_in_flight=bool(rng.below(2)))
        return "restart"
    if kind == "partition":
        f.cut.add(node)
        return "join"
    if kind == "blackout":
        for i in f.ids:
            f.cut.add(i)
        return "light"
    # byzantine: the node claims a slot it was never awarded (a coordinator
    # collecting claims after a RESYNC would write it down).
    rnd = f.now // SLOT
    res = rng.below(sum(UNITS))
    p = msgs.pack(msgs.AWARD, 0, 0, 0, rnd + 1 + rng.below(4), res, node, 0, 1, 1, 1, msgs.AWARD_CLAIM)
    line = wire.encode(msgs.AWARD, node, wire.ADDR_BROADCAST, p)
    f._order += 1
    heapq.heappush(f._queue, (f.now + 5, f._order, node, wire.ADDR_BROADCAST, bytes(line[:-1])))
    return None


def _undo(f, undo, node):
    if undo == "resume":
        if node in f.down:
            f.resume(node)
    elif undo == "restart":
        if node in f.down:
            f.restart(node)
    elif undo == "join":
        f.cut.discard(node)
    else:
        f.cut.clear()


def main(argv):
    n = int(argv[1]) if len(argv) > 1 else 50
    first = int(argv[2]) if len(argv) > 2 else 1
    bad = resync_bad = completes = forgotten_only = 0
    for seed in range(first, first + n):
        r = run_schedule(seed, track_boots=True)
        completes += r.completes
        if r.double:
            bad += 1
            if r.resyncs:
                resync_bad += 1
            if r.forgotten == r.double:
                forgotten_only += 1
            print("seed %d: %d double-leased (resource, slot) pairs (%d whose first holder had rebooted), first %r;"
                  " %d resyncs, %d voids; %s" % (seed, r.double, r.forgotten, r.first_double, r.resyncs, r.voids, r.log))
        if r.split:
            print("seed %d: split-brain terms %r" % (seed, r.split))
    print("%d of %d schedules leased a slot twice (%d of them after a RESYNC, %d only slots whose first holder had"
          " rebooted since); %.1f rounds completed per schedule" % (bad, n, resync_bad, forgotten_only, completes / n))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
