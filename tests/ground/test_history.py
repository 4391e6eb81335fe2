"""The history checker (ground/history.py): real traces pass; doctored ones fail,
each violation naming the frames and trace lines that break the invariant.

The real traces come from in-process runs (virtual time, seconds of wall
time) with every impairment and fault the harness has; the bench suite
(tests/bench) checks the history of every emulated-board run as well.
"""

import json
import subprocess
import sys

import pytest

from ground import run, scenario, trace
from ground import history

IMPAIRED = """\
name: impaired
seed: 4
duration_s: 100
election_timeout_ms: 2000
clusters:
  - {id: 1, nodes: [1, 2, 3, 4, 5], lineages: [0, 1, 2]}
  - {id: 2, nodes: [6, 7, 8], firmware: "2.1"}
nodes:
  5: {firmware: "0.9"}
links:
  intra_cluster: {delay_ms: 200, jitter: normal, jitter_ms: 30, loss: 0.02, duplicate: 0.02, corrupt: {bitflip: 0.01}}
  inter_cluster: {delay_ms: 900, loss: 0.05}
faults:
  - {at_s: 20, crash: coordinator, cluster: 1, duration_s: 15}
  - {at_s: 40, partition: [[1, 2], [3, 4, 5]]}
  - {at_s: 55, heal: true}
  - {at_s: 60, power_cut: coordinator, cluster: 2, duration_s: 10}
  - {at_s: 75, byzantine: 6, duration_s: 10}
  - {at_s: 90, blackout: all, duration_s: 5}
  - {at_s: 96, corruption_burst: 3, duration_s: 2, bitflip: 0.2}
"""


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """A real harness trace with every fault kind: (path, header, events)."""
    out = tmp_path_factory.mktemp("real")
    res = run.run(scenario.load_text(IMPAIRED, "impaired.yaml"), str(out))
    assert res.status == "ok"
    path = str(out / "trace.jsonl")
    header, events, torn = trace.read(path)
    assert not torn
    return path, header, events


def _write(tmp_path, header, events, name="doctored.jsonl"):
    p = tmp_path / name
    with open(p, "w") as f:
        for e in [header] + list(events):
            f.write(json.dumps(e, sort_keys=True) + "\n")
    return str(p)


def _frames(events, type_=None, **match):
    return [e for e in events if e["kind"] == "frame" and e["fate"] == "sent" and (type_ is None or e["type"] == type_)
            and all(e.get(k) == v for k, v in match.items())]


def _line_of(events, event):
    return events.index(event) + 2  # the header is line 1


# ---- real traces -------------------------------------------------------------------


def test_real_trace_with_every_fault_is_clean(real):
    path, header, events = real
    faults = {e["fault"] for e in events if e["kind"] == "fault"}
    assert {"crash", "partition", "heal", "power_cut", "byzantine", "blackout_start", "corruption_burst"} <= faults
    assert any(e.get("fate") == "duplicated" for e in events) and any(e.get("fate") == "corrupted" for e in events)
    r = history.check(path, scenario="impaired")
    assert r.ok, r.format()
    assert r.readable and not r.torn
    for name in ("trace", "one_coordinator", "major_versions", "firmware_declared", "frame_fates"):
        assert name in r.checked
    assert any("byzantine" in n for n in r.notes)  # rewritten frames are named, not judged


def test_check_events_agrees_with_check(real):
    path, header, events = real
    assert history.check_events(header, events, path).ok


def test_bench_scenario_trace_is_clean(tmp_path):
    res = run.run(scenario.load("scenarios/bench.yaml"), str(tmp_path / "bench"))
    assert res.ok, res.failures
    r = history.check(str(tmp_path / "bench" / "trace.jsonl"), scenario="bench")
    assert r.ok, r.format()


# ---- one coordinator per term per cluster ----------------------------------------------


