"""The streaming metrics (ground/metrics/) and history checker
(ground/history.py): what a run computes as its events happen equals what
`ground metrics` and `hil check` compute from its trace file afterwards, on
every scenario of the library (test_library.py asserts it on its own run of
each), in virtual time and in real time; and the
auction decision figures of the market family."""

import glob
import json
import os

import pytest

from ground import history, metrics, report, run, scenario, trace
from ground.metrics.market import AuctionTally

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Fleet-scale descriptions (scenarios/fleet-*.yaml, docs/FLEET.md) are left out: fleet-1k alone is ~80 s of
# CPU per run in today's run path, and this test runs it and measures it twice more (test_library.py NOT_RUN).
LIBRARY = sorted(p for p in glob.glob(os.path.join(ROOT, "scenarios", "*.yaml"))
                 + glob.glob(os.path.join(ROOT, "tests", "ground", "scenarios", "*.yaml"))
                 if not os.path.basename(p).startswith("fleet-"))
# The library's own scenarios (scenarios/) are checked live against their files by test_library.py, on the run
# it makes anyway (assert_live_equals_file below); here only the test scenarios, so none runs twice.
TEST_SCENARIOS = [p for p in LIBRARY if os.path.dirname(p).endswith(os.path.join("tests", "ground", "scenarios"))]
S = 1_000_000_000


def _file_result(out):
    """What `ground metrics TRACE` computes: the file, read back; and the file's header and events."""
    path = os.path.join(out, "trace.jsonl")
    streamed, torn = metrics.from_trace(path, keep_timeline=True)
    header, events, _ = trace.read(path)
    return streamed, metrics.compute(header, events), metrics.timeline(header, events), torn, header, events


def assert_live_equals_file(res, out):
    """The run's live metrics and history verdict equal what the trace file gives afterwards.
    Returns the trace file's (header, events) it read, for the caller's own checks."""
    streamed, listed, tl, torn, header, events = _file_result(out)
    assert not torn
    live = res.metrics
    assert live == listed, sorted(k for k in live if live[k] != listed.get(k))
    assert streamed.result() == listed
    assert streamed.timeline() == tl
    with open(os.path.join(out, "metrics.json"), encoding="utf-8") as f:
        assert json.load(f) == json.loads(report.to_json(listed))
    with open(os.path.join(out, "trace.jsonl"), "rb") as f:
        end = json.loads(f.read().splitlines()[-1])
    # One definition of the mission: from the header to the last line, the `end` line included.
    assert end["kind"] == "end" and live["end"] == {k: end[k] for k in ("status", "reason", "frames")}
    assert live["mission_s"] == live["flat"]["mission_s"] >= round(end["mission_ns"] / S, 9)
    # The history checker, fed as the run recorded, gives the verdict it gives over the file.
    assert res.history is not None and res.history.to_dict() == history.check(os.path.join(out, "trace.jsonl")).to_dict()
    with open(os.path.join(out, "trace.jsonl"), "rb") as f:
        assert res.history.lines == len(f.read().splitlines())
    return header, events


def test_the_library_is_there():
    names = [os.path.basename(p) for p in LIBRARY]
    assert "bench.yaml" in names and len(names) >= 4, names


@pytest.mark.parametrize("path", TEST_SCENARIOS, ids=[os.path.basename(p) for p in TEST_SCENARIOS])
def test_live_metrics_equal_the_trace_files(tmp_path, path, scenario_runs):
    # (conftest.py: the runs other test files assert more on are kept for them)
    sc, res, out = scenario_runs.get(path, str(tmp_path / os.path.basename(path)[:-5]))
    assert res.metrics["flat"]["frames_sent"] > 0
    assert_live_equals_file(res, out)


