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
