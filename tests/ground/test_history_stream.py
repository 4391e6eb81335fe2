"""The history checker as a streaming consumer (ground/history.py Checker):
a run feeds it as it records and gets the verdict `hil check` gives over the
file afterwards, broken runs included; its state stays bounded on a long
run (history_fates.py retires complete frames). The library-wide comparison
is in test_metrics_stream.py."""

import os

from ground import history, history_fates, run, scenario

SHORT = """\
name: short
seed: 7
duration_s: 30
election_timeout_ms: 1500
clusters:
  - {id: 1, nodes: [1, 2, 3]}
links:
  intra_cluster: {delay_ms: 50, loss: 0.05, duplicate: 0.05}
faults:
  - {at_s: 10, crash: coordinator, cluster: 1, duration_s: 5}
"""

HEADER = {"kind": "header", "scenario": "s", "nodes": {"1": {"cluster": 1}, "2": {"cluster": 1}, "3": {"cluster": 1}}}


def _sent(fid, src=1, dst=2):
    return {"kind": "frame", "fate": "sent", "id": fid, "src": src, "dst": dst, "type": "state", "msg": {},
            "mission_ns": fid, "wall_ns": 0}


def _fate(fid, to=2, fate="delivered"):
    return {"kind": "frame", "fate": fate, "id": fid, "to": to, "mission_ns": fid, "wall_ns": 0}


END = {"kind": "end", "mission_ns": 10**12, "wall_ns": 0}


def test_a_broken_run_gets_the_verdict_from_its_events_that_the_file_gets(tmp_path, monkeypatch):
    # A run that records one delivery twice and a fate for a frame it never sent:
    # it judges them as it records, and the file judged afterwards says the same.
    record = run.Run._record
    doctored = []

    def twice(self, event):
        record(self, event)
        if event.get("fate") == "delivered" and event.get("to") and not doctored:
            doctored.append(event["id"])
            record(self, dict(event))
            record(self, dict(event, id=10**6))

    monkeypatch.setattr(run.Run, "_record", twice)
    out = str(tmp_path / "short")
    res = run.run(scenario.load_text(SHORT, "short.yaml"), out)
    assert res.status == "ok" and doctored
    live = res.history
    assert [v.invariant for v in live.violations] == ["frame_fates", "frame_fates"]
    assert "frame 1000000, which was never sent" in live.violations[0].message
    assert "frame %d (" % doctored[0] in live.violations[1].message and "2 final fates" in live.violations[1].message
    assert live.to_dict() == history.check(os.path.join(out, "trace.jsonl")).to_dict()
    assert ["history: %s" % v for v in live.violations] == [f for f in res.failures if f.startswith("history: ")]


def test_the_checker_keeps_no_more_than_the_frames_in_flight():
    c = history.Checker(HEADER)
    n, lag = 3 * history_fates.KEEP_DONE, 50
    for fid in range(1, n + 1):  # each frame delivered `lag` frames later: always ~50 in flight
        c.feed(_sent(fid))
        if fid > lag:
            c.feed(_fate(fid - lag))
    fates = c._c.fates
    assert len(fates.sent) == lag and len(fates.done) == history_fates.KEEP_DONE
    assert len(fates.retired) == 1  # the retired ids: one range, not one entry per frame
    for fid in range(n - lag + 1, n + 1):
        c.feed(_fate(fid))
    c.feed(END)
    r = c.result()
    assert r.ok, r.format()
    assert not fates.sent and r.lines == 2 * n + 2


def test_out_of_order_completion_keeps_few_id_ranges():
    c = history.Checker(HEADER)
    n = 4 * history_fates.KEEP_DONE
    for fid in range(1, n + 1):
        c.feed(_sent(fid, dst=0xF001))  # to the cluster: two recipients each
        c.feed(_fate(fid, to=2))
    for fid in range(n, 0, -1):  # the other recipient's fates, newest first
        c.feed(_fate(fid, to=3))
    fates = c._c.fates
    assert not fates.sent and len(fates.done) == history_fates.KEEP_DONE and len(fates.retired) == 1
    c.feed(END)
    assert c.result().ok


def test_fates_for_a_retired_frame_are_still_violations():
    c = history.Checker(HEADER)
    n = history_fates.KEEP_DONE + 10
    for fid in range(1, n + 1):
        c.feed(_sent(fid))
        c.feed(_fate(fid))
    c.feed(_fate(1))  # retired long ago: judged at once
    c.feed(_sent(2))  # its id again
    c.feed(_fate(n))  # a recent frame: judged at the end, with its lines
    c.feed(END)
    r = c.result()
    v = r.by_invariant("frame_fates")
    assert len(v) == 3, r.format()
    assert v[0].frame_ids == [1] and v[0].lines == [2 * n + 2] and "after all its fates were in" in v[0].message
    assert v[1].frame_ids == [2] and "sent twice" in v[1].message
    assert v[2].frame_ids == [n] and v[2].lines == [2 * n, 2 * n + 1, 2 * n + 4] and "2 final fates" in v[2].message


def test_a_duplicate_after_completion_reopens_the_frame():
    # A copy recorded after the frame looked complete: it owes one more fate again.
    events = [_sent(1), _fate(1), _fate(1, fate="duplicated"), END]
    r = history.check_events(HEADER, events)
    v = r.by_invariant("frame_fates")
    assert len(v) == 1 and "no fate for 2 (1 of 2 copies)" in v[0].message
    assert history.check_events(HEADER, events[:3] + [_fate(1), END]).ok


def test_the_result_is_taken_once():
    c = history.Checker(HEADER)
    c.feed(END)
    assert c.result() is c.result()
    try:
        c.feed(END)
    except ValueError as e:
        assert "result was taken" in str(e)
    else:
        raise AssertionError("fed after the result")


def test_lease_messages_not_understood_are_counted_not_kept():
    awards = [dict(_sent(fid), type="award", msg={}) for fid in range(1, 31)]
    fates = [_fate(fid) for fid in range(1, 31)]
    r = history.check_events(HEADER, awards + fates + [END], type_names=["award"])
    listed = [n for n in r.notes if n.startswith("lease message not understood")]
    assert len(listed) == 20 and "... and 10 more lease messages not understood" in r.notes
