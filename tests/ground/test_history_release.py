"""The history checker's lease_awarded rule and a regional coordinator that
holds a lease itself: it releases the lease locally and sends the release on
to every other elector (firmware/node/market.py on_release). Those copies are
one act, judged once: found by `ground chaos` over scenarios/tier3-intent.yaml,
seed 11 (node 1, coordinator of term 5, released resource 4 slots 111-114: the
copy to elector 2 cut the lease and the copy to elector 5 was then called a
release of a lease nobody was awarded). Doctored traces, no run."""

from ground import history

HEADER = {"kind": "header", "scenario": "s", "election_timeout_ms": 1000, "mission_ns": 0,
          "market": {"region": 1, "electors": [1, 2, 5]},
          "nodes": {str(n): {"cluster": 1 if n < 5 else 2} for n in range(1, 9)}}
END = {"kind": "end", "mission_ns": 10**9, "wall_ns": 0}


def _frame(fid, src, dst, type_, msg):
    return [{"kind": "frame", "fate": "sent", "id": fid, "src": src, "dst": dst, "type": type_, "msg": msg,
             "len": 30, "mission_ns": fid, "wall_ns": 0},
            {"kind": "frame", "fate": "delivered", "id": fid, "to": dst, "copy": 0, "delay_ns": 0,
             "mission_ns": fid, "wall_ns": 0}]


def _award(fid, src, dst, holder, first, flags=0):
    return _frame(fid, src, dst, "award", {"term": 4, "round": 3, "seq": 72, "first": first, "resource": 4,
                                           "holder": holder, "price": 2, "span": 4, "period": 4, "count": 1,
                                           "flags": flags})


def _release(fid, src, dst, first, seq):
    return _frame(fid, src, dst, "release", {"seq": seq, "first": first, "from_slot": 12, "resource": 4,
                                             "holder": src, "span": 4, "period": 4, "count": 1})


def test_a_coordinators_own_release_sent_on_to_every_elector_is_one_act():
    events = (_award(1, 5, 1, holder=1, first=111, flags=4)  # a resend after a takeover: node 1's lease
              + _release(2, 1, 2, first=111, seq=4529)  # node 1, now coordinator, releases it: to elector 2
              + _release(3, 1, 5, first=111, seq=4529))  # and the same release to elector 5
    r = history.check_events(HEADER, events + [END])
    assert not r.by_invariant("lease_awarded"), r.format()


def test_a_release_of_nothing_is_still_a_violation_and_so_is_a_new_one_after_the_cut():
    events = (_award(1, 5, 1, holder=1, first=111, flags=4)
              + _release(2, 1, 2, first=111, seq=4529)
              + _release(3, 1, 5, first=111, seq=4530)  # another release (a new seq): the lease is gone
              + _release(4, 3, 1, first=50, seq=7))  # node 3 never held resource 4
    r = history.check_events(HEADER, events + [END])
    v = r.by_invariant("lease_awarded")
    assert [x.frame_ids[0] for x in v] == [3, 4], r.format()
    assert "node 1 releases resource 4 slots 111-114" in v[0].message and "node 3 releases" in v[1].message


def test_a_holder_moved_by_a_split_still_holds_the_lease_its_region_awarded():
    # Several regions: leases are keyed by (region, resource), the holder's region read from its
    # cluster. A split moves the upper half to a cluster the header does not name; found by
    # `ground chaos scenarios/replication-twice.yaml --seed 400` (schedule 403: node 5, moved to
    # cluster 2, released resource 35 "without an award").
    header = dict(HEADER, regions=[{"region": 1, "clusters": [1, 2], "electors": [1, 2, 5]}])
    events = (_award(1, 1, 6, holder=6, first=111)
              + [{"kind": "node", "event": "cluster_split", "node": 5, "cluster": 2, "new_cluster": 9,
                  "low": [5, 7], "high": [6, 8], "mission_ns": 2, "wall_ns": 0}]
              + _release(3, 6, 1, first=111, seq=4529))
    r = history.check_events(header, events + [END])
    assert not r.by_invariant("lease_awarded"), r.format()


def test_releasing_one_of_two_leases_on_a_resource_keeps_the_other():
    # Found by `ground chaos scenarios/replication-twice.yaml --seed 400` (schedule 403): node 5 held
    # resource 35 at slots 54-57 and 78-81 and released both; the first release (from_slot 7) cut
    # every lease node 5 held on the resource, so the second was called a release of nothing.
    events = (_award(1, 1, 6, holder=6, first=54) + _award(2, 1, 6, holder=6, first=78)
              + _release(3, 6, 1, first=54, seq=1) + _release(4, 6, 1, first=78, seq=2)
              + _release(5, 6, 1, first=78, seq=3))  # a third release, of a lease already given back
    for e in events:
        if e.get("type") == "release":
            e["msg"]["from_slot"] = 7
    r = history.check_events(HEADER, events + [END])
    v = r.by_invariant("lease_awarded")
    assert [x.frame_ids[0] for x in v] == [5], r.format()
