"""BoardMetrics (ground/metrics/boards.py): TELEMETRY's heap figures and
refusal counters, totalled over reboots, from a real run's trace with one
node's TELEMETRY given the protocol-3 fields a board reports."""

import json

from ground import metrics, run as run_mod, scenario


def _events(tmp_path):
    sc = scenario.load("scenarios/light-delay.yaml")
    run_mod.run(sc, str(tmp_path / "run"), plot=False)
    lines = (tmp_path / "run" / "trace.jsonl").read_text().splitlines()
    return json.loads(lines[0]), [json.loads(x) for x in lines[1:]]


def test_counters_sum_over_boots_and_the_heap_low_water_is_the_lowest(tmp_path):
    header, events = _events(tmp_path)
    tel = [e for e in events if e.get("type") == "telemetry" and e.get("src") == 1 and e.get("fate") == "sent"]
    assert len(tel) >= 6
    # node 1 refuses 10, 20, 30 frames, reboots (its counters restart), then 5, 7
    rejects = [10, 20, 30, 5, 7] + [7] * (len(tel) - 5)
    heaps = [90_000, 80_000, 85_000, 120_000, 60_000] + [70_000] * (len(tel) - 5)
    for e, r, h in zip(tel, rejects, heaps):
        e["msg"] = dict(e["msg"], rejects=r, unknown_src=r // 5, long_lines=0, replayed=1, heap_free=h + 1000, heap_min=h)
    m = metrics.compute(header, events)
    row = m["boards"]["1"]
    assert row["rejects"] == 30 + 7  # the last value of each boot, summed
    assert row["unknown_src"] == 6 + 1
    assert row["boots"] == 2
    assert row["heap_min_bytes"] == 60_000 and row["heap_free_bytes"] == 71_000
    assert m["flat"]["rejects_total"] == 37 and m["flat"]["heap_min_bytes"] == 60_000
    # in-process nodes say 0 for heap: not known, not "no heap left"
    assert m["boards"]["2"]["heap_min_bytes"] is None
    assert metrics.evaluate(m, {"heap_min_bytes": {"min": 65_000}}) != []


def test_an_older_nodes_bad_frames_count_as_rejects(tmp_path):
    header, events = _events(tmp_path)
    for e in events:
        if e.get("type") == "telemetry" and e.get("src") == 2 and e.get("fate") == "sent":
            e["msg"] = dict(e["msg"], bad_frames=4)
    m = metrics.compute(header, events)
    assert m["boards"]["2"]["rejects"] == 4 and m["flat"]["rejects_total"] == 4
