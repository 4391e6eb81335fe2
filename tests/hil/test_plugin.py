"""The pytest plugin (hil/pytest_plugin.py), driven through pytester: markers
skip what a rig cannot do and say why; live runs wait and step in mission
time; JUnit carries the metrics; failed tests keep the boards' serial logs;
a rig of real Picos that are not attached skips its tests naming their serial
numbers; and the real-board path (mpremote configure, soft reset, HELLO) runs
against emulated boards served behind `url:` entries.
"""

import os
import shutil
from pathlib import Path

import pytest

from ground import history
from plugin_sessions import junit_properties, run_plugin

pytest_plugins = ["pytester"]

# pytester's in-process runs drop the modules an inner run imported; numpy
# (under matplotlib, which draws each run's timeline) cannot be imported twice
# in one process, so it is imported here, once, for every inner run.
import matplotlib.backends.backend_agg  # noqa: E402,F401
import matplotlib.figure  # noqa: E402,F401

REPO = Path(__file__).resolve().parents[2]
HAVE_BOARDS = (Path(os.sys.executable).parent / "micropython").exists()

SMALL = '''
name: small
seed: 3
duration_s: 40
time_scale: 10
election_timeout_ms: 2000
clusters:
  - {id: 1, nodes: [1, 2, 3], lineages: [0, 1]}
links:
  intra_cluster: {delay_ms: 100, jitter: uniform, jitter_ms: 10}
'''


def _skips(result):
    return "\n".join(line for line in result.outlines if line.startswith("SKIPPED"))


# ---- markers ------------------------------------------------------------------------


def test_markers_the_emulated_rig_cannot_meet_are_skipped_with_the_reason(pytester):
    pytester.makepyfile(test_m='''
        import pytest

        @pytest.mark.needs("radio")
        def test_radio(boards):
            pass

        @pytest.mark.boards(2, kind="pico2")
        def test_pico2():
            pass

        @pytest.mark.boards(40)
        def test_many(boards):
            pass

        @pytest.mark.boards(3, kind="pico")
        @pytest.mark.needs("power_control")
        def test_fits(boards, rig):
            assert boards.count == 3 and boards.kind == "pico" and boards.needs == ("power_control",)
            assert rig.mode == "emulated"
    ''')
    r = run_plugin(pytester)
    r.assert_outcomes(passed=1, skipped=3)
    s = _skips(r)
    assert "emulated boards lack radio" in s
    assert "emulated boards are emulated_pico; the test needs kind pico2" in s
    assert "needs 40 boards; at most 16 emulated boards" in s


def test_a_misspelt_feature_stops_the_collection_naming_the_test(pytester):
    pytester.makepyfile(test_typo='''
        import pytest

        @pytest.mark.needs("power_contol")
        def test_x():
            pass
    ''')
    r = run_plugin(pytester)
    assert r.ret == pytest.ExitCode.USAGE_ERROR
    assert "test_typo.py::test_x: @pytest.mark.needs('power_contol'): unknown feature" in "\n".join(r.errlines)
    pytester.makepyfile(test_typo='''
        import pytest

        @pytest.mark.boards(2, kind="pcio")
        def test_x():
            pass
    ''')
    r = run_plugin(pytester)
    assert r.ret == pytest.ExitCode.USAGE_ERROR
    assert "@pytest.mark.boards(kind='pcio'): unknown board kind (known: emulated_pico, pico," in "\n".join(r.errlines)


# ---- a rig of real Picos that are not attached ---------------------------------------------


