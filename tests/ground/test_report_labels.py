"""A run's metrics.prom says which run it is: every sample carries the
scenario's name and the run folder's name (run_id), so files of many runs can be
scraped or concatenated without losing whose figures they are."""

import re

from test_metrics import check_exposition

from ground import report, run, scenario


def test_every_sample_of_a_runs_metrics_prom_names_scenario_and_run(tmp_path):
    sc = scenario.load("tests/ground/scenarios/skew.yaml")
    res = run.run(sc, str(tmp_path / "skew-run-7"))
    text = open(tmp_path / "skew-run-7" / "metrics.prom", encoding="utf-8").read()
    check_exposition(text)
    samples = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert len(samples) > 50
    for line in samples:
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("{", 1)[1].rsplit("}", 1)[0])) if "{" in line else {}
        assert labels.get("scenario") == "skew" and labels.get("run_id") == "skew-run-7", line
    # the pure function without labels is unchanged: samples keep only their own labels
    plain = report.to_prometheus(res.metrics).splitlines()
    assert "fleetloop_mission_seconds 30.0" in plain
    assert 'fleetloop_split_brain_total{cluster="1"} 0' in plain
