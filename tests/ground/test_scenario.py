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


# ---- guards against runs that cannot work (ground/guards.py, ground/gates.py) ----

MARKET3 = """\
name: m3
duration_s: 600
clusters:
  - {id: 1, nodes: [1, 2, 3]}
  - {id: 2, nodes: [4, 5, 6]}
  - {id: 3, nodes: [7, 8, 9]}
links:
  intra_cluster: {delay_ms: 50}
  inter_cluster: {delay_ms: 2500}
market: {electors: [1, 4, 7], units: [1, 1, 1, 1, 1, 1, 1, 1], slot_ms: 24000}
"""


def test_region_timeout_under_the_electors_round_trip_is_refused_with_a_value_that_works():
    msg = _err(MARKET3)
    assert msg.startswith("s.yaml:10:"), msg
    assert "region_timeout_ms = 1000 ms (the default)" in msg and "5000 ms" in msg and "nodes 1 and 4" in msg
    assert "at least 15000" in msg
    sc = scenario.load_text(MARKET3.replace("slot_ms: 24000", "slot_ms: 24000, region_timeout_ms: 15000"), "s.yaml")
    assert sc.market.region_timeout_ms == 15000 and not sc.warnings


def test_region_timeout_under_three_round_trips_warns_with_file_line():
    sc = scenario.load_text(MARKET3.replace("slot_ms: 24000", "slot_ms: 24000,\n          region_timeout_ms: 6000"),
                            "s.yaml")
    (w,) = sc.warnings
    assert w.startswith("s.yaml:11:") and "6000 ms" in w and "under 3 light round trips" in w and "15000" in w


def test_election_timeout_under_the_round_trip_with_jitter_is_refused():
    text = GOOD.replace("delay_ms: 100, loss: 0.01", "delay_ms: 900, jitter: normal, jitter_ms: 50")
    msg = _err(text)  # round trip 2 x (900 + 3 x 50) = 2100 > the default 2000
    assert msg.startswith("s.yaml:1:") and "(the default)" in msg and "2100 ms" in msg and "6300" in msg, msg
    msg = _err(text.replace("duration_s: 10", "duration_s: 10\nelection_timeout_ms: 1500"))
    assert msg.startswith("s.yaml:3:") and "1500 ms" in msg and "cluster 1" in msg, msg
    sc = scenario.load_text(text.replace("duration_s: 10", "duration_s: 10\nelection_timeout_ms: 4000"), "s.yaml")
    assert len(sc.warnings) == 1 and "4000 ms" in sc.warnings[0]


def test_a_market_gets_the_rounds_gate_unless_it_says_otherwise():
    text = MARKET3.replace("slot_ms: 24000", "slot_ms: 24000, region_timeout_ms: 15000")
    assert scenario.load_text(text, "s.yaml").gates == {"market_rounds_complete": {"min": 1}}
    own = scenario.load_text(text + "gates:\n  market_rounds_complete: {min: 5}\n", "s.yaml")
    assert own.gates == {"market_rounds_complete": {"min": 5}}
    off = scenario.load_text(text + "gates:\n  market_rounds_complete: off\n  split_brain: {max: 0}\n", "s.yaml")
    assert off.gates == {"split_brain": {"max": 0}}
    assert scenario.load_text(GOOD, "s.yaml").gates == {"split_brain": {"max": 0}}  # no market, no default


def test_a_refused_market_value_per_roster_node_is_shown_by_its_start_and_its_count():
    from ground import regions
    from ground.yamlfile import Located

    m = Located({"electors": [1, 2]})
    m.path, m.line = "s.yaml", 7
    msg = str(regions._refused(m, "region 1", {"cluster_of": list(range(700)), "electors": [1, 2]},
                               "market: auditors must be electors, cluster_of one cluster id per roster node"))
    assert msg.startswith("s.yaml:7: region 1: market: auditors must be electors") and "electors [1, 2]" in msg
    assert "cluster_of [0, 1, 2, 3, 4, 5, 6, 7, ... (700 in all)]" in msg and "auditors ()" in msg, msg


