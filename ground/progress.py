"""The live progress line of `ground run`: mission time, share done, wall time
elapsed, rate (mission s per wall s), ETA, frames and who coordinates.

    progress = Progress(sys.stderr)
    run(sc, out, progress=progress)       # progress(mission_ns, run) as it goes,
                                          # progress.phase("computing metrics", run) at the end
    progress.done()                       # the closing line: wall time in all

On a terminal one line is redrawn in place, at most 10 times a wall second,
padded to a fixed width so no leftovers of a longer line show; elsewhere (a
log, CI) one line per tenth of the run. The last redraw always shows the end
(the caller's phase() redraws before it says what comes next).

    mission    120.0/240 s  50%  elapsed    2.0s  rate   61.3x  ETA    2.0s  frames    1234  coord c1:n2/t2 c2:n6/t1

`c1:n2/t2` reads: cluster 1's coordinator is node 2, in election term 2 (the
latest COORDINATOR claim the ground routed); `c1:-` no coordinator known yet.

Above AGGREGATE_ABOVE clusters (a fleet) the line keeps one fixed width,
whatever the fleet's size: counts instead of the list.

    mission    120.0/240 s  50%  elapsed    2.0s  rate   61.3x  ETA    2.0s  frames    123456  coord    97/100   market   2/3

`coord 97/100`: clusters whose latest claimed coordinator is up (its link
not crashed or cut off by power); `market 2/3`: regions (scenario
`regions:`) whose electors have claimed a regional coordinator, so their
market is open for bids.

Plain code, not tqdm or rich: the project's dependencies are fixed
(pyproject.toml), and one line with a rate and an ETA is a dozen lines here.
"""

import shutil
import sys
import time

S = 1_000_000_000
AGGREGATE_ABOVE = 12  # clusters: above this, counts instead of one entry per cluster
REDRAW_S = 0.1  # at most 10 redraws a wall second on a terminal


def clock_text(seconds):
    """4.2s under a minute, else 1:07, 12:34, 1:02:03 (wall seconds, rounded down)."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return "%.1fs" % max(0.0, seconds)
    s = int(seconds)
    h, m, s = s // 3600, s // 60 % 60, s % 60
    return "%d:%02d:%02d" % (h, m, s) if h else "%d:%02d" % (m, s)


def coordinators_text(coordinator, clusters=()):
    """`c1:n2/t2 c2:n6/t1` from the router's {cluster: (node, term)};
    clusters without one read `cN:-`."""
    out = []
    for c in sorted(set(coordinator) | set(clusters)):
        held = coordinator.get(c)
        out.append("c%d:n%d/t%d" % (c, held[0], held[1]) if held else "c%d:-" % c)
    return " ".join(out)


def fleet_text(coordinated, clusters, open_markets, regions):
    """`   97/100    market   2/3` (after the line's `coord`): fixed width up to 99,999 clusters and 510 regions."""
    return "%5d/%-5d  market %3d/%-3d" % (coordinated, clusters, open_markets, regions)


def line_text(mission_s, duration_s, elapsed_s, frames, coords):
    """The progress line itself (pure: tested without a terminal)."""
    rate = mission_s / elapsed_s if elapsed_s > 0 and mission_s > 0 else None
    eta = (duration_s - mission_s) / rate if rate else None
    share = 100.0 * mission_s / duration_s if duration_s > 0 else 100.0
    return "  mission %8.1f/%g s %3.0f%%  elapsed %7s  rate %7s  ETA %7s  frames %7d  coord %s" % (
        mission_s, duration_s, share, clock_text(elapsed_s),
        ("%.1fx" % rate) if rate is not None else "-", clock_text(eta), frames, coords)


def _fleet_counts(router, clusters, regions):
    """(clusters with a coordinator that is up, clusters, regions with a regional coordinator, regions)."""
    if router is None:
        return 0, len(clusters), 0, len(regions)
    up = 0
    for held in router.coordinator.values():
        link = router.links.get(held[0])
        up += link is not None and link.up
    return up, len(clusters), len(router.region_coordinator), len(regions)


class WindowRate:
    """A long run's progress per wall second counted from its first window,
    not from the setup before it (a 100,000-node fleet takes minutes to
    build): the lean run's and the sweep's ETA (ground/fleetcli.py,
    ground/sweep.py). rate(now, done) at every window; None until the work
    done has moved since the first."""

    def __init__(self):
        self.first = None  # (wall s, work done) at the first window

    def rate(self, now, done):
        if self.first is None:
            self.first = (now, done)
        w0, d0 = self.first
        return (done - d0) / (now - w0) if now > w0 and done > d0 else None


class Progress:
    """A progress callback for ground.run (see the module comment)."""

    def __init__(self, stream=None, clock=time.monotonic):
        self.stream = stream if stream is not None else sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.clock = clock
        self.started = clock()
        self.last_draw = None
        self.tenth = -1
        self.width = 0  # the longest line drawn so far: shorter ones are padded to it
        self.open_line = False  # a redrawn line without its newline yet

    def __call__(self, mission_ns, run):
        if self.tty:
            now = self.clock()
            if self.last_draw is not None and now - self.last_draw < REDRAW_S:
                return
            self.last_draw = now
        else:
            tenth = int(10 * mission_ns / S / run.sc.duration_s) if run.sc.duration_s else 10
            if tenth == self.tenth:
                return
            self.tenth = tenth
        self._draw(mission_ns, run)

    def _draw(self, mission_ns, run):
        router = run.router
        clusters = getattr(run.sc, "clusters", ())
        if len(clusters) > AGGREGATE_ABOVE:
            coords = fleet_text(*_fleet_counts(router, clusters, getattr(run.sc, "regions", ())))
        else:
            coords = coordinators_text(router.coordinator if router else {}, clusters)
        text = line_text(mission_ns / S, run.sc.duration_s, self.clock() - self.started,
                         router.frames if router else 0, coords)
        if self.tty:
            cols = shutil.get_terminal_size((120, 20)).columns
            text = text[: cols - 1]
            self.width = max(self.width, len(text))
            self.stream.write("\r" + text.ljust(self.width))
            self.open_line = True
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def phase(self, what, run):
        """The run moves on to `what` (e.g. "computing metrics"): redraw the
        line at the clock's end, then say so on a line of its own."""
        self._draw(run.clock.now_ns(), run)
        self._end_line()
        self.stream.write("  %s...\n" % what)
        self.stream.flush()

    def done(self):
        """After the run: the wall time in all."""
        self._end_line()
        self.stream.write("  done in %s wall\n" % clock_text(self.clock() - self.started))
        self.stream.flush()

    def _end_line(self):
        if self.open_line:
            self.stream.write("\n")
            self.open_line = False
