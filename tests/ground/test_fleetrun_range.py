"""A rollout that changes the nodes' protocol range on the lean path
(ground/shard_skew.py, docs/FLEET_RUN.md "Rollouts on the lean path"): a
fleet on 2.0 (protocols 1..2) rolled to 3.0 (1..3), then a test build 4.0
(1..4) that crashes as coordinator, caught at its canary cluster and rolled
back to 3.0. Each change of range reaches every shard's version table as the
next window opens: the same fleet with 1 and 2 shards, the --sim path's
decisions within a window each, frames converted while the fleet is mixed
and no more once it is not, and no frame refused for a stale table later
than one window after its recipient's change."""

import json
import math

import pytest

from ground import fleetrun, run, scenario, trace
from ground.shard_route import frame_header
from test_fleetrun_rollout import PAUSE, TEXT as ROLLOUT_TEXT
from test_rollout_defects import hello_versions

S = 1_000_000_000
# two regions of 3 clusters of 5 (each region a unit: 2 shards hold one each, so converted frames cross
# shards): test_fleetrun_rollout.py's fleet and plan, without its pause, rolling 3.0 and a 4.0 test build
def _from_rollout_text():
    text = ROLLOUT_TEXT.replace(PAUSE, "")
    for old, new in (("name: lean-rollout", "name: lean-range"), ("duration_s: 160", "duration_s: 150"),
                     ('version: "2.1"', 'version: "3.0"'), ('version: "2.2"', 'version: "4.0"')):
        assert old in text, old
        text = text.replace(old, new)
    return text


TEXT = _from_rollout_text()
DECISIONS = ("start", "step", "deployed", "deploy_timeout", "complete", "abort", "rolled_back")


def _run(tmp_path, name, **kw):
    sc = scenario.load_text(TEXT, "lean-range.yaml")
    lr = fleetrun.LeanRun(sc, str(tmp_path / name), **kw)
    return sc, lr, lr.execute()


def _events(path):
    _, events, torn = trace.read(str(path / "trace.jsonl"))
    assert not torn
    return events


def _ranges(events):
    """node -> [(mission ns, newest protocol version)], from its HELLOs (the first: its firmware's)."""
    out = {}
    for e in events:
        if e["kind"] == "frame" and e["fate"] == "sent" and e["type"] == "hello":
            h = out.setdefault(e["src"], [])
            if not h or h[-1][1] != e["msg"]["proto_max"]:
                h.append((e["mission_ns"], e["msg"]["proto_max"]))
    return out


def _at(hist, t):
    """(when it last changed, the range) of a node at mission ns t."""
    got = hist[0]
    for c in hist:
        if c[0] <= t:
            got = c
    return got


def _refused(events, ranges):
    """[(recipient, sent ns, delivered ns)] of frames delivered at a version above what the recipient spoke then."""
    sent = {e["id"]: e for e in events if e["kind"] == "frame" and e["fate"] == "sent"}
    out = []
    for e in events:
        if e["kind"] != "frame" or e["fate"] != "delivered" or not e["to"] or e["id"] not in sent:
            continue
        version = frame_header(bytes.fromhex(e.get("hex") or sent[e["id"]]["hex"]))[0]
        if version > _at(ranges[e["to"]], e["mission_ns"])[1]:
            out.append((e["to"], sent[e["id"]]["mission_ns"], e["mission_ns"]))
    return out


@pytest.fixture(scope="module")
def lean(tmp_path_factory):
    """The lean run with 1 and with 2 shards, and the --sim run."""
    tmp = tmp_path_factory.mktemp("lean-range")
    sc, lr, one = _run(tmp, "one")
    _, lr2, two = _run(tmp, "two", shards=2)
    ref = run.run(sc, str(tmp / "sim"), plot=False)
    return tmp, sc, lr, lr2, one, two, ref


