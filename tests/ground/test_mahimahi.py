# Mahimahi link traces as a stage (ground/linkreplay.py: load_mahimahi, Mahimahi),
# read as mahimahi's mm-link (src/frontend/link_queue.cc) and the data's
# README (../shared/data/mahimahi/README.md):
#  - one timestamp per line = one 1,500-byte delivery opportunity, scaled by
#    rate_scale; byte-accounted: frames share an opportunity, a large frame
#    spans several, bytes left with nobody queued are lost; a frame only uses
#    opportunities strictly after it arrived; it leaves at the opportunity
#    that finishes it, so delivery times fall on the trace's milliseconds;
#  - gaps hold frames in the queue (never drop them); the trace loops every
#    span unless told to run once, and then frames past the end are dropped;
#  - on the two real traces a saturated link delivers the trace's capacity,
#    within 2 %, never more than it at any time, on its opportunities;
#  - a file with an empty line, a decreasing timestamp, a non-number, no
#    lines or a zero span is refused naming file:line.
# The real traces are GPL-3.0 data kept outside the repository; their tests
# skip when ../shared/data/mahimahi is not there.
import os
from bisect import bisect_right
from collections import Counter

import pytest

from ground import run, scenario, trace
from ground import linkreplay, stages as S
from ground.pipeline import build_pipeline

MS = 1_000_000
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED = os.path.normpath(os.path.join(ROOT, "..", "shared", "data", "mahimahi"))
TRACES = [os.path.join(SHARED, "ATT-LTE-driving-2016." + d) for d in ("up", "down")]
needs_traces = pytest.mark.skipif(not all(os.path.exists(t) for t in TRACES),
                                  reason="the Mahimahi traces are not in %s (shared data, not in the repo)" % SHARED)


