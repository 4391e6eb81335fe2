"""How late a real-time run's timers ran against their wall schedule.

A real-time run (boards, or boards inside a simulated fleet) maps mission
time onto the wall clock (ground/clock.py RealClock). Every timer the run
schedules (an in-process node's wake-up, a delivery, a fault, a check) is due
at a wall time; when the harness cannot keep pace it runs them late. This is
the histogram of that lateness, kept in fixed log-linear buckets (8 per
octave of microseconds, ~12 % wide), so its memory is flat whatever the
run's length, and its percentiles are the upper edge of their bucket (never
optimistic). The maximum is exact.

    late = Lateness()
    late.add(ns)                  # one timer ran ns late (negative: 0)
    late.summary()                # {"n", "p50_ms", "p99_ms", "max_ms", "mean_ms"}
"""

_SUB = 8  # buckets per octave (3 bits of mantissa)


def _bucket(us):
    """The bucket of a lateness of `us` whole microseconds."""
    if us < _SUB:
        return us
    b = us.bit_length() - 4  # keep the top 4 bits: 8..15
    return _SUB + b * _SUB + ((us >> b) - _SUB)


def _upper_us(k):
    """The (exclusive) upper edge of bucket k, microseconds."""
    if k < _SUB:
        return k + 1
    b, m = divmod(k - _SUB, _SUB)
    return (m + _SUB + 1) << b


class Lateness:
    """Counts per bucket; see the module comment."""

    __slots__ = ("counts", "n", "sum_ns", "max_ns")

    def __init__(self):
        self.counts = {}  # bucket -> count
        self.n = 0
        self.sum_ns = 0
        self.max_ns = 0

    def add(self, late_ns):
        if late_ns < 0:
            late_ns = 0
        k = _bucket(late_ns // 1000)
        c = self.counts
        c[k] = c.get(k, 0) + 1
        self.n += 1
        self.sum_ns += late_ns
        if late_ns > self.max_ns:
            self.max_ns = late_ns

    def percentile_ms(self, q):
        """The q-th percentile (0-100), ms: the upper edge of the bucket it
        falls in, capped at the maximum; None with no sample."""
        if not self.n:
            return None
        rank = max(1, -(-self.n * q // 100))  # the ceil(n q / 100)-th smallest
        seen = 0
        for k in sorted(self.counts):
            seen += self.counts[k]
            if seen >= rank:
                return min(_upper_us(k) * 1000, self.max_ns) / 1e6
        return self.max_ns / 1e6

    def summary(self):
        """JSON-ready: how many timers, and how late (wall ms)."""
        if not self.n:
            return {"n": 0, "p50_ms": None, "p99_ms": None, "max_ms": None, "mean_ms": None}
        return {"n": self.n, "p50_ms": round(self.percentile_ms(50), 3), "p99_ms": round(self.percentile_ms(99), 3),
                "max_ms": round(self.max_ns / 1e6, 3), "mean_ms": round(self.sum_ns / self.n / 1e6, 3)}