def test_second_coordinator_in_a_term_names_both_frames(tmp_path, real):
    path, header, events = real
    events = list(events)
    claim = next(e for e in _frames(events, "heartbeat") if e["msg"]["role"] == 2 and e["src"] in (1, 2, 3, 4, 5))
    term, first = claim["msg"]["term"], claim["src"]
    other = next(n for n in (1, 2, 3, 4, 5) if n != first)
    fake = dict(claim, id=10**6, src=other, msg=dict(claim["msg"], coordinator=other))
    at = events.index(claim) + 1
    events[at:at] = [fake, {"kind": "frame", "fate": "dropped", "id": 10**6, "to": None, "reason": "loss",
                            "mission_ns": claim["mission_ns"], "wall_ns": 0}]
    r = history.check(_write(tmp_path, header, events))
    v = r.by_invariant("one_coordinator")
    assert len(v) == 1 and not r.by_invariant("frame_fates")
    first_claim = next(e for e in _frames(events) if e["src"] == first and e["msg"].get("term") == term
                       and (e["type"] == "coordinator" or e["msg"].get("role") == 2))
    assert sorted(v[0].frame_ids) == sorted([first_claim["id"], 10**6])
    assert sorted(v[0].lines) == sorted([_line_of(events, first_claim), at + 2])
    assert "cluster 1 term %d" % term in v[0].message and "node %d" % other in v[0].message


def test_claims_are_judged_per_cluster_and_term():
    header = {"kind": "header", "scenario": "s", "nodes": {"1": {"cluster": 1}, "2": {"cluster": 1},
                                                        "6": {"cluster": 2}}}

    def claim(fid, src, term, type_="heartbeat"):
        msg = {"term": term, "role": 2, "coordinator": src} if type_ == "heartbeat" else {"term": term, "standby": 0}
        return {"kind": "frame", "fate": "sent", "id": fid, "src": src, "dst": 0, "type": type_, "msg": msg,
                "mission_ns": fid, "wall_ns": 0}

    end = {"kind": "end", "mission_ns": 99, "wall_ns": 0}
    fine = [claim(1, 1, 3, "coordinator"), claim(2, 6, 3), claim(3, 1, 3), claim(4, 2, 4), claim(5, 6, 4)]
    assert history.check_events(header, fine + [end]).ok
    r = history.check_events(header, fine + [claim(6, 2, 3), claim(7, 2, 3), end])
    v = r.by_invariant("one_coordinator")
    assert len(v) == 1 and v[0].frame_ids == [1, 6] and v[0].lines == [2, 7]
    assert v[0].message == "cluster 1 term 3 has 2 coordinators: node 1 (frame 1, line 2), node 2 (frame 6, line 7)"


# ---- leases ----------------------------------------------------------------------------


def _award(fid, t_ns, src, dst, res, holder, first, span=1, period=None, count=1, flags=0, type_="award"):
    msg = {"term": 1, "round": 1, "seq": fid, "first": first, "resource": res, "holder": holder, "price": 5,
           "span": span, "period": period or span, "count": count, "flags": flags}
    sent = {"kind": "frame", "fate": "sent", "id": fid, "src": src, "dst": dst, "type": type_, "seq": 0, "len": 40,
            "hex": "", "msg": msg, "mission_ns": t_ns, "wall_ns": 0}
    fate = {"kind": "frame", "fate": "delivered", "id": fid, "to": dst, "copy": 0, "delay_ns": 0,
            "mission_ns": t_ns, "wall_ns": 0}
    return [sent, fate]


def _release(fid, t_ns, src, dst, res, holder, first, from_slot, span=1, period=1, count=1):
    msg = {"seq": fid, "first": first, "from_slot": from_slot, "resource": res, "holder": holder, "span": span,
           "period": period, "count": count}
    return [{"kind": "frame", "fate": "sent", "id": fid, "src": src, "dst": dst, "type": "release", "seq": 0,
             "len": 30, "hex": "", "msg": msg, "mission_ns": t_ns, "wall_ns": 0},
            {"kind": "frame", "fate": "delivered", "id": fid, "to": dst, "copy": 0, "delay_ns": 0,
             "mission_ns": t_ns, "wall_ns": 0}]


