"""Fault containment on the ground side (docs/CONTAINMENT.md): the scenario
loader's placement rules and auditor checks (errors name file:line), the
history checker's quarantine invariants, and the metrics family."""

import pytest

from ground import metrics as M
from ground import scenario
from ground.history_containment import ContainmentChecker
from ground.yamlfile import ConfigError

BASE = """\
name: t
duration_s: 10
clusters:
  - {id: 1, nodes: [1, 2, 3, 4, 5], lineages: %s}
  - {id: 2, nodes: [6, 7, 8, 9, 10], lineages: [0, 1, 2]}
market:
  electors: [1, 2, 6, 7]
  auditors: %s
  lineages: enforce
  units: [1, 1, 1, 1, 1, 1, 1, 1]
  slot_ms: 60000
"""


def _load(lineages="[0, 1, 2]", auditors="[1, 2, 6, 7]"):
    return scenario.load_text(BASE % (lineages, auditors), "x.yaml")


def test_a_placement_that_keeps_the_rules_loads_with_each_nodes_cluster():
    sc = _load()
    assert sc.market.auditors == (1, 2, 6, 7)
    assert tuple(sc.market.cluster_of) == (1, 1, 1, 1, 1, 2, 2, 2, 2, 2)


def test_a_monoculture_cluster_of_five_is_refused_naming_the_line():
    with pytest.raises(ConfigError) as e:
        _load(lineages="[0, 2]")
    assert "x.yaml:" in str(e.value) and "cluster 1 has 5 nodes of 2 lineage(s)" in str(e.value)


def test_an_elector_without_two_auditors_of_the_other_clearing_is_refused():
    with pytest.raises(ConfigError) as e:
        _load(auditors="[1, 2, 6]")  # elector 1 (clearing A) has only 2 as a B auditor
    assert "elector 1" in str(e.value) and "needs 2" in str(e.value)


def test_an_auditor_that_is_not_an_elector_is_refused():
    with pytest.raises(ConfigError) as e:
        _load(auditors="[1, 2, 6, 7, 3]")
    assert "node 3 is not an elector" in str(e.value)


def _checker():
    seen = []
    c = ContainmentChecker({1, 2, 6, 7}, lambda inv, msg, fids, lines: seen.append((inv, msg)))
    return c, seen


def _log(c, src, text, line):
    c.sent(src, 0, "log", {"text": text}, line, line, 0xFE01)


_PRICES = {"p%d" % k: 1 for k in range(8)}


def _prepare(c, coord, term, rnd, line, digest=5, awards=3):
    """The accused coordinator's PREPARE to an elector, as a trace has it before any accusation."""
    c.sent(coord, 2, "prices", dict(_PRICES, term=term, round=rnd, status=3, digest=digest, awards=awards), line, line,
           0xFE01)


def _accuse(accused, term, rnd, reason=2, price_class=7, claimed_price=1, claimed_digest=5, claimed_awards=3):
    return {"accused": accused, "term": term, "round": rnd, "reason": reason, "price_class": price_class,
            "claimed_price": claimed_price, "claimed_digest": claimed_digest, "claimed_awards": claimed_awards}


def test_an_accusation_misquoting_the_coordinator_or_naming_no_prepared_round_is_a_violation():
    c, seen = _checker()
    _prepare(c, 1, 1, 0, 1)
    c.sent(2, 0, "accuse", _accuse(1, 1, 0), 2, 2, 0xFE01)  # quotes price 1 for class 7: as prepared
    c.sent(7, 0, "accuse", _accuse(1, 1, 0, reason=1 | 4), 3, 3, 0xFE01)  # digest 5 and 3 awards: as prepared
    assert seen == []
    c.sent(7, 0, "accuse", _accuse(1, 1, 0, claimed_price=9), 4, 4, 0xFE01)  # the coordinator said 1
    c.sent(6, 0, "accuse", _accuse(1, 1, 0, reason=1, claimed_digest=6), 5, 5, 0xFE01)
    c.sent(6, 0, "accuse", _accuse(1, 1, 3), 6, 6, 0xFE01)  # round 3 was never prepared
    c.sent(6, 0, "accuse", _accuse(1, 2, 0), 7, 7, 0xFE01)  # nor round 0 in term 2
    assert [inv for inv, _ in seen] == ["accusation_grounded"] * 4, seen
    assert "auditor 7" in seen[0][1] and "price 9" in seen[0][1] and "no PREPARE" in seen[2][1]


