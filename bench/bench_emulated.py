"""How many idle emulated Picos one machine holds.

    python -m bench.bench_emulated [--counts 8,16,32,48] [--seconds 5]

For each count: start that many boards, each running an idle main.py that
sleeps in select.poll on stdin; measure over --seconds the CPU used by their
interpreters (utime+stime from /proc/<pid>/stat) and by this process (the
supervisor threads), the total resident memory, then check that every board
still answers a REPL ping over pyserial (Ctrl-C, then ``print(6*7)``).

A benchmark, not a test: it prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import serial

from hil.emulated import EmulatedBoard

IDLE_MAIN = """\
import select, sys
poller = select.poll()
poller.register(sys.stdin, select.POLLIN)
print("idle")
while True:
    if poller.poll(1000):  # a firmware loop waiting for the ground
        sys.stdin.buffer.read(1)
"""

_CLK_TCK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _cpu_ticks(pid: int | str) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)


def _rss_bytes(pid: int | str) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * _PAGE


def _pss_bytes(pid: int | str) -> int:
    # Proportional set size: shared pages (the interpreter binary, libc) split
    # between the processes that map them, so a sum over boards is honest.
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    return 0


def _ping(board: EmulatedBoard, timeout_s: float = 10) -> bool:
    with serial.Serial(board.device, timeout=0.1) as port:
        port.write(b"\x03")
        port.write(b"print(6*7)\r")
        data = b""
        deadline = time.monotonic() + timeout_s
        while b"42\r\n" not in data and time.monotonic() < deadline:
            data += port.read(port.in_waiting or 1)
        return b"42\r\n" in data


def measure(count: int, seconds: float, root: Path) -> dict[str, float]:
    """Figures for ``count`` idle boards under ``root``; every board is stopped after."""
    boards = [EmulatedBoard(root / f"n{count}" / f"pico{i}", name=f"pico{i}") for i in range(count)]
    for board in boards:
        board.folder.mkdir(parents=True)
        (board.folder / "main.py").write_text(IDLE_MAIN)
    try:
        t0 = time.monotonic()
        for board in boards:
            board.start()
        deadline = t0 + 60  # for all of them together
        booted = sum(
            1 for board in boards if board.wait_output(b"idle\r\n", timeout_s=max(0.1, deadline - time.monotonic()))
        )
        boot_s = time.monotonic() - t0
        time.sleep(0.5)  # let the boot settle before counting
        pids = [board.pid for board in boards if board.pid is not None]
        before = [_cpu_ticks(pid) for pid in pids]
        self_before = _cpu_ticks("self")
        wall0 = time.monotonic()
        time.sleep(seconds)
        wall = time.monotonic() - wall0
        interp_s = sum(_cpu_ticks(pid) - b for pid, b in zip(pids, before)) / _CLK_TCK
        super_s = (_cpu_ticks("self") - self_before) / _CLK_TCK
        rss = sum(_rss_bytes(pid) for pid in pids)
        pss = sum(_pss_bytes(pid) for pid in pids)
        answered = sum(1 for board in boards if _ping(board))
        return {
            "boards": count,
            "booted": booted,
            "boot_s": boot_s,
            "interp_pct_core": 100 * interp_s / wall,
            "super_pct_core": 100 * super_s / wall,
            "rss_mib": rss / 2**20,
            "pss_mib": pss / 2**20,
            "self_rss_mib": _rss_bytes("self") / 2**20,
            "answered": answered,
        }
    finally:
        for board in boards:
            board.stop()


def _machine() -> str:
    mp = Path(sys.executable).with_name("micropython")
    try:
        mp_version = subprocess.run(
            [str(mp), "-c", "import sys; print(sys.version)"], capture_output=True, timeout=10, text=True
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        mp_version = "?"
    return (
        f"machine: processor={platform.processor() or platform.machine()!r} cpu_count={os.cpu_count()} "
        f"python={platform.python_version()} platform={platform.platform()}\n"
        f"micropython: {mp} ({mp_version})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_emulated", description=__doc__.split("\n")[0])
    parser.add_argument("--counts", default="8,16,32,48", help="comma-separated board counts")
    parser.add_argument("--seconds", type=float, default=5.0, help="CPU measurement window per count")
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.counts.split(",") if c]
    print(_machine())
    print(f"idle main.py: select.poll(1000) on stdin; CPU window {args.seconds:g} s; % of one core")
    header = (
        "boards", "booted", "boot s", "interp cpu%", "superv cpu%",
        "interp RSS MiB", "interp PSS MiB", "PSS/board", "superv RSS", "ping ok",
    )  # fmt: skip
    print(" ".join(f"{h:>14}" for h in header))
    with tempfile.TemporaryDirectory(prefix="bench_emulated_") as tmp:
        for count in counts:
            r = measure(count, args.seconds, Path(tmp))
            row = (
                f"{r['boards']}", f"{r['booted']}", f"{r['boot_s']:.2f}", f"{r['interp_pct_core']:.2f}",
                f"{r['super_pct_core']:.2f}", f"{r['rss_mib']:.0f}", f"{r['pss_mib']:.0f}",
                f"{r['pss_mib'] / count:.1f}", f"{r['self_rss_mib']:.0f}", f"{r['answered']}/{count}",
            )  # fmt: skip
            print(" ".join(f"{c:>14}" for c in row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
