"""The history checker re-runs the market's clearing (ground/audit_rerun.py,
invariant audit_rerun, docs/CONTAINMENT.md): a real containment run is clean
with every round re-run from the trace, and a trace edited to flip one award,
to silence an auditor, to misquote an auditor's own side, or to hide the
planted defect fails naming the round, the auditor and the node."""

import copy
import os
import re

import pytest

from ground import history, run, scenario, trace
from ground.yamlfile import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
AUDITORS = os.path.join(ROOT, "scenarios", "containment-auditors.yaml")


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    out = tmp_path_factory.mktemp("audit")
    text = open(AUDITORS, encoding="utf-8").read().replace("duration_s: 900", "duration_s: 240")
    res = run.run(scenario.load_text(text, AUDITORS), str(out), plot=False)
    header, events, _ = trace.read(str(out / "trace.jsonl"))
    return res, header, events


def _rerun(header, events):
    r = history.check_events(header, events)
    return r, [v.message for v in r.violations if v.invariant == "audit_rerun"]


def _sent(events, type_, **want):
    return [e for e in events if e["kind"] == "frame" and e["fate"] == "sent" and e["type"] == type_
            and all(e.get(k) == v for k, v in want.items())]


def test_a_real_run_is_clean_with_every_round_re_run(audited):
    res, header, events = audited
    assert res.ok, res.failures
    assert header["audit"]["1"]["defect_lineage"] == 0 and header["audit"]["1"]["auditors"] == [1, 2, 6, 7]
    r, got = _rerun(header, events)
    assert got == [] and "audit_rerun" in r.checked
    (note,) = [n for n in r.notes if n.startswith("audit_rerun:")]
    judged, unjudged = map(int, re.findall(r"(\d+) round", note) + re.findall(r"(\d+) not judged", note))
    assert judged >= 3 and unjudged == 0, note
    assert _sent(events, "accuse", dst=0)  # the defect was accused: the ACCUSE side was judged too


def test_one_flipped_award_fails_naming_the_round_and_the_node(audited):
    _, header, events = audited
    events = copy.deepcopy(events)
    award = next(e for e in _sent(events, "award") if e["msg"]["round"] == 1 and not e["msg"]["flags"] & 2)
    m = award["msg"]
    m["resource"] = (m["resource"] + 1) % 8
    _, got = _rerun(header, events)
    assert len(got) == 1, got
    assert ("round 1 (term %d) of coordinator %d awards node %d resource %d" % (m["term"], award["src"], m["holder"],
                                                                               m["resource"])) in got[0], got


def test_a_silenced_auditor_fails_naming_the_round_the_auditor_and_the_node(audited):
    _, header, events = audited
    acc = _sent(events, "accuse", dst=0)[0]
    rest = [e for e in events if not (e["kind"] == "frame" and e["id"] == acc["id"])]
    _, got = _rerun(header, rest)
    m = acc["msg"]
    assert len(got) == 1, got
    assert got[0].startswith("round %d (term %d) of coordinator %d: auditor %d had every bid row"
                             % (m["round"], m["term"], m["accused"], acc["src"])), got
    assert "sent no ACCUSE against node %d" % m["accused"] in got[0]


