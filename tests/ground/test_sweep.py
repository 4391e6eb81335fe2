"""`ground sweep` (ground/sweep.py, ground/sweepreport.py): a small sweep of
one fleet description at two sizes, its figures checked against the runs'
own counters and traces, and bad input refused with the file and line."""

import json
import os

import pytest

from ground import cli, exitcodes, sweep, sweepreport, trace
from ground.fleetcount import TIERS, USAGE_FIELDS

FLEET = """name: tiny-sweep
seed: 2
duration_s: 40
election_timeout_ms: 2000
fleet:
  nodes: 100
  cluster_sizes: {min: 10, max: 20}
  regions: {clusters: {min: 20, max: 50}, electors: 3}
  lineages: 4
%s  market: {units: [4, 4, 4, 4, 2, 2, 2, 2], slot_ms: 12000, region_timeout_ms: 3000}
  links:
    intra_cluster: {delay_ms: 20, jitter_ms: 5, loss: 0.001}
    intra_region: {delay_ms: 5}
"""


def _tier_of_trace(sc, src, dst):
    """The tier of a frame from src to dst, from the expanded scenario."""
    if dst == 0:
        return "ground"
    if dst == 0xFFFF:
        return "inter_region" if len(sc.regions) > 1 else "intra_region"
    region_of = sc.cluster_region
    mine = sc.nodes[src].cluster
    if dst & 0xF000 == 0xF000:
        k = dst & 0xFFF
        if k >= 0xE00:
            return "intra_region" if k - 0xE00 == region_of[mine] else "inter_region"
        other = k
    else:
        other = sc.nodes[dst].cluster
    if other == mine:
        return "intra_cluster"
    return "intra_region" if region_of[other] == region_of[mine] else "inter_region"


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    d = tmp_path_factory.mktemp("sweep")
    path = d / "tiny.yaml"
    path.write_text(FLEET % "  radio_bps: 50000\n")
    out = d / "out"
    code = cli.main(["sweep", str(path), "--sizes", "100,50", "--traced", "2", "--out", str(out), "-q"])
    return code, out, json.load(open(out / "sweep.json"))


