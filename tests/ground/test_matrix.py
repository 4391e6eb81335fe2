"""`ground matrix` (ground/matrix.py): which mixes of versions it runs, how it
lays a mix over the clusters, that a gate one mix cannot meet shows up as
FAIL with its value and exit 1, and bad input refused with the value or
file:line before anything runs. Real runs in virtual time, real worker
processes (ground/chaos.py's pool)."""

import json
import os

import pytest

from ground import cli, matrix, scenario
from ground.exitcodes import InputError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# frames_converted {max: 0}: a mix of a 1.x (protocol 1) with a 2.x (protocol 2)
# needs the router to down-convert, so it fails; 2.0 with 2.1 (both protocol 2) holds.
SMALL = """\
name: small-skew
seed: 3
duration_s: 20
election_timeout_ms: 2000
clusters:
  - {id: 1, nodes: [1, 2], firmware: "2.0"}
  - {id: 2, nodes: [3, 4, 5], firmware: "2.0"}
nodes:
  4: {firmware: "1.2", lineage: 1}
links:
  intra_cluster: {delay_ms: 50}
gates:
  split_brain: {max: 0}
  frames_converted: {max: 0}
"""


def _write(tmp_path, text=SMALL, name="small.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_the_mixes_chosen():
    ms = matrix.mixes(matrix.parse_versions("1.4,2.0,2.1,4.0"))
    got = [(m.kind, m.name, m.allowed) for m in ms]
    assert got == [
        ("uniform", "1.4", True), ("uniform", "2.0", True), ("uniform", "2.1", True), ("uniform", "4.0", True),
        ("pair", "1.4+2.0", True), ("pair", "1.4+2.1", True), ("pair", "1.4+4.0", False),
        ("pair", "2.0+2.1", True), ("pair", "2.0+4.0", True), ("pair", "2.1+4.0", True),
        ("all", "1.4+2.0+2.1+4.0", False),
        ("largest", "1.4+2.0+2.1", True), ("largest", "2.0+2.1+4.0", True),
    ]
    # the largest allowed subsets may be more than 3; none when the whole list may run
    big = [m.name for m in matrix.mixes(["1.4", "2.0", "2.1", "3.0", "5.0"]) if m.kind == "largest"]
    assert big == ["1.4+2.0+2.1+3.0"]
    assert not [m for m in matrix.mixes(["1.0", "2.0", "3.0", "3.1"]) if m.kind == "largest"]
    assert not [m for m in matrix.mixes(["1.0", "4.0", "7.0", "9.0"]) if m.kind == "largest"]
    # three versions: the full set too; two: none beyond the pair
    assert [m.kind for m in matrix.mixes(["1.0", "2.0", "3.0"])].count("all") == 1
    assert [m.kind for m in matrix.mixes(["1.0", "2.0"])].count("all") == 0
    assert matrix.parse_versions(" 01.4 , 2.0") == ["1.4", "2.0"]


def test_a_mix_is_laid_over_the_clusters_and_one_cluster_is_mixed(tmp_path):
    from ground import chaos_schedules as gen

    base = gen.load_base(_write(tmp_path))
    mix = matrix.Mix("all", ("1.4", "2.0", "2.1"))
    sc = scenario.load_text(gen.to_yaml(matrix.apply_mix(base.data, mix)), "mixed.yaml")
    fw = {nid: n.firmware for nid, n in sc.nodes.items()}
    # cluster 1 takes the first version; cluster 2 (the most nodes) is the mixed one,
    # its nodes in turn; node 4's own firmware 1.2 is replaced, its lineage kept
    assert fw == {1: "1.4", 2: "1.4", 3: "1.4", 4: "2.0", 5: "2.1"}
    assert sc.nodes[4].lineage == 1
    uniform = scenario.load_text(gen.to_yaml(matrix.apply_mix(base.data, matrix.Mix("uniform", ("2.1",)))), "u.yaml")
    assert {n.firmware for n in uniform.nodes.values()} == {"2.1"}


def test_matrix_fails_the_mix_a_gate_cannot_meet(tmp_path, capsys):
    out = tmp_path / "out"
    rc = cli.main(["matrix", _write(tmp_path), "--versions", "1.4,2.0,2.1,5.0", "--workers", "2",
                   "--out", str(out), "--quiet"])
    printed = capsys.readouterr().out
    assert rc == 1
    doc = json.loads((out / "matrix.json").read_text())
    rows = {r["mix"]: r for r in doc["mixes"]}
    assert list(rows) == ["1.4", "2.0", "2.1", "5.0", "1.4+2.0", "1.4+2.1", "1.4+5.0", "2.0+2.1", "2.0+5.0",
                          "2.1+5.0", "1.4+2.0+2.1+5.0", "1.4+2.0+2.1"]
    head = printed.splitlines()[0].split()
    assert head == ["MIX", "KIND", "frames_converted", "split_brain", "HISTORY"]
    assert printed.splitlines()[8].split() == ["2.0+2.1", "pair", "PASS", "0", "PASS", "0", "PASS"]
    assert printed.splitlines()[7].split() == ["1.4+5.0", "pair", "not", "allowed"]
    for name in ("1.4+5.0", "2.0+5.0", "2.1+5.0", "1.4+2.0+2.1+5.0"):  # more than 2 majors apart: not run
        assert rows[name]["result"] == "not allowed" and not (out / (name + ".yaml")).exists()
    # the whole list may not run together: its largest subset that may runs as a triple
    assert rows["1.4+2.0+2.1"]["kind"] == "largest" and rows["1.4+2.0+2.1"]["allowed"]
    triple = scenario.load(str(out / "1.4+2.0+2.1.yaml"))
    assert {n.firmware for n in triple.nodes.values()} == {"1.4", "2.0", "2.1"}
    assert os.path.exists(os.path.join(out, rows["1.4+2.0+2.1"]["run_dir"], "trace.jsonl"))
    for name in ("1.4+2.0", "1.4+2.1", "1.4+2.0+2.1"):  # protocol 1 meets protocol 2: frames converted
        conv = rows[name]["gates"]["frames_converted"]
        assert rows[name]["result"] == "gate" and not conv["ok"] and conv["value"] > 0
        line = next(x for x in printed.splitlines() if x.startswith(name + " "))
        assert "FAIL %d" % conv["value"] in line
    for name in ("1.4", "2.0", "2.1", "5.0", "2.0+2.1"):  # one protocol among them: nothing converted
        assert rows[name]["result"] == "pass", rows[name]
        assert rows[name]["gates"]["frames_converted"] == {"value": 0, "ok": True}
        assert rows[name]["gates"]["split_brain"]["ok"]
    # each mix's run folder holds its trace and history verdict; its scenario file runs as it is
    assert os.path.exists(os.path.join(out, rows["2.0+2.1"]["run_dir"], "trace.jsonl"))
    assert os.path.exists(os.path.join(out, rows["1.4+2.0"]["run_dir"], "history.txt"))
    again = scenario.load(str(out / "1.4+2.0.yaml"))
    assert {n.firmware for n in again.nodes.values()} == {"1.4", "2.0"}


def test_matrix_passes_when_every_mix_meets_its_gates(tmp_path, capsys):
    out = tmp_path / "out"
    rc = cli.main(["matrix", _write(tmp_path), "--versions", "2.0,2.1", "--workers", "1", "--out", str(out)])
    printed = capsys.readouterr().out
    assert rc == 0
    assert [r["result"] for r in json.loads((out / "matrix.json").read_text())["mixes"]] == ["pass"] * 3
    assert "2.0+2.1" in printed and "FAIL" not in printed
    # the same --out again is refused: nothing recorded is overwritten unasked
    assert cli.main(["matrix", _write(tmp_path), "--versions", "2.0,2.1", "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err


@pytest.mark.parametrize("versions, says", [
    ("1.4,2.x", "'2.x' is not a firmware version 'major.minor'"),
    ("1.4", "at least 2 versions"),
    ("1.4,2.0,1.4", "1.4 is listed twice"),
    ("1.4,4.0", "no two of these may run together (majors 1 and 4 are 3 apart"),
])
def test_bad_versions_are_refused_with_the_value(tmp_path, capsys, versions, says):
    out = tmp_path / "out"
    assert cli.main(["matrix", _write(tmp_path), "--versions", versions, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert says in err and "--versions %s" % versions in err
    assert not out.exists()  # refused before anything ran or was written


def test_bad_scenarios_are_refused_with_file_and_line(tmp_path, capsys):
    missing = str(tmp_path / "nope.yaml")
    assert cli.main(["matrix", missing, "--versions", "1.4,2.0"]) == 2
    assert "cannot read: %s" % missing in capsys.readouterr().err
    bad = _write(tmp_path, SMALL.replace("frames_converted", "frames_convertd"), "bad.yaml")
    assert cli.main(["matrix", bad, "--versions", "1.4,2.0"]) == 2
    assert "%s:14:" % bad in capsys.readouterr().err  # the gates line naming the unknown metric
    fleet = os.path.join(ROOT, "scenarios", "fleet-1k.yaml")
    with pytest.raises(InputError, match=r"fleet-1k\.yaml:\d+: fleet: gives this scenario's firmware"):
        matrix.make_jobs(fleet, ["1.4", "2.0"])
