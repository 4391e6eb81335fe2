"""The lean fleet path (ground/fleetrun.py, ground/shard.py): the same
per-node counters and metrics as the Run path where both apply, a traced
cluster's trace that the history checker, pcap export and frame replay take,
the same counters with 1, 2 and 4 shards (and 4 on two Ray workers when
Ray is installed), counters that do not grow with the mission, and a dying
worker named."""

import collections
import json
import re
import os

import pytest

from ground import cli, exitcodes, firmware, fleetrun, history, pcap, replay, run, scenario, trace
from ground.fleetcount import Counters

LINK = "{delay_ms: 300, jitter: normal, jitter_ms: 40, loss: 0.02}"


def fleet_text(nodes, cluster_size=10, duration_s=20, faults="", link=LINK, seed=3):
    """An explicit scenario: nodes // cluster_size clusters of consecutive ids."""
    clusters = "\n".join(
        "  - {id: %d, nodes: [%s]}" % (c + 1, ", ".join(str(c * cluster_size + i + 1) for i in range(cluster_size)))
        for c in range(nodes // cluster_size))
    return ("name: lean%d\nseed: %d\nduration_s: %g\nelection_timeout_ms: 3000\nclusters:\n%s\n"
            "links:\n  intra_cluster: %s\n  inter_cluster: {delay_ms: 900}\n%s"
            % (nodes, seed, duration_s, clusters, link, faults))


FAULTS = """faults:
  - {at_s: 6, crash: coordinator, cluster: 1, duration_s: 5}
  - {at_s: 8, power_cut: 14, duration_s: 4}
  - {at_s: 9, partition: [[21, 22], [23, 24, 25, 26, 27, 28, 29, 30]]}
  - {at_s: 14, heal: true}
  - {at_s: 16, reset: 35}
"""


def _run_counters(path):
    """Per (node, type): [sent, delivered, dropped] from a Run path trace."""
    _, events, _ = trace.read(path)
    types = {}
    out = collections.defaultdict(lambda: [0, 0, 0])
    for e in events:
        if e["kind"] != "frame":
            continue
        if e["fate"] == "sent":
            types[e["id"]] = e["type"]
            out[(e["src"], e["type"])][0] += 1
        elif e["fate"] == "delivered":
            out[(e["to"], types[e["id"]])][1] += 1
        elif e["fate"] == "dropped":
            out[(e["to"], types[e["id"]])][2] += 1
    return dict(out)


def _sent(run_dir):
    _, events, _ = trace.read(str(run_dir / "trace.jsonl"))
    return [e for e in events if e["kind"] == "frame" and e["fate"] == "sent"]


def _lean_counters(result):
    return {(int(n), t): [c["sent"], c["delivered"], c["dropped"]]
            for n, row in result.fleet["nodes"].items() for t, c in row.items()}


def test_lean_equals_the_run_path(tmp_path):
    sc = scenario.load_text(fleet_text(40, duration_s=24, faults=FAULTS), "<lean40>")
    ref = run.run(sc, str(tmp_path / "run"), plot=False)
    lean = fleetrun.run(sc, str(tmp_path / "lean"))
    assert ref.status == lean.status == "ok"
    want = _run_counters(str(tmp_path / "run" / "trace.jsonl"))
    got = _lean_counters(lean)
    assert sum(v[1] for v in got.values()) > 1000 and any(v[2] for v in got.values())
    assert got == want
    # a small explicit scenario keeps its full trace: the metrics families agree to the last key
    assert lean.metrics["flat"] == ref.metrics["flat"]
    assert lean.fleet["fleet"]["drop_reasons"]["partition"] > 0


def test_traced_clusters_trace_is_checked_exported_replayed(tmp_path):
    sc = scenario.load_text(fleet_text(60, duration_s=15, faults="faults:\n  - {at_s: 5, crash: coordinator,"
                                                                    " cluster: 2, duration_s: 4}\n"), "<lean60>")
    out = tmp_path / "lean"
    r = fleetrun.run(sc, str(out), traced=[2])
    header, events, torn = trace.read(str(out / "trace.jsonl"))
    assert not torn and sorted(map(int, header["nodes"])) == list(range(11, 21))
    assert {e["src"] for e in events if e.get("fate") == "sent"} <= set(range(11, 21))
    rep = history.check(str(out / "trace.jsonl"))
    assert rep.readable and not rep.violations
    x = pcap.export(str(out / "trace.jsonl"), str(tmp_path / "t.pcapng"))
    assert x.packets > 100
    rr = replay.replay_frames(str(out / "trace.jsonl"), 13)
    assert rr.identical
    # the traced cluster's metrics are the run's metrics; the fleet's are the counters
    assert r.metrics["flat"]["frames_sent"] == sum(c[0] for (n, _), c in _lean_counters(r).items() if 11 <= n <= 20)
    assert r.fleet["fleet"]["sent"] > 5 * r.metrics["flat"]["frames_sent"]
    assert r.metrics["flat"]["failover_count"] >= 1


def _invariant_view(result):
    f = result.fleet
    return {k: f[k] for k in ("nodes", "drop_reasons", "clusters", "regions", "fleet")}


def test_same_counters_with_1_2_and_4_shards(tmp_path):
    sc = scenario.load_text(fleet_text(200, duration_s=18, faults=FAULTS), "<lean200>")
    base = fleetrun.run(sc, str(tmp_path / "s1"), shards=1)
    assert len(base.fleet["shards"]) == 1 and base.fleet["fleet"]["delivered"] > 10000
    runs = [("s2", dict(shards=2)), ("s4", dict(shards=4))]
    try:
        import ray  # noqa: F401
        # One local Ray (its start is most of a Ray run's ~8 s here): two actors, each running two
        # shards in turn. One actor per shard: test_a_dying_ray_worker_is_named's run.
        runs.append(("s4w2", dict(workers=2, shards=4)))
    except ImportError:
        pass
    for name, kw in runs:
        r = fleetrun.run(sc, str(tmp_path / name), **kw)
        assert r.status == "ok", r.failures
        assert len(r.fleet["shards"]) == int(name[1])
        assert _invariant_view(r) == _invariant_view(base), name


def test_by_default_a_shard_holds_about_shard_nodes_and_workers_get_runs_of_shards():
    sc = scenario.load_text(fleet_text(1000), "<lean1000>")
    assert fleetrun.default_shards(sc, 1) == 1000 // fleetrun.SHARD_NODES
    assert fleetrun.default_shards(sc, 64) == 64  # at least one per worker
    small = scenario.load_text(fleet_text(40), "<lean40>")
    assert fleetrun.default_shards(small, 1) == 1 and fleetrun.default_shards(small, 2) == 2
    plan = fleetrun.plan_shards(sc, 8)
    assert fleetrun.plan_workers(sc, plan, 3) == [[0, 1, 2], [3, 4, 5], [6, 7]]
    assert fleetrun.plan_workers(sc, plan[:2], 3) == [[0], [1]]  # fewer workers than asked, none idle
    lean = fleetrun.LeanRun(sc, "/nonexistent", workers=2)
    assert len(lean.plan) == 25 and lean.groups == [list(range(13)), list(range(13, 25))]  # 40 nodes a shard


def test_shards_keep_regions_whole():
    text = open(os.path.join(os.path.dirname(__file__), "..", "..", "scenarios", "market-clusters.yaml")).read()
    sc = scenario.load_text(text, "market-clusters.yaml")
    assert len(fleetrun.plan_shards(sc, 4)) == 1  # its one market region holds every cluster
    sc = scenario.load_text(fleet_text(100), "<lean100>")
    plan = fleetrun.plan_shards(sc, 3)
    assert sorted(c for p in plan for c in p) == sorted(sc.clusters) and [len(p) for p in plan] == [4, 3, 3]


def test_counters_do_not_grow_with_the_mission(tmp_path):
    sizes, buckets, sent = [], [], []
    for k, d in enumerate((200, 400)):
        sc = scenario.load_text(fleet_text(10, cluster_size=5, duration_s=d), "<lean10>")
        lean = fleetrun.LeanRun(sc, str(tmp_path / str(k)))
        r = lean.execute()
        sizes.append(lean.counters.size())
        buckets.append(sum(len(b) for b in lean.counters.buckets.values()))
        sent.append(r.fleet["fleet"]["sent"])
    assert sent[1] > 1.8 * sent[0]  # twice the mission, about twice the frames
    assert buckets[1] == buckets[0]  # ... in as many buckets (twice as wide)
    # per node: a cell per message type and drop reason seen, whatever the mission's length
    n_types, n_reasons = len(firmware.msgs.all_layouts()), 8
    assert sizes[1] <= 11 * (n_types + n_reasons) + buckets[1]
    assert sizes[1] - buckets[1] < 1.1 * (sizes[0] - buckets[0])
    c = Counters({1: 1}, [1], 10 ** 6)
    assert len(c.buckets[1]) <= 64


def test_a_dying_shard_is_named_and_its_counters_kept(tmp_path):
    sc = scenario.load_text(fleet_text(40, duration_s=30), "<lean40>")
    r = fleetrun.run(sc, str(tmp_path / "x"), shards=2, die=(1, 14.0))
    assert r.status == "failed"
    assert any("shard 1 (clusters 3..4)" in f and "failed at mission 14.0" in f for f in r.failures), r.failures
    fleet = json.load(open(tmp_path / "x" / "fleet.json"))
    # the mission up to the last window every shard finished (windows of LONE_SYNC_S = 10 s here)
    assert fleet["status"] == "failed" and fleet["fleet"]["delivered"] > 0 and fleet["mission_s"] == 10.0
    trace.read(str(tmp_path / "x" / "trace.jsonl"), allow_torn=False)


def test_a_dying_ray_worker_is_named(tmp_path):
    pytest.importorskip("ray")
    sc = scenario.load_text(fleet_text(40, duration_s=10), "<lean40>")
    r = fleetrun.run(sc, str(tmp_path / "x"), workers=2, die=(1, 4.0))
    assert r.status == "failed"
    assert any("shard 1 (clusters 3..4) died" in f for f in r.failures), r.failures
    fleet = json.load(open(tmp_path / "x" / "fleet.json"))
    assert [s["counters"] for s in fleet["shards"]] == ["kept", "lost (the worker died)"]
    assert fleet["fleet"]["sent"] > 0  # shard 0's counters, written


def test_a_ray_worker_killed_for_memory_is_named_and_the_run_ends(tmp_path, monkeypatch):
    # Ray's own memory monitor, made to act at once: it kills a worker and
    # ray.get raises OutOfMemoryError, which is not a RayActorError (a 50,000-node
    # sweep on a 24 GB host ended in a traceback, its outputs unwritten).
    pytest.importorskip("ray")
    monkeypatch.setenv("RAY_memory_usage_threshold", "0.001")
    monkeypatch.setenv("RAY_memory_monitor_refresh_ms", "50")
    sc = scenario.load_text(fleet_text(40, duration_s=10), "<lean40>")
    r = fleetrun.run(sc, str(tmp_path / "x"), workers=2)
    assert r.status == "failed"
    assert any(re.search(r"shard \d \(clusters \d\.\.\d\) died while .*low on memory", f) for f in r.failures), r.failures
    fleet = json.load(open(tmp_path / "x" / "fleet.json"))
    assert fleet["status"] == "failed"


def test_cli_lean_run_and_bad_input(tmp_path, capsys):
    path = tmp_path / "f.yaml"
    path.write_text(fleet_text(30, duration_s=5))
    assert cli.main(["run", str(path), "--lean", "-q", "--out", str(tmp_path / "o"), "--trace-clusters", "2"]) == 0
    out = capsys.readouterr().out
    assert "fleet: 30 nodes in 3 clusters" in out and "PASS" in out
    assert json.load(open(tmp_path / "o" / "fleet.json"))["traced_clusters"] == [2]
    assert cli.main(["run", str(path), "--lean", "-q", "--out", str(tmp_path / "p"), "--trace-clusters", "9"]) == \
        exitcodes.BAD_INPUT
    assert "cluster 9 is not in the scenario" in capsys.readouterr().err
    assert cli.main(["run", str(path), "--shards", "3", "-q", "--out", str(tmp_path / "s")]) == 0  # --shards: lean
    assert len(json.load(open(tmp_path / "s" / "fleet.json"))["shards"]) == 3
    assert cli.main(["run", str(path), "--shards", "0", "-q", "--out", str(tmp_path / "z")]) == exitcodes.BAD_INPUT
    assert "--shards 0: want 1 or more" in capsys.readouterr().err


def test_frames_across_units_go_through_the_window_exchange(tmp_path, monkeypatch):
    """With each cluster a unit of its own (as regions will be), the
    electors' frames cross units: they are exchanged at the window's end,
    in the same order whatever the shards, and none arrives early."""
    text = open(os.path.join(os.path.dirname(__file__), "..", "..", "scenarios", "market-clusters.yaml")).read()
    text = text.replace("duration_s: 600", "duration_s: 200")
    views = []
    for k, shards in enumerate((1, 3)):
        sc = scenario.load_text(text, "market-clusters.yaml")
        monkeypatch.setattr(fleetrun, "units_of", lambda sc: {c: ("cluster", c) for c in sc.clusters})
        lean = fleetrun.LeanRun(sc, str(tmp_path / str(k)), shards=shards)
        assert lean.window_ns == fleetrun.S and len(lean.plan) == shards  # 1 s: under the 2.5 s light delay
        r = lean.execute()
        assert r.status == "ok", r.failures
        assert lean.stats["crossed"] > 100 and r.fleet["fleet"]["held_to_window"] == 0
        views.append(_invariant_view(r))
    assert views[0] == views[1]


# Two regions of ten clusters of five, three electors each, a market per region
# (also the partial-trace checker's fleet: tests/ground/test_history_lean.py).
TWO_REGIONS = """\
name: two-regions
seed: 4
duration_s: 70
election_timeout_ms: 2000
fleet:
  nodes: 100
  cluster_sizes: {min: 5, max: 5}
  regions: {count: 2, electors: 3}
  allow_region_sizes: true
  lineages: 3
  firmware: {"2.0": 1.0}
  market: {units: [2, 2, 2, 2, 1, 1, 1, 1], slot_ms: 30000, region_timeout_ms: 6000}
  geometry: {ring_radius_km: 100000, region_radius_km: 20000}
  links:
    intra_cluster: {delay_ms: 20}
    intra_region: {delay_ms: 10}
    inter_region: {delay_ms: 10}
"""


def test_lean_equals_the_run_path_with_two_regions(tmp_path):
    """A fleet description with two regions, each its own market (ground/fleetdesc.py):
    shards are whole regions, each region's address reaches its own electors."""
    p = tmp_path / "two.yaml"
    p.write_text(TWO_REGIONS)
    sc = scenario.load(str(p))
    assert len(sc.regions) == 2
    ref = run.run(sc, str(tmp_path / "run"), plot=False)
    lean = fleetrun.run(sc, str(tmp_path / "lean"))
    assert ref.status == lean.status == "ok"
    want = _run_counters(str(tmp_path / "run" / "trace.jsonl"))
    assert _lean_counters(lean) == want
    types = {t for (nid, t) in want}
    assert "bid" in types and "prices" in types  # both markets ran
    auction = ref.metrics["market"]["auction"]  # decisions per region, each its own market
    assert sorted(auction) == sorted(str(r.region) for r in sc.regions)
    assert all(a["bids"] > 0 for a in auction.values())
    assert sum(a["bids"] for a in auction.values()) == sum(1 for e in _sent(tmp_path / "run") if e["type"] == "bid")
    two = fleetrun.run(sc, str(tmp_path / "lean2"), shards=2)
    assert _lean_counters(two) == want


def test_scenario_trace_key_names_the_traced_clusters(tmp_path, capsys):
    path = tmp_path / "t.yaml"
    path.write_text(fleet_text(30, duration_s=4) + "trace: {clusters: [3, 2]}\n")
    sc = scenario.load(str(path))
    assert sc.trace == {"clusters": [2, 3]}
    r = fleetrun.run(sc, str(tmp_path / "o"))
    assert r.fleet["traced_clusters"] == [2, 3]
    header, events, _ = trace.read(str(tmp_path / "o" / "trace.jsonl"))
    assert sorted(int(n) for n in header["nodes"]) == list(range(11, 31))
    assert {e["src"] for e in events if e["kind"] == "frame" and e["fate"] == "sent"} <= set(range(11, 31))
    # --trace-clusters still wins over the key
    assert cli.main(["run", str(path), "--lean", "-q", "--out", str(tmp_path / "p"), "--trace-clusters", "1"]) == 0
    assert json.load(open(tmp_path / "p" / "fleet.json"))["traced_clusters"] == [1]
    # a cluster the scenario lacks, or not a list: refused at load with the file's line
    for bad, want in (("trace: {clusters: [2, 9]}", "cluster 9 is not in the scenario"),
                      ("trace: {clusters: 2}", "a list of cluster ids"),
                      ("trace: {nodes: [2]}", "unknown key 'nodes'")):
        path.write_text(fleet_text(30, duration_s=4) + bad + "\n")
        assert cli.main(["run", str(path), "--lean", "-q", "--out", str(tmp_path / "q")]) == exitcodes.BAD_INPUT
        err = capsys.readouterr().err
        assert "t.yaml:" in err and want in err, err


def test_a_fleets_default_trace_holds_its_first_regions_market_and_its_gates_hold(tmp_path):
    """Above FULL_TRACE_NODES a lean run traces a few clusters: by default the
    first ones and those of the first region's electors, so the default
    market gate sees the rounds; frames from traced nodes to nodes outside
    the trace (a BID to an untraced coordinator) have no fate in it and are
    not counted unfated. (fleet-1k.yaml failed both gates on --lean before.)"""
    p = tmp_path / "f.yaml"
    p.write_text(TWO_REGIONS.replace("nodes: 100", "nodes: 300").replace("duration_s: 70", "duration_s: 30")
                 .replace("slot_ms: 30000", "slot_ms: 12000")
                 + "gates:\n  split_brain: {max: 0}\n  unfated_frames: {max: 0}\n")
    sc = scenario.load(str(p))
    assert len(sc.nodes) > fleetrun.FULL_TRACE_NODES
    electors_clusters = {sc.nodes[e].cluster for e in sc.regions[0].electors}
    assert not electors_clusters <= set(sorted(sc.clusters)[:fleetrun.DEFAULT_TRACED])  # the electors add clusters
    assert cli.main(["run", str(p), "--lean", "-q", "--out", str(tmp_path / "o")]) == exitcodes.OK
    traced = json.load(open(tmp_path / "o" / "fleet.json"))["traced_clusters"]
    assert set(traced) == set(sorted(sc.clusters)[:fleetrun.DEFAULT_TRACED]) | electors_clusters
    header, events, _ = trace.read(str(tmp_path / "o" / "trace.jsonl"))
    listed = {int(n) for n in header["nodes"]}
    outside = [e for e in events if e["kind"] == "frame" and e["fate"] == "sent" and 0 < e["dst"] < 0xF000
               and e["dst"] not in listed]
    assert outside  # traced nodes did send to nodes the trace does not hold
    m = json.load(open(tmp_path / "o" / "metrics.json"))
    assert m["flat"]["market_rounds_complete"] >= 1 and m["flat"]["unfated_frames"] == 0, m["flat"]


def test_a_ray_address_where_nothing_listens_is_bad_input_at_once(tmp_path, capsys):
    """ray.init retries such an address for minutes (it was still waiting
    after 120 s); the run asks the port first (ground/fleetray.py)."""
    import socket

    from ground import fleetray

    with socket.socket() as s:  # a port nothing listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = tmp_path / "f.yaml"
    path.write_text(fleet_text(30, duration_s=4))
    rc = cli.main(["run", str(path), "--lean", "-q", "--ray-address", "127.0.0.1:%d" % port, "--out", str(tmp_path / "o")])
    assert rc == exitcodes.BAD_INPUT
    assert "--ray-address 127.0.0.1:%d: nothing answers at 127.0.0.1:%d" % (port, port) in capsys.readouterr().err
    fleetray.check_reachable("auto")  # not host:port: left to Ray


def test_a_ray_address_where_something_else_listens_is_bad_input_and_a_real_gcs_passes():
    """ray.init retries an address that is not a Ray head for minutes too (an
    HTTP server: still waiting after 150 s); the check wants gRPC's HTTP/2
    SETTINGS frame back, which a real GCS sends."""
    import socket
    import threading

    from ground import fleetray

    with socket.socket() as silent:  # accepts, says nothing
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        with pytest.raises(ValueError, match=r"not a Ray head \(no answer within 0.5 s\)"):
            fleetray.check_reachable("127.0.0.1:%d" % silent.getsockname()[1], timeout_s=0.5)
    with socket.socket() as web:  # an HTTP/1 server's answer (the dashboard's port, say)
        web.bind(("127.0.0.1", 0))
        web.listen()

        def answer():
            conn, _ = web.accept()
            with conn:
                conn.recv(64)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

        t = threading.Thread(target=answer, daemon=True)
        t.start()
        with pytest.raises(ValueError, match=r"it answered b'HTTP/1\.1 ?', not gRPC"):
            fleetray.check_reachable("ray://127.0.0.1:%d" % web.getsockname()[1], timeout_s=5)
        t.join(5)
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:  # a real Ray head's GCS, started for this test
        fleetray.check_reachable(ray.get_runtime_context().gcs_address)
    finally:
        ray.shutdown()


def test_a_replication_scenario_is_refused_on_the_lean_path_and_a_big_one_runs_in_full(tmp_path, capsys, monkeypatch):
    """The lean path adds no nodes (its nodes never join or split): asked for,
    a scenario with `replication:` is refused at that key's line; taken
    automatically (--sim above LEAN_AUTO_NODES), the full path runs it."""
    path = os.path.join(os.path.dirname(__file__), "..", "..", "scenarios", "replication.yaml")
    assert cli.main(["run", path, "--lean", "-q", "--out", str(tmp_path / "a")]) == exitcodes.BAD_INPUT
    err = capsys.readouterr().err
    assert re.search(r"replication\.yaml:\d+: replication: not supported on the lean path", err), err
    assert "run this scenario without --lean/--workers" in err, err
    monkeypatch.setattr(fleetrun, "LEAN_AUTO_NODES", 5)
    assert cli.main(["run", path, "--sim", "--out", str(tmp_path / "b")]) == 0  # its gates: nodes were added
    err = capsys.readouterr().err
    assert "the lean path cannot run this scenario" in err and "the full --sim path runs it" in err, err
    assert re.search(r"replication\.yaml:\d+: replication: not supported", err) and "without --lean" not in err, err
    assert not (tmp_path / "b" / "fleet.json").exists()


def test_radio_links_keep_their_airtime_on_the_lean_path_as_on_sim(tmp_path):
    """A `radio:` link is its sender's one transmitter, shared by its links
    and telling frames apart by their ids, on the lean path as on --sim:
    the same fates and the same airtime per node (scenarios/lora.yaml: the
    budget holds frames back). Before, every lean frame had id 0, so each
    link's transmitter took the first frame's release for all the others."""
    path = os.path.join(os.path.dirname(__file__), "..", "..", "scenarios", "lora.yaml")
    assert cli.main(["run", path, "--sim", "-q", "--out", str(tmp_path / "sim")]) == 0
    assert cli.main(["run", path, "--lean", "-q", "--out", str(tmp_path / "lean")]) == 0
    sim, lean = (json.load(open(tmp_path / k / "metrics.json")) for k in ("sim", "lean"))
    assert sim["airtime"]["nodes"] and lean["airtime"] == sim["airtime"]
    assert lean["frames"] == sim["frames"]
