"""The market family per region (ground/metrics/market.py): with two
regions, each its own market, every region's rounds, production and bids are
its own (metrics.json market.regions, the terminal table, Prometheus
region=...), and the fleet's figures are their sums: two regions' rounds of
the same term and number are two rounds, not one."""

import collections
import json

import pytest

from ground import report, run, scenario, trace
from ground.regions import announces_to_region

TWO = """\
name: two-regions
seed: 4
duration_s: 80
election_timeout_ms: 2000
fleet:
  nodes: 60
  cluster_sizes: {min: 5, max: 5}
  allow_region_sizes: true
  regions: {count: 2, electors: 3}
  lineages: 3
  market: {units: [2, 2, 2, 2, 1, 1, 1, 1], slot_ms: 12000, region_timeout_ms: 3000}
  links:
    intra_cluster: {delay_ms: 20}
    intra_region: {delay_ms: 10}
    inter_region: {delay_ms: 10}
"""


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    d = tmp_path_factory.mktemp("two")
    p = d / "two.yaml"
    p.write_text(TWO)
    sc = scenario.load(str(p))
    assert len(sc.regions) == 2
    res = run.run(sc, str(d / "run"), plot=False)
    assert res.status == "ok", res.failures
    return sc, res, d / "run"


def test_each_regions_rounds_are_its_own_and_the_fleets_are_their_sum(ran):
    sc, res, out = ran
    mk = res.metrics["market"]
    assert sorted(mk["regions"]) == ["1", "2"]
    region_of = {c: r.region for r in sc.regions for c in r.clusters}
    header, events, _ = trace.read(str(out / "trace.jsonl"))
    rounds = collections.defaultdict(dict)  # region -> {(term, round): status}, from the PRICES announcements
    for e in events:
        if e["kind"] == "frame" and e["fate"] == "sent" and e["type"] == "prices" and announces_to_region(e["dst"]):
            m = e["msg"]
            if m["status"] in (1, 2):  # complete, void (ground/protocol.py ROUND_STATUS_NAMES)
                rounds[region_of[sc.nodes[e["src"]].cluster]].setdefault((m["term"], m["round"]), m["status"])
    for r in ("1", "2"):
        g = mk["regions"][r]
        want = rounds[int(r)]
        assert g["rounds_complete"] + g["rounds_void"] == len(want) > 2
        assert g["nodes"] == sum(1 for n in sc.nodes if sc.nodes[n].cluster in sc.regions[int(r) - 1].clusters)
    # the two regions' rounds overlap in (term, round): the fleet counts them apart
    assert set(rounds[1]) & set(rounds[2])
    assert mk["rounds_complete"] == sum(g["rounds_complete"] for g in mk["regions"].values())
    assert mk["rounds_void"] == sum(g["rounds_void"] for g in mk["regions"].values())
    for k in ("produced", "lost", "leases", "bids", "refused"):
        assert mk[k] == sum(g[k] for g in mk["regions"].values())
    assert mk["regions"]["1"]["produced"] > 0 and mk["regions"]["2"]["produced"] > 0
    # the auctions were per region already: each region's bids are its nodes'
    assert all(mk["auction"][r]["bids"] > 0 for r in ("1", "2"))


def test_a_regions_announcements_reach_its_own_nodes_and_no_other_region(ran):
    """With several regions a regional coordinator announces each round to
    each of its region's clusters (MarketConfig.clusters), not to the whole
    fleet: every delivered copy lands in its own region, every node of the
    region hears each announcement, and no node refuses one."""
    sc, res, out = ran
    header, events, _ = trace.read(str(out / "trace.jsonl"))
    region_of = {n: r.region for r in sc.regions for n in r.nodes}
    sent = {}  # frame id -> (announcing region, (sender, term, round, status))
    heard = collections.defaultdict(set)  # (sender, term, round, status) -> nodes delivered to
    crossed = []
    for e in events:
        if e["kind"] != "frame":
            continue
        if e["fate"] == "sent" and e["type"] == "prices" and e["msg"]["status"] in (1, 2, 5):  # complete, void, resync
            assert announces_to_region(e["dst"]) and e["dst"] != 0xFFFF, e
            m = e["msg"]
            sent[e["id"]] = (region_of[e["src"]], (e["src"], m["term"], m["round"], m["status"]))
        elif e["fate"] == "delivered" and e["id"] in sent:
            region, key = sent[e["id"]]
            if region_of[e["to"]] != region:
                crossed.append(e)
            heard[key].add(e["to"])
    assert sent and not crossed, crossed[:3]
    nodes_of = {r.region: set(r.nodes) for r in sc.regions}
    for (src, term, rnd, status), nodes in heard.items():
        want = nodes_of[region_of[src]] - {src}
        assert nodes == want, (src, term, rnd, sorted(want - nodes))
    for nid, node in res.metrics["nodes"].items():
        assert node.get("refused", {}).get("region", 0) == 0, (nid, node.get("refused"))


