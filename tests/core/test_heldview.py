# cpython-only
# (A cluster of five and an elector cluster with a market on every node; the
# quarantine's own logic runs under MicroPython in tests/core/test_containment.py.)
# Quarantine in the cluster election (node/heldview.py, docs/CONTAINMENT.md):
# HELD frames from a majority of the region's electors take a member out of
# its cluster's election (its coordinator resigns, the next is another
# member, the standby named is not it), within the cap; a minority, a
# non-elector or another region changes nothing; a hold lasts until its
# elector releases it or says it booted. Real Nodes over tests/core/federation.py.
from federation import Federation
from node import election as el
from node import msgs, refusal, wire

UNITS = (1, 1, 1, 1, 1, 1, 1, 1)
LEAD_MS = 3000


def _fed():
    # Cluster 1 has five members, two of them electors; electors 1, 2 and 6: a majority is two.
    return Federation([[1, 2, 3, 4, 5], [6, 7]], UNITS, seed=4, electors=[1, 2, 6], slot_ms=24000, lead_ms=LEAD_MS,
                      horizon_slots=32, window_slots=16, max_bids=24)


def _coordinator(f, members):
    got = [i for i in members if i not in f.down and f.nodes[i].role == el.COORDINATOR]
    return got[0] if len(got) == 1 else None


def _held(f, elector, member, state=2, region=None):
    """Elector `elector` sends cluster 1 a HELD, through its own node's send path."""
    region = f.mcfg.region if region is None else region
    f.nodes[elector]._send(wire.cluster_addr(1), msgs.HELD, msgs.pack(msgs.HELD, region, member, state))


def _say(f, electors, member, ms):
    """The electors say it every LEAD_MS for ms."""
    end = f.now + ms
    while f.now < end:
        for e in electors:
            _held(f, e, member)
        f.run_for(LEAD_MS)


def test_a_member_held_by_a_majority_leaves_its_clusters_election_until_an_elector_lets_go():
    f = _fed()
    c1 = [1, 2, 3, 4, 5]
    assert f.run_until(f.now + 20000, until=lambda x: _coordinator(x, c1) is not None)
    q = _coordinator(f, c1)
    sayers = [e for e in (1, 2, 6) if e != q][:2]
    _say(f, sayers[:1], q, 3 * LEAD_MS)  # one elector: not a majority
    assert _coordinator(f, c1) == q and all(f.nodes[i].held.count(q, f.now) == 1 for i in c1 if i != sayers[0])
    _say(f, sayers, q, 6 * LEAD_MS)
    assert f.nodes[q].role != el.COORDINATOR  # it resigned, and does not stand again
    new = _coordinator(f, c1)
    assert new is not None and new != q
    assert f.nodes[new].standby not in (q, msgs.NO_NODE)
    others = [i for i in c1 if i not in sayers]  # (a sayer's own word is its table: none here)
    for i in others:
        assert not f.nodes[i].held.may_elect(q, f.now)
    # Silence changes nothing (a cluster cut off from the electors keeps what
    # it heard); an elector that booted (HELD naming node 0) forgets its
    # holds: one left, and q is electable again.
    f.run_for(6 * LEAD_MS)
    assert not any(f.nodes[i].held.may_elect(q, f.now) for i in others)
    _held(f, sayers[0], msgs.NO_NODE, state=0)
    f.run_for(200)
    assert all(f.nodes[i].held.may_elect(q, f.now) and f.nodes[i].held.count(q, f.now) == 1 for i in others)


def test_the_cap_keeps_all_but_one_member_of_five_in_and_bad_senders_are_refused():
    f = _fed()
    c1 = [1, 2, 3, 4, 5]
    assert f.run_until(f.now + 20000, until=lambda x: _coordinator(x, c1) is not None)
    for member in (4, 5):
        for e in (2, 6):
            _held(f, e, member)
    f.run_for(200)
    v = f.nodes[3].held
    assert v.count(4, f.now) == 2 and v.count(5, f.now) == 2
    # 340 permille of five is one node: the lowest id held is out, the other stays electable.
    assert not v.may_elect(4, f.now) and v.may_elect(5, f.now)
    before = list(f.nodes[3].region.refused)
    _held(f, 4, 3)  # not an elector
    _held(f, 6, 3, region=f.mcfg.region + 1)  # another region
    f.run_for(200)
    after = f.nodes[1].region.refused
    assert after[refusal.FORGED] >= 1 and after[refusal.REGION] >= 1
    assert f.nodes[1].held.count(3, f.now) == 0 and list(f.nodes[3].region.refused) != before
    # A release from one of the two takes node 4 back at once.
    _held(f, 2, 4, state=0)
    f.run_for(200)
    assert f.nodes[3].held.count(4, f.now) == 1 and f.nodes[3].held.may_elect(4, f.now)
