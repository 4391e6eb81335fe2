"""Region-scoped wire addresses (`addressing: region`, ground/wireids.py):
a fleet numbered per region on the wire runs as the same fleet numbered
fleet-wide (every node's frame counts, drops and polls alike; only COBS
line lengths move with the id bytes), node and cluster ids past 61,439 and
3,583 load and run, the trace of a cluster of a later region names its
nodes by the scenario's ids, and what this addressing does not carry yet is
refused at its line."""

import json
import os

import pytest

from ground import cli, firmware, fleetrun, history, run, scenario, trace
from ground.shard_route import frame_header
from ground.yamlfile import ConfigError

FLEET = """name: wide
seed: 4
duration_s: %(duration)s
election_timeout_ms: 2000
%(addressing)s
fleet:
  nodes: %(nodes)d
  cluster_sizes: {min: 8, max: 12}
  regions: {count: 2, electors: 3}
  allow_region_sizes: true
  lineages: 3
  market:
    units: [4, 4, 4, 4, 2, 2, 2, 2]
    slot_ms: 12000
    region_timeout_ms: 3000
  links:
    intra_cluster: {delay_ms: 20, jitter_ms: 5, loss: 0.02}
    intra_region: {delay_ms: 5, loss: 0.01}
    inter_region: {delay_ms: 50}
  faults:
    crash_mtbf_s: 600
    crash_down_s: 5
    partitions_per_region_per_day: 5000
  steps:
    - {at_s: 9, crash: coordinator, cluster: %(probe)d, duration_s: 4}
"""


def fleet(tmp_path, addressing, nodes=180, duration=24, probe=12, name="f"):
    p = tmp_path / ("%s-%s.yaml" % (name, addressing or "default"))
    p.write_text(FLEET % {"duration": duration, "nodes": nodes, "probe": probe,
                          "addressing": "addressing: %s" % addressing if addressing else ""})
    return str(p)


def _frames_view(result):
    """What ids on the wire must not change: every node's frames by type
    (sent, delivered, dropped), its frame counts by tier and polls, the
    drop reasons and the clusters' and regions' frame counters."""
    f = result.fleet
    fields = f["usage_fields"]
    keep = [i for i, k in enumerate(fields) if not k.endswith("_bytes")]
    usage = {n: [u[i] for i in keep] for n, u in f["usage"].items()}
    return {"nodes": f["nodes"], "usage": usage, "drops": f["drop_reasons"]}


def test_a_fleet_numbered_per_region_runs_as_the_same_fleet_numbered_fleet_wide(tmp_path):
    base = scenario.load(fleet(tmp_path, "fleet"))
    wide = scenario.load(fleet(tmp_path, "region"))
    assert base.wire_ids is None and wide.wire_ids is not None
    second = wide.regions[1]
    ids = wide.wire_ids
    assert [ids.node(n) for n in second.nodes] == list(range(1, len(second.nodes) + 1))
    assert ids.node(second.nodes[0]) == ids.node(wide.regions[0].nodes[0]) == 1  # the same wire id, two nodes
    # each core knows its region's wire ids only
    cfg = run.node_config(wide, second.nodes[3])
    assert list(cfg.members) == [ids.node(n) for n in wide.clusters[wide.nodes[second.nodes[3]].cluster]]
    assert max(cfg.market.roster) == len(second.nodes) and cfg.cluster == ids.cluster(wide.nodes[second.nodes[3]].cluster)

    a = fleetrun.run(base, str(tmp_path / "base"))
    b = fleetrun.run(wide, str(tmp_path / "wide"))
    drops = a.fleet["fleet"]["drop_reasons"]
    assert a.fleet["fleet"]["delivered"] > 50000 and drops.get("node_down") and drops.get("loss")
    assert _frames_view(a) == _frames_view(b)
    assert a.fleet["usage"] != b.fleet["usage"]  # the bytes differ: COBS and escapes move with the id bytes

    # every cluster is traced (a small fleet): the second region's frames carry wire ids, the trace the scenario's
    header, events, torn = trace.read(str(tmp_path / "wide" / "trace.jsonl"))
    assert not torn and header["addressing"]["mode"] == "region" and b.fleet["addressing"]["mode"] == "region"
    assert header["addressing"]["traced_wire_ids"][str(second.nodes[0])] == 1 and "addressing" not in a.fleet
    n = second.nodes[0]
    sent = [e for e in events if e["kind"] == "frame" and e["fate"] == "sent" and e["src"] == n]
    assert sent
    for e in sent[:20]:
        line = bytes.fromhex(e["hex"])
        assert frame_header(line)[3] == 1  # its id on the wire
    hb = [e for e in events if e["kind"] == "frame" and e["fate"] == "sent" and e.get("type") == "heartbeat"
          and e["src"] in second.nodes]
    assert hb and all(e["msg"]["coordinator"] in second.nodes or e["msg"]["coordinator"] == 0 for e in hb)
    assert all(e["dst"] in (0xF000 | wide.nodes[e["src"]].cluster, 0xFE00 | second.region) for e in hb)
    assert {e["dst"] for e in hb} > {0xFE00 | second.region}  # its clusters' addresses, named fleet-wide
    rep = history.check(str(tmp_path / "wide" / "trace.jsonl"))
    assert rep.readable and not rep.violations


