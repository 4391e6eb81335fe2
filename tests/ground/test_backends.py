"""The engine's board back-end registry (ground/backends.py): lookup order,
clear errors, and a registered back-end driving `ground run`."""

import pytest

from ground import backends, cli, trace

SC = """\
name: reg
seed: 2
duration_s: 10
election_timeout_ms: 2000
clusters:
  - {id: 1, nodes: [1, 2, 3]}
links:
  intra_cluster: {delay_ms: 100}
"""


@pytest.fixture
def clean(monkeypatch):
    monkeypatch.setattr(backends, "_registered", {})


def test_an_unknown_back_end_is_bad_input_naming_where_it_looked(clean):
    with pytest.raises(backends.BackendError) as e:
        backends.get("nope")
    assert "no board back-end 'nope'" in str(e.value) and backends.GROUP in str(e.value)
    assert isinstance(e.value, ValueError)  # ground run: exit 2


def test_a_back_end_that_does_not_load_names_its_entry(clean, monkeypatch):
    monkeypatch.setattr(backends, "_pyproject_entries", lambda: {"broken": "no_such_module_x:make"})
    with pytest.raises(backends.BackendError) as e:
        backends.get("broken")
    assert "'broken'" in str(e.value) and "no_such_module_x:make" in str(e.value) and "does not load" in str(e.value)


def test_the_source_trees_table_comes_before_installed_entry_points(clean, monkeypatch):
    monkeypatch.setattr(backends, "_pyproject_entries", lambda: {"x": "os.path:join"})
    monkeypatch.setattr(backends, "_entry_points", lambda: {"x": "os.path:split", "y": "os.path:split"})
    import os.path

    assert backends.get("x") is os.path.join and backends.get("y") is os.path.split
    assert backends.names() == ["x", "y"]


def test_a_registered_back_end_gives_ground_run_its_boards_and_is_stopped(clean, tmp_path, capsys):
    # A back-end whose "boards" are in-process nodes: the engine takes what the
    # back-end hands it (mode, boards) and stops it after the run.
    calls = []

    def factory(sc, folder, arg):
        calls.append((sc.name, folder, arg))
        return backends.BoardSet("sim", None, stop=lambda: calls.append("stopped"))

    backends.register("emulated", factory)
    path = tmp_path / "reg.yaml"
    path.write_text(SC)
    out = tmp_path / "o"
    assert cli.main(["run", str(path), "--emulated", "3", "--out", str(out), "--quiet"]) == 0
    assert calls == [("reg", str(out / "boards"), 3), "stopped"]
    header, events, _ = trace.read(str(out / "trace.jsonl"))
    assert header["mode"] == "sim" and events[-1]["status"] == "ok"
