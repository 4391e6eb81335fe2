"""Benchmarks for the wire codec and the node core (issue: foundation).

Prints: per-frame overhead (plain, authenticated); encode+decode time per
frame under MicroPython and CPython side by side; heap use of a 20-node
cluster under MicroPython at 192K; failover time over seeded coordinator-crash
trials in virtual time (p50/p99/max in units of the election timeout T),
split-brain count, and coordinator changes over a long fault-free run.
Not a test: it asserts nothing, it prints figures and the machine.
"""

import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for p in ("ground/shims", "firmware", "tests/core"):
    sys.path.insert(0, os.path.join(ROOT, p))

from bench.machine_info import describe  # noqa: E402
from mesh import Mesh  # noqa: E402
from node import msgs, wire  # noqa: E402
from node.rng import Rng  # noqa: E402

MICROPYTHON = os.path.join(os.path.dirname(sys.executable), "micropython")
T = 1000


def _pct(sorted_vals, q):
    i = min(len(sorted_vals) - 1, int(round(q * (len(sorted_vals) - 1))))
    return sorted_vals[i]


def overhead():
    rng = Rng(1)
    plain, auth_sizes = [], []
    a = wire.Auth(b"fleet-key")
    for i in range(2000):
        t = (msgs.HEARTBEAT, msgs.VOTE, msgs.TELEMETRY, msgs.COORDINATOR)[i % 4]
        fields = {
            msgs.HEARTBEAT: lambda: msgs.pack(t, rng.below(50), rng.between(1, 20), rng.between(1, 20), rng.below(4), rng.below(4), rng.below(65536), rng.next32(), rng.next32()),
            msgs.VOTE: lambda: msgs.pack(t, rng.below(50), rng.between(1, 20), 1),
            msgs.TELEMETRY: lambda: msgs.pack(t, 1, rng.below(50), 3, 4, rng.next32(), 20, 0, 0),
            msgs.COORDINATOR: lambda: msgs.pack(t, rng.below(50), rng.between(1, 20)),
        }[t]()
        src = rng.between(1, 20)
        dst = (wire.cluster_addr(1), wire.ADDR_GROUND, rng.between(1, 20))[i % 3]
        plain.append(len(wire.encode(t, src, dst, fields, i)) - len(fields))
        auth_sizes.append(len(wire.encode(t, src, dst, fields, i, a, i)) - len(fields))
    print("Per-frame overhead, bytes on the wire beyond the payload (2,000 typical frames; MAVLink 2: 12 plain / 25 signed):")
    for name, v in (("plain", plain), ("authenticated", auth_sizes)):
        v.sort()
        print("  %-14s min %d  mean %.2f  max %d" % (name, v[0], sum(v) / len(v), v[-1]))
    print("  fixed part: header %d + crc %d + COBS 1 + delimiter 1 = %d; auth trailer +%d; each 0x03/0x1B byte costs +1"
          % (wire.HEADER_LEN, wire.CRC_LEN, wire.HEADER_LEN + wire.CRC_LEN + 2, wire.AUTH_LEN))


def codec_timing():
    payload = msgs.pack(msgs.HEARTBEAT, 7, 3, 4, 2, 1, 9, 0x01020304, 0xDEADBEEF)
    a = wire.Auth(b"fleet-key")
    n = 20000
    res = {}
    for name, au in (("plain_us", None), ("auth_us", a)):
        t0 = time.perf_counter()
        for i in range(n):
            line = wire.encode(msgs.HEARTBEAT, 3, 0xF001, payload, i, au, i)
            wire.decode(line[:-1], au)
        res[name] = (time.perf_counter() - t0) / n * 1e6
    out = subprocess.run([MICROPYTHON, "-X", "heapsize=192K", "bench/mpy/codec_timing.py"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    mp = json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else None
    print("Encode+decode of one heartbeat frame, microseconds (this host, not a Pico):")
    print("  %-14s %10s %12s" % ("", "CPython", "MicroPython"))
    for k, label in (("plain_us", "plain"), ("auth_us", "authenticated")):
        print("  %-14s %10.2f %12s" % (label, res[k], "%.2f" % mp[k] if mp else "failed: " + out.stderr[-200:]))


def heap_cluster():
    out = subprocess.run([MICROPYTHON, "-X", "heapsize=192K", "bench/mpy/heap_cluster.py"], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        print("Heap, 20-node cluster under MicroPython: FAILED\n" + out.stderr[-500:])
        return
    r = json.loads(out.stdout.strip().splitlines()[-1])
    print("Heap, 20-node cluster in one MicroPython unix-port process (-X heapsize=192K; 64-bit port, so objects")
    print("are about twice their size on a Pico's 32-bit port):")
    print("  heap %d B; code imported %d B; 20 nodes built %d B; live high-water over 60 mission s %d B"
          " (%d B free); free after a failover %d B; new coordinator after crash: node %d"
          % (r["heap_total"], r["import_bytes"], r["nodes_bytes"], r["high_water"],
             r["heap_total"] - r["high_water"], r["free_after_gc"], r["coordinator_after_crash"]))


def failover(trials, n_nodes, delay_ms, jitter_ms, loss):
    times, split, no_failover, to_standby = [], 0, 0, 0
    for seed in range(1, trials + 1):
        m = Mesh(n_nodes, seed=seed, delay_ms=delay_ms, jitter_ms=jitter_ms, loss_per_mille=loss)
        if not m.run_until(20 * T, until=lambda x: x.agreed_coordinator() is not None):
            no_failover += 1
            continue
        m.run_for(2 * T + m.rng.below(2 * T))  # crash at a seeded random moment
        leader = m.agreed_coordinator()
        if leader is None:
            no_failover += 1
            continue
        standby = m.nodes[leader].standby
        crash_ms = m.now
        n_events = len(m.events)
        m.crash(leader)
        if not m.run_until(crash_ms + 30 * T, until=lambda x: len(x.events) > n_events):
            no_failover += 1
            continue
        t, winner, _ = m.events[n_events]
        times.append((t - crash_ms) / T)
        to_standby += winner == standby
        m.run_for(3 * T)
        split += len(m.split_brains())
    times.sort()
    print("  %2d nodes, delay %d+U(0,%d) ms, loss %.1f%%: %d trials: p50 %.2f T  p99 %.2f T  max %.2f T;"
          " standby won %d/%d; split-brain terms %d; no failover %d"
          % (n_nodes, delay_ms, jitter_ms, loss / 10, trials, _pct(times, 0.5), _pct(times, 0.99), times[-1],
             to_standby, len(times), split, no_failover))


def churn(hours):
    m = Mesh(20, seed=99, delay_ms=5, jitter_ms=20, loss_per_mille=10)
    m.run_until(20 * T, until=lambda x: x.agreed_coordinator() is not None)
    first = len(m.events)
    m.run_for(hours * 3600 * 1000)
    print("  no faults, 20 nodes, 1%% loss, %d mission hours (T = %d ms): coordinator changes after the first election: %d;"
          " split-brain terms %d" % (hours, T, len(m.events) - first, len(m.split_brains())))


def main(argv=None):
    print("bench_core on " + describe())
    overhead()
    codec_timing()
    heap_cluster()
    print("Failover after a coordinator crash, virtual time, T = min election timeout = %d ms"
          " (Raft paper: p50 ~1.9 T, max ~3.4 T; goal p50 <= 1.5 T, max <= 3 T):" % T)
    failover(250, 20, 5, 10, 0)
    failover(250, 5, 20, 40, 50)
    churn(2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