def test_a_rollout_across_protocol_ranges_runs_and_ignores_the_shard_count(lean):
    tmp, sc, lr, lr2, one, two, ref = lean
    assert fleetrun.lean_refusal(sc) is None  # it was refused: the shards' version table was fixed
    assert len(lr.plan) == 1 and len(lr2.plan) == 2
    assert one.status == two.status == "ok" and not one.failures
    f1, f2 = (json.load(open(tmp / d / "fleet.json")) for d in ("one", "two"))
    assert {k: v for k, v in f1.items() if k != "shards"} == {k: v for k, v in f2.items() if k != "shards"}
    assert one.metrics == two.metrics
    events = _events(tmp / "one")
    ro = [e for e in events if e["kind"] == "rollout"]
    assert ro == [e for e in _events(tmp / "two") if e["kind"] == "rollout"]
    # 3.0 reached every node and completed; 4.0 only its canary cluster, whose crashes abort it; all end on 3.0
    seen, last = hello_versions(events)
    assert seen["3.0"] == set(sc.nodes) and last == {n: "3.0" for n in sc.nodes}
    (start4,) = [e for e in ro if e["event"] == "start" and e["image"] == "4.0"]
    assert seen["4.0"] and {sc.nodes[n].cluster for n in seen["4.0"]} <= set(start4["canaries"])
    assert [e["image"] for e in ro if e["event"] == "complete"] == ["3.0"]
    (abort,) = [e for e in ro if e["event"] == "abort"]
    assert abort["image"] == "4.0" and "crashes" in abort["reason"]
    assert [e["image"] for e in ro if e["event"] == "rolled_back"] == ["4.0"]
    flat = one.metrics["flat"]
    assert flat["rollout_completed"] == 1 and flat["rollout_aborted"] == 1


def test_the_sim_paths_decisions_each_within_a_window(lean):
    tmp, sc, lr, lr2, one, two, ref = lean
    assert ref.ok and one.ok, (ref.failures, one.failures)  # --sim's history check too: the rolled majors are declared
    key = lambda e: (e["event"], e["image"], e["step"], e.get("clusters"), e.get("canaries"))  # noqa: E731
    sim = [e for e in _events(tmp / "sim") if e["kind"] == "rollout" and e["event"] in DECISIONS]
    got = [e for e in _events(tmp / "one") if e["kind"] == "rollout" and e["event"] in DECISIONS]
    assert [key(e) for e in got] == [key(e) for e in sim]  # the same decisions, in the same order
    hops = 0
    for a, b in zip(sim, got):
        if a["event"] in ("start", "step", "complete"):
            hops += a["event"] == "step"
            assert 0 <= b["mission_ns"] - a["mission_ns"] < max(1, hops) * lr.window_ns, (a, b)
    for name in ("rollout_completed", "rollout_aborted", "rollout_bad_nodes"):
        assert one.metrics["flat"][name] == ref.metrics["flat"][name]
    assert ref.metrics["flat"]["frames_converted"] > 0


