"""A severed region reinstated by the ground (ground/sever.py, step
`reinstate_region`, docs/CONTAINMENT.md "Severing a federation"): its frames
are dropped outside it only between the sever point and the reinstatement,
the history checker and the metrics agree, a delivery inside that window is
still caught, and a bad step is refused naming file:line."""

import copy
import os

import pytest

from ground import history, metrics, run, scenario, trace
from ground.yamlfile import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SEVER = os.path.join(ROOT, "scenarios", "containment-sever.yaml")
S = 1_000_000_000


def _text(steps):
    text = open(SEVER, encoding="utf-8").read().replace("duration_s: 600", "duration_s: 240")
    return text.replace("gates:", "faults:\n%sgates:" % "".join("  - %s\n" % s for s in steps))


@pytest.fixture(scope="module")
def reinstated(tmp_path_factory):
    out = tmp_path_factory.mktemp("reinstate")
    sc = scenario.load_text(_text(["{at_s: 180, reinstate_region: 2}"]), SEVER)
    res = run.run(sc, str(out), plot=False)
    header, events, _ = trace.read(str(out / "trace.jsonl"))
    return res, header, events


def _region2():
    return set(range(11, 21))


def test_a_reinstated_region_is_heard_again_and_only_the_window_between_is_cut(reinstated):
    res, header, events = reinstated
    assert res.ok, res.failures
    (sv,) = [e for e in events if e["kind"] == "fault" and e["fault"] == "sever"]
    (ri,) = [e for e in events if e["kind"] == "fault" and e["fault"] == "reinstate_region"]
    assert ri["mission_ns"] == 180 * S and sorted(ri["nodes"]) == sorted(_region2())
    assert ri["detail"]["region"] == 2 and ri["detail"]["severed_ns"] == 180 * S - sv["mission_ns"]
    sent = {e["id"]: e for e in events if e["kind"] == "frame" and e["fate"] == "sent" and e["src"] in _region2()}
    cut = [e for e in events if e["kind"] == "frame" and e.get("reason") == "severed"]
    assert cut and all(sv["mission_ns"] <= sent[e["id"]]["mission_ns"] < ri["mission_ns"] for e in cut)
    later = [e for e in events if e["kind"] == "frame" and e["fate"] == "delivered" and e["id"] in sent
             and sent[e["id"]]["mission_ns"] > ri["mission_ns"] and e["to"] not in _region2()]
    assert any(e["to"] == 0 for e in later)  # the ground hears region 2 again
    flat = res.metrics["flat"]
    assert (flat["regions_severed"], flat["severed_frames_honoured"]) == (1, 0)
    (row,) = res.metrics["containment"]["severed"]
    assert row["reinstated_at_s"] == 180.0
    assert [v for v in history.check_events(header, events).violations if v.invariant == "sever_respected"] == []


def test_a_delivery_inside_the_window_is_still_caught(reinstated):
    _, header, events = reinstated
    events = copy.deepcopy(events)
    leak = next(e for e in events if e["kind"] == "frame" and e.get("reason") == "severed")
    leak.update(fate="delivered", delay_ns=0)
    leak.pop("reason")
    got = [v for v in history.check_events(header, events).violations if v.invariant == "sever_respected"]
    assert len(got) == 1 and ("frame %d" % leak["id"]) in got[0].message
    assert metrics.compute(header, events)["flat"]["severed_frames_honoured"] == 1


@pytest.mark.parametrize("steps,says", [
    (["{at_s: 30, reinstate_region: 9}"], "step reinstate_region: unknown region 9 (regions: [1, 2])"),
    (["{at_s: 30, reinstate_region: 1}"], "step reinstate_region: region 1 is never severed before it"),
    (["{at_s: 30, reinstate_region: 1}", "{at_s: 60, sever: 1}"], "region 1 is never severed before it"),
])
def test_a_bad_reinstate_region_is_refused_naming_the_line(steps, says):
    with pytest.raises(ConfigError) as e:
        scenario.load_text(_text(steps), "rr.yaml")
    assert "rr.yaml:" in str(e.value) and says in str(e.value), str(e.value)