def test_a_quarantine_without_two_accusers_on_record_is_a_violation():
    c, seen = _checker()
    _prepare(c, 1, 1, 4, 9)
    c.sent(2, 0, "accuse", _accuse(1, 1, 4), 10, 10, 0xFE01)
    _log(c, 6, "quarantine node 1 quarantined: accused by 2 and 7", 11)  # 7 never accused 1
    assert [inv for inv, _ in seen] == ["quarantine_witnessed"] and "by 7" in seen[0][1]


def test_a_quarantine_on_a_witness_the_ground_never_got_is_a_violation():
    c, seen = _checker()
    c.sent(2, 0, "witness", {"region": 1, "node": 1, "term": 3, "own": 4, "claims": 4}, 10, 10, 0xFE01)
    _log(c, 6, "quarantine node 1 quarantined: witnessed by 2: 4 stale-term claims (term 3, its 4)", 11)
    assert seen == []
    _log(c, 7, "quarantine node 1 quarantined: witnessed by 6: 4 stale-term claims (term 3, its 4)", 12)
    assert [inv for inv, _ in seen] == ["quarantine_witnessed"] and "elector 7" in seen[0][1], seen


def test_a_witnessed_quarantine_passes_and_a_later_award_to_it_does_not():
    c, seen = _checker()
    c.sent(1, 0xFFFF, "prices", {"round": 4}, 1, 1, 0xFE01)
    _prepare(c, 1, 1, 4, 1)
    c.sent(2, 0, "accuse", _accuse(1, 1, 4), 2, 2, 0xFE01)
    c.sent(7, 0, "accuse", _accuse(1, 1, 4), 3, 3, 0xFE01)
    for e in (2, 6, 7):
        _log(c, e, "quarantine node 1 quarantined: accused by 2 and 7", 4 + e)
    assert seen == []
    c.sent(6, 1, "award", {"holder": 1, "round": 5, "flags": 0}, 20, 20, 0xFE01)  # bid before: may stand
    assert seen == []
    c.sent(6, 1, "award", {"holder": 1, "round": 9, "flags": 0}, 21, 21, 0xFE01)
    c.sent(1, 0xFE01, "coordinator", {"term": 5}, 22, 22, 0xFE01)
    assert [inv for inv, _ in seen] == ["quarantine_respected", "quarantine_respected"]


def test_the_metrics_family_counts_accusations_and_quarantines():
    header = {"format": "fleetloop-trace/1", "scenario": "t", "nodes": {"1": {"cluster": 1}, "2": {"cluster": 1}},
              "clusters": {"1": [1, 2]}, "market": {"electors": [1, 2], "region": 1}}
    acc = {"term": 1, "round": 3, "accused": 1, "region": 1, "reason": 5, "lineage": 1, "claimed_digest": 1,
           "own_digest": 2, "claimed_awards": 1, "own_awards": 2, "holder": 2, "claimed_res": 65535, "own_res": 1,
           "claimed_first": 0, "own_first": 4, "price_class": 0, "claimed_price": 1, "own_price": 1}
    events = [
        {"kind": "frame", "fate": "sent", "id": 1, "mission_ns": 10, "src": 2, "dst": 0, "type": "accuse", "msg": acc},
        {"kind": "frame", "fate": "sent", "id": 2, "mission_ns": 20, "src": 2, "dst": 0, "type": "log",
         "msg": {"text": "quarantine node 1 quarantined: accused by 2 and 9"}},
        {"kind": "frame", "fate": "sent", "id": 3, "mission_ns": 30, "src": 1, "dst": 0, "type": "log",
         "msg": {"text": "refused accusation from 9 against 2 round 3"}},
    ]
    m = M.compute(header, events)
    f = m["flat"]
    assert (f["accusations"], f["accusers"], f["quarantined_nodes"], f["accusations_refused"]) == (1, 1, 1, 1)
    assert m["containment"]["accusations"][0]["reason"] == ["digest", "awards"]


