"""Small shared pieces of the metrics families: units, rounding, percentiles,
field readers and the mission span every family divides by.

Times inside the families are mission ns (the trace's `mission_ns`); results
are mission seconds, rounded to the ns (`rnd`), and "T" figures divide by the
header's `election_timeout_ms`. A figure with no samples is None.
"""

import math

NS = 1_000_000_000
HOUR_S = 3600.0


def is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def get_int(d, key):
    """d[key] if it is an int (not a bool), else None; d may be anything."""
    v = d.get(key) if isinstance(d, dict) else None
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    return None


def s(ns):
    return ns / NS


def rnd(v):
    return None if v is None else round(v, 9)


def percentile(values, p):
    """Nearest-rank percentile (p in 0..100) of a non-empty list; None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100.0 * len(ordered)))
    return ordered[rank - 1]


def stats(values_s, unit_s, quantiles=(50, 99), unit="T"):
    """{count, s_p50, s_p99, s_max, T_p50, ...} of mission-second samples;
    the `unit` figures divide each by unit_s (None when unit_s is None)."""
    out = {"count": len(values_s)}
    for q in quantiles:
        out["s_p%d" % q] = rnd(percentile(values_s, q))
    out["s_max"] = rnd(max(values_s)) if values_s else None
    for key in list(out):
        if key.startswith("s_"):
            out[unit + "_" + key[2:]] = rnd(out[key] / unit_s) if out[key] is not None and unit_s else None
    return out


def public(rec):
    """A pending/complete record as the result shows it: no `_` keys, floats rounded."""
    return {k: (rnd(v) if isinstance(v, float) else v) for k, v in rec.items() if not k.startswith("_")}


class Span:
    """The mission a result covers: [start_ns, end_ns], and the units derived
    from it. One definition for every family (docs/METRICS.md `mission_s`)."""

    def __init__(self, start_ns, end_ns, t_ms):
        self.start_ns = start_ns
        self.end_ns = end_ns
        self.mission_ns = max(0, end_ns - start_ns)
        self.mission_s = s(self.mission_ns)
        self.hours = self.mission_s / HOUR_S
        self.t_ms = t_ms
        self.t_s = t_ms / 1000.0 if t_ms else None

    def per_hour(self, x):
        return rnd(x / self.hours) if self.hours > 0 else None
