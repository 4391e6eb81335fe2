"""Fleet descriptions (ground/fleetdesc.py, docs/FLEET.md): the expansion is
deterministic, matches the description's numbers, refuses what cannot be
realised with file:line, loads back from `ground expand`'s output to the same
scenario, and a two-region fleet runs in sim with both markets completing
rounds. Also `regions:` in explicit scenarios (ground/scenario.py)."""

import collections
import io
import json
import os

import pytest

from ground import cli, fleetdesc, fleettable, history, progress, report, scenario
from ground import run as run_mod
from ground.yamlfile import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

FLEET = """\
name: fleet-test
seed: {seed}
duration_s: {duration}
election_timeout_ms: 2000
fleet:
  nodes: {nodes}
  cluster_sizes: {sizes}
  regions: {regions}
  lineages: 4
  hw_gen: {{1: 0.5, 2: 0.3, 3: 0.2}}
  age_slots: {{min: 0, max: 100}}
  firmware: {{"1.0": 0.7, "1.1": 0.2, "2.0": 0.1}}
  market: {{units: [2, 2, 2, 2, 1, 1, 1, 1], slot_ms: 30000, region_timeout_ms: {region_timeout}}}
  geometry: {{ring_radius_km: 100000, region_radius_km: 20000}}
  links:
    intra_cluster: {{delay_ms: {intra}}}
    intra_region: {{delay_ms: 10}}
    inter_region: {{delay_ms: 10}}
  faults: {{crash_mtbf_s: 20000, crash_down_s: 20, partitions_per_region_per_day: 300, partition_s: 20,
           region_blackouts_per_day: 100, blackout_s: 10}}
"""


def _fleet(tmp_path, name="fleet.yaml", seed=5, duration=240, nodes=400, sizes="{min: 5, max: 15}",
           regions="{clusters: {min: 20, max: 30}, electors: 3}", region_timeout=6000, intra=20, extra=""):
    text = FLEET.format(seed=seed, duration=duration, nodes=nodes, sizes=sizes, regions=regions,
                        region_timeout=region_timeout, intra=intra) + extra
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def _refused(path):
    with pytest.raises(ConfigError) as e:
        scenario.load(path)
    return str(e.value)


def _shape(sc):
    """What a run uses of a scenario (not where it came from)."""
    return {
        "nodes": {n: (s.cluster, s.firmware, s.hw_gen, s.lineage, s.age_slots) for n, s in sc.nodes.items()},
        "clusters": sc.clusters, "seed": sc.seed, "duration_s": sc.duration_s, "t_ms": sc.election_timeout_ms,
        "links": fleetdesc.plain(sc.links), "positions": sc.positions,
        "faults": [(f.at_s, f.action, json.dumps(f.target, sort_keys=True, default=str), f.cluster, f.duration_s)
                   for f in sc.faults],
        "regions": [(r.region, r.clusters, r.nodes, r.electors, r.market_args) for r in sc.regions],
        "gates": sc.gates,
    }


# ---- determinism --------------------------------------------------------------

def test_same_seed_same_expansion_other_seed_differs(tmp_path):
    a = fleetdesc.explicit_yaml(_fleet(tmp_path, "a.yaml"))
    b = fleetdesc.explicit_yaml(_fleet(tmp_path, "b.yaml"))
    c = fleetdesc.explicit_yaml(_fleet(tmp_path, "c.yaml", seed=6))
    body = lambda t: t.split("\n", 2)[2]  # noqa: E731  (the header names the file)
    assert body(a) == body(b)
    assert body(a) != body(c)


# ---- the numbers match the description ----------------------------------------

