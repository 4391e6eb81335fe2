"""A scenario's gates, checked at load: known metric names, bounds that are numbers.

The names are the flat metrics ground/metrics.py computes (its FLAT table,
docs/METRICS.md); this module only reads that table, so the metrics and the
gates can never disagree on a name. A scenario with a market gets the
default gate `market_rounds_complete: {min: 1}` (a market that completes no
auction round has not worked) unless its gates name that metric; `off`
(or null) there removes it. Lease exclusivity (no lease held twice) is not a
gate: the history checker judges every run's trace (docs/METRICS.md).
"""

import math

from ground.yamlfile import Located

BOUNDS = ("max", "min")
MARKET_DEFAULT = {"market_rounds_complete": {"min": 1}}


def known_names():
    """The gateable metric names (a frozenset), from ground.metrics."""
    from ground import metrics

    names = getattr(metrics, "FLAT", None)
    if names is None:  # a metrics module that lists them another way
        names = metrics.flat_names()
    return frozenset(names)


def _number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def parse(data, market):
    """The scenario's gates as {name: {max/min: number}}; ConfigError with
    file:line for an unknown name or a bad bound."""
    gates = data.get("gates")
    if gates is None:
        gates = Located()
        gates.path, gates.line = data.path, data.line
    if not isinstance(gates, Located):
        raise data.error("gates", "gates: a mapping of metric name -> {max: n} and/or {min: n}")
    names = known_names()
    out = {}
    for name, bounds in gates.items():
        if name not in names:
            near = sorted(n for n in names if str(name).split("_")[0] in n)[:6]
            raise gates.error(name, "gates: unknown metric %r (%s; all of them in docs/METRICS.md)"
                              % (name, "similar: " + ", ".join(near) if near else "known: " + ", ".join(sorted(names))))
        if bounds is None or bounds is False or bounds == "off":
            if name in MARKET_DEFAULT:
                out[name] = None  # the default gate turned off
                continue
            raise gates.error(name, "gates.%s: off only turns a default gate off (%s)" % (name, ", ".join(MARKET_DEFAULT)))
        if not isinstance(bounds, dict) or not bounds:
            raise gates.error(name, "gates.%s: expected {max: n} and/or {min: n}, got %r" % (name, bounds))
        for bound, limit in bounds.items():
            if bound not in BOUNDS:
                raise gates.error(name, "gates.%s: unknown bound %r (use max or min)" % (name, bound))
            if not _number(limit) or not math.isfinite(limit):
                raise gates.error(name, "gates.%s.%s: %r is not a finite number" % (name, bound, limit))
        out[name] = dict(bounds)
    if market:
        for name, bounds in MARKET_DEFAULT.items():
            out.setdefault(name, dict(bounds))
    return {k: v for k, v in out.items() if v is not None}

