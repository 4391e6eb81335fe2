"""The pytest plugin's runs take spare boards for daughters (docs/HIL.md
"Spare boards"; hil/rig_spares.py, hil/emulated_run.py boot_spare), driven
through pytester as tests/hil/test_plugin.py drives the plugin.

The scenario is scenarios/replication-boards.yaml cut down to one node (one
emulated board) whose auction runs every 0.6 s: it completes a daughter (id
2) at about 6.7 mission s, in a 10 s run. A rig file with that board and one
emulated `spare: true` entry runs two tests in one session: the first must
see the daughter boot on the spare (node_added, board_added naming it, its
HELLO from that board) and the spare off after the run; the second must find
the spare off (no interpreter on its flash), take it again, and boot on a
wiped flash (a file left on it after the first test is gone). About 30 s of
wall time. `--rig emulated --hil-spares 1` runs one failing test (about
15 s): its daughter goes on the farm's spare, the failure report and the
JUnit property name the board. The option's refusals need no boards.
"""

import os
import sys
from pathlib import Path

import pytest

from plugin_sessions import junit_properties, run_plugin

pytest_plugins = ["pytester"]

# As in test_plugin.py: numpy (under matplotlib) cannot be imported twice in one process.
import matplotlib.backends.backend_agg  # noqa: E402,F401
import matplotlib.figure  # noqa: E402,F401

ROOT = Path(__file__).resolve().parents[2]
HAVE_BOARDS = (Path(sys.executable).parent / "micropython").exists()
needs_boards = pytest.mark.skipif(not HAVE_BOARDS, reason="needs the MicroPython unix port in .venv (make venv)")

RIG = """\
rig: one-and-a-spare
boards:
  - {name: pico0, kind: emulated_pico, emulated: true, node_id: 1, cluster: 1, lineage: 0}
  - {name: spare0, kind: emulated_pico, emulated: true, spare: true}
"""


def _scenario(folder):
    """replication-boards.yaml with one node, its slot 0.6 s, 10 mission s."""
    text = (ROOT / "scenarios" / "replication-boards.yaml").read_text()
    for old, new in (("nodes: [1, 2, 3], hw_gen: 3, lineages: [0, 1, 2]", "nodes: [1], hw_gen: 3, lineages: [0]"),
                     ("electors: [1, 2, 3]", "electors: [1]"), ("slot_ms: 2400 ", "slot_ms: 600 "),
                     ("\nduration_s: 40\n", "\nduration_s: 10\n")):
        assert old in text, old
        text = text.replace(old, new)
    path = Path(folder) / "replication-one.yaml"
    path.write_text(text)
    return str(path)


def running_in(folder):
    """Pids of processes whose working folder is `folder` (an emulated
    board's interpreter runs in its flash folder: hil/emulated.py)."""
    folder = os.path.realpath(folder)
    pids = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if os.path.realpath(os.readlink("/proc/%s/cwd" % pid)) == folder:
                    pids.append(int(pid))
            except OSError:
                pass  # gone, or not ours to read
    return pids


INNER = '''
import os

import pytest

SC = %(sc)r

%(running_in)s

def _spare_dir(rig):
    return os.path.join(rig.folder(), "emulated", "spare0")


def _placed(trace):
    return ([e["node"] for e in trace.events("node", event="node_added")],
            [(e["node"], e["board"]) for e in trace.events("node", event="board_added")])


def test_first_takes_the_spare(harness, trace, rig):
    res = harness.run(SC)
    assert _placed(trace) == ([2], [(2, "spare0")]), trace.events("node")
    assert trace.frames(type="hello", src=2), "no HELLO from the daughter on spare0"
    assert not trace.events("node", event="daughter_lost")
    assert res.placements()[0].startswith("node 2 (daughter of node 1) on board spare0 ("), res.placements()
    d = _spare_dir(rig)
    assert not running_in(d), "spare0 still runs after the run"
    assert os.path.exists(os.path.join(d, "state", "node2")), os.listdir(d)  # the daughter saved its state
    with open(os.path.join(d, "state", "left-by-test-1"), "w") as f:
        f.write("what a first test left on the spare's flash")


def test_second_finds_it_off_and_unused(harness, trace, rig):
    d = _spare_dir(rig)
    assert os.path.exists(os.path.join(d, "state", "left-by-test-1"))  # the first test ran, in this session
    assert not running_in(d), "spare0 is on at the start of the second test"
    harness.run(SC)
    assert _placed(trace) == ([2], [(2, "spare0")]), trace.events("node")  # free again: the daughter took it
    assert trace.frames(type="hello", src=2)
    assert not os.path.exists(os.path.join(d, "state", "left-by-test-1")), "spare0's flash was not wiped"
    assert not running_in(d)
'''


