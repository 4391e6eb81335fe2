# A real-time scheduler for the harness when frames go to real or emulated
# boards: timers at absolute clock times plus file descriptors to wait on, in
# one thread, with sub-millisecond lateness at a bounded CPU cost.
#
#     sched = Scheduler()
#     sched.add_reader(port.fileno(), on_bytes, port)
#     sched.call_at(sched.now_ns() + 1_300_000_000, deliver, frame)
#     sched.run_until(deadline_ns)        # or run_until(lambda: done)
#
# Why not asyncio: its timers sleep in epoll until the due time and are late
# by whatever the wake-up costs: epoll's timeout is whole milliseconds
# (rounded up), the kernel adds timer slack (50 us by default) and a busy host
# adds scheduling latency. Measured here: p50 0.58 ms, p99 2.03 ms late. An
# injected light delay should be what the scenario says, so:
#
#   - idle: block in select() with a timeout that ends spin_ns (1 ms) before
#     the next due time, rounded down to the selector's resolution, so the
#     wake-up lands early, never late (with no descriptor registered,
#     time.sleep: nanosleep);
#   - then spin on the clock for the rest, polling the descriptors without
#     blocking on the way so input is not held up while we spin;
#   - run the timer as soon as clock() >= its due time: a callback never runs
#     early.
# There is no busy loop otherwise: with nothing due within spin_ns the thread
# blocks; and the spin itself is on a budget (below).
#
# Why select(): it takes a microsecond timeout where epoll/poll take whole
# milliseconds, so the spin is spin_ns, not spin_ns plus up to 1 ms more.
# select() cannot watch descriptors numbered 1024 or more: the scheduler moves
# to DefaultSelector (epoll) by itself if one is registered.
#
# Why spin_ns = 1 ms: the spin is there to absorb wake-up latency, which on a
# shared host is occasionally far above the 50 us timer slack. Measured on
# this 2-core host at load ~1, 1,000 timers/s, 3 rounds: a 250 us spin gave
# p99 0.55-0.86 ms at 30% CPU, a 1 ms spin p99 0.04-0.5 ms at ~98% CPU (it
# spins most of each 1 ms period). Under heavy load (two CPU-bound
# neighbours on 2 cores) no setting helps: preemption sets the tail (p99
# ~4 ms), and asyncio does no better. A rig wanting a hard tail should run
# the harness on an isolated core or under `chrt -f`.
#
# Polite by default: spinning ~98% of a core competes with the emulated
# boards on a 2-core CI host, so the spin has a budget, spin_share of the
# wall time (POLITE_SPIN_SHARE, 25%): it fills as time passes and each spin
# spends it; with it spent, a wait blocks to the due time itself and the
# timer is late by the wake-up (timer slack plus scheduling), never early.
# Sparse timers (a real run routes tens to hundreds of frames a second) get
# the full 1 ms spin; dense ones get what the budget allows. `ground run
# --precise-time` (spin_share=PRECISE_SPIN_SHARE) spins before every timer.
# bench/bench_links.py (b) prints both side by side: lateness and CPU.
#
# Time is the clock's integer nanoseconds (time.monotonic_ns by default;
# CLOCK_MONOTONIC, like perf_counter_ns on Linux). clock, selector and sleep
# can be replaced, which is how the tests drive it without wall-clock bounds.
# Exceptions from callbacks propagate out of run_until; the scheduler stays
# usable (the failing timer is already consumed).

import heapq
import itertools
import selectors
import time

_SLEEP_MIN_NS = 10_000  # shorter than this, sleeping costs more than spinning
POLITE_SPIN_SHARE = 0.25  # the default: spin at most a quarter of the wall time (a 2-core CI host has boards to run)
PRECISE_SPIN_SHARE = 1.0  # ground run --precise-time: spin whenever a timer is within spin_ns
_BUDGET_CAP_SPINS = 10  # the spin budget saves up at most this many full spins (a burst)
_FD_SETSIZE = 1024  # select() cannot watch descriptors from here on
_RESOLUTION_NS = {"EpollSelector": 1_000_000, "PollSelector": 1_000_000, "DevpollSelector": 1_000_000}


class Timer:
    """A scheduled call; cancel() before it runs and it will not."""

    __slots__ = ("due_ns", "fn", "args", "cancelled")

    def __init__(self, due_ns, fn, args):
        self.due_ns = due_ns
        self.fn = fn
        self.args = args
        self.cancelled = False

    def cancel(self):
        self.cancelled = True

    def __repr__(self):
        return "Timer(due_ns=%d, fn=%r%s)" % (self.due_ns, self.fn, ", cancelled" if self.cancelled else "")