SPLITTING = """\
name: regions-that-split
seed: 3
duration_s: 290
election_timeout_ms: 2000
clusters:
  - {id: 1, nodes: [1, 2, 3, 4, 5, 6, 7, 8], hw_gen: 3, lineages: [0, 1, 2]}
  - {id: 5, nodes: [100, 101, 102, 103, 104], hw_gen: 3, lineages: [0, 1, 2]}
links:
  intra_cluster: {delay_ms: 20}
  intra_region: {delay_ms: 20}
  inter_region: {delay_ms: 20}
regions:
  - {region: 1, clusters: [1], electors: [1, 2, 3], units: [8, 8, 8, 8, 4, 4, 4, 4], slot_ms: 24000, region_timeout_ms: 2000}
  - {region: 2, clusters: [5], electors: [100, 101, 102], units: [8, 8, 8, 8, 4, 4, 4, 4], slot_ms: 24000, region_timeout_ms: 2000}
replication: {spares: 16, max_cluster: 8, min_cluster: 4, splits: 3}
faults:
  - {at_s: 1, intent: {growth_permille: 1000}}
"""


def test_a_cluster_a_split_makes_hears_its_regions_announcements(tmp_path):
    """A region's announcements go to its clusters by number, so the numbers
    its clusters' splits will take are on the list from boot
    (ground/replication.py widen_markets): the nodes of a cluster a split
    made hear their own region's rounds, never the other region's."""
    p = tmp_path / "split.yaml"
    p.write_text(SPLITTING)
    res = run.run(scenario.load(str(p)), str(tmp_path / "run"), plot=False)
    assert res.status == "ok", res.failures
    header, events, _ = trace.read(str(tmp_path / "run" / "trace.jsonl"))
    region_of = {1: 1, 5: 2}  # cluster -> region, the splits' clusters added as they come
    for e in events:
        if e["kind"] == "node" and e["event"] == "cluster_split":
            words = str(e["detail"]).split()  # "cluster 1 split by node 1 (frame N): 4 stay, 5 form cluster 6"
            region_of[int(words[-1])] = region_of[int(words[1])]
    made = sorted(set(region_of) - {1, 5})
    assert len(made) >= 3, region_of  # each region's cluster split at least once
    sender_region = {}  # frame id -> the region that announced it, for those to a split's cluster
    heard = collections.defaultdict(set)  # split's cluster -> regions whose announcements its nodes heard
    for e in events:
        if e["kind"] != "frame":
            continue
        if e["fate"] == "sent" and e["type"] == "prices" and e["msg"]["status"] == 1 and e["dst"] & 0x0FFF in made:
            sender_region[e["id"]] = (region_of[e["dst"] & 0x0FFF], e["msg"]["region"])
        elif e["fate"] == "delivered" and e["id"] in sender_region:
            cluster_region, region = sender_region[e["id"]]
            heard[cluster_region].add(region)
    assert all(a == b for a, b in sender_region.values()), sender_region
    assert heard == {1: {1}, 2: {2}}, heard


def test_regions_in_the_terminal_and_prometheus(ran):
    sc, res, out = ran
    text = (out / "metrics.txt").read_text()
    g = res.metrics["market"]["regions"]
    for r in ("1", "2"):
        assert "market    region %s: rounds %d complete" % (r, g[r]["rounds_complete"]) in text
        assert "auction   region %s:" % r in text
    prom = (out / "metrics.prom").read_text()
    lines = [x for x in prom.splitlines() if x.startswith("fleetloop_market_region_rounds_total{")]
    assert any('region="1"' in x and 'status="complete"' in x for x in lines)
    assert any('region="2"' in x and 'status="complete"' in x for x in lines)
    assert json.loads((out / "metrics.json").read_text())["market"]["regions"] == g
    assert report.to_prometheus(res.metrics).count("fleetloop_market_region_produced{") == 2


def test_one_region_has_no_per_region_section(tmp_path):
    text = TWO.replace("regions: {count: 2, electors: 3}", "regions: {count: 1, electors: 3}")
    sc = scenario.load_text(text.replace("duration_s: 80", "duration_s: 30"), "one.yaml")
    res = run.run(sc, str(tmp_path / "run"), plot=False)
    assert res.metrics["market"]["rounds_complete"] > 0 and "regions" not in res.metrics["market"]


def test_many_regions_markets_are_aggregated_in_the_terminal():
    from ground import fleettable

    def auction(lost, p99):
        return {"bids": 10, "outcomes": {"awarded": 5, "not_awarded": 5 - lost, "lost": lost},
                "decision": {"s_p50": p99 / 2, "s_p99": p99, "s_max": p99}}

    n = fleettable.AGGREGATE_ABOVE + 2
    mk = {"auction": {str(r): auction(r % 4, float(r)) for r in range(1, n + 1)},
          "regions": {str(r): {"lost_share": r / 100.0, "rounds_void": 0, "refused": 1, "rounds_complete": 10 + r % 5}
                      for r in range(1, n + 1)}}
    out = fleettable.market_lines(mk, report._table)
    assert out[0].startswith("%d regions' markets: aggregates over regions" % n)
    p99 = next(x for x in out if x.startswith("decision s p99"))
    assert p99.split()[3:6] == ["7.00", "13.00", "14.00"] and p99.endswith("r14 14.00, r13 13.00, r12 12.00, r11 11.00,"
                                                                              " r10 10.00")
    lost = next(x for x in out if x.startswith("bids lost"))
    assert lost.endswith("r3 3, r7 3, r11 3, r2 2, r6 2")
    assert out[-1] == "fewest rounds complete: r5 10, r10 10, r1 11, r6 11, r11 11"
    void = next(x for x in out if x.startswith("rounds void"))
    assert void.split()[-1] == "-"  # none above zero
