"""How long flashing a rig of emulated Picos takes, first time and again.

    python -m bench.bench_flash [--rig boards/rig-emulated-8.yaml] [--rounds 3]

Starts the rig's emulated boards with empty flash in a temporary folder, then
times hil.flash.flash_rig() (mpy-cross build, one worker process per board,
stock mpremote, HELLO from every board):
  - first:   empty boards, every file copied;
  - again:   nothing changed, nothing copied (survey, reset, HELLO);
  - version: the next minor version on every board (one file each: version.json).
--rounds repeats the "again" and "version" flashes. Per phase, the median
over boards of the time spent in it (from the progress callback).

A benchmark, not a test: it prints figures and asserts nothing. For scale:
mpflash takes about 25 s per real Pico (MicroPython firmware, .uf2 over the
bootloader), one board at a time: about 200 s for eight. This flashes the
application files onto boards that already run MicroPython; a real Pico adds
USB latency per mpremote round trip, which the emulated boards lack.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.machine_info import describe
from hil import flash
from hil import rig as rig_mod

REPO = Path(__file__).resolve().parents[1]
PHASES = ("survey", "stage", "commit", "reset", "hello")


class PhaseClock:
    """Progress callback that records when each board enters each phase."""

    def __init__(self) -> None:
        self.marks: dict[str, list[tuple[str, float]]] = {}

    def __call__(self, name: str, phase: str, text: str = "") -> None:
        marks = self.marks.setdefault(name, [])
        if not marks or marks[-1][0] != phase:
            marks.append((phase, time.monotonic()))

    def medians(self) -> dict[str, float]:
        spent: dict[str, list[float]] = {}
        for marks in self.marks.values():
            for (phase, t), (_, t_next) in zip(marks, marks[1:]):
                spent.setdefault(phase, []).append(t_next - t)
        return {p: statistics.median(v) for p, v in spent.items()}


def timed(label: str, rig: rig_mod.Rig, **kw) -> float:
    clock = PhaseClock()
    t0 = time.monotonic()
    results = flash.flash_rig(rig, progress=clock, **kw)
    seconds = time.monotonic() - t0
    bad = [r for r in results if not r.ok]
    copied = sum(len(r.copied) for r in results)
    med = clock.medians()
    phases = "  ".join("%s %.2f" % (p, med[p]) for p in ("build",) + PHASES if p in med)
    print("%-8s %2d boards  %6.2f s  %4d files copied  %s%s" % (
        label, len(results), seconds, copied, "median per board: " + phases,
        "  FAILED: %s" % "; ".join(r.error or "" for r in bad) if bad else ""))  # fmt: skip
    return seconds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rig", default=str(REPO / "boards" / "rig-emulated-8.yaml"))
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    rig = rig_mod.load(args.rig)
    print("bench_flash: %s" % describe())
    print("rig %s: %d emulated boards; mpremote per board, one worker process per board, in parallel"
          % (rig.name, sum(b.emulated for b in rig.boards)))  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-flash-") as tmp:
        boards = rig.start_emulated(tmp)
        try:
            current = rig.version or (1, 0)
            timed("first", rig, version=current)
            again, version = [], []
            for i in range(args.rounds):
                again.append(timed("again", rig, version=current))
                current = (current[0], current[1] + 1)
                version.append(timed("version", rig, version=current))
            print("median: again %.2f s, new version.json %.2f s (%d rounds)"
                  % (statistics.median(again), statistics.median(version), args.rounds))  # fmt: skip
        finally:
            for b in boards:
                b.stop()
    n = len(rig.boards)
    print("for comparison: mpflash ~25 s per real Pico, one at a time: ~%d s for %d boards" % (25 * n, n))
    return 0


if __name__ == "__main__":
    sys.exit(main())
