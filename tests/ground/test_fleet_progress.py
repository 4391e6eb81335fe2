"""The lean run's and the sweep's progress lines (ground/fleetcli.py
FleetProgress, ground/sweep.py SweepProgress) take their rate from the
windows, not from the setup before the first: a fleet that takes minutes to
build shows the right ETA from its second window on."""

import io
import re

from ground.fleetcli import FleetProgress
from ground.sweep import SweepProgress

S = 1_000_000_000


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class _Run:
    plan = [[1], [2]]

    class sc:
        duration_s = 100.0


def _eta(text):
    return float(re.findall(r"ETA +([0-9.]+)s", text)[-1])


def test_the_run_eta_counts_from_the_first_window_not_the_setup():
    clock, out = Clock(), io.StringIO()
    p = FleetProgress(out, 100.0, clock=clock)
    clock.now = 600.0  # ten minutes of setup, then a mission second every wall second
    for m in range(1, 31):
        clock.now += 1.0
        p(m * S, _Run)
    last = out.getvalue().splitlines()[-1]  # a line every 5 wall s in a log
    m = float(re.search(r"mission +([0-9.]+)/", last).group(1))
    assert m > 20 and abs(_eta(last) - (100 - m)) < 0.5, last  # what is left at 1x (from elapsed: over 2,000 s)
    assert "rate      1.0x" in last and "elapsed   %.1fs" % (600 + m) in last


def test_the_sweep_eta_counts_each_sizes_windows():
    clock, out = Clock(), io.StringIO()
    p = SweepProgress(out, [100, 1000], 10.0, clock=clock)
    p.start(0, 100)
    clock.now = 300.0  # setup
    for m in range(1, 11):
        clock.now += 1.0  # 100 node-mission-s per wall s
        p(m * S, _Run)
    p.finished(100, 10.0)
    p.start(1, 1000)
    clock.now += 300.0
    for m in range(1, 4):
        clock.now += 10.0  # the same 100 node-mission-s per wall s
        p(m * S, _Run)
    last = out.getvalue().splitlines()[-1]
    assert "size   1000 (2/2)" in last
    # 7,000 node-mission-s to go at the rate of this size's windows: 70 s (the setups would make it about 1,800 s)
    assert re.search(r"ETA +1:10\b", last), last