def test_a_silent_auditor_that_did_not_follow_the_coordinator_when_its_rows_came_is_not_expected_to_accuse(audited):
    """Chaos containment-auditors seed 13: an auditor whose clock ran x13
    timed out its coordinator between two heartbeats, refused the round's
    rows and PREPARE (an elector takes them only from the coordinator it
    follows) and, following again, acked the repeated PREPARE with the right
    digest. The silenced-auditor trace, with a heartbeat of that auditor on
    the region's address naming no coordinator just before its first row of
    the round arrives: no violation, one verdict noted as not expected."""
    _, header, events = audited
    acc = _sent(events, "accuse", dst=0)[0]
    m, auditor = acc["msg"], acc["src"]
    rest = [e for e in events if not (e["kind"] == "frame" and e["id"] == acc["id"])]
    rows = {e["id"] for e in _sent(rest, "audit_bid", src=m["accused"], dst=auditor) if e["msg"]["round"] == m["round"]}
    at = next(i for i, e in enumerate(rest) if e["kind"] == "frame" and e["fate"] == "delivered" and e["id"] in rows)
    region_addr = 0xF000 | 0xE00 | header["market"]["region"]
    hb = copy.deepcopy(next(e for e in _sent(rest, "heartbeat", src=auditor, dst=region_addr)
                            if e["msg"]["coordinator"] == m["accused"]))
    hb["id"] = max(e["id"] for e in rest if e["kind"] == "frame") + 1
    hb["msg"].update(coordinator=0, role=1)  # a candidate: it follows nobody
    hb["mission_ns"] = rest[at]["mission_ns"]
    r, got = _rerun(header, rest[:at] + [hb] + rest[at:])
    assert got == [], got
    (note,) = [n for n in r.notes if n.startswith("audit_rerun:")]
    assert "; 1 accusation(s) due from an auditor that did not follow the coordinator" in note, note
    hb["msg"].update(coordinator=m["accused"], role=0)  # following it: silence is a violation again
    _, got = _rerun(header, rest[:at] + [hb] + rest[at:])
    assert len(got) == 1 and "auditor %d had every bid row" % auditor in got[0], got


def test_an_auditor_misquoting_its_own_re_run_fails(audited):
    _, header, events = audited
    events = copy.deepcopy(events)
    acc = _sent(events, "accuse", dst=0)[0]
    acc["msg"]["own_price"] += 1
    _, got = _rerun(header, events)
    m = acc["msg"]
    assert len(got) == 1, got
    assert "auditor %d accuses node %d of round %d" % (acc["src"], m["accused"], m["round"]) in got[0]
    assert "own side" in got[0] and "price %d" % (m["own_price"] - 1) in got[0], got


def test_a_prepare_its_declared_clearing_does_not_give_fails(audited):
    """The header says which lineage clears with the planted defect: told
    none does, the re-run of the defective coordinator's rows disagrees with
    its PREPARE (and its auditors' accusations look right)."""
    _, header, events = audited
    header = copy.deepcopy(header)
    header["audit"]["1"]["defect_lineage"] = -1
    _, got = _rerun(header, events)
    acc = _sent(events, "accuse", dst=0)[0]["msg"]
    assert got and got[0].startswith("line ") and ("round %d (term %d) of coordinator %d: its PREPARE says"
                                                   % (acc["round"], acc["term"], acc["accused"])) in got[0], got


# ---- bidders copy their bids to the auditors (node/bidcopy.py) ---------------


@pytest.fixture(scope="module")
def dropped(tmp_path_factory):
    """containment-auditors with the planted defect made a bid drop: lineage
    0's coordinator takes the last bid of another node out of its book before
    the auditors see the rows (and clears the rest soundly)."""
    out = tmp_path_factory.mktemp("dropbid")
    text = open(AUDITORS, encoding="utf-8").read().replace("duration_s: 900", "duration_s: 240")
    text = text.replace("  defect_lineage: 0\n", "  defect_lineage: 0\n  defect_kind: drop_bid\n")
    res = run.run(scenario.load_text(text, AUDITORS), str(out), plot=False)
    header, events, _ = trace.read(str(out / "trace.jsonl"))
    return res, header, events


def test_an_honest_run_has_no_bid_accusation(audited):
    _, _, events = audited
    assert _sent(events, "bid_seen")  # the traders did copy their bids
    assert not [e for e in _sent(events, "accuse") if e["msg"]["reason"] & 8]