def _file(tmp_path, text, name="link.trace"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def _send(pipe, sizes_and_times):
    """[(bytes incl. delimiter, t_ns)] -> [outcome] (release ns or drop reason)."""
    out = []
    for i, (size, t) in enumerate(sizes_and_times):
        (when, _), = pipe.send(S.Packet(i, b"x" * (size - 1), t), t)
        out.append(when)
    return out


# ---- the semantics, on a small hand-made trace ------------------------------------


def test_byte_accounting_by_hand(tmp_path):
    # opportunities at 2, 2, 5 and 9 ms; span 9 ms
    path = _file(tmp_path, "2\n2\n5\n9\n")
    pipe = build_pipeline({"mahimahi": {"path": path}}, seed=1)
    got = _send(pipe, [
        (1000, 0),            # opportunity 0 (2 ms): 500 bytes left in it
        (500, 1 * MS),        # queued before 2 ms: takes the rest of opportunity 0
        (2000, 1500_000),     # opportunity 1 (2 ms) and 500 bytes of 2 (5 ms)
        (101, 6 * MS),        # 1000 bytes left at 5 ms are lost (nobody queued): 9 ms
        (10, 9 * MS),         # arrives at 9 ms: cannot use 9 ms; next loop's 2 ms = 11 ms
        (1500, 9 * MS + 1),   # 11 ms had 1490 left: 10 bytes into the next (11 ms again)
        (1500, 11 * MS),      # 11 ms is now, too late: 14 ms
    ])
    assert got == [2 * MS, 2 * MS, 5 * MS, 9 * MS, 11 * MS, 11 * MS, 14 * MS]


def test_gaps_hold_frames_and_loop_false_drops_past_the_end(tmp_path):
    path = _file(tmp_path, "1\n100\n")
    looped = build_pipeline({"mahimahi": {"path": path, "rate_scale": 0.1}}, seed=1)  # 150 bytes each
    assert _send(looped, [(100, 2 * MS), (100, 3 * MS), (100, 99 * MS)]) == [100 * MS, 101 * MS, 101 * MS]
    once = build_pipeline({"mahimahi": {"path": path, "rate_scale": 0.1, "loop": False}}, seed=1)
    assert _send(once, [(100, 2 * MS), (100, 3 * MS), (10, 4 * MS)]) == [100 * MS, S.BLACKOUT, S.BLACKOUT]


def test_a_frame_spanning_opportunities_and_the_rate_scale(tmp_path):
    path = _file(tmp_path, "\n".join(str(m) for m in range(1, 101)) + "\n")  # one per ms
    pipe = build_pipeline({"mahimahi": {"path": path, "rate_scale": 0.02}}, seed=1)  # 30 bytes per ms
    # 34 bytes: 2 opportunities (1, 2 ms), 26 left in the second; 26 fit it exactly
    assert _send(pipe, [(34, 0), (26, 0), (31, 0)]) == [2 * MS, 2 * MS, 4 * MS]


def test_in_a_pipeline_with_delay_and_loss(tmp_path):
    path = _file(tmp_path, "\n".join(str(m) for m in range(1, 1001)) + "\n")
    pipe = build_pipeline({"mahimahi": {"path": path}, "delay_ms": 250, "loss": 0.1}, seed=3)
    out = _send(pipe, [(40, k * MS // 2) for k in range(1000)])
    delivered = [t for t in out if t.__class__ is int]
    assert 850 < len(delivered) < 950 and all(t % MS == 0 and t >= 251 * MS for t in delivered)
    assert [t for t in out if t.__class__ is str] == [S.LOSS] * (1000 - len(delivered))


# ---- bad files ------------------------------------------------------------------------


@pytest.mark.parametrize("text, line, what", [
    ("1\n2\n\n3\n", 3, "empty line"),
    ("1\n5\n4\n", 3, "below the one before"),
    ("1\n2.5\n", 2, "not a non-negative integer"),
    ("1\n-2\n", 2, "not a non-negative integer"),
    ("", 1, "no timestamps"),
    ("0\n0\n", 2, "nonzero time"),
])
def test_bad_trace_files_name_file_and_line(tmp_path, text, line, what):
    path = _file(tmp_path, text, "bad%d.trace" % line)
    with pytest.raises(ValueError, match=r"bad%d\.trace:%d: .*%s" % (line, line, what)):
        linkreplay.load_mahimahi(path)
    with pytest.raises(ValueError, match=r"links\.x: mahimahi: .*bad%d\.trace:%d" % (line, line)):
        build_pipeline({"mahimahi": {"path": path}}, seed=0, where="links.x: ")


def test_bad_spec_keys(tmp_path):
    path = _file(tmp_path, "1\n2\n")
    for spec, msg in [({"mahimahi": {"path": path}, "rate_bps": 9600}, "rate_bps cannot be given with it"),
                      ({"mahimahi": {"path": path, "scale": 1}}, "unknown key 'mahimahi.scale'"),
                      ({"mahimahi": {"path": path, "rate_scale": 0}}, "rate_scale must be a number > 0"),
                      ({"mahimahi": {"rate_scale": 1}}, "mahimahi.path: required"),
                      ({"mahimahi": {"path": str(tmp_path / "none")}}, "cannot read")]:
        with pytest.raises(ValueError, match=msg):
            build_pipeline(spec, seed=0)


# ---- the shared real traces ----------------------------------------------------------


@needs_traces
@pytest.mark.parametrize("path", TRACES, ids=["up", "down"])
def test_a_saturated_link_delivers_the_traces_capacity(path):
    sched = linkreplay.load_mahimahi(path)
    assert len(sched) in (19101, 45604)  # the README's line counts
    span_ns = sched[-1] * MS
    scale = 0.02
    capacity = len(sched) * 1500 * scale  # bytes over one span
    pipe = build_pipeline({"mahimahi": {"path": path, "rate_scale": scale}}, seed=1)
    size = 34  # a heartbeat on the line
    # saturated: 10 % more than the span's capacity queued at mission 0, so the
    # queue never empties before the span ends
    n = int(capacity * 1.1 / size)
    out = _send(pipe, [(size, 0)] * n)
    assert all(t.__class__ is int for t in out)
    in_span = [t for t in out if t <= span_ns]
    got = len(in_span) * size
    assert abs(got - capacity) <= 0.02 * capacity, (got, capacity)
    # every delivery on one of the trace's opportunities, at 1 ms resolution
    opp = Counter(sched)
    assert all(t % MS == 0 and (t // MS) in opp for t in in_span)
    # never ahead of the capacity offered so far
    cum = 0
    per_ms = Counter(t // MS for t in in_span)
    starts = sorted(opp)
    for ms in sorted(per_ms):
        cum += per_ms[ms] * size
        offered = bisect_right(sched, ms) * 1500 * scale
        assert cum <= offered + 1e-6
    assert starts[0] >= 0


@needs_traces
def test_gaps_in_the_real_trace_hold_frames(tmp_path):
    path = TRACES[0]
    sched = linkreplay.load_mahimahi(path)
    gaps = sorted(((b - a, a, b) for a, b in zip(sched, sched[1:])), reverse=True)
    width, before, after = gaps[0]
    assert width > 50  # the up trace has long outages
    t = before * MS + MS // 2  # sent inside the gap
    pipe = build_pipeline({"mahimahi": {"path": path, "rate_scale": 0.02}}, seed=1)
    # 20 bytes fit one 30-byte opportunity: the first one after the gap; the
    # next 20 take its 10 left and 10 of the opportunity after it
    first, second = [x for x in sched if x > before][:2]
    assert first == after
    assert _send(pipe, [(20, t), (20, t + 1)]) == [first * MS, second * MS]


@needs_traces
def test_a_run_on_a_mahimahi_link_delivers_on_the_opportunities(tmp_path):
    path = TRACES[1]
    sched = set(linkreplay.load_mahimahi(path))
    span = max(sched)
    text = """\
name: mahimahi
seed: 2
duration_s: 30
election_timeout_ms: 1000
clusters:
  - {id: 1, nodes: [1, 2, 3]}
links:
  intra_cluster: {mahimahi: {path: "%s", rate_scale: 0.02}}
""" % path
    sc = scenario.load_text(text, "mahimahi.yaml")
    res = run.run(sc, str(tmp_path / "r"))
    assert res.status == "ok"
    _, events, _ = trace.read(str(tmp_path / "r" / "trace.jsonl"))
    sent = {e["id"]: e for e in events if e["kind"] == "frame" and e["fate"] == "sent"}
    node_to_node = [e for e in events if e["kind"] == "frame" and e["fate"] == "delivered" and e["to"]
                    and sent[e["id"]]["src"]]
    assert len(node_to_node) > 100
    for e in node_to_node:
        assert e["mission_ns"] % MS == 0 and (e["mission_ns"] // MS) % span in sched | {0}
        assert e["delay_ns"] > 0


def test_link_trace_paths_are_relative_to_the_scenario_file(tmp_path, monkeypatch):
    # A scenario names its Mahimahi trace as it sits next to it; loading it
    # from another directory still finds the file (and the run can start).
    folder = tmp_path / "scen"
    folder.mkdir()
    (folder / "cell.trace").write_text("1\n2\n5\n")
    (folder / "s.yaml").write_text("""\
name: rel
duration_s: 1
clusters:
  - {id: 1, nodes: [1, 2]}
links:
  intra_cluster: {mahimahi: {path: cell.trace, rate_scale: 0.02}}
""")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    sc = scenario.load(str(folder / "s.yaml"))
    assert sc.link_spec(1, 2)["mahimahi"]["path"] == str(folder / "cell.trace")
    # From text (no file) the path stays as given: relative to the cwd, where it is missing.
    with pytest.raises(scenario.ConfigError, match=r"cell\.trace"):
        scenario.load_text((folder / "s.yaml").read_text(), "s.yaml")
