"""What reaching boards through labgrid costs, against local ptys.
Run: python -m bench.bench_labgrid [--frames 500] [--boards 3]

A labgrid lab on loopback (hil/labgrid_lab.py: labgrid-coordinator, one
labgrid-exporter serving emulated boards' ptys through ser2net, a place per
board), measured side by side with the same boards opened locally:

(a) Latency per frame: an emulated board runs an echo main.py; a 60-byte
    line frame is written and its echo awaited, --frames times, one at a
    time. Round trip p50/p99/max over the local pty and over the place's
    RFC2217 URL (pyserial, as the harness opens it), and the difference of
    the p50s and p99s: what labgrid (TCP, telnet/RFC2217, ser2net) adds to a
    frame's round trip. A frame one way gets about half of it. Beside them,
    the same pty behind a ser2net started here the way labgrid-exporter
    starts it but with `chardelay: false`: ser2net's default chardelay
    (it waits for more bytes before it sends) is most of what labgrid adds.
(b) Setup time per board: acquiring --boards places (one client session,
    hil/labgrid_places.Places), and preparing a --boards-node scenario on a
    rig of those places against the same boards as local `url:` entries
    (FileRig.prepare: board.json by mpremote, soft reset, HELLO; boards in
    parallel), total and per board; releasing the places.
(c) Power switching through a place (hil/labgrid_power.py): each board's
    place has a NetworkPowerPort (model simplerest) on an EmulatedPdu, the
    HTTP power switch of emulated boards; labgrid's NetworkPowerDriver
    switches one board off and on 10 times. The time of one switching
    (driver, HTTP, the board's power cut or cold boot started), p50/max; the
    board's boot after power-on is not included.

Not a test: it asserts nothing, it prints figures and the machine.
"""

import argparse
import os
import socket
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bench.machine_info import describe  # noqa: E402

ECHO_MAIN = """\
import sys
print("echo ready")
while True:
    line = sys.stdin.readline()
    if line:
        sys.stdout.write(line)
"""

SCENARIO = """\
name: bench_labgrid
seed: 3
duration_s: 10
time_scale: 10
election_timeout_ms: 2000
clusters:
  - {id: 1, nodes: [%s], lineages: [0, 1]}
"""


def _pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def round_trips(url, frames):
    """Round-trip times (s) of `frames` echoed line frames over `url`."""
    from ground.links import open_serial

    port = open_serial(url, timeout=5, write_timeout=2)
    try:
        port.write(b"sync\n")
        _read_line(port, b"sync\n")
        out = []
        for i in range(frames):
            frame = b"%05d:" % i + bytes(range(65, 65 + 53)) + b"\n"  # 60 bytes with the newline
            t0 = time.perf_counter()
            port.write(frame)
            _read_line(port, frame)
            out.append(time.perf_counter() - t0)
        return out
    finally:
        port.close()


def _read_line(port, want):
    data = b""
    deadline = time.monotonic() + 10
    while not data.endswith(want.replace(b"\n", b"\r\n")) and not data.endswith(want):
        if time.monotonic() > deadline:
            raise TimeoutError("%s: no echo of %r (got %r)" % (port.port, want[:10], data[-80:]))
        data += port.read(port.in_waiting or 1)


