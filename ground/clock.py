"""Clocks for the router: virtual (in-process runs, exact) and scaled real time.

Both speak mission nanoseconds: `now_ns()`, `call_at(mission_ns, fn, *args)`,
`run_until(mission_ns)`. Virtual time jumps from event to event, so a run is
exactly reproducible from its seed. Real time maps mission time onto the host
clock through the run's time scale (mission seconds per wall second) and
waits on the links' file descriptors in between (ground.realtime.Scheduler).
"""

import time
from heapq import heappop, heappush


class VirtualClock:
    """Discrete-event time. Ties run in call order (a sequence number)."""

    real = False

    def __init__(self):
        self._now = 0
        self._heap = []
        self._seq = 0
        self.stopped = False

    def now_ns(self):
        return self._now

    def wall_ns(self, time_scale):
        now = self._now
        if time_scale == 1.0 and now < 2**53:  # (once per trace event) the division's result, without it:
            return now  # an int below 2**53 is exact as a float
        return int(now / time_scale)

    def call_at(self, mission_ns, fn, *args):
        # (the router calls this once per recipient: no max(), heappush bound at import)
        self._seq = seq = self._seq + 1
        now = self._now
        heappush(self._heap, (now if now > mission_ns else mission_ns, seq, fn, args))  # = max(mission_ns, now)

    def add_reader(self, fd, fn):
        raise ValueError("a virtual-time run cannot wait on a device: use a real-time run for boards")

    def run_until(self, end_ns, progress=None):
        heap = self._heap
        while heap and heap[0][0] <= end_ns and not self.stopped:
            t, _, fn, args = heappop(heap)
            self._now = t
            fn(*args)
            if progress is not None:
                progress(t)
        if not self.stopped:
            self._now = end_ns

    def stop(self):
        self.stopped = True


class RealClock:
    """Mission time = (host monotonic time since start) x time_scale."""

    real = True

    def __init__(self, time_scale, scheduler):
        from ground.lateness import Lateness

        self.time_scale = time_scale
        self.sched = scheduler
        self.lateness = Lateness()  # how late each timer ran against its wall due time (ground/lateness.py)
        self._start_wall = time.monotonic_ns()
        self._start_epoch = time.time_ns()
        self.stopped = False

    def now_ns(self):
        return int((time.monotonic_ns() - self._start_wall) * self.time_scale)

    def wall_ns(self, time_scale=None):
        return self._start_epoch + (time.monotonic_ns() - self._start_wall)

    def _to_wall(self, mission_ns):
        return self._start_wall + int(mission_ns / self.time_scale)

    def call_at(self, mission_ns, fn, *args):
        due = self._to_wall(mission_ns)
        self.sched.call_at(due, self._timed, due, fn, args)

    def _timed(self, due, fn, args):
        # (the scheduler's clock is time.monotonic_ns: the same as due's)
        self.lateness.add(self.sched.clock() - due)
        fn(*args)

    def realtime(self):
        """What the run's report says of its real time: the time scale, and
        how late its timers ran (wall ms; ground/lateness.py)."""
        return {"time_scale": self.time_scale, "lateness": self.lateness.summary()}

    def add_reader(self, fd, fn):
        self.sched.add_reader(fd, fn)

    def remove_reader(self, fd):
        self.sched.remove_reader(fd)

    def run_until(self, end_ns, progress=None, every_ns=200_000_000):
        """Run to mission end_ns; `progress(mission_ns)` every `every_ns` of wall time."""
        if progress is not None:
            def tick():
                progress(self.now_ns())
                self.sched.call_later(every_ns, tick)
            self.sched.call_later(every_ns, tick)
        self.sched.run_until(self._to_wall(end_ns), stop=lambda: self.stopped)

    def stop(self):
        self.stopped = True