def test_sweep_writes_one_row_per_size_beside_the_design(swept):
    code, out, data = swept
    assert code == exitcodes.OK
    assert [r["nodes"] for r in data["sizes"]] == [50, 100]
    assert data["costs"]["machine"] and data["costs"]["how"]
    for r in data["sizes"]:
        assert r["status"] == "ok"
        assert set(r["tiers"]) == set(TIERS)
        assert r["messages_per_node_hour"] == pytest.approx(sum(t["messages_per_node_hour"] for t in r["tiers"].values()))
        for share in ("link_share", "cpu_share"):
            s = r[share]
            assert 0 < s["p50"] <= s["p99"] <= s["max"] < 1, (share, s)
        assert r["tiers"]["intra_cluster"]["messages_per_node_hour"] > 0 and r["tiers"]["ground"]["bytes_per_node_hour"] > 0
        assert r["note"]  # both sizes are below one region of 20 clusters: said so
        assert r["regions"] == 1
        # the probe crashed each of the first 2 clusters' coordinators: failovers were measured
        assert r["failover_s"]["count"] >= 1 and r["failover_s"]["p50"] <= r["failover_s"]["p99"]
        assert r["auction_decision_s"]["count"] >= 1
        assert 0 <= r["production_lost_share"] <= 1
    small, big = data["sizes"]
    assert big["frames"]["sent"] > small["frames"]["sent"]
    assert small["design"] is None and big["design"]["text"] == "< 2 %"
    assert (out / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (out / "sweep.txt").read_text()
    assert "beside the design" in text and "< 2 %" in text


def test_sweep_figures_agree_with_the_runs_counters(swept):
    _, out, data = swept
    for r in data["sizes"]:
        fleet = json.load(open(out / str(r["nodes"]) / "fleet.json"))
        idx = {k: i for i, k in enumerate(USAGE_FIELDS)}
        hours = r["mission_s"] / 3600
        frames = sum(u[idx[t + "_frames"]] for u in fleet["usage"].values() for t in TIERS)
        # every frame a node sent is counted under exactly one tier
        assert frames == fleet["fleet"]["sent"]
        assert r["messages_per_node_hour"] * r["nodes"] * hours == pytest.approx(frames)
        # frames received: what the counters say each node was delivered
        for nid, u in fleet["usage"].items():
            assert u[idx["rx_frames"]] == sum(c["delivered"] for c in fleet["nodes"].get(nid, {}).values())
        bits = 8 * sum(sum(u[idx[t + "_bytes"]] for t in TIERS) + u[idx["rx_bytes"]] for u in fleet["usage"].values())
        assert r["link_share"]["mean"] == pytest.approx(bits / (r["radio_bps"] * r["mission_s"]) / r["nodes"])


def test_sweep_tiers_agree_with_the_traced_frames(swept):
    _, out, data = swept
    r = data["sizes"][-1]
    run = out / str(r["nodes"])
    sc, _, _ = sweep.load_at(str(out.parent / "tiny.yaml"), r["nodes"])
    _, events, _ = trace.read(str(run / "trace.jsonl"))
    fleet = json.load(open(run / "fleet.json"))
    want = {}
    for e in events:
        if e["kind"] == "frame" and e["fate"] == "sent":
            cell = want.setdefault(e["src"], {k: [0, 0] for k in TIERS})
            cell[_tier_of_trace(sc, e["src"], e["dst"])][0] += 1
            cell[_tier_of_trace(sc, e["src"], e["dst"])][1] += e["len"]
    assert len(want) >= 10
    idx = {k: i for i, k in enumerate(USAGE_FIELDS)}
    for nid, cells in want.items():
        u = fleet["usage"][str(nid)]
        assert {t: [u[idx[t + "_frames"]], u[idx[t + "_bytes"]]] for t in TIERS} == cells, nid


def test_design_bands_and_verdicts():
    assert sweepreport.design_band(99) is None
    assert [sweepreport.design_band(n)["text"] for n in (100, 499, 500, 2000, 10000, 50000, 90000)] == \
        ["< 2 %", "< 2 %", "3-8 %", "5-12 %", "8-15 %", "10-20 %", "10-20 %"]
    band = sweepreport.design_band(2000)
    assert [sweepreport.verdict(x, band) for x in (0.01, 0.05, 0.12, 0.2, None)] == \
        ["below", "within", "within", "above", "-"]


def test_cpu_share_is_counts_times_costs():
    costs = {"poll_us": 10.0, "rx_us": {"heartbeat": 50.0}, "tx_us": {"heartbeat": 20.0, "telemetry": 40.0}}
    us, unpriced = sweep.cpu_us({"heartbeat": {"sent": 2, "delivered": 3, "dropped": 0},
                                 "telemetry": {"sent": 1, "delivered": 0, "dropped": 0},
                                 "state": {"sent": 0, "delivered": 2, "dropped": 1}}, 4, costs)
    # 4 polls, 3 heartbeats received and 2 sent, a telemetry sent, 2 states received at the mean receive cost
    assert us == pytest.approx(4 * 10 + 3 * 50 + 2 * 20 + 40 + 2 * 50)
    assert unpriced == {"state"}


def test_sweep_bad_input(tmp_path, capsys):
    path = tmp_path / "noradio.yaml"
    path.write_text(FLEET % "")
    assert cli.main(["sweep", str(path), "--sizes", "50", "--out", str(tmp_path / "a"), "-q"]) == exitcodes.BAD_INPUT
    err = capsys.readouterr().err
    assert "noradio.yaml:" in err and "radio_bps" in err
    path.write_text(FLEET % "  radio_bps: -5\n")
    assert cli.main(["sweep", str(path), "--sizes", "50", "--out", str(tmp_path / "b"), "-q"]) == exitcodes.BAD_INPUT
    assert "noradio.yaml:10: fleet.radio_bps" in capsys.readouterr().err
    assert cli.main(["sweep", str(path), "--sizes", "5o", "--out", str(tmp_path / "c"), "-q"]) == exitcodes.BAD_INPUT
    assert "--sizes 5o" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "a" / "sweep.json")
    # a step fine at the file's size but not at one of --sizes: refused before any size runs, naming that size
    path.write_text(FLEET % "  radio_bps: 250000\n" + "  steps:\n    - {at_s: 5, crash: 90}\n")
    assert cli.main(["sweep", str(path), "--sizes", "100,60", "--out", str(tmp_path / "d"), "-q"]) == exitcodes.BAD_INPUT
    err = capsys.readouterr().err
    assert "noradio.yaml:16: fault crash: unknown node 90 (at fleet.nodes 60, from --sizes)" in err, err
    assert not os.path.exists(tmp_path / "d" / "100")
