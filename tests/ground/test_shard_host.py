"""Lean shards in a child process of another Python (ground/shard_host.py,
`ground run --shard-python PY`).

The host's mechanics (start, windows, a shard that raises, a child that
dies or never answers, Ctrl-C) are tested with this interpreter as the
child's, so they run everywhere. That PyPy's shards compute what this
interpreter's do, byte for byte, needs PyPy: `make pypy` sets up
.venv-pypy (Debian's pypy3); without it those tests skip, unless
FLEETLOOP_REQUIRE_PYPY=1 (CI sets it), where they fail.
"""

import json
import os
import signal
import subprocess
import sys

import pytest

from ground import fleetrun, scenario
from ground.shard_host import HostError, ShardHost
from tests.ground.test_fleetrun import FAULTS, fleet_text

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PYPY = os.environ.get("FLEETLOOP_SHARD_PYTHON") or os.path.join(ROOT, ".venv-pypy", "bin", "python")
FILES = ("fleet.json", "metrics.json", "trace.jsonl")


def _pypy():
    if os.access(PYPY, os.X_OK):
        return PYPY
    if os.environ.get("FLEETLOOP_REQUIRE_PYPY") == "1":
        pytest.fail("FLEETLOOP_REQUIRE_PYPY=1 but %s is missing: `make pypy` (needs Debian's pypy3)" % PYPY)
    pytest.skip("no PyPy for the shards: `make pypy` (needs Debian's pypy3) sets up %s" % PYPY)


def _outputs(d):
    return {fn: open(os.path.join(d, fn), "rb").read() for fn in FILES}


def _faults200():
    return scenario.load_text(fleet_text(200, duration_s=18, faults=FAULTS), "<shard_host faults200>")


def test_the_child_runs_the_shards_as_this_process_does(tmp_path):
    sc = _faults200()
    fleetrun.run(sc, str(tmp_path / "here"), shards=3)
    r = fleetrun.run(sc, str(tmp_path / "child"), shards=3, shard_python=sys.executable)
    assert r.status == "ok"
    assert _outputs(tmp_path / "child") == _outputs(tmp_path / "here")
    assert json.load(open(tmp_path / "child" / "fleet.json"))["fleet"]["delivered"] > 10_000


@pytest.mark.parametrize("case", ["faults200-3shards", "containment-sever", "version-skew", "tier3-intent"])
def test_pypy_shards_give_the_same_counters_fates_and_trace_byte_for_byte(tmp_path, case):
    py = _pypy()
    if case == "faults200-3shards":
        sc, kw = _faults200(), {"shards": 3}
    else:
        sc, kw = scenario.load(os.path.join(ROOT, "scenarios", case + ".yaml")), {}
    fleetrun.run(sc, str(tmp_path / "cpython"), **kw)
    r = fleetrun.run(sc, str(tmp_path / "pypy"), shard_python=py, **kw)
    assert r.status == "ok"
    # the trace's header names the scenario's path and the run's seed, not the interpreter: the same bytes
    assert _outputs(tmp_path / "pypy") == _outputs(tmp_path / "cpython")


def test_pypy_shards_on_ray_workers_give_what_one_process_gives(tmp_path):
    py = _pypy()
    pytest.importorskip("ray")
    sc = _faults200()
    fleetrun.run(sc, str(tmp_path / "one"), shards=2)
    r = fleetrun.run(sc, str(tmp_path / "ray"), shards=2, workers=2, shard_python=py)
    assert r.status == "ok"
    assert _outputs(tmp_path / "ray") == _outputs(tmp_path / "one")


def test_a_shard_that_raises_in_the_child_is_named_and_the_others_counters_kept(tmp_path):
    sc = scenario.load_text(fleet_text(40, duration_s=20), "<lean40>")
    r = fleetrun.run(sc, str(tmp_path / "x"), shards=2, die=(1, 14.0), shard_python=sys.executable)
    assert r.status == "failed"
    # the message InProcess gives for the same death (tests/ground/test_fleetrun.py)
    assert any("shard 1 (clusters 3..4) failed at mission 14.0" in f and "injected death of shard 1" in f
               for f in r.failures), r.failures
    fleet = json.load(open(tmp_path / "x" / "fleet.json"))
    assert fleet["status"] == "failed" and fleet["mission_s"] == 10.0 and fleet["fleet"]["delivered"] > 0


