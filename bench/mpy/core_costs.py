# Run under the MicroPython unix port: the cost of each core call type.
#
#   micropython -X heapsize=64M bench/mpy/core_costs.py RECORDING.jsonl [FIRMWARE_DIR]
#
# RECORDING.jsonl (written by bench/core_costs.py from a lean run of the
# sweep's fleet description under CPython) holds, per recorded node, its
# board.json, age and firmware version, and every core call it got in order:
# [t_ms, "r", hex line, frame type] (Node.receive) or [t_ms, "p", [types of
# the frames it returned]] (Node.poll). Each node is rebuilt here the way a
# board builds it (runtime/boardcfg.py, the same seed) and the calls are
# replayed in order, each timed with time.ticks_us. The core is
# deterministic, so the node does here what it did in the recorded run.
#
# Prints one JSON object: per frame type the median us of a receive
# ("rx_us"), the median us of a poll that returned nothing ("poll_us"), and
# per frame type the median us a poll spends per frame of that type it
# returns, beyond an idle poll ("tx_us"); with their counts and the means
# ("*_mean_us"). Medians, because the host is shared: a call the OS
# preempted is an outlier of this host, not of the core. Times are this
# host's unix port, not a Pico's.
import gc
import json
import sys
import time

sys.path.insert(0, sys.argv[2] if len(sys.argv) > 2 else "firmware")
from node import node as node_mod  # noqa: E402
from runtime import boardcfg  # noqa: E402

rx = {}  # type -> [us of each call]
idle = []
emitting = []  # (us, [types]) of polls that returned frames
calls = 0
nodes = 0
with open(sys.argv[1]) as f:
    for text in f:
        rec = json.loads(text)
        b = boardcfg.parse_board(rec["board"])
        b.fw_version = tuple(rec["fw_version"])
        cfg = boardcfg.core_config(b)
        cfg.age_slots = rec["age_slots"]
        n = node_mod.Node(rec["node"], cfg, rec["seed"], None)
        rec["board"] = None
        todo = rec["calls"]
        rec = None
        gc.collect()
        nodes += 1
        for c in todo:
            if c[1] == "r":
                line = bytes.fromhex(c[2])
                t0 = time.ticks_us()
                n.receive(line, c[0])
                dt = time.ticks_diff(time.ticks_us(), t0)
                cell = rx.get(c[3])
                if cell is None:
                    cell = rx[c[3]] = []
                cell.append(dt)
            else:
                t0 = time.ticks_us()
                out = n.poll(c[0])
                n.take_persist()
                dt = time.ticks_diff(time.ticks_us(), t0)
                if out:
                    emitting.append((dt, c[2]))
                else:
                    idle.append(dt)
            calls += 1
        todo = None
        n = None
        gc.collect()



def median(v):
    v = sorted(v)
    n = len(v)
    return 0.0 if not n else v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def mean(v):
    return sum(v) / len(v) if v else 0.0


poll_us = median(idle)
tx = {}  # type -> [us per frame]: a poll's time beyond an idle poll, shared out over the frames it returned
for dt, types in emitting:
    share = max(0.0, dt - poll_us) / len(types)
    for t in types:
        cell = tx.get(t)
        if cell is None:
            cell = tx[t] = []
        cell.append(share)
out = {
    "nodes": nodes, "calls": calls, "poll_us": poll_us, "poll_mean_us": mean(idle), "polls_idle": len(idle),
    "polls_emitting": len(emitting),
    "rx_us": {str(t): median(rx[t]) for t in rx}, "rx_mean_us": {str(t): mean(rx[t]) for t in rx},
    "rx_n": {str(t): len(rx[t]) for t in rx},
    "tx_us": {str(t): median(tx[t]) for t in tx}, "tx_mean_us": {str(t): mean(tx[t]) for t in tx},
    "tx_n": {str(t): len(tx[t]) for t in tx},
    "implementation": "%s %s" % (sys.implementation.name, ".".join(str(v) for v in sys.implementation.version)),
    "platform": sys.platform,
}
print(json.dumps(out))