def test_rig_of_absent_picos_skips_naming_their_serial_numbers(pytester):
    rig = REPO / "boards" / "rig-example-picos.yaml"
    pytester.makepyfile(test_r='''
        import pytest

        SC = %r

        @pytest.mark.boards(3, kind="pico")
        def test_three_picos(harness):
            pass

        def test_no_marker_runs_a_scenario(harness):
            harness.run(SC)

        @pytest.mark.boards(2, kind="pico")
        @pytest.mark.needs("power_control")
        def test_power(boards):
            pass
    ''' % SMALL)
    r = run_plugin(pytester, "--rig=%s" % rig)
    r.assert_outcomes(skipped=3)
    lines = _skips(r).splitlines()
    assert len(lines) == 3
    three = next(x for x in lines if "needs 3 pico boards" in x)
    assert "0 available; not attached: pico-a (serial E6614C311B4A2B2F), pico-b (serial E6614C311B4A2B3C)," \
           " pico-c (serial E6614C311B4A2B47)" in three
    scenario = next(x for x in lines if "needs 3 boards" in x)  # no marker: the scenario's three nodes
    assert "2 available; not attached: pico-a (serial E6614C311B4A2B2F)" in scenario
    assert any("pico-a lacks power_control" in x for x in lines)


def test_a_bad_rig_file_stops_the_session_naming_file_and_line(pytester):
    bad = pytester.path / "rig-bad.yaml"
    bad.write_text("rig: bad\nboards:\n  - {name: a, kind: pico, serial: 'X', node_id: 1, cluster: 1, colour: red}\n")
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    r = run_plugin(pytester, "--rig=%s" % bad)
    assert r.ret == pytest.ExitCode.USAGE_ERROR
    assert "rig-bad.yaml:3" in "\n".join(r.errlines) and "colour" in "\n".join(r.errlines)


def test_a_rig_file_under_xdist_workers_is_refused_before_any_board_is_touched(pytester):
    # rig-emulated-8.yaml is valid and would boot its boards; two workers would boot and drive each of them twice
    pytester.makepyfile(test_x="def test_x(boards):\n    pass\n")
    r = run_plugin(pytester, "--rig=%s" % (REPO / "boards" / "rig-emulated-8.yaml"), "-n", "2")
    assert r.ret == pytest.ExitCode.USAGE_ERROR
    err = "\n".join(r.errlines)
    assert "rig-emulated-8.yaml: a rig file's boards are one set" in err and "-n 2" in err and "run with -n 0" in err, err
    r = run_plugin(pytester, "--rig=sim", "-n", "2")  # in-process nodes: each worker its own
    r.assert_outcomes(passed=1)


# ---- live runs in virtual time (--rig sim): exact, so checkable to the frame ------------------------


LIVE = '''
import pytest

SC = """%s"""

@pytest.mark.boards(3)
def test_live(harness, trace):
    with harness.start(SC) as live:
        c = live.wait_for(lambda f: f.agreed(1), timeout_s=8, what="a coordinator")
        t0 = live.now_s
        live.wait_s(2.5)
        assert live.now_s >= t0 + 2.5
        assert live.wait_for(lambda f: f.agreed(1), timeout_s=1) == c  # true at once: time stands still
        live.step({"crash": c})
        rest = [n for n in (1, 2, 3) if n != c]
        new = live.wait_for(lambda f: f.agreed(1, nodes=rest) not in (None, c) and f.agreed(1, nodes=rest),
                            timeout_s=8, what="a new coordinator")
    res = live.result
    harness.check(res, failover_count={"min": 1}, split_brain={"max": 0})
    crash = trace.events("fault", fault="crash")
    assert len(crash) == 1 and crash[0]["node"] == c and "step 1 of" in crash[0]["detail"]["where"]
    assert abs(crash[0]["mission_ns"] / 1e9 - (t0 + 2.5)) < 0.01
    print("RESULT", c, new, res.trace_path)

def test_never(harness):
    with harness.start(SC) as live:
        live.wait_for(lambda f: f.agreed(1) == 99, timeout_s=5, what="node 99 leading")

def test_broken_predicate(harness):
    with harness.start(SC) as live:
        live.wait_for(lambda f: f.node(42), timeout_s=5)
''' % SMALL


