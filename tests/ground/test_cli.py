# The command lines as users meet them: `python -m ground` and `python -m hil`
# run as real subprocesses, checked by exit code and by what they print and
# write (ground/exitcodes.py, ground/cli.py, hil/cli.py, docs/CLI.md); the
# progress line (ground/progress.py); and the packaging: a build of this tree
# carries what `ground run` imports (pyproject.toml).
import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from ground import exitcodes, progress, trace

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SMALL = """\
name: small
seed: 3
duration_s: 30
election_timeout_ms: 2000
clusters:
  - {id: 1, nodes: [1, 2, 3]}
links:
  intra_cluster: {delay_ms: 100}
faults:
  - {at_s: 12, crash: coordinator, cluster: 1}
gates:
%s
"""
GATE_OK = "  split_brain: {max: 0}"
GATE_FAILS = "  failover_T_max: {max: 0.001}"


def cli(prog, *args, cwd=ROOT, timeout=120):
    return subprocess.run([sys.executable, "-m", prog, *args], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout)


def ground(*args, **kw):
    return cli("ground", *args, **kw)


def hil(*args, **kw):
    return cli("hil", *args, **kw)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """One small sim run (its folder and trace), shared by the read-only tests."""
    d = tmp_path_factory.mktemp("cli")
    sc = d / "small.yaml"
    sc.write_text(SMALL % GATE_OK)
    out = d / "run"
    r = ground("run", str(sc), "--out", str(out), "--no-plot")
    assert r.returncode == 0, r.stderr
    return d, out


def _torn_copy(src, dst):
    data = open(src, "rb").read()
    with open(dst, "wb") as f:
        f.write(data[:-15])  # the end event, cut mid-line
    return str(dst)


# ---- exit codes ---------------------------------------------------------------------


def test_exit_0_when_every_gate_holds_and_reports_are_written(small_run):
    _, out = small_run
    assert sorted(os.listdir(out)) == ["metrics.json", "metrics.prom", "metrics.txt", "trace.jsonl"]  # --no-plot


def test_exit_1_on_a_failed_gate(tmp_path):
    sc = tmp_path / "strict.yaml"
    sc.write_text(SMALL % GATE_FAILS)
    r = ground("run", str(sc), "--out", str(tmp_path / "o"), "--no-plot", "-q")
    assert r.returncode == exitcodes.FAILED == 1
    assert "FAIL: " in r.stdout and "failover_T_max" in r.stdout
    assert "Traceback" not in r.stderr


def test_exit_2_on_bad_input_naming_file_line(tmp_path):
    sc = tmp_path / "bad.yaml"
    sc.write_text((SMALL % GATE_OK).replace("crash: coordinator, cluster: 1", "crash: 42"))
    r = ground("run", str(sc), "--out", str(tmp_path / "o"))
    assert r.returncode == exitcodes.BAD_INPUT == 2
    assert "bad.yaml:10" in r.stderr and "42" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1  # one line
    assert not (tmp_path / "o").exists()


def test_exit_2_on_bad_arguments_from_argparse():
    r = ground("run")
    assert r.returncode == 2 and "usage:" in r.stderr
    r = hil("flash")
    assert r.returncode == 2 and "usage:" in r.stderr


def test_missing_files_read_cannot_read_path_reason(tmp_path):
    missing = str(tmp_path / "nope.jsonl")
    for args in (("run", str(tmp_path / "nope.yaml")), ("metrics", missing), ("export-pcap", missing),
                 ("replay-frames", missing, "--node", "1"), ("replay-run", missing)):
        r = ground(*args)
        assert r.returncode == 2, args
        path = args[1]
        assert r.stderr.strip() == "ground: error: cannot read: %s (No such file or directory)" % path, r.stderr
    r = hil("boards", str(tmp_path / "rig.yaml"))
    assert r.returncode == 2 and "cannot read: %s (No such file or directory)" % (tmp_path / "rig.yaml") in r.stderr


