"""Time to detect and to quarantine per region on the lean path
(ground/fleet_contain.py, fleet.json "containment"): the same first ACCUSE
and quarantine reports as the --sim run's containment metrics, and the same
figures with 1 and 2 shards."""

from ground import fleetrun, run, scenario

# Two regions of two clusters of five, three lineages mixed; lineage 0's
# coordinator drops a bid at every close (drop_bid, planted from boot).
# Region 1 elects node 1 (lineage 0, with seed 3): its auditors find the
# dropped bid a round later and the electors quarantine it; region 2's
# coordinator is of another lineage: nothing to find.
TWO = """\
name: lean-detect
seed: 3
duration_s: 36
election_timeout_ms: 2000
clusters:
  - {id: 1, nodes: [1, 2, 3, 4, 5], hw_gen: 2, lineages: [0, 1, 2]}
  - {id: 2, nodes: [6, 7, 8, 9, 10], hw_gen: 3, lineages: [0, 1, 2]}
  - {id: 3, nodes: [11, 12, 13, 14, 15], hw_gen: 2, lineages: [0, 1, 2]}
  - {id: 4, nodes: [16, 17, 18, 19, 20], hw_gen: 3, lineages: [0, 1, 2]}
links:
  intra_cluster: {delay_ms: 50, jitter_ms: 5}
  intra_region: {delay_ms: 200}
  inter_region: {delay_ms: 500}
regions:
  - {region: 1, clusters: [1, 2], electors: [1, 2, 6, 7], auditors: [1, 2, 6, 7], lineages: enforce,
     defect_kind: drop_bid, units: [1, 1, 1, 1, 1, 1, 1, 1], slot_ms: 12000, region_timeout_ms: 3000}
  - {region: 2, clusters: [3, 4], electors: [11, 12, 16, 17], auditors: [11, 12, 16, 17], lineages: enforce,
     defect_kind: drop_bid, units: [1, 1, 1, 1, 1, 1, 1, 1], slot_ms: 12000, region_timeout_ms: 3000}
faults:
  - {at_s: 0, lineage_fault: {lineage: 0, kind: clearing_defect}}
"""


def test_the_lean_path_reports_time_to_detect_and_to_quarantine_per_region(tmp_path):
    sc = scenario.load_text(TWO, "lean-detect.yaml")
    ref = run.run(sc, str(tmp_path / "sim"), plot=False)
    one = fleetrun.run(sc, str(tmp_path / "one"))
    two = fleetrun.LeanRun(sc, str(tmp_path / "two"), shards=2)
    assert len(two.plan) == 2  # a region per shard
    two = two.execute()
    got = one.fleet["containment"]
    assert got == two.fleet["containment"]
    c = ref.metrics["containment"]
    # What --sim's metrics say, from the frames the nodes sent the ground.
    first = min(c["accusations"], key=lambda a: a["at_s"])
    quarantined = [q for q in c["changes"] if q["state"] == "quarantined"]
    by = sorted(quarantined, key=lambda q: q["at_s"])
    majority = by[len(sc.regions[0].electors) // 2]  # the third of four electors
    r1, r2 = got["1"], got["2"]
    assert (r1["detect_s"], r1["accused"], r1["accused_round"]) == (first["at_s"], first["accused"], first["round"])
    assert r1["accused"] == 1 and r1["accused_lineage"] == 0
    assert r1["accusations"] == len(c["accusations"])
    assert r1["accusers"] == len({a["auditor"] for a in c["accusations"]})
    assert r1["quarantine_s"] == by[0]["at_s"] and r1["majority_quarantine_s"] == majority["at_s"]
    assert r1["detect_s"] <= r1["quarantine_s"] <= r1["majority_quarantine_s"] < sc.duration_s
    assert r1["detect_cycles"] == round(r1["detect_s"] / r1["slot_s"], 3) and r1["quarantined"] == [1]
    assert r2["accusations"] == 0 and r2["detect_s"] is None and r2["majority_quarantine_s"] is None