def _prices(fid, t_ns, src, status, term=1, rnd=1, dst=0xFFFF):
    msg = {"term": term, "round": rnd, "digest": 0, "intent_seq": 0, "region": 1, "awards": 0, "status": status}
    msg.update(("p%d" % k, 1) for k in range(8))
    return [{"kind": "frame", "fate": "sent", "id": fid, "src": src, "dst": dst, "type": "prices", "seq": 0,
             "len": 40, "hex": "", "msg": msg, "mission_ns": t_ns, "wall_ns": 0},
            {"kind": "frame", "fate": "dropped", "id": fid, "to": None, "reason": "loss", "mission_ns": t_ns,
             "wall_ns": 0}]


def _with(events, extra):
    """The real events with `extra` inserted before the end event."""
    events = list(events)
    t = events[-2]["mission_ns"]
    for e in extra:
        e["mission_ns"] = max(e["mission_ns"], t)
    return events[:-1] + extra + events[-1:]


def test_overlapping_leases_name_both_awards(tmp_path, real):
    path, header, events = real
    # Resource 5: node 2 every 4th slot from 10 (10-11, 14-15, 18-19); node 3 from 15: slot 15 is both's.
    extra = _award(900001, 0, 1, 2, res=5, holder=2, first=10, span=2, period=4, count=3) + \
        _award(900002, 0, 1, 3, res=5, holder=3, first=15, span=1)
    events = _with(events, extra)
    r = history.check(_write(tmp_path, header, events))
    v = r.by_invariant("lease_exclusive")
    assert len(v) == 1, r.format()
    assert v[0].frame_ids == [900001, 900002]
    assert v[0].lines == [_line_of(events, extra[0]), _line_of(events, extra[2])]
    assert "resource 5" in v[0].message and "slot 15" in v[0].message
    assert "lease_exclusive" in r.checked


def test_leases_that_interleave_resends_and_replicas_are_fine(tmp_path, real):
    path, header, events = real
    extra = (
        _award(900001, 0, 1, 2, res=5, holder=2, first=10, span=2, period=4, count=3)  # 10-11, 14-15, 18-19
        + _award(900002, 0, 1, 3, res=5, holder=3, first=12, span=2, period=4, count=2)  # 12-13, 16-17: between
        + _award(900003, 0, 1, 2, res=5, holder=2, first=10, span=2, period=4, count=3, flags=4)  # a resend
        + _award(900004, 0, 1, 4, res=5, holder=3, first=14, span=1, flags=1)  # a replica for standby 4: no lease
        + _award(900005, 0, 1, 2, res=6, holder=2, first=10, span=9)  # another resource
        + _release(900006, 0, 2, 1, res=5, holder=2, first=10, from_slot=14, span=2, period=4, count=3)
        + _award(900007, 0, 1, 4, res=5, holder=4, first=14, span=2)  # after node 2 gave 14 on back
        + _award(900008, 0, 3, 1, res=5, holder=3, first=12, span=2, period=4, count=2, flags=16)  # 3 claims its own
    )
    r = history.check(_write(tmp_path, header, _with(events, extra)))
    assert r.ok, r.format()
    assert any("2 act(s) on leases, 1 replica copies" in n for n in r.notes), r.notes


def test_acting_on_a_lease_never_awarded(tmp_path, real):
    path, header, events = real
    extra = (
        _award(900001, 0, 1, 2, res=5, holder=2, first=10, span=2)
        + _award(900002, 0, 3, 1, res=5, holder=3, first=10, span=1, flags=16)  # node 3 claims node 2's slot
        + _release(900003, 0, 4, 1, res=7, holder=4, first=1, from_slot=1)  # node 4 releases what it never had
    )
    events = _with(events, extra)
    r = history.check(_write(tmp_path, header, events))
    v = r.by_invariant("lease_awarded")
    assert len(v) == 2, r.format()
    assert v[0].frame_ids == [900002, 900001] and v[0].lines[0] == _line_of(events, extra[2])
    assert "node 3 claims resource 5" in v[0].message and "held by node 2" in v[0].message
    assert v[1].frame_ids == [900003] and "node 4 releases resource 7" in v[1].message
    assert "nobody was awarded it" in v[1].message


