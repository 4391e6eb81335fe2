"""The engine's public live-run API (ground/live.py) without pytest's plugin:
in-process nodes in virtual time, so every figure is exact."""

import pytest

from ground import scenario, trace
from ground.live import Live, WaitTimeout

SC = """\
name: live
seed: 3
duration_s: 40
election_timeout_ms: 2000
clusters:
  - {id: 1, nodes: [1, 2, 3]}
links:
  intra_cluster: {delay_ms: 100}
"""


def test_wait_step_and_result(tmp_path):
    sc = scenario.load_text(SC, "live.yaml")
    with Live(sc, str(tmp_path / "run"), name="test_live") as live:
        c = live.wait_for(lambda f: f.agreed(1), timeout_s=8, what="a coordinator")
        t0 = live.now_s
        live.wait_s(2)
        assert live.now_s == pytest.approx(t0 + 2, abs=0.002)
        live.step({"crash": c})
        rest = [n for n in (1, 2, 3) if n != c]
        new = live.wait_for(lambda f: f.agreed(1, nodes=rest) not in (None, c) and f.agreed(1, nodes=rest),
                            timeout_s=8)
        assert new in rest and live.fleet.node(c).down
    res = live.result
    assert res.ok, res.failures
    _, events, _ = trace.read(str(tmp_path / "run" / "trace.jsonl"))
    crash = [e for e in events if e["kind"] == "fault" and e.get("fault") == "crash"]
    assert len(crash) == 1 and crash[0]["node"] == c and crash[0]["detail"]["where"].startswith("step 1 of test_live")
    assert crash[0]["mission_ns"] == pytest.approx((t0 + 2) * 1e9, abs=2e6)


def test_a_wait_that_never_holds_times_out_in_mission_time(tmp_path):
    sc = scenario.load_text(SC, "live.yaml")
    with Live(sc, str(tmp_path / "run")) as live:
        with pytest.raises(WaitTimeout) as e:
            live.wait_for(lambda f: f.agreed(1) == 99, timeout_s=5, what="node 99 leading")
        assert "node 99 leading: not within 5 mission s (from 0.0 s to 5.0 s)" in str(e.value)
        with pytest.raises(ValueError):
            live.wait_s(0)  # a wait needs a positive mission-time timeout
    assert live.result.status == "ok"


def test_a_bad_step_names_the_step(tmp_path):
    sc = scenario.load_text(SC, "live.yaml")
    with Live(sc, str(tmp_path / "run"), name="mine") as live:
        with pytest.raises(ValueError) as e:
            live.step({"crash": 42})
        assert "step 1 of mine" in str(e.value) and "42" in str(e.value)
        with pytest.raises(ValueError) as e:
            live.step({"crash": 1, "at_s": 3})
        assert "at_s" in str(e.value)
