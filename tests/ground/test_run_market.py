"""The market tier through the harness, in virtual time: leases are awarded
over routed frames, a blackout sends nodes to conservative mode, and they
reconcile when contact returns; the seats' regional election is not mistaken
for a cluster's."""

from ground import run, scenario, trace

SCENARIO = """\
name: market-sim
seed: 23
duration_s: 320
election_timeout_ms: 4000
clusters:
  - {id: 1, nodes: [1, 2, 3, 4], lineages: [0, 1]}
links:
  intra_cluster: {delay_ms: 300, jitter: uniform, jitter_ms: 20}
market: {electors: [1, 2, 3], units: [1, 1, 1, 1, 1, 1, 1, 1], slot_ms: 24000, autonomy_after_ms: 80000}
faults:
  - {at_s: 120, blackout: all, duration_s: 120}
gates:
  split_brain: {max: 0}
  unfated_frames: {max: 0}
"""


def test_market_runs_through_the_harness_and_survives_an_autonomy_window(tmp_path):
    sc = scenario.load_text(SCENARIO, "market.yaml")
    res = run.run(sc, str(tmp_path / "m"))
    assert res.ok, res.failures
    header, events, _ = trace.read(str(tmp_path / "m" / "trace.jsonl"))
    sent = [e for e in events if e["kind"] == "frame" and e["fate"] == "sent"]
    types = {e["type"] for e in sent}
    assert {"bid", "award", "prices", "market_tel"} <= types, types
    tel = [e for e in sent if e["type"] == "market_tel"]
    modes_in_window = {e["msg"]["mode"] for e in tel if 200e9 < e["mission_ns"] < 240e9}
    modes_after = {e["msg"]["mode"] for e in tel if e["mission_ns"] > 300e9}
    assert modes_in_window and modes_in_window != {0}, modes_in_window  # left normal mode while cut off
    assert modes_after == {0}, modes_after  # back to normal after reconciling
    assert "reconcile" in {e["type"] for e in sent if e["mission_ns"] > 240e9}
    assert res.metrics["clusters"]["1"]["split_brain"]["count"] == 0
    # The market's own figures (ground/market_metrics.py), from the same frames.
    mk, flat = res.metrics["market"], res.metrics["flat"]
    complete = {(e["msg"]["term"], e["msg"]["round"]) for e in sent
                if e["type"] == "prices" and e["dst"] == 0xFFFF and e["msg"]["status"] == 1}
    assert flat["market_rounds_complete"] == mk["rounds_complete"] == len(complete) > 0
    last = {}
    for e in tel:
        last[e["src"]] = e["msg"]
    assert mk["produced"] == sum(m["produced"] for m in last.values()) > 0
    assert set(mk["nodes"]) == {"1", "2", "3", "4"}
    # every node spent part of its time out of normal mode, none all of it
    assert all(0 < 1 - n["mode_share"].get("normal", 0) < 1 for n in mk["nodes"].values()), mk["nodes"]
    assert 0 < flat["market_conservative_share_max"] < 1
    from test_metrics import check_exposition

    from ground import report

    text = report.to_prometheus(res.metrics)
    types = check_exposition(text)
    assert types["fleetloop_market_rounds_total"] == "counter" and types["fleetloop_market_mode_share"] == "gauge"
    assert 'fleetloop_market_rounds_total{status="complete"} %d' % len(complete) in text.splitlines()
    assert 'fleetloop_market_produced{node="2"} %d' % last[2]["produced"] in text.splitlines()


