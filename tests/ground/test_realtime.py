# The real-time scheduler (ground/realtime.py), read as its spec: timers run
# in due order, never before their due time; descriptor callbacks fire; run
# stops on a deadline, a predicate, stop() or lack of work; and an idle wait
# blocks (checked with an injected clock and selector, not by timing).
# No wall-clock precision bounds here: precision is bench/bench_links.py's job.
import os
import selectors

import pytest

from ground.realtime import Scheduler

MS = 1_000_000


def test_timers_run_in_due_order_then_call_order():
    s = Scheduler()
    now = s.now_ns()
    ran = []
    for due, name in ((5, "e"), (1, "a"), (3, "c"), (1, "b"), (4, "d")):
        s.call_at(now + due * MS, ran.append, name)
    assert s.run_until() is False  # ran out of work
    assert ran == ["a", "b", "c", "d", "e"]


def test_callbacks_never_run_before_their_due_time():
    s = Scheduler()
    start = s.now_ns()
    seen = []
    for i in range(200):
        due = start + (i % 40) * 250_000  # 0 .. 10 ms, many sharing a due time
        s.call_at(due, lambda d: seen.append((d, s.now_ns())), due)
    s.run_until()
    assert len(seen) == 200
    assert all(now >= due for due, now in seen)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_past_due_timers_run_at_once_and_in_order():
    s = Scheduler()
    now = s.now_ns()
    ran = []
    s.call_at(now - 5 * MS, ran.append, 2)
    s.call_at(now - 10 * MS, ran.append, 1)
    s.run_until()
    assert ran == [1, 2]


def test_call_later_and_scheduling_from_a_callback():
    s = Scheduler()
    ran = []

    def first():
        ran.append(("first", s.now_ns()))
        s.call_later(2 * MS, lambda: ran.append(("second", s.now_ns())))

    s.call_later(1 * MS, first)
    s.run_until()
    assert [n for n, _ in ran] == ["first", "second"]
    assert ran[1][1] - ran[0][1] >= 2 * MS


def test_cancel():
    s = Scheduler()
    ran = []
    t = s.call_later(1 * MS, ran.append, "no")
    s.call_later(2 * MS, ran.append, "yes")
    assert s.pending == 2
    t.cancel()
    assert s.pending == 1
    s.run_until()
    assert ran == ["yes"]


def test_run_until_deadline():
    s = Scheduler()
    ran = []
    now = s.now_ns()
    s.call_at(now + 2 * MS, ran.append, 1)
    s.call_at(now + 10_000 * MS, ran.append, 2)  # far after the deadline
    assert s.run_until(now + 20 * MS) is True
    assert s.now_ns() >= now + 20 * MS
    assert ran == [1] and s.pending == 1


def test_run_until_predicate_and_stop():
    s = Scheduler()
    count = []
    for i in range(10):
        s.call_later(i * 100_000, count.append, i)
    assert s.run_until(lambda: len(count) >= 3) is True
    assert count == [0, 1, 2]
    s.call_later(0, s.stop)
    assert s.run_until() is False  # stopped, with timers left
    assert s.pending > 0


def test_nothing_to_do_returns_at_once():
    s = Scheduler()
    assert s.run_until() is False
    assert s.run_until(lambda: False) is False


def test_fd_callbacks_fire():
    s = Scheduler()
    r, w = os.pipe()
    try:
        got = []

        def readable():
            got.append(os.read(r, 100))

        s.add_reader(r, readable)
        s.call_later(3 * MS, os.write, w, b"frame")
        assert s.run_until(lambda: got) is True
        assert got == [b"frame"]
        assert s.remove_reader(r) is True
        assert s.remove_reader(r) is False
        os.write(w, b"more")
        assert s.run_until(s.now_ns() + 5 * MS) is True
        assert got == [b"frame"]  # no longer watched
    finally:
        s.close()
        os.close(r)
        os.close(w)


