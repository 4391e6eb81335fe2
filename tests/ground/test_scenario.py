"""Scenario loading: valid files load, every kind of mistake names file:line."""

import pytest

from ground import scenario
from ground.yamlfile import ConfigError

GOOD = """\
name: t
duration_s: 10
clusters:
  - {id: 1, nodes: [1, 2, 3]}
links:
  intra_cluster: {delay_ms: 100, loss: 0.01}
faults:
  - {at_s: 2, crash: coordinator, cluster: 1}
gates:
  split_brain: {max: 0}
"""


def _err(text):
    with pytest.raises(ConfigError) as e:
        scenario.load_text(text, "s.yaml")
    return str(e.value)


def test_good_scenario_loads():
    sc = scenario.load_text(GOOD, "s.yaml")
    assert sorted(sc.nodes) == [1, 2, 3]
    assert sc.link_spec(1, 2) == {"delay_ms": 100, "loss": 0.01}
    assert sc.faults[0].action == "crash" and sc.faults[0].target == "coordinator"


def test_shipped_scenarios_load():
    import glob

    paths = glob.glob("scenarios/*.yaml")
    assert paths
    for p in paths:
        scenario.load(p)


def test_unknown_top_level_key_names_line():
    msg = _err(GOOD + "colour: blue\n")
    assert msg.startswith("s.yaml:11:") and "colour" in msg


def test_typo_in_link_model_names_file_line_and_key():
    msg = _err(GOOD.replace("delay_ms: 100", "dealy_ms: 100"))
    assert "s.yaml:6" in msg and "dealy_ms" in msg


def test_bad_probability_is_refused():
    msg = _err(GOOD.replace("loss: 0.01", "loss: 1.5"))
    assert "s.yaml:6" in msg and "loss" in msg


def test_unknown_node_in_fault():
    msg = _err(GOOD.replace("crash: coordinator, cluster: 1", "crash: 9"))
    assert "s.yaml:8" in msg and "unknown node 9" in msg


def test_coordinator_fault_needs_cluster():
    msg = _err(GOOD.replace(", cluster: 1}", "}"))
    assert "say which cluster" in msg


def test_node_in_two_clusters():
    msg = _err(GOOD.replace("  - {id: 1, nodes: [1, 2, 3]}", "  - {id: 1, nodes: [1, 2, 3]}\n  - {id: 2, nodes: [3, 4]}"))
    assert "node 3 is in two clusters" in msg


def test_more_than_three_major_versions_refused():
    text = GOOD + "nodes:\n  1: {firmware: '1.0'}\n  2: {firmware: '2.0'}\n  3: {firmware: '3.1'}\n"
    text = text.replace("nodes: [1, 2, 3]", "nodes: [1, 2, 3, 4]").replace("{id: 1,", "{id: 1, firmware: '4.0',")
    msg = _err(text)
    assert "4 firmware major versions" in msg


def test_yaml_syntax_error_names_line():
    msg = _err(GOOD + "bad: [unclosed\n")
    assert msg.startswith("s.yaml:")


def test_duplicate_key_is_an_error():
    msg = _err(GOOD + "seed: 1\nseed: 2\n")
    assert "duplicate key 'seed'" in msg


def test_missing_file_names_it():
    with pytest.raises(ConfigError) as e:
        scenario.load("no/such/file.yaml")
    assert "no/such/file.yaml" in str(e.value)


def test_unknown_partition_kind_names_line():
    msg = _err(GOOD.replace("crash: coordinator, cluster: 1", "partition: {star: 1}"))
    assert "s.yaml:8" in msg and "star" in msg