def _host(sc, tmp_path, **kw):
    lean = fleetrun.LeanRun(sc, str(tmp_path / "x"), shards=2)
    specs = [dict(s, trace_path=None) for s in lean._specs()]
    return ShardHost(sys.executable, specs, **kw)


def test_a_child_killed_mid_run_ends_the_wait_at_once_with_its_exit(tmp_path):
    sc = scenario.load_text(fleet_text(40, duration_s=20), "<lean40>")
    host = _host(sc, tmp_path)
    try:
        outs, cpu_s = host.call("advance", 5_000_000_000, [[], []], False)
        assert outs == [[], []] and cpu_s > 0
        assert host.call("where") == 5_000_000_000
        os.kill(host.proc.pid, signal.SIGKILL)
        with pytest.raises(HostError, match=r"the shard process \(.*\) exited with code -9") as e:
            host.call("advance", 10_000_000_000, [[], []], False)
        assert e.value.shard is None
    finally:
        host.close()


def test_ctrl_c_is_left_to_the_parent_and_the_child_still_answers(tmp_path):
    sc = scenario.load_text(fleet_text(20, duration_s=10), "<lean20>")
    host = _host(sc, tmp_path)
    try:
        os.kill(host.proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C reaches every process of its group
        host.call("advance", 2_000_000_000, [[], []], False)
        states = host.call("finish", [[], []], "interrupted", "interrupted by the user")
        assert len(states) == 2 and all(s["cpu_s"] > 0 for s in states)
    finally:
        host.close()
    assert host.proc.returncode == 0  # it left when its stdin closed


def _wrapper(tmp_path, body):
    p = tmp_path / "py"
    p.write_text("#!/bin/sh\n" + body + "\n")
    p.chmod(0o755)
    return str(p)


def test_an_interpreter_that_cannot_import_the_engine_is_named_with_why(tmp_path):
    # -S: no site-packages, so no construct or PyYAML, as a bare PyPy
    py = _wrapper(tmp_path, 'exec "%s" -S "$@"' % sys.executable)
    sc = scenario.load_text(fleet_text(20, duration_s=10), "<lean20>")
    with pytest.raises(ValueError, match=r"--shard-python .*py: the shard process did not start:"
                                         r" ModuleNotFoundError: No module named"):
        fleetrun.run(sc, str(tmp_path / "x"), shard_python=py)


def test_a_child_that_never_answers_is_given_up_after_its_timeout(tmp_path):
    py = _wrapper(tmp_path, "exec sleep 30")
    sc = scenario.load_text(fleet_text(20, duration_s=10), "<lean20>")
    lean = fleetrun.LeanRun(sc, str(tmp_path / "x"))
    with pytest.raises(ValueError, match=r"did not start: the shard process \(.*py\) did not answer in 1 s"):
        ShardHost(py, lean._specs(), start_timeout_s=1.0)


def test_ground_run_refuses_a_shard_python_that_is_not_there(tmp_path):
    sc_path = tmp_path / "f.yaml"
    sc_path.write_text(fleet_text(20, duration_s=5))
    p = subprocess.run([sys.executable, "-m", "ground", "run", str(sc_path), "--lean", "--shard-python",
                        "no-such-python", "--out", str(tmp_path / "x"), "-q"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr
    assert "--shard-python no-such-python: no such program" in p.stderr
    assert "Traceback" not in p.stderr


def test_the_child_collects_in_full_only_once_its_rss_has_grown_past_the_margin(monkeypatch):
    from ground import shard_host

    rss = [1000]
    monkeypatch.setattr(shard_host._Tidy, "rss_mb", staticmethod(lambda: rss[0]))
    full = []
    monkeypatch.setattr(shard_host.gc, "collect", lambda: full.append(rss[0]))
    tidy = shard_host._Tidy()
    tidy.after()  # the baseline: 1,000 MB
    for mb in (1050, 1100):  # within 10 % (and 32 MB) of it
        rss[0] = mb
        tidy.after()
    assert full == [] and tidy.base_mb == 1000
    rss[0] = 1101
    tidy.after()
    assert full == [1101] and tidy.collections == 1 and tidy.base_mb == 1101  # RSS as read after the collection
    small = shard_host._Tidy()
    rss[0] = 100
    small.after()
    rss[0] = 131  # 10 % of a small process is under the 32-MB floor
    small.after()
    assert full == [1101]
    rss[0] = 133
    small.after()
    assert full == [1101, 133]


def test_auto_takes_the_projects_pypy_only_for_runs_long_enough_to_pay_for_its_warm_up(monkeypatch):
    from ground.shard_host import AUTO_NODE_S, AUTO_WINDOW_NODE_S, choose

    monkeypatch.setenv("FLEETLOOP_SHARD_PYTHON", sys.executable)
    assert choose("auto", 10_000, 3600, 10) == sys.executable
    assert choose("auto", 1000, AUTO_NODE_S / 1000, 1) == sys.executable
    assert choose("auto", 1000, AUTO_NODE_S / 1000 - 1, 1) is None  # 1,000 nodes for a minute or two: this Python
    assert choose("auto", 1000, 3600, AUTO_WINDOW_NODE_S / 1000) == sys.executable
    # a few nodes for a long mission: a window's round trip to the child would outweigh its work
    assert choose("auto", 3, 2_764_800, 10) is None
    assert choose("auto", 1000, 3600, AUTO_WINDOW_NODE_S / 1000 / 2) is None
    assert choose("this", 10_000, 3600, 10) is None
    assert choose(sys.executable, 3, 1, 10) == sys.executable  # named: whatever the run
    monkeypatch.setenv("FLEETLOOP_SHARD_PYTHON", "no-such-python")
    with pytest.raises(ValueError, match="FLEETLOOP_SHARD_PYTHON=no-such-python: no such program"):
        choose("auto", 10_000, 3600, 10)
    assert choose("auto", 10, 1, 10) is None  # too small to look for it
    monkeypatch.setenv("FLEETLOOP_SHARD_PYTHON", sys.executable)
    from ground import shard_host

    monkeypatch.setattr(shard_host, "available_mb", lambda: 10_000)
    assert choose("auto", 30_000, 60, 1) == sys.executable  # 9 GB for PyPy's shards: there
    assert choose("auto", 40_000, 60, 1) is None  # 12 GB: CPython's, which fit in half
    monkeypatch.setattr(shard_host, "available_mb", lambda: None)  # not Linux: no check
    assert choose("auto", 40_000, 60, 1) == sys.executable


def test_ground_run_takes_pypy_by_itself_for_a_big_run_and_says_so(tmp_path, monkeypatch):
    # FLEETLOOP_SHARD_PYTHON stands for .venv-pypy here: this interpreter, so it runs everywhere
    sc_path = tmp_path / "f.yaml"
    sc_path.write_text(fleet_text(2000, duration_s=100))
    env = dict(os.environ, FLEETLOOP_SHARD_PYTHON=sys.executable)
    p = subprocess.run([sys.executable, "-m", "ground", "run", str(sc_path), "--lean", "--out", str(tmp_path / "x"),
                        "-v"], cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert p.returncode == 0, p.stderr
    assert "shards on %s" % sys.executable in p.stderr
    assert "backend child (%s)" % os.path.basename(sys.executable) in p.stdout
    # `this` keeps them here, whatever the size
    monkeypatch.setenv("FLEETLOOP_SHARD_PYTHON", sys.executable)
    sc = scenario.load(str(sc_path))
    assert fleetrun.LeanRun(sc, str(tmp_path / "y"), shard_python="auto").shard_python == sys.executable
    assert fleetrun.LeanRun(sc, str(tmp_path / "y"), shard_python="this").shard_python is None


def test_a_shard_process_that_dies_under_a_ray_worker_is_named_with_its_exit(tmp_path):
    pytest.importorskip("ray")
    sc = scenario.load_text(fleet_text(40, duration_s=10), "<lean40>")
    r = fleetrun.run(sc, str(tmp_path / "x"), workers=2, die=(1, 4.0), shard_python=sys.executable)
    assert r.status == "failed"
    # what the actor raised, not Ray's coloured "ray::_ShardActor.advance() (pid=...)" header
    assert any("shard 1 (clusters 3..4) died while running the window" in f
               and f.endswith("the shard process (%s) exited with code 70" % sys.executable) for f in r.failures), r.failures
    fleet = json.load(open(tmp_path / "x" / "fleet.json"))
    assert [s["counters"] for s in fleet["shards"]] == ["kept", "lost (the worker died)"]