def test_a_coordinator_that_drops_a_bid_is_accused_by_the_auditors_and_quarantined(dropped):
    res, header, events = dropped
    assert res.ok, res.failures
    assert res.metrics["flat"]["quarantined_nodes"] == 1
    accs = [e for e in _sent(events, "accuse", dst=0) if e["msg"]["reason"] == 8]
    assert len({e["src"] for e in accs}) >= 2 and {e["msg"]["accused"] for e in accs} == {1}
    m = accs[0]["msg"]
    bidder, seq = m["holder"], m["own_first"]
    (bid,) = [e for e in _sent(events, "bid", src=bidder, dst=1) if e["msg"]["seq"] == seq]
    assert any(e["fate"] == "delivered" and e["to"] == 1 for e in events if e["kind"] == "frame" and e["id"] == bid["id"])
    rows = [e for e in _sent(events, "audit_bid", src=1) if (e["msg"]["holder"], e["msg"]["seq"]) == (bidder, seq)]
    assert rows == [] and m["claimed_digest"] == 0  # delivered to the coordinator, in none of its rows
    r, got = _rerun(header, events)
    assert got == [] and "audit_rerun" in r.checked


def test_a_bid_accusation_over_a_bid_the_rows_have_fails(dropped):
    _, header, events = dropped
    events = copy.deepcopy(events)
    acc = [e for e in _sent(events, "accuse", dst=0) if e["msg"]["reason"] == 8][0]
    row = next(e for e in _sent(events, "audit_bid", src=1) if e["msg"]["round"] == acc["msg"]["round"]
               and e["msg"]["holder"] != 1)["msg"]
    (seen,) = {e["msg"]["digest"] for e in _sent(events, "bid_seen", src=row["holder"]) if e["msg"]["seq"] == row["seq"]}
    acc["msg"].update(holder=row["holder"], own_first=row["seq"], own_digest=seen)
    _, got = _rerun(header, events)
    assert len(got) == 1, got
    assert ("auditor %d accuses node 1 of round %d (term %d) over node %d's bid %d, but the coordinator's rows have"
            % (acc["src"], acc["msg"]["round"], acc["msg"]["term"], row["holder"], row["seq"])) in got[0], got


def test_an_unknown_defect_kind_is_refused_naming_the_line():
    text = open(AUDITORS, encoding="utf-8").read().replace("  defect_lineage: 0\n",
                                                           "  defect_lineage: 0\n  defect_kind: sometimes\n")
    with pytest.raises(ConfigError) as e:
        scenario.load_text(text, "dk.yaml")
    assert str(e.value).startswith("dk.yaml:") and "market.defect_kind: one of clearing, drop_bid" in str(e.value)


# ---- auditing over loss: rows asked for again (node/rowfetch.py) -------------


def test_rows_resent_on_an_auditors_ask_are_judged_not_taken_for_a_new_close(tmp_path):
    """containment-auditors over 5 % loss: auditors ask for the AUDIT_BID
    rows they lost (AUDIT_MISS) and get them again; the checker takes a
    resent row as delivered, not as the round closed again, so it still
    judges the round and every accusation against it (each bid accusation
    here is over a bid lost on its way to the coordinator: grounded, noted)."""
    text = open(AUDITORS, encoding="utf-8").read().replace("duration_s: 900", "duration_s: 480")
    text = text.replace("{delay_ms: 50, jitter_ms: 5}", "{delay_ms: 50, jitter_ms: 5, loss: 0.05}")
    text = text.replace("{delay_ms: 500}", "{delay_ms: 500, loss: 0.05}")
    run.run(scenario.load_text(text, AUDITORS), str(tmp_path), plot=False)
    header, events, _ = trace.read(str(tmp_path / "trace.jsonl"))
    asks = _sent(events, "audit_miss")
    assert asks
    rows = [(e["src"], e["dst"], e["msg"]["round"], e["msg"]["row"]) for e in _sent(events, "audit_bid")]
    assert len(rows) > len(set(rows))  # some rows went twice: resent
    r, got = _rerun(header, events)
    assert got == [] and "audit_rerun" in r.checked
    (note,) = [n for n in r.notes if n.startswith("audit_rerun:")]
    bid_accusations = [e for e in _sent(events, "accuse", dst=0) if e["msg"]["reason"] == 8]
    assert re.search(r"; %d bid accusation" % len(bid_accusations), note), note  # every one judged