@pytest.mark.parametrize("electors", [None, [1, 3, 4]], ids=["no_header_market", "market_electors"])
def test_the_coordinators_own_lease_is_a_lease_not_a_claim(tmp_path, real, electors):
    # The regional coordinator (node 1) bids too: its award to itself goes out
    # only as its standby's replica (src == holder, no AWARD_CLAIM flag). That
    # is a lease, exclusive like any other, once node 1 announces the round
    # COMPLETE; a CLAIM-flagged award by its holder is still a claim that
    # needs an earlier award. The same with the header naming the market's
    # electors (as every market run's does: the containment checks start
    # then; they once took the COMPLETE's place, and a coordinator's own
    # lease was never one: chaos containment-auditors seed 113).
    path, header, events = real
    if electors:
        header = dict(header, market={"electors": electors})
    own = (_award(900001, 0, 1, 4, res=5, holder=1, first=10, span=2, flags=1)  # replica of node 1's own lease
           + _award(900011, 0, 1, 3, res=5, holder=1, first=10, span=2, flags=1)  # and for the other elector
           + _prices(900012, 0, 1, status=1))  # the round is committed
    ok = _with(events, own + _award(900002, 0, 1, 3, res=5, holder=1, first=10, span=2, flags=16)  # later, it claims it
               + _release(900003, 0, 1, 3, res=5, holder=1, first=10, from_slot=11, span=2))
    r = history.check(_write(tmp_path, header, ok))
    assert r.ok, r.format()
    clash = _with(events, own + _award(900004, 0, 1, 3, res=5, holder=3, first=11, span=1)
                  + _award(900005, 0, 2, 3, res=5, holder=2, first=30, span=1, flags=16))
    r = history.check(_write(tmp_path, header, clash))
    assert [v.frame_ids for v in r.by_invariant("lease_exclusive")] == [[900001, 900004]], r.format()
    assert [v.frame_ids[0] for v in r.by_invariant("lease_awarded")] == [900005], r.format()


def test_copies_to_an_elector_that_also_holds_are_not_leases(tmp_path, real):
    # Node 2 is an elector and a holder: the replica of its own award and a
    # ledger copy with a stale record of it go to node 2 itself. Neither is a
    # lease; the round was voided, the record released: node 3 and 4 may
    # have the slots. A coordinator's own award in a round it never
    # announced COMPLETE (voided) is no lease either.
    path, header, events = real
    extra = (
        _award(900001, 0, 1, 2, res=5, holder=2, first=10, span=2, flags=1)  # replica to the holder-elector
        + _award(900002, 0, 1, 2, res=5, holder=2, first=20, span=2, flags=2)  # a ledger copy (sync) to it
        + _award(900003, 0, 1, 4, res=6, holder=1, first=10, span=2, flags=1)  # node 1's own, round never complete
        + _prices(900004, 0, 1, status=2)  # round 1 void
        + _award(900005, 0, 1, 3, res=5, holder=3, first=10, span=2)
        + _award(900006, 0, 1, 4, res=5, holder=4, first=21, span=1)
        + _award(900007, 0, 1, 3, res=6, holder=3, first=11, span=1)
    )
    r = history.check(_write(tmp_path, header, _with(events, extra)))
    assert r.ok, r.format()
    assert any("3 replica copies" in n for n in r.notes), r.notes


@pytest.mark.parametrize("completer, ok", [(3, True), (4, False), (None, False)],
                         ids=["it_completes_the_round", "another_completes_it", "nobody_completes_it"])
def test_an_elector_that_completes_a_round_holds_its_own_award_from_the_replica(tmp_path, real, completer, ok):
    # Coordinator 1 prepares round 1 and sends elector 3 the replica of 3's
    # own award, then falls before its COMPLETE. Elector 3 takes over (term
    # 2): it resends the other holders' awards and announces round 1
    # COMPLETE; its own award is in its ledger, no frame ever carries it to
    # itself. Its later claim is on a lease (chaos containment-sever seed
    # 406). Another node's COMPLETE, or none, leaves the replica a copy.
    path, header, events = real
    extra = (_award(900001, 0, 1, 3, res=5, holder=3, first=10, span=2, flags=1)  # the replica, to its holder
             + _award(900002, 0, 1, 4, res=5, holder=4, first=20, span=2, flags=1))  # another holder's, to elector 4
    if completer is not None:
        extra += (_award(900003, 0, completer, 4, res=5, holder=4, first=20, span=2, flags=4)  # the resend
                  + _prices(900004, 0, completer, status=1, term=2, rnd=1))
    extra += _award(900005, 0, 3, 2, res=5, holder=3, first=10, span=2, flags=16)  # node 3 claims its own
    r = history.check(_write(tmp_path, header, _with(events, extra)))
    if ok:
        assert r.ok, r.format()
    else:
        assert [v.frame_ids[0] for v in r.by_invariant("lease_awarded")] == [900005], r.format()


