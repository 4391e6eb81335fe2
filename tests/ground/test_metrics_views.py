"""Each metrics family's VIEWS (the view kinds the composer hands it,
ground/metrics/__init__.py) holds every kind its feed() reads, and its
FATES every fate of a fate view it reads: over the
traces of library scenarios with faults, power cuts, radios, version skew
and a rollout's events, a family fed only its kinds gives the result of one
fed every view. And a view kind no family names still reaches a family that
declares none (a new family reads everything until it says otherwise)."""

import json

import pytest

from ground import metrics, run, scenario
from ground.metrics.fleet import Fleet
from ground.metrics.roles import TimelineMetrics

from test_library import LIBRARY

FAMILIES = metrics.FAMILIES + (TimelineMetrics,)
SCENARIOS = ("power-cuts", "lora", "byzantine", "version-skew")


def _extra_events(header, end_ns):
    """Kinds those runs lack (link state, a rollout's decisions), a node
    event, and a crash of a whole cluster a little before the end (so no
    coordinator is agreed there for the last ms: what the close view adds)."""
    first = min(header["nodes"], key=int)
    cluster = [int(n) for n, info in header["nodes"].items() if info["cluster"] == header["nodes"][first]["cluster"]]
    return [
        {"kind": "fault", "fault": "crash", "nodes": cluster, "mission_ns": end_ns, "wall_ns": end_ns},
        {"kind": "link", "state": "down", "src": 1, "to": 2, "mission_ns": end_ns, "wall_ns": end_ns},
        {"kind": "rollout", "event": "start", "image": "1.2", "nodes": [1, 2], "mission_ns": end_ns, "wall_ns": end_ns},
        {"kind": "rollout", "event": "complete", "image": "1.2", "mission_ns": end_ns + 1, "wall_ns": end_ns + 1},
        {"kind": "node", "node": 1, "event": "rebooted", "detail": "x", "mission_ns": end_ns + 1, "wall_ns": end_ns + 1},
        {"kind": "end", "status": "ok", "reason": "", "frames": 0, "mission_ns": end_ns + 1_000_000, "wall_ns": end_ns},
    ]


def _results(header, events):
    """(results fed every view, results fed their VIEWS only), family by family."""
    fleet = Fleet(header)
    every = [f(fleet) for f in FAMILIES]
    only = [f(fleet) for f in FAMILIES]
    kinds = set()

    def feed(v):
        kinds.add(v.kind if v.kind != "fate" else v.fate)
        for a, b in zip(every, only):
            a.feed(v)
            if v.kind in b.VIEWS and (v.kind != "fate" or v.fate in getattr(b, "FATES", metrics.FATES)):
                b.feed(v)

    for e in events:
        for v in fleet.feed(e):
            while fleet.new_clusters:
                c = fleet.new_clusters.pop(0)
                for f in every + only:
                    if hasattr(f, "add_cluster"):
                        f.add_cluster(c)
            feed(v)
    feed(fleet.close())
    span = metrics.Span(fleet.start_ns, fleet.end_ns, fleet.t_ms)
    dump = lambda f: json.dumps(f.result(span), sort_keys=True, default=repr)  # noqa: E731
    return [dump(f) for f in every], [dump(f) for f in only], kinds


@pytest.fixture(scope="module")
def traces(tmp_path_factory):
    out = []
    for name in SCENARIOS:
        sc = scenario.load("%s/%s.yaml" % (LIBRARY, name))
        r = run.Run(sc, str(tmp_path_factory.mktemp(name)), plot=False)
        r.execute()
        header = r.header()
        out.append((name, header, r.events[:-1] + _extra_events(header, r.events[-2]["mission_ns"])))  # before its end
    return out


def test_every_family_declares_the_view_kinds_it_reads(traces):
    seen = set()
    for name, header, events in traces:
        every, only, kinds = _results(header, events)
        seen |= kinds
        for f, a, b in zip(FAMILIES, every, only):
            assert a == b, "%s over %s: fed only its VIEWS %s it gives another result" % (f.__name__, name, f.VIEWS)
    tried = set(metrics.VIEW_KINDS) - {"fate"} | {"delivered", "dropped", "converted"}
    assert seen >= tried, sorted(tried - seen)  # every kind was tried, and the common fates
    for f in FAMILIES:
        assert set(f.VIEWS) <= set(metrics.VIEW_KINDS), f.__name__
        assert set(getattr(f, "FATES", ())) <= set(metrics.FATES), f.__name__


def test_a_family_without_views_reads_every_kind(monkeypatch):
    got = []

    class Everything:
        FLAT = {}

        def __init__(self, fleet):
            pass

        def feed(self, v):
            got.append(v.kind)

    monkeypatch.setattr(metrics, "FAMILIES", metrics.FAMILIES + (Everything,))
    m = metrics.Metrics({"kind": "header", "election_timeout_ms": 1000, "nodes": {"1": {"cluster": 1}}, "mission_ns": 0})
    m.feed({"kind": "link", "state": "down", "mission_ns": 5})
    m.feed({"kind": "fault", "fault": "crash", "node": 1, "mission_ns": 6})
    m.feed({"kind": "frame", "fate": "sent", "id": 1, "src": 1, "dst": 0, "type": "hello", "len": 9, "msg": {},
            "mission_ns": 7})
    m.feed({"kind": "frame", "fate": "delivered", "id": 1, "to": 0, "copy": 0, "mission_ns": 8})
    assert got == ["link", "fault", "down", "sent", "fate"]