def test_live_metrics_equal_the_trace_file_of_a_market_run(tmp_path):
    from test_run_market import SCENARIO

    sc = scenario.load_text(SCENARIO, "market.yaml")
    out = str(tmp_path / "m")
    res = run.run(sc, out)
    assert_live_equals_file(res, out)
    a = res.metrics["market"]["auction"]["1"]
    d, flat = a["decision"], res.metrics["flat"]
    assert a["outcomes"]["awarded"] == d["count"] > 0 and a["round_s"] == 24.0  # the scenario's slot_ms
    assert sum(a["outcomes"].values()) == a["bids"] == sum(r["bids"] for r in a["rounds"].values())
    assert 0 < d["s_p50"] <= d["s_p99"] <= d["s_max"] == max(r["s_max"] or 0 for r in a["rounds"].values())
    assert d["rounds_max"] == round(d["s_max"] / 24.0, 9) and flat["market_decision_rounds_max"] == d["rounds_max"]
    assert flat["market_bids_lost"] == a["outcomes"]["lost"] > 0  # the blackout drops bids
    # Bids on the wire against the frames: every bid frame is one bid.
    header, events, _ = trace.read(os.path.join(out, "trace.jsonl"))
    assert a["bids"] == sum(1 for e in events if e["kind"] == "frame" and e["fate"] == "sent" and e["type"] == "bid")
    from test_metrics import check_exposition

    text = report.to_prometheus(res.metrics)
    types = check_exposition(text)
    assert types["fleetloop_market_decision_seconds"] == "summary"
    assert types["fleetloop_market_bids_total"] == "counter"
    assert 'fleetloop_market_bids_total{outcome="awarded",region="1"} %d' % d["count"] in text.splitlines()
    table = report.format_table(res.metrics)
    assert "auction   region 1: bid to award p50/p99/max %.2f/" % d["s_p50"] in table


REAL_TIME = """\
name: realtime
seed: 4
duration_s: 6
time_scale: 10
election_timeout_ms: 1000
clusters:
  - {id: 1, nodes: [1, 2, 3], lineages: [0, 1]}
links:
  intra_cluster: {delay_ms: 50, jitter_ms: 5}
faults:
  - {at_s: 3, crash: coordinator, cluster: 1}
"""


def test_a_real_time_run_gives_the_numbers_its_trace_gives(tmp_path):
    # On a real clock the `end` line is written after the last frame event, a
    # few mission ms later: the run and `ground metrics` must both count it.
    sc = scenario.load_text(REAL_TIME, "realtime.yaml")
    out = str(tmp_path / "rt")
    res = run.Run(sc, out, mode="emulated").execute()  # no boards: in-process nodes on the real clock
    assert res.status == "ok", res.failures
    assert_live_equals_file(res, out)


def test_the_end_line_counts_in_the_mission(tmp_path):
    header = {"kind": "header", "nodes": {"1": {"cluster": 1}}, "election_timeout_ms": 1000, "mission_ns": 0}
    events = [
        {"kind": "frame", "fate": "sent", "id": 1, "src": 1, "dst": 0, "type": "log", "len": 10, "msg": {},
         "mission_ns": 240_001_000_000},
        {"kind": "end", "status": "ok", "reason": "", "frames": 1, "mission_ns": 240_003_000_000},
    ]
    m = metrics.compute(header, events)
    assert m["mission_s"] == m["flat"]["mission_s"] == 240.003
    assert m["nodes"]["1"]["messages_per_hour"] == round(1 / (240.003 / 3600), 9)
    assert metrics.compute(header, events[:1])["mission_s"] == 240.001


def test_feeding_one_event_at_a_time_is_the_same_as_a_list(tmp_path):
    # The composer holds no look-ahead: a result taken part way is the result
    # of the events so far.
    sc = scenario.load(os.path.join(ROOT, "scenarios", "bench.yaml"))
    out = str(tmp_path / "b")
    run.run(sc, out)
    header, events, _ = trace.read(os.path.join(out, "trace.jsonl"))
    half = len(events) // 2
    m = metrics.Metrics(header)
    for e in events[:half]:
        m.feed(e)
    assert m.result() == metrics.compute(header, events[:half])
    assert m.result()["flat"]["frames_sent"] < metrics.compute(header, events)["flat"]["frames_sent"]
    with pytest.raises(ValueError, match="result was taken"):
        m.feed(events[half])  # its open claims were closed for the result: more events would be misread


# ---- auction decisions ---------------------------------------------------------


