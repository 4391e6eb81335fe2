"""Emulated boards over UDP against the serial path: frames/s and lateness.

    python -m bench.bench_udp [--nodes 3] [--duration-s 60] [--time-scales 10,40]

Runs the same small scenario (one cluster, no faults) twice on emulated
Picos (the MicroPython unix port running the real firmware): once with
frames on the pty (transport usb), once over UDP on loopback (transport
udp, ground/udplink.py), at each time scale: a higher scale packs the same
mission into less wall time, so the boards must sustain more frames per
wall second. For each: the frames the boards sent per wall
second (all boards, and per board), and the heartbeat lateness: how much
later than the heartbeat period (election timeout / 4) each coordinator
heartbeat reached the ground, in mission ms, p50/p99/max. Datagrams the hub
refused are printed too (there should be none).

A benchmark, not a test: it prints figures and asserts nothing.
"""

import argparse
import os
import tempfile
import time

from bench.machine_info import describe
from ground import scenario, trace
from ground.run import run

SC = """\
name: bench-udp
seed: 11
duration_s: {duration}
time_scale: {scale}
election_timeout_ms: 2000
clusters:
  - {{id: 1, nodes: [{nodes}]}}
links:
  intra_cluster: {{delay_ms: 0}}
"""


def _pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def one(transport, sc, folder):
    from hil.rig import EmulatedRig

    boards = EmulatedRig(transport=transport).prepare(sc, folder)
    t0 = time.monotonic()
    try:
        res = run(sc, os.path.join(folder, "run"), mode=boards.mode, boards=boards.boards, plot=False)
    finally:
        wall_s = time.monotonic() - t0
        hubs = {id(b.open_link[0].hub): b.open_link[0].hub for b in boards.boards.values() if hasattr(b, "open_link")}
        refused = sum(hub.refused for hub in hubs.values())
        boards.stop()
    _, events, _ = trace.read(os.path.join(folder, "run", "trace.jsonl"))
    sent = [e for e in events if e["kind"] == "frame" and e["fate"] == "sent"]
    period_ms = sc.election_timeout_ms / 4
    last = {}
    late = []
    for e in sent:
        if e.get("type") != "heartbeat":
            continue
        t_ms = e["mission_ns"] / 1e6
        if e["src"] in last:
            late.append(max(0.0, t_ms - last[e["src"]] - period_ms))
        last[e["src"]] = t_ms
    return {"status": res.status, "frames": len(sent), "wall_s": wall_s, "late": late, "refused": refused}


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.bench_udp", description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--duration-s", type=int, default=60, help="mission seconds per run")
    ap.add_argument("--time-scales", default="10,40", help="mission seconds per wall second, comma-separated")
    a = ap.parse_args(argv)
    print(describe())
    nodes = ", ".join(str(i) for i in range(1, a.nodes + 1))
    print("%d emulated boards, %d mission s per run, T = 2000 mission ms (a heartbeat every 500)" % (a.nodes,
                                                                                                 a.duration_s))
    print("%-6s %-7s %-7s %7s %9s %11s %12s %12s %12s %8s" % ("scale", "path", "status", "frames", "frames/s",
                                                           "per board/s", "late p50 ms", "late p99 ms",
                                                           "late max ms", "refused"))
    for scale in [int(x) for x in a.time_scales.split(",")]:
        sc = scenario.load_text(SC.format(duration=a.duration_s, scale=scale, nodes=nodes), "bench-udp.yaml")
        for transport in ("usb", "udp"):
            with tempfile.TemporaryDirectory(prefix="bench_udp_") as tmp:
                r = one(transport, sc, tmp)
            fps = r["frames"] / r["wall_s"]
            print("%-6d %-7s %-7s %7d %9.1f %11.1f %12.1f %12.1f %12.1f %8d" % (
                scale, "serial" if transport == "usb" else "udp", r["status"], r["frames"], fps, fps / a.nodes,
                _pct(r["late"], 50), _pct(r["late"], 99), max(r["late"] or [float("nan")]), r["refused"]))
    print("lateness: mission ms past the heartbeat period between a board's consecutive heartbeats, as the"
          " ground received them")

if __name__ == "__main__":
    main()
