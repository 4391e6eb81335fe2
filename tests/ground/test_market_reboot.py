"""A market node that reboots keeps bidding: its market sequence numbers start
above every number it sent before (docs/MARKET.md "Replay protection"), so the
regional coordinator never refuses its fresh bids as replays.

Found by `ground chaos` over scenarios/tier3-intent.yaml (every schedule
failed market_refused): Node builds its Region before it has read a clock, so
the trader's "boot second x 16" floor was always 0, a rebooted node's bids
began at seq 1 again and the coordinator refused them (refusal.REPLAY) until
they passed the last number of its earlier boot. In-process, virtual time."""

import os

from ground import run, scenario, trace

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def test_a_rebooted_bidder_is_not_refused_as_a_replay(tmp_path):
    with open(os.path.join(ROOT, "scenarios", "tier3-intent.yaml")) as f:
        text = f.read()
    # A crash and a power cut of two bidders that are not electors, no fault that makes refusals legitimate.
    text = text.replace("faults:\n", "faults:\n  - {at_s: 100, crash: 4, duration_s: 20}\n"
                        "  - {at_s: 150, power_cut: 7, duration_s: 30}\n", 1)
    res = run.run(scenario.load_text(text, "tier3-reboot.yaml"), str(tmp_path / "run"), plot=False)
    assert res.metrics["flat"]["market_refused"] == 0, res.failures
    assert not res.failures, res.failures
    events = trace.read(str(tmp_path / "run" / "trace.jsonl"))[1]
    for node, down_s in ((4, 100), (7, 150)):
        bids = [(e["mission_ns"], e["msg"]["seq"]) for e in events
                if e.get("kind") == "frame" and e.get("fate") == "sent" and e.get("type") == "bid" and e["src"] == node]
        before = [seq for t, seq in bids if t < down_s * 10**9]
        after = [seq for t, seq in bids if t > down_s * 10**9]
        assert before and after, (node, bids)
        assert min(after) > max(before), (node, bids)
