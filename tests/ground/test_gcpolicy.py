"""A run's clock loop collects cycles less often (ground/gcpolicy.py) and
puts the process's collector thresholds back when it ends, ended well or
not; cycles made during a run are still collected."""

import gc

import pytest

from bench.bench_fleet import fleet_text
from ground import gcpolicy, run, scenario


def _sc():
    return scenario.load_text(fleet_text(nodes=20, duration_s=3), "<gcpolicy>")


@pytest.fixture
def thresholds():
    before = gc.get_threshold()
    gc.set_threshold(500, 7, 9)  # the test's own, to see them come back
    yield
    gc.set_threshold(*before)


def test_a_run_uses_the_policy_and_restores_the_thresholds(tmp_path, thresholds):
    seen = []
    r = run.Run(_sc(), str(tmp_path), plot=False)
    r.listeners.append(lambda e: e.get("fate") == "delivered" and seen.append(gc.get_threshold()))
    assert r.execute().status == "ok"
    assert len(seen) > 100  # every delivery happens while the clock runs
    assert set(seen) == {(gcpolicy.GEN0, gcpolicy.GEN1, gcpolicy.GEN2)}, set(seen)
    assert gc.get_threshold() == (500, 7, 9)


def test_the_thresholds_come_back_when_the_run_dies(tmp_path, thresholds):
    r = run.Run(_sc(), str(tmp_path), plot=False)

    def boom(e):
        if e.get("fate") == "delivered":
            raise RuntimeError("a listener broke")

    r.listeners.append(boom)
    with pytest.raises(RuntimeError, match="a listener broke"):
        r.execute()
    assert gc.get_threshold() == (500, 7, 9)


def test_cycles_made_during_the_policy_are_still_collected():
    class Cycle:
        pass

    gc.collect()
    young_before = gc.get_stats()[0]["collections"]
    with gcpolicy.during_run():
        for _ in range(3 * gcpolicy.GEN0 * gcpolicy.GEN1):
            a, b = Cycle(), Cycle()
            a.other, b.other = b, a  # garbage only the cyclic collector frees
        young = gc.get_stats()[0]["collections"] - young_before
    assert young > 0
    alive = sum(1 for o in gc.get_objects() if type(o) is Cycle)
    assert alive < 2 * gcpolicy.GEN0 * gcpolicy.GEN1, alive  # the young collections freed most of them