def test_fd_input_is_served_while_a_timer_is_close():
    # a timer within the spin window must not hold up input
    s = Scheduler(spin_ns=50 * MS)
    r, w = os.pipe()
    try:
        order = []
        s.add_reader(r, lambda: order.append(("read", os.read(r, 10))))
        s.call_later(40 * MS, order.append, ("timer", None))
        s.call_later(1 * MS, os.write, w, b"x")
        assert s.run_until(lambda: len(order) == 2) is True
        assert order == [("read", b"x"), ("timer", None)]
    finally:
        s.close()
        os.close(r)
        os.close(w)


def test_writer_callbacks_and_file_objects():
    s = Scheduler()
    r, w = os.pipe()
    with os.fdopen(w, "wb", buffering=0) as wf:
        hits = []
        s.add_writer(wf, lambda: (hits.append(1), s.remove_writer(wf)))
        assert s.run_until(lambda: hits) is True
    s.close()
    os.close(r)


def test_exceptions_propagate_and_the_scheduler_carries_on():
    s = Scheduler()

    def boom():
        raise RuntimeError("boom")

    ran = []
    s.call_later(0, boom)
    s.call_later(1 * MS, ran.append, 1)
    with pytest.raises(RuntimeError, match="boom"):
        s.run_until()
    s.run_until()
    assert ran == [1]


def test_no_reentry():
    s = Scheduler()
    errors = []

    def nested():
        try:
            s.run_until()
        except RuntimeError as e:
            errors.append(e)

    s.call_later(0, nested)
    s.run_until()
    assert errors


def test_bad_arguments():
    with pytest.raises(ValueError):
        Scheduler(spin_ns=-1)
    with pytest.raises(TypeError):
        Scheduler().run_until(1.5)


# -- idle waits block: a fake clock and selector, no wall clock --------------------

class FakeClock:
    """Each read costs 1 us; waits advance it by their timeout."""

    def __init__(self):
        self.ns = 10**12
        self.reads = 0

    def __call__(self):
        self.ns += 1000
        self.reads += 1
        return self.ns

    def sleep(self, s):
        self.waits.append(s)
        self.ns += int(s * 1e9)


class FakeSelector(selectors.BaseSelector):
    def __init__(self, clock):
        self.clock = clock
        self.keys = {}

    def register(self, fileobj, events, data=None):
        k = selectors.SelectorKey(fileobj, fileobj, events, data)
        self.keys[fileobj] = k
        return k

    def unregister(self, fileobj):
        return self.keys.pop(fileobj)

    def select(self, timeout=None):
        assert timeout is not None, "would block forever"
        self.clock.sleep(timeout)
        return []

    def get_map(self):
        return self.keys

    def close(self):
        pass


@pytest.mark.parametrize("with_fd", [False, True])
def test_idle_waits_block_until_just_before_due(with_fd):
    clock = FakeClock()
    clock.waits = []
    sel = FakeSelector(clock)
    s = Scheduler(spin_ns=1 * MS, clock=clock, selector=sel, sleep=clock.sleep, resolution_ns=1 * MS)
    if with_fd:
        s.add_reader(99, lambda: None)
    due = clock.ns + 100 * MS + 123_456
    ran = []
    s.call_at(due, lambda: ran.append(clock()))
    s.run_until(lambda: ran)
    assert ran and ran[0] >= due
    waited_ns = sum(clock.waits) * 1e9
    assert 98 * MS <= waited_ns <= 100 * MS  # blocked for nearly all of it, woke early
    if with_fd:
        # the selector's timeouts are whole milliseconds (epoll rounds up)
        assert all(abs(w * 1000 - round(w * 1000)) < 1e-9 for w in clock.waits)
    # then spun for the rest: about spin_ns plus one resolution step of reads
    assert clock.reads < 2 * 1000 + 50


