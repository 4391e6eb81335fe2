"""A fault aimed at one lineage (ground/lineagefault.py) and its blast radius
(ground/metrics/blast.py, docs/CONTAINMENT.md "Containment, measured"): bad
entries are refused naming file:line; a run strikes every node of the lineage
at once, and the blast metrics say what it cost; a latent clearing defect is
found and quarantined in a mixed fleet and never found in a monoculture."""

import os

import pytest

from ground import run, scenario, trace
from ground.yamlfile import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SMALL = """\
name: t
duration_s: 60
election_timeout_ms: 1000
clusters:
  - {id: 1, nodes: [1, 2, 3, 4, 5, 6], lineages: [0, 1, 2]}
faults:
  - {at_s: 20, lineage_fault: %s%s}
"""


def _load(spec, extra=""):
    return scenario.load_text(SMALL % (spec, extra), "lf.yaml")


def test_a_lineage_fault_strikes_every_node_of_the_lineage():
    sc = _load("{lineage: 1, kind: crash}", ", duration_s: 10")
    (f,) = sc.faults
    assert (f.action, f.target, f.duration_s) == ("lineage_fault", [2, 5], 10)
    assert f.params == {"lineage": 1, "kind": "crash"}


@pytest.mark.parametrize("spec,extra,says", [
    ("{lineage: 1, kind: melt}", "", "lineage_fault.kind: 'melt' unknown"),
    ("{lineage: 7, kind: crash}", "", "no node is of lineage 7 (lineages here: [0, 1, 2])"),
    ("{lineage: 300, kind: crash}", "", "a lineage 0..255"),
    ("{kind: crash}", "", "lineage"),
    ("2", "", "a mapping {lineage: L, kind:"),
    ("{lineage: 1, kind: crash, rewrite: stale_term}", "", "rewrite goes with kind byzantine only"),
    ("{lineage: 1, kind: byzantine, rewrite: forge}", "", "rewrite 'forge' unknown"),
    ("{lineage: 1, kind: crash}", ", cluster: 1", "strikes a lineage wherever it runs"),
    ("{lineage: 1, kind: clearing_defect}", "", "at_s must be 0"),
])
def test_a_bad_lineage_fault_is_refused_naming_the_line(spec, extra, says):
    with pytest.raises(ConfigError) as e:
        _load(spec, extra)
    assert "lf.yaml:7" in str(e.value) and says in str(e.value), str(e.value)


def test_a_clearing_defect_needs_a_market_and_plants_it_in_the_lineage():
    text = (SMALL % ("{lineage: 1, kind: clearing_defect}", "")).replace("at_s: 20", "at_s: 0")
    with pytest.raises(ConfigError) as e:
        scenario.load_text(text, "lf.yaml")
    assert "lf.yaml:7" in str(e.value) and "has no market" in str(e.value)
    market = "market:\n  electors: [1, 2]\n  units: [1, 1, 1, 1, 1, 1, 1, 1]\n  slot_ms: 60000\n"
    sc = scenario.load_text(text + market, "lf.yaml")
    assert sc.market.defect_lineage == 1 and sc.market_args["defect_lineage"] == 1
    with pytest.raises(ConfigError) as e:
        scenario.load_text(text + market + "  defect_lineage: 0\n", "lf.yaml")
    assert "already plants a defect in lineage 0" in str(e.value)


def test_a_run_strikes_the_lineage_at_once_and_measures_the_blast(tmp_path):
    # lineage 1 is nodes 2 and 5; with this seed node 5 is the cluster's coordinator at 20 s
    sc = _load("{lineage: 1, kind: crash}", ", duration_s: 10")
    res = run.run(sc, str(tmp_path), plot=False)
    assert res.ok, res.failures
    _, events, _ = trace.read(str(tmp_path / "trace.jsonl"))
    faults = [e for e in events if e["kind"] == "fault"]
    (lf,) = [e for e in faults if e["fault"] == "lineage_fault"]
    assert lf["nodes"] == [2, 5] and lf["detail"]["kind"] == "crash" and lf["detail"]["lineage"] == 1
    crashes = [e for e in faults if e["fault"] == "crash"]
    assert sorted(e["node"] for e in crashes) == [2, 5]
    assert {e["mission_ns"] for e in crashes} == {lf["mission_ns"]}  # at once
    assert sorted(e["node"] for e in faults if e["fault"] == "restart") == [2, 5]
    flat, blast = res.metrics["flat"], res.metrics["blast"]
    assert blast["struck"] == [2, 5] and blast["coordinators_struck"] == [1]
    assert flat["blast_nodes_struck"] == 2 and flat["blast_coordinators_struck"] == 1
    # the survivors noticed (a pre-vote), elected one of theirs: a gap of a few election timeouts
    assert blast["detected_by"].split()[-1] not in ("2", "5")
    assert 0 < flat["blast_detect_s"] <= flat["blast_restored_s"] < 10
    assert 0 < flat["blast_headless_s"] < 10


DEFECT_MISSION_S = 480


def _defect(path):
    """The scenario with a clearing defect in lineage 0 from the start, no
    gates, and 480 mission s instead of 900 (8 one-minute market slots): the
    mixed fleet quarantines the defective node at about 294 s and its market
    clears again from the next slot, so rounds after the quarantine are
    counted; the monoculture is given the same 480 s, over 1.5 times what the
    mixed fleet needed to find it."""
    text = open(os.path.join(ROOT, path), encoding="utf-8").read()
    assert "\nduration_s: 900\n" in text
    text = text.replace("{at_s: 300, lineage_fault: {lineage: 0, kind: crash}, duration_s: 120}",
                        "{at_s: 0, lineage_fault: {lineage: 0, kind: clearing_defect}}")
    text = text.replace("\nduration_s: 900\n", "\nduration_s: %d\n" % DEFECT_MISSION_S)
    return scenario.load_text(text.split("\ngates:")[0] + "\n", path)


def test_a_latent_clearing_defect_is_quarantined_in_the_mixed_fleet_and_never_found_in_the_monoculture(tmp_path):
    mixed = run.run(_defect("scenarios/containment-mixed.yaml"), str(tmp_path / "mixed"), plot=False).metrics["flat"]
    mono = run.run(_defect("scenarios/containment-monoculture.yaml"), str(tmp_path / "mono"), plot=False).metrics["flat"]
    assert mixed["accusers"] >= 2 and mixed["quarantined_nodes"] == 1
    assert mixed["blast_quarantine_s"] is not None and mixed["blast_restored_s"] is not None
    assert mixed["blast_quarantine_s"] * 1.5 <= DEFECT_MISSION_S  # the monoculture had time to find it too
    assert mixed["blast_rounds_struck"] < mixed["market_rounds_complete"]
    # one lineage everywhere: every auditor runs the defective clearing too, so nobody accuses
    assert mono["accusations"] == 0 and mono["blast_detect_s"] is None and mono["blast_restored_s"] is None
    assert mono["blast_rounds_struck"] == mono["market_rounds_complete"] > 0
