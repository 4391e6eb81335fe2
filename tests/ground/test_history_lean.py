"""The history checker on a partial (lean) trace (ground/history_checker.py):
a lean run traces some clusters only, so frames from a traced node to an
untraced one (awards to untraced holders, bids and hellos to untraced
electors) have no traced fate; the checker requires fates at the traced
nodes only, and still catches a fate missing at a traced recipient or one
recorded at an untraced node; lease_awarded judges a traced holder's act on
a lease only where every elector of its region (a possible awarder) is
traced."""

import json

import pytest

from ground import fleetrun, history, scenario, trace
from tests.ground.test_fleetrun import TWO_REGIONS, fleet_text

# Two regions of ten clusters of five, three electors each: cluster 1 holds
# region 1's elector 4 (which awards leases to holders all over its region);
# electors 22 and 27 and every other cluster are untraced (test_fleetrun.py's TWO_REGIONS).


@pytest.fixture(scope="module")
def lean_trace(tmp_path_factory):
    """One lean run of TWO_REGIONS tracing cluster 1 (about 1.5 s), shared by the tests that read its trace."""
    d = tmp_path_factory.mktemp("lean")
    p = d / "two.yaml"
    p.write_text(TWO_REGIONS)
    sc = scenario.load(str(p))
    out = d / "lean"
    assert fleetrun.run(sc, str(out), traced=[1]).status == "ok"
    return out / "trace.jsonl"


def _rewrite(src, dst, edit):
    """dst: src's lines through edit(list of (line, event)) -> lines."""
    lines = open(src, encoding="utf-8").read().splitlines()
    out = edit([(x, json.loads(x)) for x in lines])
    dst.write_text("\n".join(out) + "\n")
    return str(dst)


def test_a_lean_trace_owes_fates_at_traced_nodes_only(lean_trace, tmp_path):
    path = lean_trace
    header, events, torn = trace.read(str(path))
    traced = {int(n) for n in header["nodes"]}
    assert not torn and traced == {1, 2, 3, 4, 5} and header["lean"]["fleet_nodes"] == 100
    sent = [e for e in events if e["kind"] == "frame" and e["fate"] == "sent"]
    # what used to be reported: awards to untraced holders, frames to the untraced electors 22, 27
    assert sum(1 for e in sent if e["type"] == "award" and e["dst"] not in traced and e["dst"] < 0xF000) > 10
    assert sum(1 for e in sent if e["dst"] == 0xFE01) > 10
    rep = history.check(str(path))
    assert rep.readable and rep.violations == [], [v.message[:300] for v in rep.violations]
    assert "frame_fates" in rep.checked
    assert any("partial (lean) trace of 5 of 100 nodes" in n for n in rep.notes), rep.notes
    # the same trace judged as if it were whole (no `lean` header): the false violations come back
    def whole(rows):
        h = rows[0][1]
        del h["lean"]
        return [json.dumps(h)] + [x for x, _ in rows[1:]]
    full = history.check(_rewrite(path, tmp_path / "whole.jsonl", whole))
    bad = [v for v in full.violations if v.invariant == "frame_fates"]
    assert len(bad) == 1 and "no fate for 22, 27" in bad[0].message


def test_a_missing_fate_at_a_traced_node_is_still_caught(lean_trace, tmp_path):
    path = lean_trace
    _, events, _ = trace.read(str(path))
    types = {e["id"]: e["type"] for e in events if e["kind"] == "frame" and e["fate"] == "sent"}
    # a traced recipient's delivery of a bid to the traced elector 4: gone from the trace
    gone = next(e for e in events if e["kind"] == "frame" and e["fate"] == "delivered" and e["to"] == 4
                and types[e["id"]] == "bid")

    def lose(rows):
        return [x for x, e in rows if not (e.get("id") == gone["id"] and e.get("to") == 4 and e.get("fate") == "delivered")]
    rep = history.check(_rewrite(path, tmp_path / "lost.jsonl", lose))
    bad = [v for v in rep.violations if v.invariant == "frame_fates"]
    assert len(bad) == 1 and gone["id"] in bad[0].frame_ids
    assert "frame %d (bid" % gone["id"] in bad[0].message and "no fate for 4" in bad[0].message

    # a fate recorded at an untraced node (the lean shard never writes one): an extra fate
    award = next(e for e in events if e["kind"] == "frame" and e["fate"] == "sent" and e["type"] == "award"
                 and e["dst"] not in range(1, 6) and e["dst"] < 0xF000)

    def extra(rows):
        out = []
        for x, e in rows:
            out.append(x)
            if e.get("id") == award["id"] and e.get("fate") == "sent":
                out.append(json.dumps({"kind": "frame", "fate": "delivered", "id": award["id"], "to": award["dst"],
                                       "mission_ns": e["mission_ns"], "wall_ns": e["wall_ns"]}))
        return out
    rep = history.check(_rewrite(path, tmp_path / "extra.jsonl", extra))
    bad = [v for v in rep.violations if v.invariant == "frame_fates"]
    assert len(bad) == 1 and "to %d: 1 final fates" % award["dst"] in bad[0].message and "expected 0" in bad[0].message