def test_live_run_in_virtual_time_waits_steps_and_records(pytester):
    pytester.makepyfile(test_live=LIVE)
    out = pytester.path / "hil"
    r = run_plugin(pytester, "--rig", "sim", "--hil-out", str(out), "--junitxml", str(pytester.path / "j.xml"), "-s")
    r.assert_outcomes(passed=1, failed=2)
    text = "\n".join(r.outlines)
    assert "WaitTimeout: node 99 leading: not within 5 mission s (from 0.0 s to 5.0 s)" in text
    assert "KeyError: 42" in text
    props = junit_properties(pytester.path / "j.xml")
    p = props["test_live"]
    assert p["scenario"] == "small" and p["mode"] == "sim" and p["status"] == "ok"
    assert p["failover_count"] == "1" and p["split_brain"] == "0" and p["history_violations"] == "0"
    assert os.path.exists(p["trace"]) and p["trace"].endswith("run/trace.jsonl") and os.path.exists(p["metrics"])
    assert float(p["failover_T_max"]) > 0 and "mission_s" in p and "unfated_frames" in p
    assert history.check(p["trace"], scenario="small").ok
    prom = (out / "metrics.prom").read_text()
    assert prom.count("# TYPE fleetloop_mission_seconds gauge") == 1
    # the run's own labels (ground/report.py), then the session's
    assert 'fleetloop_mission_seconds{run_id="run",scenario="small",test="test_live.py::test_live",run="1"} 40' in prom
    assert 'fleetloop_hil_history_violations{test="test_live.py::test_never",run="1"} 0' in prom
    assert "serial_logs" not in p  # it passed: nothing kept


def test_live_runs_in_virtual_time_are_reproducible(pytester):
    pytester.makepyfile(test_live=LIVE)
    traces = []
    for i in range(2):
        r = run_plugin(pytester, "--rig", "sim", "--hil-out", str(pytester.path / ("o%d" % i)), "-s", "test_live.py::test_live")
        r.assert_outcomes(passed=1)
        line = next(x for x in r.outlines if "RESULT" in x)
        traces.append(Path(line.split()[-1]).read_bytes())
    assert traces[0] == traces[1]


def test_scenarios_from_text_dict_or_path_with_overrides(pytester):
    (pytester.path / "sc.yaml").write_text(SMALL)
    pytester.makepyfile(test_s='''
        import yaml

        SC = %r

        def test_forms(harness):
            a = harness.scenario(SC)
            b = harness.scenario(yaml.safe_load(SC), seed=9, duration_s=5)
            c = harness.scenario("sc.yaml", name="renamed")
            assert (a.seed, a.duration_s, a.path) == (3, 40, "<test_s.py::test_forms>")
            assert (b.seed, b.duration_s, sorted(b.nodes)) == (9, 5, [1, 2, 3])
            assert c.name == "renamed" and c.path == "sc.yaml"
            res = harness.run(b)
            assert res.ok and res.scenario is b and res.flat["mission_s"] == 5
    ''' % SMALL)
    run_plugin(pytester, "--rig", "sim").assert_outcomes(passed=1)


def test_merge_prometheus_keeps_one_help_and_type_per_family(tmp_path):
    from hil.pytest_plugin import merge_prometheus

    a, b = tmp_path / "a.prom", tmp_path / "b.prom"
    text = ('# HELP fleetloop_x_seconds x\n# TYPE fleetloop_x_seconds summary\nfleetloop_x_seconds{cluster="1",'
            'quantile="0.5"} 1.5\nfleetloop_x_seconds_sum{cluster="1"} 3\nfleetloop_x_seconds_count{cluster="1"} 2\n'
            '# HELP fleetloop_y y\n# TYPE fleetloop_y gauge\nfleetloop_y NaN\n')
    a.write_text(text)
    b.write_text(text)
    out = merge_prometheus([(str(a), {"test": 't.py::a "q"'}), (str(b), {"test": "t.py::b"})],
                           extra=[("fleetloop_z", "z", "gauge", [({"test": "t.py::a"}, 0)])])
    lines = out.splitlines()
    assert lines.count("# TYPE fleetloop_x_seconds summary") == 1 and lines.count("# HELP fleetloop_y y") == 1
    assert 'fleetloop_x_seconds_sum{cluster="1",test="t.py::a \\"q\\""} 3' in lines
    assert 'fleetloop_y{test="t.py::b"} NaN' in lines
    # Each family's samples follow its own TYPE line, together.
    assert lines.index("# TYPE fleetloop_y gauge") > max(i for i, x in enumerate(lines) if x.startswith("fleetloop_x"))
    assert lines[-1] == 'fleetloop_z{test="t.py::a"} 0'