def test_an_overlapping_award_after_a_resync_is_a_violation(tmp_path, real):
    # A new coordinator (node 3, term 2) without a replica asks holders for
    # claims; node 2's claim is lost and its slot is sold to node 4: that is
    # a lease sold twice, whatever the RESYNC was for.
    path, header, events = real
    extra = (
        _award(900001, 0, 1, 2, res=5, holder=2, first=10, span=4)
        + _prices(900002, 0, 3, status=5, term=2, rnd=3)  # RESYNC
        + _award(900003, 0, 3, 4, res=5, holder=4, first=12, span=1)
    )
    events = _with(events, extra)
    r = history.check(_write(tmp_path, header, events))
    assert [v.frame_ids for v in r.by_invariant("lease_exclusive")] == [[900001, 900003]], r.format()


def test_lease_invariants_skipped_with_a_note_when_no_type_is_known(real):
    path, header, events = real
    r = history.check_events(header, events, path, type_names=["heartbeat", "coordinator"])
    assert r.ok
    assert "lease_exclusive" not in r.checked and "lease_awarded" not in r.checked
    assert any("skipped" in n and "award" in n for n in r.notes)


def test_lease_types_come_from_the_firmware_table():
    names = history.firmware_type_names()
    assert "heartbeat" in names
    kinds = {n: history.classify(n) for n in names if history.classify(n)}
    if "award" in names:  # the market tier's messages (firmware/node/msgs.py)
        assert kinds["award"] == "award" and kinds.get("release") == "release"
    assert history.classify("lease_use") == "use" and history.classify("bid") is None


# ---- firmware versions --------------------------------------------------------------------


def _hello(fid, t_ns, src, major, minor=0):
    msg = {"hw_gen": 1, "fw_major": major, "fw_minor": minor, "lineage": 0, "proto_min": 1, "proto_max": 1,
           "cluster": 1}
    return [{"kind": "frame", "fate": "sent", "id": fid, "src": src, "dst": 0, "type": "hello", "seq": 0, "len": 23,
             "hex": "", "msg": msg, "mission_ns": t_ns, "wall_ns": 0},
            {"kind": "frame", "fate": "delivered", "id": fid, "to": 0, "copy": 0, "delay_ns": 0, "mission_ns": t_ns,
             "wall_ns": 0}]


def test_a_lease_sold_again_after_its_holder_rebooted_is_still_a_violation(tmp_path, real):
    # A rebooted node forgets its leases (they live in RAM), but selling the
    # slot again is a double lease all the same: flagged, with the reboot named.
    path, header, events = real
    extra = (_award(900001, 0, 1, 2, res=5, holder=2, first=10, span=2)
             + _hello(900002, 0, 2, 1)
             + _award(900003, 0, 1, 3, res=5, holder=3, first=11, span=1))
    events = _with(events, extra)
    r = history.check(_write(tmp_path, header, events))
    v = r.by_invariant("lease_exclusive")
    assert [x.frame_ids for x in v] == [[900001, 900003]], r.format()
    assert "node 2 rebooted in between (HELLO line %d)" % _line_of(events, extra[2]) in v[0].message


def test_four_major_versions_at_once(tmp_path, real):
    path, header, events = real
    header = dict(header, nodes={k: dict(v, firmware="%d.0" % (int(k) % 4 + 1)) for k, v in header["nodes"].items()})
    extra = []
    for i, nid in enumerate(range(1, 9)):
        extra += _hello(900001 + i, 0, nid, nid % 4 + 1)
    events = _with([e for e in events if not (e["kind"] == "frame" and e.get("type") == "hello")], extra)
    sent = {x["id"] for x in _frames(events)}
    events = [e for e in events if not (e["kind"] == "frame" and e["fate"] != "sent" and e["id"] not in sent)]
    r = history.check(_write(tmp_path, header, events))
    v = r.by_invariant("major_versions")
    assert v and "4 firmware major versions at once" in v[0].message, r.format()
    assert "1 on nodes 4,8" in v[0].message or "1 on node" in v[0].message
    assert not r.by_invariant("firmware_declared")