def test_the_same_counters_with_one_and_three_shards(tmp_path):
    sc = scenario.load(fleet(tmp_path, "region", nodes=150, duration=12, probe=3))
    one = fleetrun.run(sc, str(tmp_path / "s1"), shards=1)
    three = fleetrun.run(sc, str(tmp_path / "s3"), shards=3)
    assert len(three.fleet["shards"]) == 2  # whole regions: two at most
    assert one.fleet["nodes"] == three.fleet["nodes"] and one.fleet["usage"] == three.fleet["usage"]


EXPLICIT = """name: big-ids
seed: 2
duration_s: 10
election_timeout_ms: 2000
%s
clusters:
  - {id: 7, nodes: [1, 2, 3, 4, 5]}
  - {id: 8, nodes: [6, 7, 8, 9, 10]}
  - {id: 9000, nodes: [200001, 200002, 200003, 200004, 200005]}
  - {id: 9001, nodes: [200006, 200007, 200008, 200009, 200010]}
links:
  intra_cluster: {delay_ms: 10}
  inter_cluster: {delay_ms: 30}
regions:
  - {region: 1, clusters: [7, 8], electors: [1, 6], units: [2, 2, 2, 2, 1, 1, 1, 1], slot_ms: 4800}
  - {region: 2, clusters: [9000, 9001], electors: [200001, 200006], units: [2, 2, 2, 2, 1, 1, 1, 1], slot_ms: 4800}
faults:
  - {at_s: 4, crash: coordinator, cluster: 9001, duration_s: 3}
"""


def test_node_and_cluster_ids_past_the_wires_run_with_addressing_region(tmp_path, capsys):
    p = tmp_path / "big.yaml"
    p.write_text(EXPLICIT % "")
    with pytest.raises(ConfigError, match=r"big.yaml:9: cluster id 9000: at most 3583 \(more: addressing: region\)"):
        scenario.load(str(p))
    p.write_text((EXPLICIT % "").replace("id: 9000", "id: 1"))
    with pytest.raises(ConfigError, match=r"big.yaml:9: cluster 1: node id 200001 must be an integer in 1..61439"
                                          r" \(more: addressing: region\)"):
        scenario.load(str(p))
    p.write_text(EXPLICIT % "addressing: region")
    out = tmp_path / "out"
    assert cli.main(["run", str(p), "--out", str(out), "-q"]) == 0  # the lean path by itself
    f = json.load(open(out / "fleet.json"))
    assert {"1", "200001", "200010"} <= set(f["nodes"]) and f["fleet"]["delivered"] > 1000
    assert f["traced_clusters"] == [7, 8]  # 9000 and 9001 have no fleet-wide address for the trace
    # the full path names nodes fleet-wide: refused, with the scenario named
    with pytest.raises(ValueError, match="big.yaml: addressing: region runs on the lean fleet path only"):
        run.Run(scenario.load(str(p)), str(tmp_path / "full"))


@pytest.mark.parametrize("extra, where, words", [
    ("boards: {cluster: 7}\n", "boards", "boards inside a simulated fleet"),
    ("replication: {spares: 4}\n", "replication", "replication"),
])
def test_what_region_addressing_does_not_carry_is_refused_at_its_line(tmp_path, extra, where, words):
    p = tmp_path / "x.yaml"
    text = EXPLICIT % "addressing: region" + extra
    p.write_text(text)
    line = next(i + 1 for i, t in enumerate(text.splitlines()) if t.startswith(where + ":"))
    with pytest.raises(ConfigError, match=r"x.yaml:%d: .*does not carry %s" % (line, words)):
        scenario.load(str(p))


def test_an_addressing_it_does_not_know_is_refused_at_its_line(tmp_path):
    p = tmp_path / "x.yaml"
    p.write_text(EXPLICIT % "addressing: regional")
    with pytest.raises(ConfigError, match=r"x.yaml:5: scenario.addressing: fleet .* or region .*'regional'"):
        scenario.load(str(p))


def test_a_traced_cluster_must_have_an_address_the_trace_can_hold(tmp_path):
    p = tmp_path / "big.yaml"
    p.write_text(EXPLICIT % "addressing: region")
    sc = scenario.load(str(p))
    with pytest.raises(ValueError, match="trace: cluster 9000: with addressing: region a traced cluster's id"):
        fleetrun.LeanRun(sc, str(tmp_path / "o"), traced=[7, 9000])