# ---- emulated boards --------------------------------------------------------------------------


@pytest.mark.skipif(not HAVE_BOARDS, reason="needs the MicroPython unix port in .venv (make venv)")
@pytest.mark.timeout(120)
def test_failed_test_on_emulated_boards_keeps_serial_logs(pytester):
    pytester.makepyfile(test_e='''
        import pytest

        SC = %r

        @pytest.mark.boards(3, kind="pico")
        def test_fails_after_a_run(harness):
            res = harness.run(SC.replace("duration_s: 40", "duration_s: 12"))
            assert res.ok, res.failures
            assert False, "on purpose"
    ''' % SMALL)
    out = pytester.path / "hil"
    r = run_plugin(pytester, "--hil-out", str(out), "--junitxml", str(pytester.path / "j.xml"))
    r.assert_outcomes(failed=1)
    p = junit_properties(pytester.path / "j.xml")["test_fails_after_a_run"]
    assert p["mode"] == "emulated"
    logs = Path(p["serial_logs"])
    for nid in (1, 2, 3):
        raw = (logs / ("node%d.log" % nid)).read_bytes()
        assert raw and b"\x00" in raw  # the bytes the board printed, frames and all
        txt = (logs / ("node%d.txt" % nid)).read_text()
        assert "frame hello %d -> 0" % nid in txt and "frame heartbeat %d -> 61441" % nid in txt


@pytest.mark.skipif(not HAVE_BOARDS or not shutil.which("mpremote", path=str(Path(os.sys.executable).parent)),
                    reason="needs the MicroPython unix port and mpremote in .venv (make venv)")
@pytest.mark.timeout(180)
def test_rig_of_serial_urls_configures_resets_and_runs(pytester, tmp_path):
    """The real-board path, against emulated boards served behind `url:`: the
    plugin writes each board's board.json and version.json with mpremote,
    soft-resets it over its port, waits for its HELLO and runs the scenario."""
    from hil import flash
    from hil.emulated import EmulatedBoard

    boards = []
    try:
        lines = ["rig: urls", "boards:"]
        for nid in (1, 2, 3):
            folder = tmp_path / ("b%d" % nid)
            flash.write_image(str(folder), board_config={"node_id": nid, "cluster": 1, "members": [1, 2, 3],
                                                          "watchdog_ms": 0})
            b = EmulatedBoard(folder, name="b%d" % nid).start()
            boards.append(b)
            lines.append("  - {name: b%d, kind: pico, url: '%s', node_id: %d, cluster: 1}" % (nid, b.link, nid))
        rig = pytester.path / "rig-urls.yaml"
        rig.write_text("\n".join(lines) + "\n")
        pytester.makepyfile(test_u='''
            import pytest

            SC = %r

            @pytest.mark.boards(3, kind="pico")
            def test_runs(harness, trace):
                with harness.start(SC.replace("duration_s: 40", "duration_s: 20")) as live:
                    live.wait_for(lambda f: f.agreed(1), timeout_s=10, what="a coordinator")
                harness.check(live.result, split_brain={"max": 0})
                header = trace.read()[0]
                assert header["mode"] == "rig" and header["nodes"]["1"]["link"].endswith("b1.tty")

            @pytest.mark.needs("power_control")
            def test_power(boards):
                pass
        ''' % SMALL)
        r = run_plugin(pytester, "--rig=%s" % rig, "--hil-out", str(pytester.path / "hil"))
        r.assert_outcomes(passed=1, skipped=1)
        assert "lacks power_control" in _skips(r)
        # The scenario's timers went to the board's flash, the rig's identity stayed.
        import json

        cfg = json.loads((tmp_path / "b2" / "board.json").read_text())
        assert cfg["node_id"] == 2 and cfg["election_timeout_ms"] == 2000 and cfg["time_scale_milli"] == 10000
    finally:
        for b in boards:
            b.stop()