def test_a_node_running_another_version_than_declared(tmp_path, real):
    path, header, events = real
    hello = next(e for e in _frames(events, "hello") if e["src"] == 5)  # declared 0.9
    events = [dict(e, msg=dict(e["msg"], fw_major=3)) if e is hello else e for e in events]
    r = history.check(_write(tmp_path, header, events))
    v = r.by_invariant("firmware_declared")
    assert len(v) == 1 and v[0].frame_ids == [hello["id"]] and "node 5" in v[0].message and "declares 0" in v[0].message


def test_a_node_may_say_the_major_of_an_image_a_rollout_started(tmp_path, real):
    path, header, events = real
    hello = next(e for e in _frames(events, "hello") if e["src"] == 5)  # declared 0.9
    k = events.index(hello)
    events = [dict(e, msg=dict(e["msg"], fw_major=3)) if e is hello else e for e in events]

    def rollout(image):
        return {"kind": "rollout", "event": "start", "image": image, "step": 0, "mission_ns": hello["mission_ns"]}

    r = history.check(_write(tmp_path, header, events[:k] + [rollout("3.0")] + events[k:]))
    assert not r.by_invariant("firmware_declared"), r.format()
    r = history.check(_write(tmp_path, header, events[:k] + [rollout("2.1")] + events[k:]))  # another major's image
    assert len(r.by_invariant("firmware_declared")) == 1
    r = history.check(_write(tmp_path, header, events[k:k + 1] + events[:k] + [rollout("3.0")] + events[k + 1:]))
    assert len(r.by_invariant("firmware_declared")) == 1  # said before the rollout started


# ---- frame fates --------------------------------------------------------------------------


def test_missing_fate_names_the_frame_and_its_line(tmp_path, real):
    path, header, events = real
    events = list(events)
    victim = next(e for e in events if e.get("fate") == "delivered" and e.get("to") and e["to"] != 0)
    sent = next(e for e in _frames(events) if e["id"] == victim["id"])
    events.remove(victim)
    r = history.check(_write(tmp_path, header, events))
    v = r.by_invariant("frame_fates")
    assert len(v) == 1, r.format()
    assert v[0].frame_ids == [victim["id"]] and v[0].lines == [_line_of(events, sent)]
    assert "no fate for %d" % victim["to"] in v[0].message


def test_extra_fate_and_fate_of_an_unsent_frame(tmp_path, real):
    path, header, events = real
    events = list(events)
    fate = next(e for e in events if e.get("fate") == "delivered" and e.get("to"))
    events.insert(events.index(fate) + 1, dict(fate))
    events.insert(-1, {"kind": "frame", "fate": "dropped", "id": 7777777, "to": 2, "reason": "loss",
                       "mission_ns": events[-2]["mission_ns"], "wall_ns": 0})
    r = history.check(_write(tmp_path, header, events))
    v = r.by_invariant("frame_fates")
    assert len(v) == 2, r.format()
    assert any("7777777, which was never sent" in x.message for x in v)
    assert any(x.frame_ids == [fate["id"]] and "2 final fates" in x.message for x in v)


def test_duplicates_need_one_fate_per_copy(tmp_path, real):
    path, header, events = real
    dup = next(e for e in events if e.get("fate") == "duplicated")
    copy_fate = next(e for e in events if e.get("id") == dup["id"] and e.get("to") == dup["to"]
                     and e.get("fate") in ("delivered", "dropped") and e.get("copy") == dup["copy"])
    r = history.check(_write(tmp_path, header, [e for e in events if e is not copy_fate]))
    v = r.by_invariant("frame_fates")
    assert len(v) == 1 and v[0].frame_ids == [dup["id"]] and "1 of 2 copies" in v[0].message


