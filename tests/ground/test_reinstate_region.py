"""A severed region reinstated by the ground (ground/sever.py, step
`reinstate_region`, docs/CONTAINMENT.md "Severing a federation"): its frames
are dropped outside it only between the sever point and the reinstatement,
the history checker and the metrics agree, a delivery inside that window is
still caught, and a bad step is refused naming file:line."""

import copy
import os

import pytest

from ground import history, metrics, run, scenario, trace
from ground.firmware import msgs, wire
from node import refusal  # noqa: E402 (ground.firmware puts firmware/ on the path)
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
    r = run.Run(sc, str(out), plot=False)
    res = r.execute()
    header, events, _ = trace.read(str(out / "trace.jsonl"))
    return res, header, events, r


@pytest.fixture(scope="module")
def reinstated_events(reinstated):
    return reinstated[:3]


def _region2():
    return set(range(11, 21))


def test_a_reinstated_region_is_heard_again_and_only_the_window_between_is_cut(reinstated_events):
    res, header, events = reinstated_events
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


def test_a_delivery_inside_the_window_is_still_caught(reinstated_events):
    _, header, events = reinstated_events
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


def test_the_other_regions_electors_are_told_and_their_cores_refuse_the_severed_region(reinstated):
    res, header, events, r = reinstated
    (sv,) = [e for e in events if e["kind"] == "fault" and e["fault"] == "sever"]
    orders = [e for e in events if e["kind"] == "frame" and e["fate"] == "sent" and e["type"] == "sever"]
    assert [(e["src"], e["dst"], e["msg"], e["mission_ns"]) for e in orders] == [
        (0, wire.cluster_addr(0xE01), {"region": 2, "severed": 1}, sv["mission_ns"]),
        (0, wire.cluster_addr(0xE01), {"region": 2, "severed": 0}, 180 * S)]
    for e in orders:
        got = {x["to"] for x in events if x["kind"] == "frame" and x["id"] == e["id"] and x["fate"] == "delivered"}
        assert got == {1, 2, 6, 7}  # region 1's electors; region 2's own nodes are not told
    region = r.router.links[1].node.region
    assert region.severed == ()  # reinstated at 180 s
    # The core's own cut, on a frame the router would not have stopped (a shared radio): node 1's real region.
    now = 240_000
    prices = msgs.pack(msgs.PRICES, 3, 3, 0, 0, 2, 0, msgs.ROUND_COMPLETE, *([1] * 8))
    sever = msgs.pack(msgs.SEVER, 2, 1)
    SEVERED, REGION = refusal.SEVERED, refusal.REGION
    before = (region.refused[SEVERED], region.trader.refused[REGION])
    region.receive(12, wire.ADDR_BROADCAST, msgs.PRICES, prices, now, wire.VERSION)
    assert (region.refused[SEVERED], region.trader.refused[REGION]) == (before[0], before[1] + 1)  # another region's
    region.receive(12, region.dst, msgs.SEVER, sever, now, wire.VERSION)  # only the ground may sever
    assert region.severed == () and region.refused[refusal.FORGED] >= 1
    region.receive(wire.ADDR_GROUND, region.dst, msgs.SEVER, msgs.pack(msgs.SEVER, 1, 1), now, wire.VERSION)
    assert region.severed == ()  # its own region: refused (refusal.REGION)
    region.receive(wire.ADDR_GROUND, region.dst, msgs.SEVER, sever, now, wire.VERSION)
    assert region.severed == (2,)
    region.receive(12, wire.ADDR_BROADCAST, msgs.PRICES, prices, now, wire.VERSION)
    assert (region.refused[SEVERED], region.trader.refused[REGION]) == (before[0] + 1, before[1] + 1)  # severed, counted
    region.receive(wire.ADDR_GROUND, region.dst, msgs.SEVER, msgs.pack(msgs.SEVER, 2, 0), now, wire.VERSION)
    region.receive(12, wire.ADDR_BROADCAST, msgs.PRICES, prices, now, wire.VERSION)
    assert region.severed == () and region.refused[SEVERED] == before[0] + 1 and region.trader.refused[REGION] == before[1] + 2