@pytest.mark.parametrize("bound", [".nan", ".inf", "-.inf", "x"])
def test_a_gate_bound_that_is_not_a_finite_number_is_refused_at_its_line(bound):
    # a min of .nan could never hold, and loaded without a word
    msg = _err(GOOD.replace("split_brain: {max: 0}", "split_brain: {max: %s}" % bound))
    assert msg.startswith("s.yaml:10: gates.split_brain.max: ") and "is not a finite number" in msg, msg


def test_unknown_gate_metric_is_refused_at_load_with_its_line():
    msg = _err(GOOD.replace("split_brain: {max: 0}", "split_brains: {max: 0}"))
    assert msg.startswith("s.yaml:10:") and "'split_brains'" in msg and "split_brain" in msg, msg
    msg = _err(GOOD.replace("split_brain: {max: 0}", "split_brain: {most: 0}"))
    assert msg.startswith("s.yaml:10:") and "most" in msg
    msg = _err(GOOD.replace("split_brain: {max: 0}", "split_brain: off"))
    assert msg.startswith("s.yaml:10:") and "default gate" in msg


def test_fault_at_or_after_the_end_is_refused():
    msg = _err(GOOD.replace("at_s: 2,", "at_s: 10,"))
    assert msg.startswith("s.yaml:8:") and "at_s 10" in msg and "duration_s 10" in msg


def test_restart_or_power_on_of_a_running_node_is_refused():
    msg = _err(GOOD.replace("crash: coordinator, cluster: 1", "restart: 2"))
    assert msg.startswith("s.yaml:8:") and "node 2 is running" in msg and "reset: 2" in msg
    back = GOOD.replace("  - {at_s: 2, crash: coordinator, cluster: 1}\n",
                        "  - {at_s: 2, power_cut: 2, duration_s: 3}\n  - {at_s: 5, power_on: 2}\n")
    msg = _err(back)  # the power_cut's duration already brought it back at 5 s
    assert msg.startswith("s.yaml:9:") and "power_on" in msg and "brought back by s.yaml:8" in msg, msg
    ok = GOOD.replace("  - {at_s: 2, crash: coordinator, cluster: 1}\n",
                      "  - {at_s: 2, crash: 2}\n  - {at_s: 4, restart: 2}\n  - {at_s: 5, reset: 2}\n"
                      "  - {at_s: 6, power_cut: 2}\n  - {at_s: 7, power_on: 2}\n")
    assert [f.action for f in scenario.load_text(ok, "s.yaml").faults] == ["crash", "restart", "reset", "power_cut", "power_on"]


def test_autonomy_before_cutoff_says_both_values_and_where_they_came_from():
    text = MARKET3.replace("slot_ms: 24000", "slot_ms: 24000, region_timeout_ms: 15000, autonomy_after_ms: 50000")
    msg = _err(text)
    assert msg.startswith("s.yaml:10:"), msg
    assert "autonomy_after_ms = 50000 (s.yaml:10)" in msg and "cutoff_ms = 51000 (the default 2 slot_ms + lead_ms" in msg
    assert "at least 51000" in msg



@pytest.mark.parametrize("given, line, needle", [
    # the firmware's MarketConfig words its refusals without numbers (a board's flash): the ground
    # adds each named argument's value, given or default, at the line of the first the file gives
    ("  slot_ms: 24001", 13, "market: slot_ms must be a multiple of steps_per_slot"
                             " (slot_ms 24001, steps_per_slot 12 (the default))"),
    ("  slot_ms: 24000\n  steps_per_slot: 7", 13, "(slot_ms 24000, steps_per_slot 7)"),
    ("  slot_ms: 24000\n  lead_ms: 30000", 14, "market: lead_ms must be inside a slot (lead_ms 30000)"),
    ("  slot_ms: 24000\n  horizon_slots: 12", 14, "horizon_slots must be a multiple of 8 in 8..1024 (horizon_slots 12)"),
    ("  slot_ms: 24000\n  window_slots: 125", 14, "(window_slots 125)"),
])
def test_a_market_setting_the_firmware_refuses_is_named_with_its_value_at_its_line(given, line, needle):
    text = MARKET3.replace("market: {electors: [1, 4, 7], units: [1, 1, 1, 1, 1, 1, 1, 1], slot_ms: 24000}",
                           "market:\n  electors: [1, 4, 7]\n  units: [1, 1, 1, 1, 1, 1, 1, 1]\n%s\n"
                           "  region_timeout_ms: 15000" % given)
    msg = _err(text)
    assert msg.startswith("s.yaml:%d: " % line) and needle in msg, msg


