"""Boards inside a simulated fleet, the parts that need no board
(ground/mixed.py, ground/lateness.py): the `boards:` key, the refusals
before any board boots (an elector seat in a region too large for a
board, a board count, a time scale this host cannot keep), and the
lateness histogram. The run with emulated
boards is tests/hil/test_boards_in_fleet.py."""

import json

import pytest

from ground import cli, mixed, scenario
from ground.lateness import Lateness
from ground.yamlfile import ConfigError

FLEET = """\
name: mixed-fleet
seed: 3
duration_s: 60
time_scale: {scale}
election_timeout_ms: 2000
fleet:
  nodes: 100
  cluster_sizes: {{min: 3, max: 8}}
  allow_cluster_sizes: true
  regions: {{count: 1, electors: 3}}
  allow_region_sizes: true
  lineages: 3
  market: {{units: [4, 4, 4, 4, 2, 2, 2, 2], slot_ms: 12000, region_timeout_ms: 3000}}
  links:
    intra_cluster: {{delay_ms: 20, jitter_ms: 5}}
    intra_region: {{delay_ms: 10}}
    ground: {{delay_ms: 50}}
boards: {{cluster: {cluster}}}
"""


def fleet_text(cluster, scale=3):
    return FLEET.format(scale=scale, cluster=cluster)


def board_cluster(sc, sizes=(3, 4)):
    """The first cluster of `sizes` nodes without an elector seat."""
    seats = {sc.nodes[n].cluster for r in sc.regions for n in r.electors}
    return min(c for c, m in sc.clusters.items() if len(m) in sizes and c not in seats)


def elector_cluster(sc):
    return min(sc.nodes[n].cluster for r in sc.regions for n in r.electors)


@pytest.fixture
def sc():
    return scenario.load_text(fleet_text(1), "fleet.yaml")


def write(tmp_path, text):
    p = tmp_path / "fleet.yaml"
    p.write_text(text)
    return str(p)


def test_the_boards_key_names_a_cluster_and_the_board_view_holds_its_nodes_only(sc):
    c = board_cluster(sc)
    sc = scenario.load_text(fleet_text(c), "fleet.yaml")
    assert sc.boards["cluster"] == c and sc.boards["where"] == "fleet.yaml:18"
    view = mixed.board_view(sc)
    assert sorted(view.nodes) == sorted(sc.clusters[c]) == mixed.nodes(sc)
    assert len(sc.nodes) == 100 and view.regions == sc.regions  # the boards' market is the fleet's


@pytest.mark.parametrize("value, says", [("{cluster: 999}", "boards.cluster: 999 is not one of the scenario's"),
                                         ("17", "boards: a mapping {cluster: N}"),
                                         ("{cluster: 1, nodes: 3}", "nodes")])
def test_a_bad_boards_key_is_refused_at_its_line(value, says):
    text = fleet_text(1).replace("boards: {cluster: 1}", "boards: " + value)
    with pytest.raises(ConfigError) as e:
        scenario.load_text(text, "fleet.yaml")
    assert str(e.value).startswith("fleet.yaml:18") and says in str(e.value)


def test_an_elector_seat_of_a_region_larger_than_a_board_holds_is_refused_exit_2(tmp_path, sc, capsys):
    c = elector_cluster(sc)
    assert len(sc.regions[0].nodes) == 100 > mixed.ELECTOR_BOARD_MAX_NODES
    code = cli.main(["run", write(tmp_path, fleet_text(c)), "--emulated", "3", "--out", str(tmp_path / "o"), "-q"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "fleet.yaml:18: boards.cluster %d holds region 1's elector seat" % c in err
    assert "region 1 has 100 nodes: an elector board holds a region of at most %d nodes" \
        % mixed.ELECTOR_BOARD_MAX_NODES in err
    assert not (tmp_path / "o" / "boards").exists()  # refused before any board was started


def test_an_elector_seat_of_a_region_within_the_limit_is_allowed():
    """In-process: check() lets the seat through, and refuses it one node above."""
    text = fleet_text(1).replace("nodes: 100", "nodes: %d" % mixed.ELECTOR_BOARD_MAX_NODES)
    sc = scenario.load_text(text, "fleet.yaml")
    c = elector_cluster(sc)
    sc = scenario.load_text(fleet_text(c).replace("nodes: 100", "nodes: %d" % mixed.ELECTOR_BOARD_MAX_NODES),
                            "fleet.yaml")
    mixed.check(sc)  # no ConfigError
    seats = mixed.elector_seats(sc)
    assert seats and set(seats) <= set(sc.regions[0].electors) & set(mixed.nodes(sc)) and set(seats.values()) == {1}
    # the same seat with the limit one node lower is refused
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(mixed, "ELECTOR_BOARD_MAX_NODES", len(sc.nodes) - 1)
        with pytest.raises(ConfigError, match="region 1 has %d nodes" % len(sc.nodes)):
            mixed.check(sc)


def test_a_board_count_other_than_the_clusters_is_refused_exit_2(tmp_path, sc, capsys):
    c = board_cluster(sc)
    n = len(sc.clusters[c])
    code = cli.main(["run", write(tmp_path, fleet_text(c)), "--emulated", str(n + 1), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "--emulated %d, but boards.cluster %d has %d nodes" % (n + 1, c, n) in err


def test_a_time_scale_this_host_cannot_keep_is_refused_naming_the_largest_that_works(tmp_path, sc, capsys):
    c = board_cluster(sc)
    out = tmp_path / "o"
    code = cli.main(["run", write(tmp_path, fleet_text(c, scale=100000)), "--emulated", "--out", str(out), "-q"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "fleet.yaml:4: time_scale 100000 is more than this machine keeps up with for 100 in-process nodes" in err
    cal = json.loads((out / "calibration.json").read_text())
    assert cal["nodes"] == 100 and cal["mission_s"] == 10 and 0 < cal["max_time_scale"] < 100000
    assert "the largest time scale that works here is %g" % cal["max_time_scale"] in err
    assert cal["max_time_scale"] <= cal["pace"] * mixed.HEADROOM
    assert not (out / "boards").exists()  # refused before any board was started


def test_round_down_is_two_significant_figures_never_up():
    assert [mixed._round_down(x) for x in (13.77, 0.376, 7.0, 123.4, 1.999)] == [13, 0.37, 7, 120, 1.9]


def test_lateness_percentiles_are_bucket_upper_edges_capped_at_the_maximum():
    late = Lateness()
    assert late.summary()["p50_ms"] is None
    for us in [100] * 98 + [5000, 20000]:
        late.add(us * 1000)
    late.add(-5)  # early never happens; counted as on time
    s = late.summary()
    assert s["n"] == 101 and s["max_ms"] == 20.0
    assert 0.1 <= s["p50_ms"] <= 0.1 * 1.13  # 100 us, within its bucket's width
    assert 5.0 <= s["p99_ms"] <= 5.0 * 1.13
    assert late.percentile_ms(100) == 20.0


def test_a_board_count_short_of_the_fleet_without_a_boards_key_names_the_key(tmp_path, capsys):
    text = fleet_text(1).replace("boards: {cluster: 1}\n", "")
    code = cli.main(["run", write(tmp_path, text), "--emulated", "3", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "--emulated 3, but the scenario has 100 nodes" in err and "boards: {cluster: N}" in err