def test_exit_3_on_an_internal_error_with_its_traceback():
    # No verb has a known bug to provoke, so a verb that has one: the real
    # wrapper every verb of both command lines runs through, in a subprocess.
    code = ("import sys; from ground import exitcodes\n"
            "def buggy(args):\n"
            "    return {}.missing\n"
            "sys.exit(exitcodes.main_wrapper('ground', buggy, None))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == exitcodes.INTERNAL == 3
    assert "Traceback" in r.stderr and "AttributeError" in r.stderr and "a bug in fleetloop" in r.stderr


def test_a_valueerror_the_interpreter_raises_in_our_code_is_a_bug_one_raised_on_purpose_bad_input(tmp_path):
    # ValueError is the project's "your input is wrong", but a wrong-length unpacking in its own code is a
    # ValueError too: once (Shard.finish) it said "error: not enough values to unpack" with exit 2, no traceback
    script = tmp_path / "verb.py"
    script.write_text("import json, sys\nfrom ground import exitcodes\n"
                      "def unpack(args):\n    a, b, c = args\n"
                      "def refuse(args):\n    raise ValueError('s.yaml:3: no cluster 9')\n"
                      "def parse(args):\n    json.loads(args)\n"
                      "verb = {'unpack': unpack, 'refuse': refuse, 'parse': parse}[sys.argv[1]]\n"
                      "sys.exit(exitcodes.main_wrapper('ground', verb, sys.argv[2]))\n")

    def verb(name, arg):
        return subprocess.run([sys.executable, str(script), name, arg], capture_output=True, text=True, cwd=ROOT,
                              timeout=60)

    r = verb("unpack", "ab")
    assert r.returncode == exitcodes.INTERNAL and "Traceback" in r.stderr and "a bug in fleetloop" in r.stderr
    assert "not enough values to unpack" in r.stderr
    r = verb("refuse", "")
    assert r.returncode == exitcodes.BAD_INPUT and r.stderr == "ground: error: s.yaml:3: no cluster 9\n"
    r = verb("parse", "{")  # the standard library's own ValueError (JSONDecodeError): its words, bad input
    assert r.returncode == exitcodes.BAD_INPUT and r.stderr.startswith("ground: error: Expecting property name")


def test_exit_130_on_ctrl_c():
    code = ("import sys; from ground import exitcodes\n"
            "def stop(args):\n"
            "    raise KeyboardInterrupt\n"
            "sys.exit(exitcodes.main_wrapper('ground', stop, None))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 130 and "interrupted" in r.stderr


def test_help_lists_the_exit_codes_and_the_progress_notation():
    for prog, verb in (("ground", "run"), ("ground", "metrics"), ("hil", "flash"), ("hil", "check")):
        for args in ((), (verb,)):
            r = cli(prog, *args, "--help")
            assert r.returncode == 0
            for code in ("0 ", "1 ", "2 ", "3 ", "130 "):
                assert "\n  " + code in r.stdout, (prog, args, code)
    r = ground("run", "--help")
    assert "c1:n2/t2" in r.stdout and "term" in r.stdout and "ETA" in r.stdout


def test_version_on_both():
    from ground import __version__

    for prog in ("ground", "hil"):
        r = cli(prog, "--version")
        assert r.returncode == 0 and r.stdout.startswith("%s %s " % (prog, __version__))


# ---- --out, --force, metrics never overwriting a run ----------------------------------


def test_run_refuses_an_existing_out_folder_unless_force(small_run, tmp_path):
    d, out = small_run
    before = {n: os.path.getmtime(out / n) for n in os.listdir(out)}
    r = ground("run", str(d / "small.yaml"), "--out", str(out), "--no-plot")
    assert r.returncode == 2 and "--force" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert {n: os.path.getmtime(out / n) for n in os.listdir(out)} == before  # nothing touched
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    r = ground("run", str(d / "small.yaml"), "--out", str(copy), "--force", "--no-plot", "-q")
    assert r.returncode == 0, r.stderr


def test_metrics_never_rewrites_the_run_and_gives_the_runs_numbers(small_run, tmp_path):
    _, out = small_run
    tr = str(out / "trace.jsonl")
    own = {n: open(out / n, "rb").read() for n in os.listdir(out)}
    r = ground("metrics", tr)  # no --out: prints, writes nothing
    assert r.returncode == 0 and "fleetloop run: small" in r.stdout and "wrote no files" in r.stderr
    r = ground("metrics", tr, "--out", str(out))  # the run's own folder: refused
    assert r.returncode == 2 and "--force" in r.stderr
    assert {n: open(out / n, "rb").read() for n in os.listdir(out)} == own
    r = ground("metrics", tr, "--out", str(tmp_path / "m"), "--no-plot")
    assert r.returncode == 0, r.stderr
    for name in ("metrics.json", "metrics.prom", "metrics.txt"):  # the very same numbers as the run
        assert open(tmp_path / "m" / name, "rb").read() == own[name], name
    assert json.loads(own["metrics.json"])["mission_s"] == 30.0  # the clock's end, in both


def test_metrics_out_draws_the_timeline(small_run, tmp_path):
    _, out = small_run
    r = ground("metrics", str(out / "trace.jsonl"), "--out", str(tmp_path / "m"), "-q")
    assert r.returncode == 0 and r.stdout.startswith("fleetloop run: small") and r.stderr == ""
    assert open(tmp_path / "m" / "timeline.png", "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_export_pcap_does_not_replace_a_file_unless_force(small_run, tmp_path):
    _, out = small_run
    pc = tmp_path / "x.pcapng"
    pc.write_bytes(b"keep")
    r = ground("export-pcap", str(out / "trace.jsonl"), "-o", str(pc))
    assert r.returncode == 2 and pc.read_bytes() == b"keep"
    r = ground("export-pcap", str(out / "trace.jsonl"), "-o", str(pc), "--force")
    assert r.returncode == 0 and pc.read_bytes() != b"keep"


# ---- torn traces: one rule for every verb -----------------------------------------------


def test_every_trace_verb_refuses_a_torn_trace_the_same_way(small_run, tmp_path):
    _, out = small_run
    torn = _torn_copy(out / "trace.jsonl", tmp_path / "torn.jsonl")
    n = len(trace.read(torn)[1])
    want = trace.torn_message(torn, n)
    runs = [ground("metrics", torn), ground("export-pcap", torn, "-o", str(tmp_path / "t.pcapng")),
            ground("replay-frames", torn, "--node", "1"), ground("replay-run", torn), hil("check", torn)]
    for r in runs:
        assert r.returncode == 2, r.stderr
        assert r.stderr.strip().endswith(want), r.stderr
    assert not os.path.exists(tmp_path / "t.pcapng")


def test_allow_torn_reads_the_complete_events(small_run, tmp_path):
    _, out = small_run
    torn = _torn_copy(out / "trace.jsonl", tmp_path / "torn.jsonl")
    r = ground("metrics", torn, "--allow-torn")
    assert r.returncode == 0 and "last line was torn" in r.stderr
    r = ground("export-pcap", torn, "-o", str(tmp_path / "t.pcapng"), "--allow-torn")
    assert r.returncode == 0 and "torn" in r.stdout
    r = ground("replay-frames", torn, "--node", "1", "--allow-torn")
    assert r.returncode == 0, r.stdout + r.stderr
    r = hil("check", torn, "--allow-torn")  # a judge: the cut-off run is still a finding
    assert r.returncode == 1 and "torn" in r.stdout


# ---- -q / -v, progress -------------------------------------------------------------------


def test_quiet_prints_only_the_verdict(small_run, tmp_path):
    d, _ = small_run
    r = ground("-q", "run", str(d / "small.yaml"), "--out", str(tmp_path / "o"), "--no-plot")
    assert r.returncode == 0 and r.stderr == ""
    assert r.stdout.startswith("PASS: small") and len(r.stdout.splitlines()) == 1


def test_progress_shows_rate_eta_the_end_and_the_metrics_phase(small_run, tmp_path):
    d, _ = small_run
    r = ground("run", str(d / "small.yaml"), "--out", str(tmp_path / "o"), "--no-plot")
    lines = r.stderr.splitlines()
    bars = [ln for ln in lines if ln.lstrip().startswith("mission")]
    assert bars and all("elapsed" in b and "rate" in b and "ETA" in b for b in bars)
    assert "30.0/30 s 100%" in bars[-1]  # the last redraw shows the end
    i = lines.index(bars[-1])
    assert "computing metrics" in lines[i + 1] and "done in" in lines[-1]


def test_progress_line_pieces():
    assert progress.clock_text(4.25) == "4.2s" and progress.clock_text(75) == "1:15"
    assert progress.clock_text(3723) == "1:02:03" and progress.clock_text(None) == "-"
    assert progress.coordinators_text({1: (2, 3)}, {1: [], 2: []}) == "c1:n2/t3 c2:-"
    line = progress.line_text(60.0, 240, 2.0, 10, "c1:n2/t3")
    assert "25%" in line and "rate   30.0x" in line and "ETA    6.0s" in line
    assert "rate       -" in progress.line_text(0.0, 240, 0.0, 0, "")


def test_verbose_adds_the_traceback_to_an_input_error(tmp_path):
    sc = tmp_path / "bad.yaml"
    sc.write_text("name: [")
    quiet = ground("run", str(sc))
    loud = ground("-v", "run", str(sc))
    assert quiet.returncode == loud.returncode == 2
    assert "Traceback" not in quiet.stderr and "Traceback" in loud.stderr


# ---- the absent serial port ------------------------------------------------------------------


def test_an_absent_serial_port_is_named_once(tmp_path):
    rig = tmp_path / "rig.yaml"
    rig.write_text("rig: absent\nversion: \"1.0\"\nboards:\n"
                   "  - {name: p3, kind: pico, url: /dev/ttyACM9, node_id: 3, cluster: 1, role: node, lineage: 0}\n")
    if os.path.exists("/dev/ttyACM9"):
        pytest.skip("this host has a /dev/ttyACM9")
    r = hil("flash", str(rig), "--timeout", "20", timeout=120)
    assert r.returncode == 1
    said = r.stdout + r.stderr
    want = "no such device: /dev/ttyACM9 (board p3, %s:4)" % rig
    assert said.count(want) == 1, said
    assert "in use by another program" not in said


def test_replay_into_an_absent_device_is_named(small_run):
    _, out = small_run
    if os.path.exists("/dev/ttyACM9"):
        pytest.skip("this host has a /dev/ttyACM9")
    r = ground("replay-frames", str(out / "trace.jsonl"), "--node", "1", "--into", "/dev/ttyACM9")
    assert r.returncode == 2 and r.stderr.strip() == "ground: error: no such device: /dev/ttyACM9 (--into)"


@pytest.mark.parametrize("scale", ["0", "-1", "nan", "fast"])
def test_replay_time_scale_must_be_a_positive_number(small_run, scale):
    _, out = small_run  # a negative scale went through to a device replay's wall clock
    r = ground("replay-frames", str(out / "trace.jsonl"), "--node", "1", "--time-scale", scale)
    assert r.returncode == 2 and "argument --time-scale: want a number > 0, got" in r.stderr, r.stderr


# ---- packaging ---------------------------------------------------------------------------------


def _built_files(tmp_path):
    """The files a wheel of this tree holds, built offline with the setuptools
    at hand: `pip wheel --no-build-isolation` when the `wheel` package is
    there, else setuptools' own `build` command (build_py: exactly the
    wheel's purelib tree). Built from a copy, so the worktree stays clean."""
    src = tmp_path / "src"
    keep = ("pyproject.toml", "README.md", "ground", "hil", "firmware", "boards")
    src.mkdir()
    for name in keep:
        p = os.path.join(ROOT, name)
        if os.path.isdir(p):
            shutil.copytree(p, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.mpy"))
        else:
            shutil.copy(p, src / name)
    import setuptools

    if int(setuptools.__version__.split(".")[0]) < 77:
        # This host's setuptools predates SPDX license strings (PEP 639),
        # which the package list does not depend on: give it the old form.
        text = (src / "pyproject.toml").read_text()
        text = text.replace('license = "MIT"', 'license = { text = "MIT" }').replace("setuptools>=77", "setuptools>=61")
        (src / "pyproject.toml").write_text(text)
    try:
        import wheel  # noqa: F401
    except ImportError:
        out = tmp_path / "build"
        r = subprocess.run([sys.executable, "-c", "from setuptools import setup; setup()", "-q", "build",
                            "--build-base", str(out)], cwd=src, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        lib = out / "lib"
        return sorted(os.path.relpath(os.path.join(dp, f), lib).replace(os.sep, "/")
                      for dp, _, fs in os.walk(lib) for f in fs)
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w",
                        str(tmp_path / "wheel"), str(src)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    (whl,) = os.listdir(tmp_path / "wheel")
    return sorted(zipfile.ZipFile(tmp_path / "wheel" / whl).namelist())


def test_a_build_carries_what_ground_and_hil_need(tmp_path):
    files = set(_built_files(tmp_path))

    def tree(folder):
        return {os.path.relpath(os.path.join(dp, f), ROOT).replace(os.sep, "/")
                for dp, _, fs in os.walk(os.path.join(ROOT, folder)) for f in fs if f.endswith(".py")}

    for folder in ("firmware", "ground", "hil"):
        need = {f for f in tree(folder) if "__pycache__" not in f}
        assert need and need <= files, sorted(need - files)[:10]
    for f in ("firmware/main.py", "firmware/node/node.py", "firmware/runtime/shell.py",
              "ground/shims/micropython.py", "hil/board_lib/machine.py", "hil/board_lib/_emuboot.py",
              "boards/pico.yaml", "boards/emulated_pico.yaml"):
        assert f in files
    assert not [f for f in files if f.startswith(("tests/", "bench/"))]


def test_ctrl_c_during_a_run_keeps_what_was_recorded_and_exits_130(tmp_path):
    # A real SIGINT to `ground run` on a day-long sim scenario (minutes of
    # work), sent once its first progress line shows the run has started.
    import signal
    import time

    sc = tmp_path / "long.yaml"
    sc.write_text((SMALL % GATE_OK).replace("duration_s: 30", "duration_s: 86400"))
    out = tmp_path / "o"
    p = subprocess.Popen([sys.executable, "-m", "ground", "run", str(sc), "--out", str(out), "--no-plot"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as test_chaos.py's
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # wait for the first progress line (stderr is not a tty: one per tenth)
            line = p.stderr.readline()
            if line.lstrip().startswith("mission") or not line:
                break
        p.send_signal(signal.SIGINT)
        stdout, stderr = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 130, stderr
    assert "interrupted" in stdout
    header, events, torn = trace.read(str(out / "trace.jsonl"))
    assert not torn and events[-1]["kind"] == "end" and events[-1]["status"] == "interrupted"
    assert os.path.exists(out / "metrics.json")


def test_no_plot_removes_a_stale_timeline(small_run, tmp_path):
    from ground import metrics, report

    _, out = small_run
    header, events, _ = trace.read(str(out / "trace.jsonl"))
    m = metrics.compute(header, events)
    paths = report.write_reports(str(tmp_path), header, m, events)
    assert os.path.exists(paths["png"])
    paths = report.write_reports(str(tmp_path), header, m, events, plot=False)
    assert "png" not in paths and not os.path.exists(tmp_path / "timeline.png")  # it would show another run