def _bid(t_s, fid, src, seq, rnd, coord=1):
    return ("sent", fid, src, coord, "bid", {"round": rnd, "seq": seq}, t_s)


def _award(t_s, fid, holder, seq, rnd, coord=1, flags=0):
    return ("sent", fid, coord, holder, "award", {"holder": holder, "seq": seq, "round": rnd, "flags": flags,
                                                   "term": 1}, t_s)


def _prices(t_s, fid, rnd, status, coord=1):
    return ("sent", fid, coord, 0xFFFF, "prices", {"term": 1, "round": rnd, "status": status}, t_s)


def _feed(tally, script):
    for step in script:
        if step[0] == "sent":
            _, fid, src, dst, type_, msg, t_s = step
            tally.sent(src, type_, msg, dst, int(t_s * S), fid)
        else:
            _, fate, fid, to, t_s = step
            tally.fate(fate, fid, to, 0, int(t_s * S))


def test_auction_latency_is_bid_sent_to_award_received():
    a = AuctionTally(slot_ms=10_000)
    _feed(a, [
        _bid(1.0, 1, 2, 100, 0), ("fate", "delivered", 1, 1, 1.2),
        _bid(2.0, 2, 3, 200, 0), ("fate", "delivered", 2, 1, 2.2),
        _bid(3.0, 3, 4, 300, 0), ("fate", "dropped", 3, 1, 3.1),  # lost on the link
        _bid(4.0, 4, 5, 400, 0), ("fate", "delivered", 4, 1, 4.1),  # never awarded
        _award(9.0, 10, 2, 100, 0, flags=1), ("fate", "delivered", 10, 2, 9.1),  # a replica copy: no decision
        _award(9.0, 11, 2, 100, 0), ("fate", "delivered", 11, 2, 9.5),  # 8.5 s after the bid
        _award(9.0, 12, 3, 200, 0), ("fate", "dropped", 12, 3, 9.4),  # dropped: node 3 did not get it yet
        _prices(9.0, 13, 0, 1),
        _award(14.0, 14, 3, 200, 0), ("fate", "delivered", 14, 3, 14.0),  # resent after a takeover: 12 s
        _award(14.0, 15, 3, 200, 0), ("fate", "delivered", 15, 3, 14.1),  # again: already decided
        _bid(15.0, 16, 2, 101, 1),  # round 1 is still open at the end
    ])
    r = a.result()
    assert r["outcomes"] == {"awarded": 2, "not_awarded": 1, "void": 0, "lost": 1, "unannounced": 0, "open": 1}
    assert r["bids"] == 5 and r["awards_unmatched"] == 1
    d = r["decision"]
    assert (d["count"], d["s_p50"], d["s_max"]) == (2, 8.5, 12.0)
    assert (d["rounds_p50"], d["rounds_max"]) == (0.85, 1.2)
    assert r["rounds"]["0"] == {"bids": 4, "awarded": 2, "s_max": 12.0}


def test_unanswered_bids_are_decided_two_rounds_after_their_round():
    a = AuctionTally()  # no slot_ms (an older trace): no figures in rounds
    _feed(a, [
        _bid(1.0, 1, 2, 1, 0), _bid(1.0, 2, 3, 1, 1), _bid(1.0, 3, 4, 1, 2),
        _prices(5.0, 4, 0, 2),  # round 0 void
        _prices(6.0, 5, 2, 1),  # round 2 complete; round 1 never announced
    ])
    assert a.bids == {(3, 1): [S, 1], (4, 1): [S, 2]}  # round 0's bid is decided (void) already
    r = a.result()
    assert r["outcomes"] == {"awarded": 0, "not_awarded": 1, "void": 1, "lost": 0, "unannounced": 1, "open": 0}
    assert r["decision"]["count"] == 0 and r["decision"]["rounds_max"] is None and r["round_s"] is None


def test_award_flags_match_the_firmware():
    from ground import firmware
    from ground.metrics.market import AWARD_NOT_A_DECISION

    msgs = firmware.msgs
    assert AWARD_NOT_A_DECISION == msgs.AWARD_REPLICA | msgs.AWARD_SYNC | msgs.AWARD_CLAIM