@needs_boards
def test_plugin_runs_put_a_daughter_on_a_rig_spare_and_leave_it_off_and_fresh(pytester):
    sc = _scenario(pytester.path)
    (pytester.path / "rig.yaml").write_text(RIG)
    pytester.makepyfile(test_spares=INNER % {"sc": sc, "running_in": _source(running_in)})
    out, xml = pytester.path / "hil", pytester.path / "junit.xml"
    res = run_plugin(pytester, "--rig", "rig.yaml", "--hil-out", str(out), "--junitxml", str(xml), "-p", "no:randomly",
               "test_spares.py")
    res.assert_outcomes(passed=2)
    props = junit_properties(xml)
    for name in ("test_first_takes_the_spare", "test_second_finds_it_off_and_unused"):
        assert props[name]["daughters"].startswith("node 2 (daughter of node 1) on board spare0 ("), props[name]
    spare = out / "rig" / "emulated" / "spare0"
    assert spare.is_dir() and not running_in(spare)


FAILING = '''
def test_fails_after_a_daughter(harness, trace):
    harness.run(%(sc)r)
    assert trace.events("node", event="board_added")
    assert False, "this test fails on purpose"
'''


@needs_boards
def test_emulated_rig_gives_hil_spares_and_a_failure_names_the_daughters_board(pytester):
    pytester.makepyfile(test_fail=FAILING % {"sc": _scenario(pytester.path)})
    xml, out = pytester.path / "junit.xml", pytester.path / "hil"
    res = run_plugin(pytester, "--hil-spares", "1", "--junitxml", str(xml), "--hil-out", str(out))
    res.assert_outcomes(failed=1)
    text = res.stdout.str()
    assert "this test fails on purpose" in text  # it got past the board_added assertion
    assert "fleetloop: daughters" in text and "node 2 (daughter of node 1) on board spare1 (" in text, text
    assert "1 spare board per scenario with replication:" in text  # the report header says so
    props = junit_properties(xml)["test_fails_after_a_daughter"]
    assert props["daughters"].startswith("node 2 (daughter of node 1) on board spare1 ("), props
    serial = out / "test_fail.py_test_fails_after_a_daughter" / "run" / "serial"
    assert "frame hello 2 -> 0 " in (serial / "node2.txt").read_text()  # the spare's serial log is kept too


def test_sim_daughters_are_in_process_in_the_report_and_bad_hil_spares_are_refused(pytester):
    """No boards run: --rig sim puts daughters in-process; the option's refusals."""
    pytester.makepyfile(test_sim='''
        def test_sim(harness):
            res = harness.run(%r)
            assert res.placements() == ["node 2 (daughter of node 1) in-process"], res.placements()
    ''' % _scenario(pytester.path))
    xml = pytester.path / "junit.xml"
    run_plugin(pytester, "--rig", "sim", "--junitxml", str(xml)).assert_outcomes(passed=1)
    assert junit_properties(xml)["test_sim"]["daughters"] == "node 2 (daughter of node 1) in-process"
    for args, text in ((("--rig", "sim", "--hil-spares", "2"),
                        "--hil-spares 2: only with --rig emulated (--rig sim runs daughters in-process)"),
                       (("--hil-spares", "99"), "--hil-spares 99: between 0 and 16 spare boards")):
        with pytest.raises(pytest.UsageError) as e:
            pytester.parseconfigure("-p", "hil.pytest_plugin", *args)
        assert text in str(e.value), str(e.value)
    pytester.makeini("[pytest]\nhil_spares = two\n")
    with pytest.raises(pytest.UsageError, match="hil_spares = 'two': a whole number of spare boards"):
        pytester.parseconfigure("-p", "hil.pytest_plugin")


def _source(fn):
    import inspect

    return inspect.getsource(fn)