def test_market_metrics_charge_time_to_the_reported_mode():
    from ground.market_metrics import MarketTally

    s = 1_000_000_000
    t = MarketTally()
    tel = dict(produced=10, lost=0, leases=2, bids=3, awards=2, refused=0)
    t.sent(1, "market_tel", dict(tel, mode=0), 0, 0)
    t.sent(1, "market_tel", dict(tel, mode=2, produced=12, lost=3), 0, 30 * s)  # conservative from 30 s
    t.sent(1, "market_tel", dict(mode=0), 0, 35 * s)  # malformed: counted, ignored
    t.sent(2, "prices", dict(term=1, round=7, status=1), 0xFFFF, 0)
    t.sent(2, "prices", dict(term=1, round=7, status=1), 0xFFFF, s)  # the same round again
    t.sent(2, "prices", dict(term=1, round=8, status=2), 0xFFFF, 2 * s)
    t.sent(2, "prices", dict(term=1, round=9, status=3), 5, 3 * s)  # to the standby: not a broadcast round
    t.sent(3, "market_tel", dict(tel, mode=0, produced=50), 0, 0)
    t.sent(3, "market_tel", dict(tel, mode=0, produced=5, leases=1), 0, s)  # rebooted: totals start again
    section, flat = t.result(40 * s)
    assert section["nodes"]["1"]["mode_share"] == {"normal": 0.75, "conservative": 0.25}
    n3 = section["nodes"]["3"]
    assert (n3["produced"], n3["bids"], n3["leases"], n3["boots_reported"]) == (55, 6, 1, 2)
    del section["nodes"]["3"]
    assert flat == {"market_lost_share": round(3 / (12 + 3 + 55), 4), "market_refused": 0, "market_rounds_complete": 1,
                    "market_rounds_void": 1, "market_conservative_share_max": 0.25}
    assert section["malformed"] == 1
    assert MarketTally().result(0) == (None, dict.fromkeys(flat))


FAULTED = """\
name: market-faults
seed: 31
duration_s: 420
election_timeout_ms: 4000
clusters:
  - {id: 1, nodes: [1, 2, 3, 4, 5], lineages: [0, 1, 2]}
links:
  intra_cluster: {delay_ms: 300, jitter: uniform, jitter_ms: 20}
market: {electors: [1, 2, 3], units: [1, 1, 1, 1, 1, 1, 1, 1], slot_ms: 24000, autonomy_after_ms: 80000}
faults:
  - {at_s: 80, crash: 1, duration_s: 40}
  - {at_s: 90, power_cut: 2, duration_s: 10}
  - {at_s: 150, partition: [[1, 4], [2, 3, 5]]}
  - {at_s: 200, heal: true}
  - {at_s: 240, blackout: all, duration_s: 30}
  - {at_s: 300, power_cut: 3, duration_s: 20}
  - {at_s: 305, crash: 2, duration_s: 20}
gates:
  split_brain: {max: 0}
"""


def test_a_market_run_through_crashes_power_cuts_partitions_and_a_blackout_has_a_clean_history(tmp_path):
    sc = scenario.load_text(FAULTED, "market-faults.yaml")
    res = run.run(sc, str(tmp_path / "f"))
    assert res.ok, res.failures  # history included: run.history_failures is part of the verdict
    path = str(tmp_path / "f" / "trace.jsonl")
    assert run.history_failures(path) == []
    _, events, _ = trace.read(path)
    sent = [e for e in events if e["kind"] == "frame" and e["fate"] == "sent"]
    status = {}
    for e in sent:
        if e["type"] == "prices" and e["dst"] == 0xFFFF:
            status.setdefault(e["msg"]["status"], set()).add((e["msg"]["term"], e["msg"]["round"]))
    assert len(status.get(1, ())) >= 8  # rounds kept completing across the faults
    terms = {e["msg"]["term"] for e in sent if e["type"] == "award" and not e["msg"]["flags"] & 0x13}
    assert len(terms) >= 2  # awards from more than one regional coordinator


def test_a_history_violation_fails_the_run_like_a_gate(tmp_path):
    import json

    sc = scenario.load_text(SCENARIO, "market.yaml")
    run.run(sc, str(tmp_path / "m"))
    path = str(tmp_path / "m" / "trace.jsonl")
    header, events, _ = trace.read(path)
    award = next(e for e in events if e["kind"] == "frame" and e["fate"] == "sent" and e["type"] == "award"
                 and not e["msg"]["flags"] & 0x13 and e["dst"] == e["msg"]["holder"])
    other = next(n for n in (1, 2, 3, 4) if n != award["dst"])
    fake = dict(award, id=10**7, dst=other, msg=dict(award["msg"], holder=other))  # the same slots, sold again
    fate = {"kind": "frame", "fate": "dropped", "id": 10**7, "to": None, "reason": "loss",
            "mission_ns": award["mission_ns"], "wall_ns": 0}
    at = events.index(award) + 1
    events[at:at] = [fake, fate]
    doctored = tmp_path / "doctored.jsonl"
    doctored.write_text("".join(json.dumps(e, sort_keys=True) + "\n" for e in [header] + events))
    failures = run.history_failures(str(doctored))
    assert len(failures) == 1 and failures[0].startswith("history: lease_exclusive: resource %d" % award["msg"]["resource"])
    assert "frame %d" % award["id"] in failures[0] and "frame %d" % 10**7 in failures[0]