def latency(tmp, frames):
    from hil import rigfile
    from hil.emulated import EmulatedBoard
    from hil.labgrid_lab import LocalLab
    from hil.labgrid_places import Places

    folder = os.path.join(tmp, "echo")
    os.makedirs(folder)
    with open(os.path.join(folder, "main.py"), "w") as f:
        f.write(ECHO_MAIN)
    board = EmulatedBoard(folder, name="echo").start()
    try:
        if not board.wait_output(b"echo ready", timeout_s=30):
            raise RuntimeError("the echo board did not start")
        with LocalLab(os.path.join(tmp, "lab-echo")) as lab:
            lab.add_exporter("hostA", {"echo": board.link})
            lab.add_place("echo", "hostA", "echo")
            rig_path = os.path.join(tmp, "rig-echo.yaml")
            with open(rig_path, "w") as f:
                f.write("rig: echo\ncoordinator: '%s'\nboards:\n"
                        "  - {name: echo, kind: pico, place: echo, node_id: 1, cluster: 1}\n" % lab.address)
            places = Places(rigfile.load(rig_path))
            try:
                url = places.acquire()["echo"]
                local = round_trips(str(board.link), frames)
                remote = round_trips(url, frames)
                local2 = round_trips(str(board.link), frames)  # again: the machine's drift between rounds
            finally:
                places.release()
        bare = _without_chardelay(board, frames)
    finally:
        board.stop()
    return local + local2, remote, bare


def _without_chardelay(board, frames):
    """Round trips through a ser2net of our own, labgrid-exporter's command
    line plus `chardelay: false`."""
    import shutil
    import subprocess

    from hil.labgrid_lab import free_port

    port = free_port()
    ser2net = shutil.which("ser2net") or "/usr/sbin/ser2net"
    cmd = [ser2net, "-d", "-n",
           "-Y", "connection: &con01#  accepter: telnet(rfc2217,mode=server),tcp,%d" % port,
           "-Y", "  connector: serialdev(nouucplock=true),%s,115200n81,local" % os.path.realpath(board.link),
           "-Y", "  options:", "-Y", "    max-connections: 10", "-Y", "    chardelay: false"]  # fmt: skip
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:  # until it listens
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or p.poll() is not None:
                    raise RuntimeError("ser2net did not start: %s" % " ".join(cmd)) from None
                time.sleep(0.1)
        return round_trips("rfc2217://127.0.0.1:%d?ign_set_control" % port, frames)
    finally:
        p.terminate()
        p.wait(10)