def test_a_mission_that_ends_before_the_gates_rounds_can_close_warns_with_the_duration_that_works():
    ok = MARKET3.replace("slot_ms: 24000", "slot_ms: 24000, region_timeout_ms: 15000")
    # round r closes at (r + 1) slot_ms - lead_ms: the first at 21 s (lead_ms: slot / 8)
    for duration, warned in ((21, True), (21.001, False), (600, False)):
        sc = scenario.load_text(ok.replace("duration_s: 600", "duration_s: %s" % duration), "s.yaml")
        assert bool(sc.warnings) == warned, (duration, sc.warnings)
    (w,) = scenario.load_text(ok.replace("duration_s: 600", "duration_s: 20"), "s.yaml").warnings
    assert w.startswith("s.yaml:2: duration_s 20 ends before market_rounds_complete >= 1 (its default"), w
    assert "the first at 21 s" in w and "past 21 s" in w and "market_rounds_complete: off" in w
    # a gate asking for 3 rounds: the third closes at 69 s; turned off: no warning
    (w,) = scenario.load_text(ok.replace("duration_s: 600", "duration_s: 50") +
                              "gates:\n  market_rounds_complete: {min: 3}\n", "s.yaml").warnings
    assert ">= 3 (the gates)" in w and "2 round(s) close" in w and "past 69 s" in w, w
    off = ok.replace("duration_s: 600", "duration_s: 20") + "gates:\n  market_rounds_complete: off\n"
    assert not scenario.load_text(off, "s.yaml").warnings
    # any number of rounds: the duration that works is found by bisection, not by listing the rounds
    # (listing them took all the memory of a test that mutates gates to 1e12)
    (w,) = scenario.load_text(ok + "gates:\n  market_rounds_complete: {min: 1000000000000}\n", "s.yaml").warnings
    assert "25 round(s) close" in w and "past 2.4e+13 s" in w, w

def test_hardware_generations_beyond_the_catalogue_are_refused():
    msg = _err(GOOD.replace("nodes: [1, 2, 3]}", "nodes: [1, 2, 3], hw_gen: 4}"))
    assert msg.startswith("s.yaml:4:") and "generation 4 is not defined" in msg and "1..3" in msg
    msg = _err(GOOD + "nodes:\n  2: {hw_gen: 0}\n")
    assert msg.startswith("s.yaml:12:") and "generation 0" in msg


def test_age_slots_per_cluster_and_node():
    sc = scenario.load_text(GOOD.replace("nodes: [1, 2, 3]}", "nodes: [1, 2, 3], age_slots: 100}")
                            + "nodes:\n  3: {age_slots: 900}\n", "s.yaml")
    assert [sc.nodes[n].age_slots for n in (1, 2, 3)] == [100, 100, 900]
    from ground import run

    assert run.node_config(sc, 3).age_slots == 900
    msg = _err(GOOD + "nodes:\n  3: {age_slots: -1}\n")
    assert msg.startswith("s.yaml:12:") and "age_slots" in msg


def test_the_ground_link_is_a_link_end_in_pairs():
    sc = scenario.load_text(GOOD.replace("intra_cluster: {delay_ms: 100, loss: 0.01}",
                                         "intra_cluster: {delay_ms: 100}\n  ground: {delay_ms: 500, loss: 0.5}\n"
                                         "  pairs: [{src: 1, dst: 0, delay_ms: 9000}]"), "s.yaml")
    assert sc.link_spec(1, 0) == {"delay_ms": 9000}
    assert sc.link_spec(0, 1) == sc.link_spec(2, 0) == {"delay_ms": 500, "loss": 0.5}
    msg = _err(GOOD.replace("intra_cluster: {delay_ms: 100, loss: 0.01}", "pairs: [{src: 0, dst: 0}]"))
    assert "s.yaml:6" in msg and "both 0" in msg