def test_microsecond_selector_blocks_to_spin_ns_before_due():
    clock = FakeClock()
    clock.waits = []
    s = Scheduler(spin_ns=250_000, clock=clock, selector=FakeSelector(clock), sleep=clock.sleep, resolution_ns=1000)
    s.add_reader(99, lambda: None)
    due = clock.ns + 100 * MS + 123_456
    ran = []
    s.call_at(due, lambda: ran.append(clock()))
    s.run_until(lambda: ran)
    assert ran and ran[0] >= due
    assert 100 * MS + 123_456 - 250_000 - 2000 <= sum(clock.waits) * 1e9 <= 100 * MS + 123_456 - 250_000
    assert clock.reads < 250 + 50


def test_a_descriptor_beyond_select_moves_the_scheduler_to_epoll():
    resource = pytest.importorskip("resource")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    high = 1500
    if hard != resource.RLIM_INFINITY and hard <= high:
        pytest.skip("RLIMIT_NOFILE hard limit %d too low" % hard)
    if soft != resource.RLIM_INFINITY and soft <= high:
        resource.setrlimit(resource.RLIMIT_NOFILE, (high + 1, hard))
    r, w = os.pipe()
    s = Scheduler()
    try:
        os.dup2(r, high)
        got = []
        s.add_reader(r, lambda: got.append(("low", os.read(r, 1))))
        assert isinstance(s._sel, selectors.SelectSelector)
        s.add_reader(high, lambda: got.append(("high", os.read(high, 1))))
        assert not isinstance(s._sel, selectors.SelectSelector)
        assert s.resolution_ns >= 1000
        os.write(w, b"ab")
        assert s.run_until(lambda: len(got) >= 1) is True  # both watch the same pipe
        assert got[0][1] == b"a"
    finally:
        s.close()
        for fd in (r, w, high):
            try:
                os.close(fd)
            except OSError:
                pass
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_stop_predicate_ends_a_run_with_a_deadline():
    s = Scheduler()
    flag = []
    s.call_later(1 * MS, flag.append, 1)
    far = s.now_ns() + 10_000 * MS
    s.call_at(far, flag.append, 2)
    assert s.run_until(far, stop=lambda: flag) is False
    assert flag == [1] and s.pending == 1


def _dense_run(spin_share, timers=2000, gap_ns=200_000):
    # timers every 200 us on a fake clock: spinning 1 ms before each would
    # spin all the time; the budget decides how much of it is spent spinning
    clock = FakeClock()
    clock.waits = []
    s = Scheduler(spin_ns=1 * MS, clock=clock, selector=FakeSelector(clock), sleep=clock.sleep, resolution_ns=1000,
                  spin_share=spin_share)
    s.add_reader(99, lambda: None)
    start = clock.ns + 5 * MS
    ran = []
    for i in range(timers):
        due = start + i * gap_ns
        s.call_at(due, lambda d=due: ran.append((d, clock.ns)))
    t0 = clock.ns
    s.run_until(lambda: len(ran) == timers)
    return s, ran, clock.ns - t0


@pytest.mark.parametrize("share", [0.0, 0.1, 0.25, 0.5])
def test_polite_spin_stays_within_its_share_of_the_wall_time(share):
    s, ran, wall_ns = _dense_run(share)
    assert len(ran) == 2000 and all(now >= due for due, now in ran)  # never early
    cap_ns = 10 * s.spin_ns  # what the budget may have saved up at the start
    assert s.spun_ns <= share * wall_ns + cap_ns + 2 * s.spin_ns


def test_precise_spins_before_every_timer():
    s, ran, wall_ns = _dense_run(1.0)
    assert all(now >= due for due, now in ran)
    assert s.spun_ns > 0.5 * wall_ns  # dense timers: it spins most of the time
    polite, _, polite_wall = _dense_run(0.25)
    assert polite.spun_ns < s.spun_ns


def test_default_is_polite():
    from ground.realtime import POLITE_SPIN_SHARE

    assert Scheduler().spin_share == POLITE_SPIN_SHARE <= 0.3
    with pytest.raises(ValueError):
        Scheduler(spin_share=1.5)