def test_frames_are_converted_while_the_fleet_is_mixed_and_the_table_lags_at_most_a_window(lean):
    tmp, sc, lr, lr2, one, two, ref = lean
    w = lr.window_ns
    events = _events(tmp / "two")
    ranges = _ranges(events)
    assert {h[0][1] for h in ranges.values()} == {2} and {h[-1][1] for h in ranges.values()} == {3}
    assert any(len(h) > 2 for h in ranges.values())  # 2 -> 3 -> 4 -> 3: the canary's test build and back
    conv = [e for e in events if e["kind"] == "frame" and e["fate"] == "converted"]
    pairs = {(e["from_version"], e["to_version"]) for e in conv}
    assert pairs == {(3, 2), (4, 3)}  # 3.0's frames to 2.0 nodes, the test build's to 3.0 nodes
    assert one.fleet["fleet"]["converted"] == len(conv) == two.fleet["fleet"]["converted"]
    # a converted copy's delivery carries the bytes its recipient got (`hex`), at the version it was converted
    # to, whichever shard holds the recipient; the other deliveries carry none (as the Router writes them)
    to = {(e["id"], e["to"]): e["to_version"] for e in conv}
    got = {(e["id"], e["to"]): frame_header(bytes.fromhex(e["hex"]))[0] for e in events
           if e["kind"] == "frame" and e["fate"] == "delivered" and "hex" in e}
    assert got and got == {k: v for k, v in to.items() if k in got} and len(got) > 0.9 * len(to)
    # each conversion is for the range its recipient spoke then, or up to one window before
    for e in conv:
        hist, t = ranges[e["to"]], e["mission_ns"]
        spoke = {_at(hist, t - w)[1]} | {v for c, v in hist if t - w < c <= t}
        assert e["to_version"] in spoke and e["to_version"] < e["from_version"], (e, hist)
    # none once every node runs 3.0 (a window after the last one's HELLO) until 4.0's first HELLO, nor after the
    # last change of range (the rollback's)
    on3 = max(h[1][0] for h in ranges.values())
    first4 = min(c[0] for h in ranges.values() for c in h if c[1] == 4)
    final = max(h[-1][0] for h in ranges.values())
    assert on3 + w < first4 and final + w < sc.duration_s * S
    assert not [e for e in conv if on3 + w <= e["mission_ns"] < first4 or e["mission_ns"] >= final + w]
    # a frame above its recipient's range reached it (and was refused) only if sent within a window after the
    # recipient's range shrank (a rollback, a reverted trial): the table's lag; on --sim only those in flight
    lagged = _refused(events, ranges)
    assert lagged  # (frames on their way as the canary rolled back)
    for nid, sent_ns, at in lagged:
        changed = _at(ranges[nid], at)[0]
        assert sent_ns < changed + w, (nid, sent_ns, at, ranges[nid])
    # and the recipient refused each, as its firmware does (it counts them: errors since its boot, in its
    # TELEMETRY), rather than taking the sender's shared decode
    boots = {}
    for e in events:
        if e["kind"] == "node" and e["event"] == "rebooted":
            boots.setdefault(e["node"], []).append(e["mission_ns"])
    told = 0
    for e in events:
        if e["kind"] == "frame" and e["fate"] == "sent" and e["type"] == "telemetry":
            nid, t = e["src"], e["mission_ns"]
            boot = max([0] + [b for b in boots.get(nid, ()) if b <= t])
            k = sum(1 for n, _, at in lagged if n == nid and boot <= at < t)
            assert e["msg"]["bad_frames"] >= k, (e, k)
            told += k
    assert told
    sim = _events(tmp / "sim")
    sim_ranges = _ranges(sim)
    for nid, sent_ns, at in _refused(sim, sim_ranges):
        assert sent_ns <= _at(sim_ranges[nid], at)[0]


def test_a_lean_rollout_draws_rollout_png_for_the_whole_fleet(lean):
    tmp, sc, lr, lr2, one, two, ref = lean
    png = tmp / "one" / "rollout.png"
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    assert (tmp / "two" / "rollout.png").exists() and not (tmp / "one" / "timeline.png").exists()
    series = lr.rollout.series(int(sc.duration_s * S))
    assert sorted(series["clusters"]) == sorted(sc.clusters)
    assert series["counts"][-1][1] == {"3.0": len(sc.clusters)}
    assert [m[1:] for m in series["marks"]] == [["start", "3.0"], ["complete", "3.0"], ["start", "4.0"],
                                                 ["abort", "4.0"], ["rolled_back", "4.0"]]
    assert math.isclose(series["end_s"], sc.duration_s)


def test_a_mixed_fleet_rolled_to_its_newer_major_the_same_with_1_and_2_shards_and_as_on_sim(tmp_path):
    text = TEXT.replace('firmware: {"2.0": 1.0}', 'firmware: {"2.0": 0.5, "3.0": 0.5}').replace(
        '    - version: "4.0"\n      test_build: true\n      defects: {crash_on_coordinator: true}\n', "")
    sc = scenario.load_text(text, "lean-mixed.yaml")
    assert {n.firmware for n in sc.nodes.values()} == {"2.0", "3.0"} and fleetrun.lean_refusal(sc) is None
    one = fleetrun.LeanRun(sc, str(tmp_path / "one")).execute()
    two = fleetrun.LeanRun(sc, str(tmp_path / "two"), shards=2).execute()
    ref = run.run(sc, str(tmp_path / "sim"), plot=False)
    f1, f2 = (dict(r.fleet, shards=None) for r in (one, two))
    assert one.ok and f1 == f2 and one.metrics == two.metrics and f1["fleet"]["converted"] > 0
    key = lambda e: (e["event"], e["image"], e["step"], e.get("clusters"))  # noqa: E731
    lean, sim = ([key(e) for e in _events(tmp_path / d) if e["kind"] == "rollout" and e["event"] in DECISIONS]
                 for d in ("one", "sim"))
    assert lean == sim and lean[-1][:2] == ("complete", "3.0")
    assert set(hello_versions(_events(tmp_path / "two"))[1].values()) == {"3.0"}