class Scheduler:
    """Timers and descriptors in one thread; see the module comment.

    spin_ns   how long before a due time to stop blocking and start spinning
    clock     () -> int ns, monotonic
    selector  a selectors.BaseSelector; None: SelectSelector (microsecond
              timeouts), replaced by DefaultSelector if a descriptor >= 1024
              is registered
    sleep     (seconds) -> None, used for idle waits when no descriptor is
              registered (nanosleep: finer than epoll's whole milliseconds)
    resolution_ns  the finest timeout the selector honours (waits in it are
              rounded down to a multiple); None: 1 ms for epoll/poll, else 1 us
    spin_share  the most of the wall time spent spinning, 0..1: a budget
              that fills at spin_share ns per ns and is spent by spinning
              (at most _BUDGET_CAP_SPINS spins saved up); with it spent, a
              wait blocks to the due time itself (later by the wake-up, never
              early). POLITE_SPIN_SHARE by default; PRECISE_SPIN_SHARE (1.0)
              spins before every timer, as much as a core if timers are dense.
    """

    def __init__(self, spin_ns=1_000_000, clock=time.monotonic_ns, selector=None, sleep=time.sleep, resolution_ns=None,
                 spin_share=POLITE_SPIN_SHARE):
        if spin_ns.__class__ is not int or spin_ns < 0:
            raise ValueError("spin_ns must be a non-negative integer, got %r" % (spin_ns,))
        if isinstance(spin_share, bool) or not isinstance(spin_share, (int, float)) or not 0 <= spin_share <= 1:
            raise ValueError("spin_share must be a number in [0, 1], got %r" % (spin_share,))
        self.spin_ns = spin_ns
        self.spin_share = spin_share
        self._budget_cap_ns = _BUDGET_CAP_SPINS * spin_ns
        self._budget_ns = self._budget_cap_ns  # full at the start: the first timers are precise
        self._budget_at = None
        self.spun_ns = 0  # total time spent spinning (the benchmark reports it)
        self.clock = clock
        self._own_select = selector is None
        self._sel = selector if selector is not None else selectors.SelectSelector()
        if resolution_ns is None:
            resolution_ns = _RESOLUTION_NS.get(type(self._sel).__name__, 1_000)
        if resolution_ns.__class__ is not int or resolution_ns < 1:
            raise ValueError("resolution_ns must be a positive integer, got %r" % (resolution_ns,))
        self.resolution_ns = resolution_ns
        self._sleep = sleep
        self._heap = []  # (due_ns, seq, Timer): seq keeps equal due times in call order
        self._seq = itertools.count()
        self._fds = {}  # fd -> [reader (fn, args) or None, writer (fn, args) or None]
        self._stopping = False
        self._running = False

    def now_ns(self):
        return self.clock()

    def _allowance(self, now):
        # How long this wait may spin: spin_ns, less when the budget is short.
        if self.spin_share >= 1:
            return self.spin_ns
        if self._budget_at is not None:
            self._budget_ns = min(self._budget_cap_ns, self._budget_ns + (now - self._budget_at) * self.spin_share)
        self._budget_at = now
        return min(self.spin_ns, max(0, int(self._budget_ns)))

    # -- timers -------------------------------------------------------------

    def call_at(self, when_ns, fn, *args):
        """Run fn(*args) once the clock reads when_ns or later."""
        t = Timer(when_ns, fn, args)
        heapq.heappush(self._heap, (when_ns, next(self._seq), t))
        return t

    def call_later(self, delay_ns, fn, *args):
        return self.call_at(self.clock() + delay_ns, fn, *args)

    @property
    def pending(self):
        """Timers not yet run or cancelled."""
        return sum(1 for _, _, t in self._heap if not t.cancelled)

    # -- descriptors ----------------------------------------------------------

    def _fd_set(self, fd, slot, entry):
        if not isinstance(fd, int):
            fd = fd.fileno()
        cur = self._fds.get(fd)
        if cur is None:
            if entry is None:
                return False
            if fd >= _FD_SETSIZE and self._own_select:
                self._outgrow_select()
            cur = self._fds[fd] = [None, None]
            cur[slot] = entry
            self._sel.register(fd, _mask(cur), cur)
            return True
        had = cur[slot] is not None
        cur[slot] = entry
        if cur[0] is None and cur[1] is None:
            del self._fds[fd]
            self._sel.unregister(fd)
        else:
            self._sel.modify(fd, _mask(cur), cur)
        return had

    def _outgrow_select(self):
        # select() cannot take this descriptor: move everything to epoll
        new = selectors.DefaultSelector()
        for fd, cur in self._fds.items():
            new.register(fd, _mask(cur), cur)
        self._sel.close()
        self._sel = new
        self._own_select = False
        self.resolution_ns = _RESOLUTION_NS.get(type(new).__name__, 1_000)

    def add_reader(self, fd, fn, *args):
        """Call fn(*args) whenever fd (an int or anything with fileno()) is readable."""
        self._fd_set(fd, 0, (fn, args))

    def remove_reader(self, fd):
        """Stop watching fd for reading; True if it was watched."""
        return self._fd_set(fd, 0, None)

    def add_writer(self, fd, fn, *args):
        self._fd_set(fd, 1, (fn, args))

    def remove_writer(self, fd):
        return self._fd_set(fd, 1, None)

    def _poll(self, timeout_s):
        # Wait up to timeout_s (None: forever, 0: just look) and run the
        # callbacks of ready descriptors; the number of callbacks run.
        n = 0
        for key, events in self._sel.select(timeout_s):
            cur = key.data
            if events & selectors.EVENT_READ and cur[0] is not None:
                fn, args = cur[0]
                fn(*args)
                n += 1
            if events & selectors.EVENT_WRITE and cur[1] is not None:
                fn, args = cur[1]
                fn(*args)
                n += 1
        return n

    # -- running -------------------------------------------------------------

    def stop(self):
        """From a callback: make run_until return False before it next waits
        or runs a timer."""
        self._stopping = True

    def run_until(self, until=None, stop=None):
        """Run timers and descriptor callbacks until `until`:

        int       the clock reaching that many ns
        callable  until() returns true (checked before every wait and after
                  every callback)
        None      until there is nothing left to do (no timers and no
                  descriptors; with descriptors, until stop())
        stop, if given, is a predicate checked like a callable `until` that
        ends the run early, as stop() does (a deadline plus a way out).
        Returns True when `until` was met, False when stopped (stop() or the
        stop predicate) or there was nothing left to wait for.
        """
        if self._running:
            raise RuntimeError("run_until called from inside a callback")
        deadline = pred = None
        if callable(until):
            pred = until
        elif until is not None:
            if until.__class__ is bool or not isinstance(until, int):
                raise TypeError("until must be a deadline in ns, a predicate or None, got %r" % (until,))
            deadline = until
        if stop is not None and not callable(stop):
            raise TypeError("stop must be a predicate or None, got %r" % (stop,))
        self._running = True
        self._stopping = False
        try:
            return self._loop(deadline, pred, stop)
        finally:
            self._running = False

    def _loop(self, deadline, pred, stop):
        heap = self._heap
        clock = self.clock
        pop = heapq.heappop
        while True:
            if pred is not None and pred():
                return True
            if self._stopping or stop is not None and stop():
                return False
            while heap and heap[0][2].cancelled:
                pop(heap)
            now = clock()
            if heap and heap[0][0] <= now:
                t = pop(heap)[2]
                t.cancelled = True  # spent: cancel() after this is harmless
                t.fn(*t.args)
                continue
            if deadline is not None and now >= deadline:
                return True
            wake = heap[0][0] if heap else None
            if deadline is not None and (wake is None or deadline < wake):
                wake = deadline
            if wake is None:
                if not self._fds:
                    return False
                self._poll(None)
                continue
            allow = self._allowance(now)
            block_ns = wake - now - allow
            if self._fds:
                res = self.resolution_ns
                if block_ns >= res:
                    self._poll((block_ns - block_ns % res) / 1e9)
                    continue
                if block_ns > 0 and allow < self.spin_ns:
                    # The spin budget is short and the selector cannot wait
                    # this finely: wait to the due time rounded up (late by
                    # under one resolution step, never early).
                    self._poll((block_ns + res - 1) // res * res / 1e9)
                    continue
            elif block_ns >= _SLEEP_MIN_NS:
                self._sleep(block_ns / 1e9)
                continue
            # Within `allow` of the next due time: spin on the clock. Poll the
            # descriptors without blocking as we go; if one fired, go round
            # again, since its callback may have scheduled something earlier.
            spin_from = clock()
            if self._fds:
                while clock() < wake:
                    if self._poll(0):
                        break
            else:
                while clock() < wake:
                    pass
            spun = clock() - spin_from
            self.spun_ns += spun
            self._budget_ns -= spun

    def close(self):
        """Unregister every descriptor and drop pending timers."""
        for fd in list(self._fds):
            self._sel.unregister(fd)
        self._fds.clear()
        self._heap.clear()
        self._sel.close()


def _mask(cur):
    return (selectors.EVENT_READ if cur[0] is not None else 0) | (selectors.EVENT_WRITE if cur[1] is not None else 0)