def test_a_whole_lean_trace_still_requires_every_recipient(tmp_path):
    """A small scenario's lean trace holds every cluster: not partial, a unicast to a node the
    fleet lacks is still a frame without a fate."""
    sc = scenario.load_text(fleet_text(20, duration_s=6), "<lean20>")
    out = tmp_path / "o"
    fleetrun.run(sc, str(out))
    path = out / "trace.jsonl"
    header, events, _ = trace.read(str(path))
    assert len(header["nodes"]) == header["lean"]["fleet_nodes"] == 20
    assert history.check(str(path)).violations == []
    first = next(e for e in events if e["kind"] == "frame" and e["fate"] == "sent")

    def stray(rows):
        out = []
        for x, e in rows:
            out.append(x)
            if e is first or (e.get("id") == first["id"] and e.get("fate") == "sent"):
                out.append(json.dumps(dict(e, id=999_999_999, dst=77, type="hello")))
        return out
    rep = history.check(_rewrite(path, tmp_path / "stray.jsonl", stray))
    bad = [v for v in rep.violations if v.invariant == "frame_fates"]
    assert len(bad) == 1 and "frame 999999999" in bad[0].message and "not routed" in bad[0].message


def test_acts_on_leases_are_judged_where_every_awarder_is_traced(lean_trace, tmp_path):
    """A traced holder's release of a lease the trace holds no award for: on a partial trace where
    region 1's electors 22 and 27 are untraced (an award from them would not be in it) not judged,
    and noted; with every elector of the region in the header, a lease_awarded violation."""
    def release(rows, header_extra=()):
        out = []
        for x, e in rows:
            if e.get("kind") == "header":
                for n in header_extra:
                    e["nodes"][str(n)] = dict(e["nodes"]["4"])
                x = json.dumps(e)
            out.append(x)
            if e.get("kind") == "header":
                msg = {"seq": 9999, "first": 40, "from_slot": 40, "resource": 3, "holder": 2, "span": 1,
                       "period": 1, "count": 1}
                out.append(json.dumps({"kind": "frame", "fate": "sent", "id": 999_999_001, "src": 2, "dst": 4,
                                       "type": "release", "msg": msg, "len": 30, "mission_ns": 1, "wall_ns": 0}))
                out.append(json.dumps({"kind": "frame", "fate": "delivered", "id": 999_999_001, "to": 4,
                                       "mission_ns": 1, "wall_ns": 0}))
        return out
    rep = history.check(_rewrite(lean_trace, tmp_path / "rel.jsonl", release))
    assert rep.violations == [], [v.message[:300] for v in rep.violations]
    assert any("lease_awarded: 1 act(s) on leases not judged" in n for n in rep.notes), rep.notes
    rep = history.check(_rewrite(lean_trace, tmp_path / "rel_all.jsonl", lambda rows: release(rows, (22, 27))))
    bad = [v for v in rep.violations if v.invariant == "lease_awarded"]
    assert len(bad) == 1 and "node 2 releases resource 3" in bad[0].message, [v.message[:200] for v in rep.violations]


def test_untraced_holders_leases_are_kept_per_region_of_their_awarder(lean_trace, tmp_path):
    """An award to an untraced holder counts in its coordinator's region: the same resource and
    slot awarded in region 2 (by its elector 57, listed in the header) is no double lease, the
    same again in region 1 (by 4, to another untraced holder) is one."""
    _, events, _ = trace.read(str(lean_trace))
    award = next(e for e in events if e["kind"] == "frame" and e["fate"] == "sent" and e["type"] == "award"
                 and e["src"] == 4 and e["dst"] not in range(1, 6) and e["dst"] < 0xF000
                 and not e["msg"].get("flags"))

    def again(rows, src, holder):
        out = []
        for x, e in rows:
            if e.get("kind") == "header":
                e["nodes"]["57"] = dict(e["nodes"]["4"], cluster=12)  # region 2's elector, as if traced
                x = json.dumps(e)
            out.append(x)
            if e.get("id") == award["id"] and e.get("fate") == "sent":
                out.append(json.dumps(dict(e, id=999_999_002, src=src, dst=holder, msg=dict(e["msg"], holder=holder))))
        return out
    rep = history.check(_rewrite(lean_trace, tmp_path / "r2.jsonl", lambda rows: again(rows, 57, 60)))
    assert [v for v in rep.violations if v.invariant == "lease_exclusive"] == [], [v.message for v in rep.violations]
    other = 7 if award["dst"] != 7 else 8  # a node of region 1, untraced
    rep = history.check(_rewrite(lean_trace, tmp_path / "r1.jsonl", lambda rows: again(rows, 4, other)))
    bad = [v for v in rep.violations if v.invariant == "lease_exclusive"]
    assert len(bad) == 1 and "to node %d" % other in bad[0].message, [v.message for v in rep.violations]