def setup(tmp, count):
    from ground import scenario as scenario_mod
    from hil import flash, rigfile
    from hil.emulated import EmulatedBoard
    from hil.labgrid_lab import LocalLab
    from hil.labgrid_places import Places
    from hil.labgrid_power import EmulatedPdu
    from hil.rig import FileRig

    nids = list(range(1, count + 1))
    sc_path = os.path.join(tmp, "sc.yaml")
    with open(sc_path, "w") as f:
        f.write(SCENARIO % ", ".join(map(str, nids)))
    sc = scenario_mod.load(sc_path)
    boards = {}
    out = {}
    pdu = None
    try:
        for nid in nids:
            folder = os.path.join(tmp, "b%d" % nid)
            flash.write_image(folder, board_config={"node_id": nid, "cluster": 1, "members": nids, "watchdog_ms": 0})
            boards[nid] = EmulatedBoard(folder, name="b%d" % nid).start()
        pdu = EmulatedPdu(boards).start()
        with LocalLab(os.path.join(tmp, "lab")) as lab:
            t0 = time.monotonic()
            lab.add_exporter("hostA", {"p%d" % n: boards[n].link for n in nids},
                             power={"p%d" % n: (pdu.url, n) for n in nids})
            out["exporter_s"] = time.monotonic() - t0
            for n in nids:
                lab.add_place("p%d" % n, "hostA", "p%d" % n, power=True)
            rigs = {}
            for name, entry in (("local", "url: '%s'"), ("labgrid", "place: p%d")):
                lines = ["rig: %s" % name, "coordinator: '%s'" % lab.address, "boards:"]
                for n in nids:
                    where = entry % (boards[n].link if name == "local" else n)
                    lines.append("  - {name: b%d, kind: pico, %s, node_id: %d, cluster: 1}" % (n, where, n))
                rigs[name] = os.path.join(tmp, "rig-%s.yaml" % name)
                with open(rigs[name], "w") as f:
                    f.write("\n".join(lines) + "\n")
            places = Places(rigfile.load(rigs["labgrid"]))
            t0 = time.monotonic()
            places.acquire()
            out["acquire_s"] = time.monotonic() - t0
            power, switch = places.power["b1"], []
            for _ in range(10):
                for fn in (power.off, power.on):
                    t0 = time.monotonic()
                    fn()
                    switch.append(time.monotonic() - t0)
            out["switch_s"] = switch
            t0 = time.monotonic()
            places.release()
            out["release_s"] = time.monotonic() - t0
            for name in ("local", "labgrid", "local"):
                rig = FileRig(rigs[name], lambda: os.path.join(tmp, "rigdir"))
                t0 = time.monotonic()
                try:
                    prepared = rig.prepare(sc, os.path.join(tmp, "repl-" + name))
                    out.setdefault("prepare_" + name, []).append(time.monotonic() - t0)
                    prepared.stop()
                finally:
                    rig.close()
    finally:
        if pdu is not None:
            pdu.stop()
        for b in boards.values():
            b.stop()
    return out


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.bench_labgrid", description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, default=500, help="frames per latency round")
    p.add_argument("--boards", type=int, default=3, help="boards (places) for the setup figures")
    args = p.parse_args(argv)
    from hil.labgrid_lab import missing

    print("machine: %s" % describe())
    why = missing()
    if why:
        print("bench_labgrid: skipped: %s" % why)
        return 0
    import labgrid

    print("labgrid %s; ser2net from labgrid-exporter; coordinator and exporter on loopback" % labgrid.__version__)
    with tempfile.TemporaryDirectory(prefix="bench_labgrid_") as tmp:
        local, remote, bare = latency(tmp, args.frames)
        ms = 1000.0
        print("(a) round trip of a 60-byte line frame, echoed by an emulated board (%d frames; local: two rounds,"
              " before and after)" % args.frames)
        print("    %-22s %9s %9s %9s" % ("", "p50 ms", "p99 ms", "max ms"))
        for name, xs in (("local pty", local), ("labgrid (RFC2217)", remote), ("ser2net, no chardelay", bare)):
            print("    %-22s %9.3f %9.3f %9.3f" % (name, _pct(xs, 0.5) * ms, _pct(xs, 0.99) * ms, max(xs) * ms))
        print("    %-22s %9.3f %9.3f" % ("added by labgrid", (_pct(remote, 0.5) - _pct(local, 0.5)) * ms,
                                           (_pct(remote, 0.99) - _pct(local, 0.99)) * ms))
        print("    (one way: about half; mean local %.3f ms, labgrid %.3f ms)"
              % (statistics.mean(local) * ms, statistics.mean(remote) * ms))
        s = setup(tmp, args.boards)
        n = args.boards
        print("(b) setup, %d boards" % n)
        print("    exporter up (ser2net per port), resources published: %.2f s" % s["exporter_s"])
        print("    acquire %d places (one session): %.2f s total, %.2f s per board; release: %.2f s"
              % (n, s["acquire_s"], s["acquire_s"] / n, s["release_s"]))
        loc = s["prepare_local"]
        print("    FileRig.prepare (mpremote board.json, soft reset, HELLO; boards in parallel):")
        print("      local url entries: %s s (%.2f s per board)" % (", ".join("%.2f" % x for x in loc),
                                                                      statistics.mean(loc) / n))
        lg = s["prepare_labgrid"][0]
        print("      labgrid places:    %.2f s (%.2f s per board; includes acquiring)" % (lg, lg / n))
        print("      added by labgrid:  %.2f s per board" % ((lg - statistics.mean(loc)) / n))
        sw = s["switch_s"]
        print("(c) power switching through a place (labgrid NetworkPowerDriver -> EmulatedPdu, %d switchings):"
              " p50 %.1f ms, max %.1f ms" % (len(sw), _pct(sw, 0.5) * ms, max(sw) * ms))
    return 0


if __name__ == "__main__":
    sys.exit(main())