def test_the_timeline_marks_a_node_while_some_elector_holds_it_quarantined(tmp_path):
    from ground.report_plot import plot_timeline

    header = {"format": "fleetloop-trace/1", "scenario": "t", "election_timeout_ms": 1000,
              "nodes": {"1": {"cluster": 1}, "2": {"cluster": 1}, "3": {"cluster": 1}},
              "clusters": {"1": [1, 2, 3]}, "market": {"electors": [2, 3], "region": 1}}
    S = 1_000_000_000

    def log(fid, t_s, src, text):
        return {"kind": "frame", "fate": "sent", "id": fid, "mission_ns": int(t_s * S), "src": src, "dst": 0,
                "type": "log", "msg": {"text": text}}

    events = [
        log(1, 10, 2, "quarantine node 1 quarantined: 4 stale-term claims (term 0, mine 1) seen by 2"),
        log(2, 11, 3, "quarantine node 1 quarantined: witnessed by 2: 4 stale-term claims (term 0, its 1)"),
        log(3, 20, 2, "quarantine node 1 normal: ground intent"),  # 3 still holds it
        log(4, 25, 3, "quarantine node 1 normal: ground intent"),
        log(5, 30, 2, "quarantine node 3 suspect: accused by 2"),  # suspect is not quarantined
        log(6, 40, 3, "quarantine node 1 quarantined: witnessed by 2: 4 stale-term claims (term 2, its 3)"),
        {"kind": "end", "mission_ns": 50 * S},
    ]
    tl = M.timeline(header, events)
    assert tl["nodes"]["1"]["quarantined"] == [[10.0, 25.0], [40.0, 50.0]]  # the last one open until the end
    assert tl["nodes"]["2"]["quarantined"] == [] and tl["nodes"]["3"]["quarantined"] == []
    drawn = plot_timeline(tl, str(tmp_path / "t.png"))
    assert drawn["unit"] == "s" and drawn["quarantined"] == {"1": [(10.0, 15.0), (40.0, 10.0)]}
    assert (tmp_path / "t.png").stat().st_size > 0


def test_auditors_auto_picks_two_of_each_clearing_spread_over_clusters():
    sc = _load(auditors="auto")
    # electors 1 (lineage 0, A), 2 (1, B), 6 (0, A), 7 (1, B): two of each, one per cluster
    assert sc.market.auditors == (1, 2, 6, 7)
    text = (BASE % ("[0, 1, 2]", "auto")).replace("electors: [1, 2, 6, 7]", "electors: [1, 2, 4, 6, 7, 9]")
    # cluster 1: 1 A, 2 B, 4 A; cluster 2: 6 A, 7 B, 9 A -> A: 1 and 6 (one per cluster, not 1 and 4); B: 2, 7
    sc = scenario.load_text(text, "x.yaml")
    assert sc.market.auditors == (1, 2, 6, 7)
    assert tuple(sc.market.cluster_of) == (1, 1, 1, 1, 1, 2, 2, 2, 2, 2)
    text = (BASE % ("[0, 1, 2]", "auto")).replace("electors: [1, 2, 6, 7]", "electors: [1, 3, 4, 6, 9]")
    # lineages 0, 2, 0, 0, 0: every elector runs clearing A, nobody can audit them
    with pytest.raises(ConfigError) as e:
        scenario.load_text(text.replace("  lineages: enforce\n", ""), "x.yaml")
    assert "x.yaml:" in str(e.value) and "auditors auto" in str(e.value) and "clearing B" in str(e.value)