# ---- the trace itself ----------------------------------------------------------------------


def test_torn_trace_is_a_failure_naming_the_line(tmp_path, real):
    path, header, events = real
    data = open(path, "rb").read()
    cut = data[: len(data) // 2]
    cut = cut[: cut.rindex(b"\n") + 10]  # ten bytes into a line
    p = tmp_path / "torn.jsonl"
    p.write_bytes(cut)
    lines = cut.count(b"\n")
    r = history.check(str(p))
    assert r.torn and not r.ok
    v = r.by_invariant("trace")
    assert len(v) == 1 and "torn.jsonl:%d: the last line is torn" % (lines + 1) in v[0].message
    assert v[0].lines == [lines + 1]
    assert "frame_fates" not in r.checked  # frames in flight at the cut have no fate yet: not judged


def test_trace_without_end_and_bad_middle_line(tmp_path, real):
    path, header, events = real
    r = history.check(_write(tmp_path, header, events[:-1], "noend.jsonl"))
    assert [v.invariant for v in r.violations] == ["trace"] and "no end event" in r.violations[0].message
    lines = open(path).read().split("\n")
    lines[40] = "{not json"
    p = tmp_path / "bad.jsonl"
    p.write_text("\n".join(lines))
    r = history.check(str(p))
    assert not r.ok and r.violations[-1].invariant == "trace" and ":41:" in r.violations[-1].message
    assert r.violations[-1].lines == [41]


@pytest.mark.parametrize("to", ["x", {}, [7], True])
def test_a_fate_to_something_that_is_not_a_node_id_is_a_trace_violation_at_its_line(tmp_path, real, to):
    # a str `to` failed sorting at the end, a dict or list was unhashable: internal errors before
    path, header, events = real
    k = next(i for i, e in enumerate(events) if e["kind"] == "frame" and e["fate"] == "delivered")
    doctored = list(events)
    doctored[k] = dict(events[k], to=to)
    r = history.check(_write(tmp_path, header, doctored))
    v = r.by_invariant("trace")
    assert len(v) == 1 and v[0].lines == [k + 2] and "to %r, not a node id" % (to,) in v[0].message, v


@pytest.mark.parametrize("key, value", [("src", []), ("src", "7"), ("dst", {}), ("dst", False)])
def test_a_send_from_or_to_something_that_is_not_an_address_is_a_trace_violation_at_its_line(tmp_path, real, key,
                                                                                              value):
    path, header, events = real  # a list src was unhashable in the recipients (hil check exit 3)
    k = next(i for i, e in enumerate(events) if e["kind"] == "frame" and e["fate"] == "sent" and e.get("dst") == 0xFFFF
             or e["kind"] == "frame" and e["fate"] == "sent" and e.get("dst", 0) >= 0xF000)
    doctored = list(events)
    doctored[k] = dict(events[k], **{key: value})
    r = history.check(_write(tmp_path, header, doctored))
    v = [x for x in r.by_invariant("trace") if "not an address" in x.message]
    assert len(v) == 1 and v[0].lines == [k + 2] and "%s %r" % (key, value) in v[0].message, r.violations


def test_trace_from_another_scenario(tmp_path, real):
    path, header, events = real
    r = history.check(path, scenario="bench")
    v = r.by_invariant("trace")
    assert len(v) == 1 and "scenario 'impaired', expected 'bench'" in v[0].message and v[0].lines == [1]


# ---- the command line ------------------------------------------------------------------------


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "hil", "check", *args], capture_output=True, text=True, timeout=60)


def test_cli_exit_status_and_output(tmp_path, real):
    path, header, events = real
    ok = _cli(path, "--scenario", "impaired")
    assert ok.returncode == 0 and "clean" in ok.stdout
    events = [e for e in events if not (e.get("fate") == "delivered" and e.get("to") == 3)]
    bad = _cli(_write(tmp_path, header, events), "--json")
    assert bad.returncode == 1
    rep = json.loads(bad.stdout)
    assert not rep["ok"] and rep["violations"][0]["invariant"] == "frame_fates" and rep["violations"][0]["lines"]
    missing = _cli(str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 2 and "cannot read" in missing.stdout
