"""Severing a federation (ground/sever.py, docs/CONTAINMENT.md): a region
whose accused coordinator is not replaced within one cycle is severed by the
ground, a region can be severed by order, nothing of a severed region is
delivered outside it afterwards (the router, the metrics and the history
checker each say so), and bad sever entries are refused naming file:line."""

import copy
import os

import pytest

from ground import history, metrics, run, scenario, trace
from ground.yamlfile import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SEVER = os.path.join(ROOT, "scenarios", "containment-sever.yaml")
S = 1_000_000_000


@pytest.fixture(scope="module")
def severed(scenario_runs):
    """The run of scenarios/containment-sever.yaml test_library.py made (conftest.py), or one made now."""
    _, res, out = scenario_runs.get("containment-sever")
    header, events, _ = trace.read(os.path.join(out, "trace.jsonl"))
    return res, header, events


def _region2(header):
    (r2,) = [r for r in header["regions"] if r["region"] == 2]
    return {n for n, info in header["nodes"].items() for c in r2["clusters"] if info["cluster"] == c}


def test_an_accused_coordinator_not_replaced_gets_its_region_severed_after_one_cycle(severed):
    res, header, events = severed
    assert res.ok, res.failures
    (sv,) = [e for e in events if e["kind"] == "fault" and e["fault"] == "sever"]
    accusations = [e for e in events if e["kind"] == "frame" and e["fate"] == "sent" and e["type"] == "accuse"
                   and e["dst"] == 0]
    first = min(e["mission_ns"] for e in accusations)
    assert sv["detail"]["region"] == 2 and sv["detail"]["trigger_ns"] == first
    assert sv["mission_ns"] == first + 60 * S  # one auction cycle (slot_ms) later
    assert "accused and not replaced" in sv["detail"]["cause"]
    assert {str(n) for n in sv["nodes"]} == _region2(header)
    flat = res.metrics["flat"]
    assert (flat["regions_severed"], flat["sever_cycles_max"], flat["severed_frames_honoured"]) == (1, 1.0, 0)


def test_nothing_of_a_severed_region_reaches_anyone_outside_it_and_the_other_region_goes_on(severed):
    res, header, events = severed
    (sv,) = [e for e in events if e["kind"] == "fault" and e["fault"] == "sever"]
    inside = {int(n) for n in _region2(header)}
    sent = {e["id"]: e for e in events if e["kind"] == "frame" and e["fate"] == "sent"}
    after = {i for i, e in sent.items() if e["src"] in inside and e["mission_ns"] >= sv["mission_ns"]}
    fates = [e for e in events if e["kind"] == "frame" and e["fate"] in ("delivered", "dropped") and e["id"] in after]
    outside = [e for e in fates if e["to"] not in inside]
    assert outside and all(e["fate"] == "dropped" and e["reason"] == "severed" for e in outside)
    assert any(e["fate"] == "delivered" for e in fates if e["to"] in inside)  # the region still talks to itself
    rounds_after = {e["src"] for e in sent.values() if e["type"] == "prices" and e["msg"].get("status") == 1
                    and e["mission_ns"] > sv["mission_ns"] + 60 * S}
    assert rounds_after - inside  # region 1's market carries on


def test_the_history_checker_and_the_metrics_catch_a_frame_honoured_after_the_sever(severed, tmp_path):
    res, header, events = severed
    events = copy.deepcopy(events)
    (sv,) = [e for e in events if e["kind"] == "fault" and e["fault"] == "sever"]
    leak = next(e for e in events if e["kind"] == "frame" and e["fate"] == "dropped" and e.get("reason") == "severed"
                and e["mission_ns"] > sv["mission_ns"])
    leak.update(fate="delivered", delay_ns=0)
    leak.pop("reason")
    got = [v for v in history.check_events(header, events).violations if v.invariant == "sever_respected"]
    assert len(got) == 1 and ("frame %d" % leak["id"]) in got[0].message, [str(v) for v in got]
    assert metrics.compute(header, events)["flat"]["severed_frames_honoured"] == 1


def test_the_ground_can_order_a_region_severed(tmp_path):
    # 120 mission s, not the scenario's 600: the sever is ordered at 30 s, and the history
    # checker (res.ok) judges 90 s of deliveries after it (sever_respected)
    text = open(SEVER, encoding="utf-8").read()
    assert "\nduration_s: 600\n" in text
    text = text.replace("\nduration_s: 600\n", "\nduration_s: 120\n")
    text = text.replace(", sever: unreplaced", "").replace("defect_lineage: 1, ", "")
    text = text.replace("gates:\n  split_brain: {max: 0}\n  accusers: {min: 2}\n",
                        "faults:\n  - {at_s: 30, sever: 1}\ngates:\n  split_brain: {max: 0}\n")
    sc = scenario.load_text(text, SEVER)
    res = run.run(sc, str(tmp_path), plot=False)
    assert res.ok, res.failures
    _, events, _ = trace.read(str(tmp_path / "trace.jsonl"))
    (sv,) = [e for e in events if e["kind"] == "fault" and e["fault"] == "sever"]
    assert sv["detail"]["region"] == 1 and sv["detail"]["cause"] == "ordered by the ground"
    assert sv["mission_ns"] == 30 * S and res.metrics["flat"]["sever_cycles_max"] == 0.0
    assert sorted(sv["nodes"]) == list(range(1, 11))


@pytest.mark.parametrize("old,new,says", [
    ("sever: unreplaced}", "sever: sometimes}", "sever: 'unreplaced'"),
    ("gates:", "faults:\n  - {at_s: 30, sever: 9}\ngates:", "step sever: unknown region 9 (regions: [1, 2])"),
    ("auditors: [11, 12, 16, 17], lineages: enforce,", "", "sever: unreplaced needs auditors"),
    ("gates:", "faults:\n  - {at_s: 30, reinstate: 99}\ngates:", "fault reinstate: unknown node 99"),
    ("gates:", "faults:\n  - {at_s: 30, reinstate: coordinator, cluster: 1}\ngates:",
     "step reinstate: node 'coordinator' is in no region with auditors"),
])
def test_a_bad_sever_or_reinstate_is_refused_naming_the_line(old, new, says):
    text = open(SEVER, encoding="utf-8").read()
    assert old in text
    with pytest.raises(ConfigError) as e:
        scenario.load_text(text.replace(old, new), "sv.yaml")
    assert "sv.yaml:" in str(e.value) and says in str(e.value), str(e.value)


def test_severing_the_only_region_is_refused():
    text = open(os.path.join(ROOT, "scenarios", "containment-auditors.yaml"), encoding="utf-8").read()
    with pytest.raises(ConfigError) as e:
        scenario.load_text(text.replace("gates:", "faults:\n  - {at_s: 30, sever: 1}\ngates:"), "one.yaml")
    assert "one.yaml:" in str(e.value) and "the scenario's only region" in str(e.value)
