"""The market-tier defects of a test build (firmware/runtime/defects.py:
bid_nonsense, wrong_ledger_digest), honoured in-process by the same class a
board uses, and caught by a rollout's analysis at the canary cluster
(checks refused_bids and ledger_mismatch, ground/rollout_run.py), which
rolls the build back. What the market did is read from the nodes' own
frames: the bids they sent, the digests they reported, their HELLOs."""

import pytest

from ground import run, scenario, trace
from runtime.defects import Defects

SC = """
name: market-rollout
seed: 11
duration_s: 1500
election_timeout_ms: 2000
clusters:
  - {id: 1, nodes: [1, 2, 3], hw_gen: 1}
  - {id: 2, nodes: [4, 5, 6], hw_gen: 2}
  - {id: 3, nodes: [7, 8, 9], hw_gen: 3}
links:
  intra_cluster: {delay_ms: 100}
  inter_cluster: {delay_ms: 500}
market:
  electors: [1, 4, 7]
  units: [2, 2, 2, 2, 1, 1, 1, 1]
  slot_ms: 60000
  region_timeout_ms: 8000
rollout:
  start_s: 120
  canaries: [1]
  window_s: 700
  step_percent: 50
  confirm_after_s: 30
  deploy_timeout_s: 200
  max_failed_checks: 1
  checks:
    %(check)s: {}
  images:
    - version: "1.1"
      test_build: true
      defects: {%(defect)s: true}
gates:
  split_brain: {max: 0}
"""


def _run(tmp_path, defect, check):
    sc = scenario.load_text(SC % {"defect": defect, "check": check}, "market-rollout.yaml")
    res = run.run(sc, str(tmp_path / defect), plot=False)
    _, events, _ = trace.read(str(tmp_path / defect / "trace.jsonl"))
    return sc, res, events


def _sent(events, type_):
    return [e for e in events if e["kind"] == "frame" and e["fate"] == "sent" and e["type"] == type_]


def hello_versions(events):
    """From the nodes' HELLOs: {version: nodes that said it}, {node: the version it said last}."""
    seen, last = {}, {}
    for e in _sent(events, "hello"):
        v = "%d.%d" % (e["msg"]["fw_major"], e["msg"]["fw_minor"])
        seen.setdefault(v, set()).add(e["src"])
        last[e["src"]] = v
    return seen, last


def _caught_at_the_canary_and_rolled_back(sc, events, check):
    ro = [e for e in events if e["kind"] == "rollout"]
    (abort,) = [e for e in ro if e["event"] == "abort"]
    assert abort["reason"].startswith(check + ":"), abort["reason"]
    assert not [e for e in ro if e["event"] == "step" and e["step"] > 0]  # no step past the canaries
    assert any(e["event"] == "rolled_back" for e in ro)
    seen, last = hello_versions(events)
    assert seen["1.1"] == {1, 2, 3}  # only the canary cluster ran it (by its HELLOs) ...
    assert last == {n: "1.0" for n in sc.nodes}  # ... and every node ends on its previous image


def test_a_build_that_bids_nonsense_is_caught_at_the_canary_and_rolled_back(tmp_path):
    sc, res, events = _run(tmp_path, "bid_nonsense", "refused_bids")
    _caught_at_the_canary_and_rolled_back(sc, events, "refused_bids")
    nonsense = [e for e in _sent(events, "bid") if e["msg"]["price"] > 1000]
    assert nonsense and {e["src"] for e in nonsense} <= {1, 2, 3}
    # the market refused them (the electors' MARKET_TEL `refused` grew)
    refused = [e["msg"]["refused"] for e in _sent(events, "market_tel") if e["src"] in (1, 4, 7)]
    assert max(refused) > 0


def test_a_build_that_reports_a_wrong_ledger_digest_is_caught_at_the_canary_and_rolled_back(tmp_path):
    sc, res, events = _run(tmp_path, "wrong_ledger_digest", "ledger_mismatch")
    _caught_at_the_canary_and_rolled_back(sc, events, "ledger_mismatch")
    (abort,) = [e for e in events if e["kind"] == "rollout" and e["event"] == "abort"]
    canary = [e for e in events if e["kind"] == "rollout" and e["event"] == "analysis"][-1]
    assert canary["updated"]["ledger_mismatch"] > canary["baseline"]["ledger_mismatch"]


@pytest.mark.parametrize("defect", ["bid_nonsense", "wrong_ledger_digest"])
def test_the_market_defects_are_never_honoured_outside_a_test_build_and_follow_the_lineage(defect):
    assert Defects.of({"test_build": False, "defects": {defect: True}}, 0) is None
    assert Defects.of({"test_build": True, "defects": {defect: True, "lineage": 1}}, 0) is None
    d = Defects.of({"test_build": True, "defects": {defect: True, "lineage": 1}}, 1)
    assert d is not None and (d.bid_nonsense if defect == "bid_nonsense" else d.wrong_digest)


def test_a_good_build_passes_both_checks_through_its_own_installs(tmp_path):
    text = (SC % {"defect": "x", "check": "refused_bids: {}\n    ledger_mismatch"}).replace(
        "      test_build: true\n      defects: {x: true}\n", "").replace("duration_s: 1500", "duration_s: 1700")
    sc = scenario.load_text(text, "market-rollout.yaml")
    res = run.run(sc, str(tmp_path / "good"), plot=False)
    _, events, _ = trace.read(str(tmp_path / "good" / "trace.jsonl"))
    ro = [e for e in events if e["kind"] == "rollout"]
    assert [e["event"] for e in ro if e["event"] in ("complete", "abort")] == ["complete"], \
        [e.get("failures") for e in ro if e["event"] == "analysis"]
    seen, last = hello_versions(events)
    assert last == {n: "1.1" for n in sc.nodes}