def test_a_fleet_description_past_61439_nodes_numbers_its_regions_itself(tmp_path):
    text = open(fleet(tmp_path, None, nodes=61500)).read()
    p = tmp_path / "f61500.yaml"
    p.write_text(text.replace("regions: {count: 2, electors: 3}", "regions: {count: 200, electors: 3}"))
    sc = scenario.load(str(p))
    assert len(sc.nodes) == 61500 and sc.wire_ids is not None
    assert max(sc.wire_ids.node(n) for n in sc.nodes) < 400
    out = tmp_path / "explicit.yaml"
    assert cli.main(["expand", str(p), "--out", str(out)]) == 0
    assert "\naddressing: region\n" in out.read_text()
    assert len(scenario.load(str(out)).nodes) == 61500
    # one address space asked for: refused at fleet.nodes with the bound
    p.write_text(p.read_text().replace("fleet:\n", "addressing: fleet\nfleet:\n"))
    with pytest.raises(ConfigError, match=r"f61500.yaml:\d+: .*nodes.*61439"):
        scenario.load(str(p))


def _shifted_two():
    """tests/ground/test_fleet_contain.py's TWO with region 1's nodes as 101..110: the region whose coordinator
    is found out and quarantined numbers them 1..10 on the wire."""
    from tests.ground.test_fleet_contain import TWO

    text = TWO.replace("nodes: [1, 2, 3, 4, 5]", "nodes: [101, 102, 103, 104, 105]")
    text = text.replace("nodes: [6, 7, 8, 9, 10]", "nodes: [106, 107, 108, 109, 110]")
    return text.replace("electors: [1, 2, 6, 7], auditors: [1, 2, 6, 7]",
                        "electors: [101, 102, 106, 107], auditors: [101, 102, 106, 107]")


def test_containment_finds_quarantines_and_severs_by_the_scenarios_ids(tmp_path):
    from tests.ground.test_fleetrun import _lean_counters

    text = _shifted_two()
    a = fleetrun.run(scenario.load_text(text, "two.yaml"), str(tmp_path / "a"))
    b = fleetrun.run(scenario.load_text("addressing: region\n" + text, "two.yaml"), str(tmp_path / "b"))
    assert _lean_counters(a) == _lean_counters(b)
    r1 = b.fleet["containment"]["1"]
    assert r1["accused"] in (101, 106) and r1["accused_lineage"] == 0  # lineage 0's coordinator drops a bid
    assert r1["quarantined"] == [r1["accused"]] and r1["majority_quarantine_s"] is not None
    assert a.fleet["containment"] == b.fleet["containment"]
    # a region severed by its policy: scenarios/containment-sever.yaml to just after its sever point, where
    # region 2 (nodes 11..20, 1..10 on the wire) does not replace its accused coordinator 12 within a cycle
    text = open("scenarios/containment-sever.yaml", encoding="utf-8").read().replace("duration_s: 600",
                                                                                       "duration_s: 118")
    a = fleetrun.run(scenario.load_text(text, "cs.yaml"), str(tmp_path / "sa"))
    b = fleetrun.run(scenario.load_text("addressing: region\n" + text, "cs.yaml"), str(tmp_path / "sb"))
    assert _lean_counters(a) == _lean_counters(b)
    assert a.fleet["containment"] == b.fleet["containment"] and b.fleet["containment"]["2"]["accused"] == 12
    rows = b.metrics["containment"]["severed"]
    assert [(r["region"], r["cause"]) for r in rows] == [(2, "coordinator 12 accused and not replaced within one cycle")]
    assert rows == a.metrics["containment"]["severed"]
    assert history.check(str(tmp_path / "sb" / "trace.jsonl")).violations == []


def test_a_rollout_decides_alike_by_the_scenarios_ids(tmp_path):
    """tests/ground/test_fleetrun_rollout.py's two-region rollout (the second region numbered 1..15 on the wire):
    the same decisions, canaries and counters as with the fleet-wide numbering, the bad build rolled back."""
    from tests.ground.test_fleetrun_rollout import TEXT

    a = fleetrun.run(scenario.load_text(TEXT, "r.yaml"), str(tmp_path / "a"))
    b = fleetrun.run(scenario.load_text("addressing: region\n" + TEXT, "r.yaml"), str(tmp_path / "b"))
    assert b.status == "ok" and not b.failures
    assert _frames_view(a) == _frames_view(b)
    ro = [[e for e in trace.read(str(tmp_path / d / "trace.jsonl"))[1] if e["kind"] == "rollout"] for d in "ab"]
    assert ro[0] == ro[1] and [e["image"] for e in ro[1] if e["event"] == "rolled_back"] == ["2.2"]
    assert b.metrics["flat"]["rollout_completed"] == 1 and b.metrics["flat"]["rollout_aborted"] == 1