def test_intent_steps_are_checked_with_the_firmwares_rules():
    base = MARKET3.replace("slot_ms: 24000", "slot_ms: 24000, region_timeout_ms: 15000") + "faults:\n"
    sc = scenario.load_text(base + "  - {at_s: 9, intent: {phase: consolidate, preapproved: [launch]}, cluster: 2}\n"
                            "  - {at_s: 3, intent: {growth_permille: 600, campaign: {start_s: 100, end_s: 200}}}\n",
                            "s.yaml")
    assert [(f.at_s, f.cluster, f.target) for f in sc.faults] == [
        (3, None, (1, 100, 200, 600, 1000, 0, 0)), (9, 2, (2, 0, 0, 300, 1000, 1, 1))]  # seq in time order
    for bad, why in (("{phase: shrink}", "phase: 'shrink' unknown"), ("{cover_permille: 100}", "500..1000"),
                     ("{campaign: {start_s: 9, end_s: 5}}", "horizon"), ("{seq: 0}", "1..4294967295"),
                     ("{colour: 1}", "unknown key 'colour'")):
        msg = _err(base + "  - {at_s: 3, intent: %s}\n" % bad)
        assert msg.startswith("s.yaml:12:") and why in msg, msg
    msg = _err(base + "  - {at_s: 3, intent: {seq: 5}}\n  - {at_s: 4, intent: {seq: 5}}\n")
    assert msg.startswith("s.yaml:13:") and "replay" in msg
    msg = _err(base + "  - {at_s: 3, intent: {}, nodes: [1]}\n")
    assert "never to nodes" in msg


def test_restart_of_the_coordinator_is_refused():
    msg = _err(GOOD.replace("crash: coordinator, cluster: 1", "restart: coordinator, cluster: 1"))
    assert msg.startswith("s.yaml:8:") and "running node" in msg and "duration_s" in msg


def test_load_prints_warnings_to_stderr_with_file_line(tmp_path, capsys):
    path = tmp_path / "w.yaml"
    path.write_text(GOOD.replace("delay_ms: 100, loss: 0.01", "delay_ms: 400"))  # round trip 800 > 2000 / 3
    sc = scenario.load(str(path))
    err = capsys.readouterr().err
    assert err == "warning: %s\n" % sc.warnings[0] and err.startswith("warning: %s:1: cluster 1:" % path)


def test_intent_without_a_market_is_refused():
    msg = _err(GOOD.replace("crash: coordinator, cluster: 1", "intent: {growth_permille: 500}"))
    assert msg.startswith("s.yaml:8:") and "no market" in msg


@pytest.mark.parametrize("old, new, needle", [
    ("  - {id: 1, nodes: [1, 2, 3]}", "  - 7", "s.yaml:4: clusters[0]: expected a mapping, got 7"),
    ("  intra_cluster: {delay_ms: 100, loss: 0.01}", "", None),
    ("  - {at_s: 2, crash: coordinator, cluster: 1}", "  - crash", "s.yaml:8: faults[0]: expected a mapping, got 'crash'"),
])
def test_an_entry_that_is_not_a_mapping_is_refused_at_its_line(old, new, needle):
    if needle is None:  # links: with nothing under it is null, then links: 5 is a number
        text = GOOD.replace("links:\n" + old + "\n", "links: 5\n")
        needle = "s.yaml:5: links: expected a mapping, got 5"
    else:
        text = GOOD.replace(old, new)
    assert text != GOOD
    assert _err(text).startswith(needle), _err(text)


def test_a_null_delay_with_cluster_positions_is_no_delay():
    text = GOOD.replace("  - {id: 1, nodes: [1, 2, 3]}", "  - {id: 1, nodes: [1, 2, 3]}\n  - {id: 2, nodes: [4, 5, 6]}")
    text = text.replace("  intra_cluster: {delay_ms: 100, loss: 0.01}",
                        "  intra_cluster: {delay_ms: 100, loss: 0.01}\n  inter_cluster: {delay_ms: null, loss: 0.01}\n"
                        "  positions: {1: [0, 0], 2: [30, 40]}")
    sc = scenario.load_text(text, "s.yaml")
    assert sc.link_spec(1, 4) == {"delay_ms": 50.0, "loss": 0.01}  # the light time alone: 50 ms