def test_statistics_match_the_description(tmp_path):
    sc = scenario.load(_fleet(tmp_path, nodes=1000, duration=600))
    assert sorted(sc.nodes) == list(range(1, 1001))
    sizes = [len(ids) for ids in sc.clusters.values()]
    assert sum(sizes) == 1000 and min(sizes) >= 5 and max(sizes) <= 15
    assert 80 <= len(sizes) <= 120  # the mean size (10) fixes the count
    per_region = [len(r.clusters) for r in sc.regions]
    assert all(20 <= k <= 30 for k in per_region) and sum(per_region) == len(sizes)
    # shares are apportioned exactly
    gens = collections.Counter(s.hw_gen for s in sc.nodes.values())
    assert gens == {1: 500, 2: 300, 3: 200}
    fws = collections.Counter(s.firmware for s in sc.nodes.values())
    assert fws == {"1.0": 700, "1.1": 200, "2.0": 100}
    assert all(0 <= s.age_slots <= 100 for s in sc.nodes.values())
    assert len({s.age_slots for s in sc.nodes.values()}) > 50
    # lineages mixed within each cluster: at least 3 in every cluster (4 lineages, sizes >= 5)
    for ids in sc.clusters.values():
        assert len({sc.nodes[n].lineage for n in ids}) >= 3
    # electors: 3 per region, each in a cluster of its own, lineages spread
    for r in sc.regions:
        assert len(r.electors) == 3
        assert len({sc.nodes[e].cluster for e in r.electors}) == 3
        assert all(sc.nodes[e].cluster in r.clusters for e in r.electors)
        assert len({sc.nodes[e].lineage for e in r.electors}) == 3
    # geometry: regions on a ring, so the inter-region light time exceeds the intra-region one
    r1, r2 = sc.regions[0], sc.regions[len(sc.regions) // 2]
    a, b, c = r1.nodes[0], r1.nodes[-1], r2.nodes[0]
    assert sc.link_spec(a, c)["delay_ms"] > sc.link_spec(a, b)["delay_ms"] > 10
    assert sc.link_spec(a, a + 1) == {"delay_ms": 20}  # one cluster: the intra_cluster model
    # faults drawn from the rates: crashes, isolated clusters healed, dark regions
    actions = collections.Counter(f.action for f in sc.faults)
    assert actions["crash"] > 10 and actions["partition"] >= 1 and actions["blackout"] >= 1
    assert actions["heal"] >= actions["partition"] - 1
    for f in sc.faults:
        if f.action == "partition":  # a cluster (or the electors) against the rest of its region
            cut_off, rest = f.target["groups"]
            region = sc.region_of[cut_off[0]]
            assert sorted(cut_off + rest) == region.nodes
            assert cut_off in list(sc.clusters.values()) or cut_off == region.electors


def test_region_count_splits_clusters_evenly(tmp_path):
    sc = scenario.load(_fleet(tmp_path, nodes=200, sizes="{min: 5, max: 5}", regions="{count: 2, electors: 2}"))
    assert [len(r.clusters) for r in sc.regions] == [20, 20]
    assert [len(r.electors) for r in sc.regions] == [2, 2]


# ---- refusals, with file:line and the numbers -----------------------------------

def test_cluster_sizes_outside_5_20_refused_unless_allowed(tmp_path):
    p = _fleet(tmp_path, nodes=100, sizes="{min: 3, max: 8}", regions="{count: 1, electors: 3}")
    msg = _refused(p)
    assert msg.startswith("%s:7: " % p) and "3-8" in msg and "5-20" in msg and "allow_cluster_sizes" in msg
    p = _fleet(tmp_path, "ok.yaml", nodes=100, sizes="{min: 3, max: 8}", regions="{count: 1, electors: 3}",
               extra="  allow_cluster_sizes: true\n  allow_region_sizes: true\n")
    assert min(len(c) for c in scenario.load(p).clusters.values()) >= 3


def test_more_clusters_than_the_wire_addresses_refused_in_one_address_space(tmp_path):
    p = _fleet(tmp_path, nodes=40000, sizes="{min: 5, max: 10}")
    sc = scenario.load(p)  # by itself: each region numbers its own on the wire (ground/wireids.py)
    assert len(sc.clusters) > 3583 and sc.wire_ids is not None
    text = open(p).read().replace("fleet:\n", "addressing: fleet\nfleet:\n")
    (tmp_path / "one.yaml").write_text(text)
    msg = _refused(str(tmp_path / "one.yaml"))
    assert msg.startswith("%s:8: " % (tmp_path / "one.yaml")) and "40000 nodes make" in msg and "up to 3583" in msg, msg
    assert "addressing: region" in msg


def test_a_fourth_major_refused(tmp_path):
    text = open(_fleet(tmp_path)).read().replace('"2.0": 0.1}', '"2.0": 0.1, "3.0": 0.1, "4.0": 0.1}')
    (tmp_path / "four.yaml").write_text(text)
    msg = _refused(str(tmp_path / "four.yaml"))
    assert ":12: " in msg and "4 major versions [1, 2, 3, 4]" in msg and "at most 3" in msg, msg


def test_more_electors_than_clusters_refused(tmp_path):
    p = _fleet(tmp_path, nodes=200, sizes="{min: 5, max: 5}", regions="{count: 2, electors: 21}")
    msg = _refused(p)
    assert msg.startswith("%s:8: " % p) and "21 electors" in msg and "20 clusters" in msg, msg


def test_region_sizes_outside_20_50_refused(tmp_path):
    p = _fleet(tmp_path, nodes=200, sizes="{min: 5, max: 5}", regions="{count: 4, electors: 3}")
    msg = _refused(p)
    assert msg.startswith("%s:8: " % p) and "10-10" in msg and "20-50" in msg and "allow_region_sizes" in msg, msg


def test_election_timeout_under_the_light_round_trip_refused(tmp_path):
    p = _fleet(tmp_path, intra=1500)  # a 3000 ms round trip inside each cluster; election_timeout_ms 2000
    msg = _refused(p)
    assert msg.startswith("%s:4: " % p) and "election_timeout_ms = 2000 ms" in msg and "3000 ms" in msg, msg


def test_region_timeout_under_the_electors_round_trip_refused(tmp_path):
    # electors up to 2 x 20,000 km apart in a region: a round trip up to ~287 ms with the 10 ms model
    p = _fleet(tmp_path, region_timeout=50)
    msg = _refused(p)
    assert msg.startswith("%s:13: " % p) and "region_timeout_ms = 50 ms" in msg and "round trip" in msg, msg


def test_fault_rates_that_would_draw_millions_of_faults_refused_before_drawing(tmp_path):
    # 400 nodes at a crash every 20,000 s for 2e8 mission s: ~4e6 crashes expected (memory, not a mission)
    p = _fleet(tmp_path, duration=200_000_000)
    msg = _refused(p)
    assert msg.startswith("%s:19: " % p) and "crash_mtbf_s 4e+06" in msg and "at most 2,000,000" in msg, msg
    assert len(scenario.load(_fleet(tmp_path, "ok.yaml", duration=100_000)).faults) > 1000  # ~2,000 crashes: drawn


@pytest.mark.parametrize("old, new, line, needle", [
    ("duration_s: 240", "duration_s: .nan", 3, "scenario.duration_s: expected a finite number, got nan"),
    ("crash_mtbf_s: 20000", "crash_mtbf_s: .inf", 19, "fleet.faults.crash_mtbf_s: expected a finite number"),
    ("{1: 0.5, 2: 0.3", "{1: .inf, 2: 0.3", 10, "fleet.hw_gen.1: a share > 0, got inf"),
    ("slot_ms: 30000", "slot_ms: thirty", 13, "region 1.slot_ms: expected an integer, got 'thirty'"),
    ("region_timeout_ms: 6000", "region_timeout_ms: 2500.5", 13,
     "region 1.region_timeout_ms: expected an integer, got 2500.5"),
])
def test_bad_numbers_refused_at_their_line(tmp_path, old, new, line, needle):
    src = open(_fleet(tmp_path)).read()
    assert old in src
    p = tmp_path / "bad.yaml"
    p.write_text(src.replace(old, new))
    msg = _refused(str(p))
    assert msg.startswith("%s:%d: " % (p, line)) and needle in msg, msg



def test_auto_auditors_over_drawn_electors_are_refused_in_the_descriptions_terms(tmp_path):
    # 3 electors over 4 lineages: 2 of one clearing, 1 of the other, in every region: auto cannot
    # find 2 auditors of each; the advice is the description's keys, not "name the auditors"
    src = open(_fleet(tmp_path, nodes=200, sizes="{min: 5, max: 5}", regions="{count: 2, electors: 3}")).read()
    bad = tmp_path / "three.yaml"
    bad.write_text(src.replace("region_timeout_ms: 6000}", "region_timeout_ms: 6000, auditors: auto}"))
    msg = _refused(str(bad))
    assert msg.startswith("%s:13: fleet.market.auditors auto: region 1's 3 electors" % bad), msg
    assert "set fleet.regions.electors to 4 or more and fleet.lineages to 4" in msg
    good = tmp_path / "four.yaml"
    good.write_text(bad.read_text().replace("electors: 3}", "electors: 4}"))
    sc = scenario.load(str(good))
    for r in sc.regions:
        assert len(r.market.auditors) == 4 and {sc.nodes[a].lineage % 2 for a in r.market.auditors} == {0, 1}

def test_generated_sections_beside_fleet_refused(tmp_path):
    p = _fleet(tmp_path, extra="clusters: [{id: 1, nodes: [1]}]\n")
    msg = _refused(p)
    assert "clusters: is generated from fleet:" in msg and msg.startswith(p + ":")


def test_unknown_fleet_key_refused(tmp_path):
    p = _fleet(tmp_path, extra="  colour: blue\n")
    msg = _refused(p)
    assert msg.startswith(p + ":") and "unknown key 'colour'" in msg


# ---- ground expand: the explicit scenario loads back to the same scenario ------------

def test_expand_then_load_is_the_same_scenario(tmp_path, capsys):
    fleet = _fleet(tmp_path)
    out = tmp_path / "explicit.yaml"
    assert cli.main(["expand", fleet, "--out", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("# Expanded from %s" % fleet) and "fleet:" not in text
    assert _shape(scenario.load(str(out))) == _shape(scenario.load(fleet))
    assert cli.main(["expand", fleet, "--out", str(out)]) == 2  # exists: refused without --force
    assert "exists" in capsys.readouterr().err


STEPS = """\
  steps:
    - {at_s: 0, lineage_fault: {lineage: 1, kind: clearing_defect}}
    - {at_s: 100, lineage_fault: {lineage: 2, kind: crash}, duration_s: 30}
    - {at_s: 150, sever: 2}
    - {at_s: 200, reinstate_region: 2}
"""


def test_steps_join_the_drawn_faults_in_time_and_expand(tmp_path):
    plain = scenario.load(_fleet(tmp_path, "plain.yaml"))
    fleet = _fleet(tmp_path, extra=STEPS)
    sc = scenario.load(fleet)
    drawn = [(f.at_s, f.action) for f in plain.faults]
    got = [(f.at_s, f.action) for f in sc.faults]
    steps = [(0, "lineage_fault"), (100, "lineage_fault"), (150, "sever"), (200, "reinstate_region")]
    assert len(drawn) > 10 and sorted(got, key=lambda x: x[0]) == got
    assert [x for x in got if x not in steps] == drawn and [x for x in got if x in steps] == steps
    crash = next(f for f in sc.faults if f.action == "lineage_fault" and f.params["kind"] == "crash")
    assert crash.target == sorted(n for n, s in sc.nodes.items() if s.lineage == 2)
    assert {r.market.defect_lineage for r in sc.regions} == {1}  # the clearing defect planted in every region
    out = tmp_path / "explicit.yaml"
    assert cli.main(["expand", fleet, "--out", str(out)]) == 0
    assert _shape(scenario.load(str(out))) == _shape(sc)


@pytest.mark.parametrize("steps, needle", [
    ("  steps: {at_s: 1, sever: 2}\n", "fleet.steps: a list of scenario steps"),
    ("  steps:\n    - {sever: 2}\n", "fleet.steps[]: missing key 'at_s'"),
    ("  steps:\n    - {at_s: 5, sever: 9}\n", "step sever: unknown region 9"),
])
def test_bad_steps_refused_at_their_line(tmp_path, steps, needle):
    p = _fleet(tmp_path, extra=steps)
    msg = _refused(p)
    assert needle in msg and msg.startswith(p + ":"), msg


def test_fleet_1k_in_the_library_expands(tmp_path):
    sc = scenario.load(os.path.join(ROOT, "scenarios", "fleet-1k.yaml"))
    assert len(sc.nodes) == 1000 and len(sc.regions) >= 2
    assert all(20 <= len(r.clusters) <= 50 for r in sc.regions)


# ---- regions: in an explicit scenario ------------------------------------------------

REGIONS = """\
name: two-regions
duration_s: 10
clusters:
  - {id: 1, nodes: [1, 2, 3]}
  - {id: 2, nodes: [4, 5, 6]}
  - {id: 3, nodes: [7, 8, 9]}
regions:
  - {region: 1, clusters: [1, 2], electors: [1, 4], units: [1, 1, 1, 1, 1, 1, 1, 1], slot_ms: 6000}
  - {region: 2, clusters: %s, electors: [7], units: [1, 1, 1, 1, 1, 1, 1, 1], slot_ms: 6000}
"""


def test_explicit_regions_each_node_gets_its_region(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text(REGIONS % "[3]")
    sc = scenario.load(str(p))
    assert sc.market is None  # several regions: no market shared by every node
    assert sc.market_for(2).region == 1 and sc.market_for(8).region == 2
    assert list(sc.market_for(8).roster) == [7, 8, 9] and sc.market_args_for(5)["roster"] == [1, 2, 3, 4, 5, 6]
    assert sc.gates["market_rounds_complete"] == {"min": 1}


@pytest.mark.parametrize("clusters, needle, line", [
    ("[2, 3]", "cluster 2 is also in region 1", 9),
    ("[]", "a non-empty list of cluster ids", 9),
    ("[4]", "unknown cluster 4", 9),
])
def test_explicit_regions_refusals(tmp_path, clusters, needle, line):
    p = tmp_path / "r.yaml"
    p.write_text(REGIONS % clusters)
    msg = _refused(str(p))
    assert msg.startswith("%s:%d: " % (p, line)) and needle in msg, msg


def test_explicit_regions_every_cluster_in_one(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text((REGIONS % "[3]").replace("clusters: [1, 2], electors: [1, 4]", "clusters: [1], electors: [1]"))
    msg = _refused(str(p))
    assert "clusters [2] are in no region" in msg and msg.startswith("%s:7: " % p), msg


# ---- a two-region fleet runs, both markets complete rounds ---------------------------

def test_two_region_fleet_runs_in_sim_with_both_markets(tmp_path):
    fleet = _fleet(tmp_path, nodes=200, sizes="{min: 5, max: 5}", regions="{count: 2, electors: 3}", duration=100)
    text = open(fleet).read().split("  faults:")[0]  # no faults: the markets alone
    with open(fleet, "w") as f:
        f.write(text)
    sc = scenario.load(fleet)
    stream = io.StringIO()
    result = run_mod.run(sc, str(tmp_path / "run"), plot=False, progress=progress.Progress(stream))
    complete = collections.Counter()
    with open(tmp_path / "run" / "trace.jsonl") as f:
        header = json.loads(f.readline())
        for line in f:
            e = json.loads(line)
            if e.get("type") == "prices" and e.get("fate") == "sent" and e["msg"].get("status") == 1:
                assert sc.region_of[e["src"]].region == e["msg"]["region"]  # each coordinator its own region's
                complete[e["msg"]["region"]] += 1
    assert [r["region"] for r in header["regions"]] == [1, 2]
    assert complete[1] >= 1 and complete[2] >= 1, complete
    assert not result.failures, result.failures
    # the history checker reads each region's electors and leases per region (a resource id is its market's)
    checked = history.check(str(tmp_path / "run" / "trace.jsonl"))
    assert not checked.violations, [v.message for v in checked.violations[:3]]
    # output at fleet scale: the progress line counts, one fixed width
    lines = [ln for ln in stream.getvalue().splitlines() if ln.startswith("  mission")]
    assert len({len(ln) for ln in lines}) == 1, lines
    assert lines[-1].endswith("  coord    40/40     market   2/2  ") and lines[-1].count("coord") == 1, lines[-1]
    assert "c1:" not in lines[-1]
    # the table aggregates: percentiles and worst clusters, a row per region, the fleet's row
    table = report.format_table(result.metrics, header["regions"])
    assert table == open(tmp_path / "run" / "metrics.txt").read()
    assert "40 clusters, 200 nodes: aggregates over clusters" in table
    rows = table.splitlines()
    assert not [r for r in rows if r.split(" ")[0] in ("1", "3", "17", "40") and "  5  " in r]  # no per-cluster rows
    region_rows = [r.split() for r in rows if r.startswith(("1 ", "2 "))]
    assert [r[:2] for r in region_rows] == [["1", "20"], ["2", "20"]]
    assert any(r.startswith("all ") and " 200 " in r for r in rows)


def test_fleet_table_percentiles_and_worst():
    def cluster(failovers, share):
        return {"members": [1, 2, 3, 4, 5], "failover": {"count": failovers, "T_p99": None},
                "split_brain": {"count": 0}, "overlap": {"s": 0.0}, "leader": {"changes_per_hour": 0.0},
                "detection": {"s_max": None}, "decision": {"s_max": None}, "no_coordinator_share": share,
                "coordination_bytes_share": 0.5}

    clusters = {str(i): cluster(i % 7, i / 100.0) for i in range(1, 21)}
    assert fleettable.percentile([3, 1, 2, 4], 50) == 2 and fleettable.percentile([3, 1, 2, 4], 90) == 4
    out = fleettable.lines({"clusters": clusters}, [{"region": 1, "clusters": list(range(1, 11))},
                                                    {"region": 2, "clusters": list(range(11, 21))}], report._table)
    fo = next(r for r in out if r.startswith("failovers"))
    assert fo.split()[1:4] == ["3", "6", "6"] and fo.endswith("c6 6, c13 6, c20 6, c5 5, c12 5"), fo
    split = next(r for r in out if r.startswith("split-brain"))
    assert split.split()[-1] == "-"  # nowhere above zero: no worst clusters
    r2 = next(r for r in out if r.startswith("2 "))
    assert r2.split()[:3] == ["2", "10", str(sum(i % 7 for i in range(11, 21)))]


def test_fleet_progress_text_keeps_its_width():
    texts = [progress.fleet_text(0, 13, 0, 1), progress.fleet_text(97, 100, 2, 3),
             progress.fleet_text(3583, 3583, 510, 510), progress.fleet_text(10, 99999, 0, 0)]
    assert len({len(t) for t in texts}) == 1, texts
    assert texts[1] == "   97/100    market   2/3  "
