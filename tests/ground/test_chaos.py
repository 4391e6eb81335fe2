"""`ground chaos` (ground/chaos.py, ground/chaos_schedules.py): schedules are
a function of the seed, cover every fault kind, load as scenarios; the pool
runs and judges them; a failing schedule's file reproduces its run with
`ground run`. Real runs in virtual time, real worker processes."""

import json
import os
import subprocess
import sys

import yaml

from ground import chaos, chaos_schedules as gen, cli, scenario, trace

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TINY = """\
name: tiny
seed: 3
duration_s: 20
election_timeout_ms: 1000
auth_key: "00112233445566778899aabbccddeeff"
clusters:
  - {id: 1, nodes: [1, 2, 3, 4]}
  - {id: 2, nodes: [5, 6]}
links:
  intra_cluster: {delay_ms: 40, loss: 0.01}
gates:
  faults: {max: 0}      # any fault fails it: every schedule with a fault is a gate failure
"""


def _tiny(tmp_path, text=TINY):
    path = tmp_path / "tiny.yaml"
    path.write_text(text)
    return str(path)


def test_fault_kinds_are_the_scenario_formats():
    assert set(gen.KINDS) == scenario._FAULT_ACTIONS


def test_schedules_are_a_function_of_the_seed_and_load_as_scenarios(tmp_path):
    base = gen.load_base(_tiny(tmp_path))
    rates = gen.parse_rates(["all=600"])
    texts = {s: gen.to_yaml(gen.schedule(base, s, rates)) for s in range(10, 16)}
    for s, text in texts.items():
        assert gen.to_yaml(gen.schedule(base, s, rates)) == text  # same seed, same schedule
        sc = gen.check_text(text, "s%d.yaml" % s)
        assert sc.seed == s and sc.duration_s == 20 and sc.faults
    assert len(set(texts.values())) == len(texts)  # different seeds, different schedules
    # ... and the same in another interpreter (string seeding, no hash randomisation)
    code = ("import sys; from ground import chaos_schedules as g; b = g.load_base(sys.argv[1]);"
            "sys.stdout.write(g.to_yaml(g.schedule(b, 13, g.parse_rates(['all=600']))))")
    out = subprocess.run([sys.executable, "-c", code, _tiny(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                         env=dict(os.environ, PYTHONHASHSEED="12345", PYTHONPATH=ROOT), check=True, timeout=120)
    assert out.stdout == texts[13]


def test_every_fault_kind_and_partition_shape_appears_across_schedules(tmp_path):
    base = gen.load_base(_tiny(tmp_path))
    rates = gen.parse_rates(["all=900"])
    kinds, shapes, coordinator = set(), set(), False
    for s in range(8):
        data = gen.schedule(base, s, rates)
        kinds |= set(gen.kinds_in(data))
        for f in data["faults"]:
            assert 0 <= f["at_s"] < 20
            p = f.get("partition")
            if p is not None:
                shapes.add("groups" if isinstance(p, list) else next(iter(p)))
            coordinator = coordinator or any(f.get(k) == "coordinator" for k in gen.KINDS)
    # the tiny base has no market: no intent steps, no region to sever, no quarantine to reinstate from
    assert kinds == set(gen.KINDS) - {"intent", "sever", "reinstate"}
    assert shapes == set(gen.PARTITION_SHAPES)
    assert coordinator


def test_rates_and_mission_length_are_the_users(tmp_path):
    base = gen.load_base(_tiny(tmp_path))
    none = gen.parse_rates(["all=0"])
    assert gen.schedule(base, 1, none)["faults"] == []
    only = gen.parse_rates(["all=0", "skew=3600"])
    data = gen.schedule(base, 1, only, mission_s=600)
    assert data["duration_s"] == 600
    assert set(gen.kinds_in(data)) == {"skew"} and max(f["at_s"] for f in data["faults"]) > 20
    for bad in ("crsh=1", "crash", "crash=-1", "crash=x"):
        try:
            gen.parse_rates([bad])
        except ValueError as e:
            assert repr(bad) in str(e)
        else:
            raise AssertionError("accepted --rate %s" % bad)


def test_relative_paths_of_the_base_still_work_from_the_written_schedule(tmp_path):
    src = os.path.join(ROOT, "tests", "ground", "scenarios", "contacts.yaml")
    base = gen.load_base(src)
    text = gen.to_yaml(gen.schedule(base, 4))
    path = tmp_path / "elsewhere" / "s.yaml"
    path.parent.mkdir()
    path.write_text(text)
    sc = scenario.load(str(path))  # the contact plan is found from another folder
    assert sc.contact_plan is not None


def test_chaos_runs_judges_and_writes_failing_schedules_that_reproduce(tmp_path, capsys):
    base = _tiny(tmp_path)
    out = tmp_path / "out"
    rc = cli.main(["chaos", base, "--schedules", "3", "--seed", "40", "--workers", "2", "--rate", "all=200",
                   "--out", str(out), "--quiet", "--gates"])
    printed = capsys.readouterr().out
    summary = json.loads((out / "chaos.json").read_text())
    verdicts = summary["verdicts"]
    assert [v["seed"] for v in verdicts] == [40, 41, 42]
    failing = [v for v in verdicts if v["result"] != "pass"]
    assert failing and rc == 1  # every schedule with a fault fails the `faults: {max: 0}` gate
    assert "chaos: 3 schedule(s)" in printed and "faults run by kind:" in printed
    for v in verdicts:
        if v["result"] == "pass":
            assert not os.path.exists(out / v["name"])  # traces of failing runs only
            continue
        assert v["result"] == "gate" and any(g.startswith("faults = ") for g in v["gates"]), v
        assert os.path.exists(out / v["name"] / "trace.jsonl") and v["file"] == str(out / (v["name"] + ".yaml"))
        assert "%-8d gate" % v["seed"] in printed
    # The written file reproduces the run: `ground run FILE` fails the same gates with the same trace.
    v = failing[0]
    rerun = tmp_path / "rerun"
    rc = cli.main(["run", v["file"], "--out", str(rerun), "--quiet"])
    printed = capsys.readouterr().out
    assert rc == 1
    assert ["FAIL: " + g for g in v["gates"]] == [x for x in printed.splitlines() if x.startswith("FAIL: ")]
    h1, e1, _ = trace.read(str(out / v["name"] / "trace.jsonl"))
    h2, e2, _ = trace.read(str(rerun / "trace.jsonl"))
    assert h1["seed"] == h2["seed"] == v["seed"]
    assert _without_where(e1) == _without_where(e2)  # a fault's `where` names the file it came from
    # --as-is judges the written file alone, the same way (twice at once: two runs, two kept files).
    rc = cli.main(["chaos", "--as-is", v["file"], v["file"], "--workers", "2", "--out", str(tmp_path / "asis"),
                   "--quiet", "--gates"])
    again = json.loads((tmp_path / "asis" / "chaos.json").read_text())["verdicts"]
    assert rc == 1 and [(a["result"], a["gates"], a["seed"]) for a in again] == [("gate", v["gates"], v["seed"])] * 2
    assert len({a["file"] for a in again}) == 2 and all(os.path.exists(a["file"]) for a in again)


def test_by_default_gates_are_reported_not_judged(tmp_path, capsys):
    # Chaos adds faults the scenario's author did not plan for: by default a
    # schedule is judged by crashes and history invariants, and the gates it
    # missed are reported (docs/CHAOS.md). The same schedules as above.
    out = tmp_path / "out"
    rc = cli.main(["chaos", _tiny(tmp_path), "--schedules", "3", "--seed", "40", "--workers", "2", "--rate", "all=200",
                   "--out", str(out), "--quiet"])
    printed = capsys.readouterr().out
    summary = json.loads((out / "chaos.json").read_text())
    assert rc == 0 and summary["gates_judged"] is False
    assert [v["result"] for v in summary["verdicts"]] == ["pass"] * 3
    assert all(any(g.startswith("faults = ") for g in v["gates"]) for v in summary["verdicts"])
    assert "gates missed, not judged by metric (schedules): faults 3" in printed
    assert "passed 3," in printed and not any(os.path.exists(out / v["name"]) for v in summary["verdicts"])


def _without_where(events):
    out = []
    for e in events:
        if isinstance(e.get("detail"), dict) and "where" in e["detail"]:
            e = dict(e, detail={k: v for k, v in e["detail"].items() if k != "where"})
        out.append(e)
    return out


def test_a_run_that_raises_is_a_crash_with_its_traceback(tmp_path):
    kind, violations, gates, error = chaos.judge(TINY.replace("delay_ms: 40", "delay_ms: -5"), "broken.yaml",
                                                 str(tmp_path / "run"))
    assert kind == "crash" and not violations and not gates
    assert "Traceback" in error and "broken.yaml" in error


def test_a_schedule_still_running_at_its_timeout_is_killed_and_called_a_hang(tmp_path):
    # 10,000 mission s: about 33 wall s if left to finish (given 120 s, its verdict is "gate"), so it is
    # still running at the 0 s timeout; 100,000 took 7.8 s just to generate the schedule's faults
    base = gen.load_base(_tiny(tmp_path, TINY.replace("duration_s: 20", "duration_s: 10000")))
    text = gen.to_yaml(gen.schedule(base, 1))
    job = chaos.Job(base.path, 1, "long", text, gen.kinds_in(yaml.safe_load(text)))
    (v,) = chaos.run_jobs([job], str(tmp_path / "work"), workers=1, timeout_s=0.0)
    assert v.kind == "crash" and v.error.startswith("hang:"), v.error


def test_bad_input_is_one_line_naming_the_file(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(TINY.replace("faults: {max: 0}", "no_such_metric: {max: 0}"))
    assert cli.main(["chaos", str(bad), "--schedules", "1", "--out", str(tmp_path / "o")]) == 2
    assert "no_such_metric" in capsys.readouterr().err
    typo = tmp_path / "typo.yaml"
    typo.write_text(TINY.replace("delay_ms", "dealy_ms"))
    assert cli.main(["chaos", str(typo), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "typo.yaml:" in err and len(err.strip().splitlines()) == 1
    assert cli.main(["chaos", _tiny(tmp_path), "--rate", "crash=fast", "--out", str(tmp_path / "o")]) == 2
    capsys.readouterr()
    # A fleet: scenario's faults are generated from it: bad input, not an internal error (it was exit 3).
    fleet = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                         "scenarios", "fleet-1k.yaml")
    assert cli.main(["chaos", fleet, "--schedules", "1", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "fleet-1k.yaml:" in err and "--as-is" in err and len(err.strip().splitlines()) == 1


def test_intent_steps_come_with_a_market_and_load():
    here = os.path.dirname(os.path.abspath(__file__))
    base = gen.load_base(os.path.join(here, "scenarios", "chaos_market.yaml"))
    rates = gen.parse_rates(["all=0", "intent=600"])
    steps = [f for s in range(4) for f in gen.schedule(base, s, rates)["faults"] if "intent" in f]
    assert steps and all(set(f["intent"]) == {"phase", "growth_permille", "cover_permille"} for f in steps)
    for s in range(4):
        gen.check_text(gen.to_yaml(gen.schedule(base, s, rates)), "s%d.yaml" % s)


def test_schedule_81_sells_no_slot_twice(tmp_path):
    # tests/ground/scenarios/chaos_market_seed81.yaml says what it was. The
    # run is in virtual time: the same trace every time.
    from ground.chaos import judge

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scenarios", "chaos_market_seed81.yaml")
    with open(path) as f:
        kind, violations, gates, error = judge(f.read(), path, str(tmp_path / "run"))
    assert kind != "crash", error
    assert violations == {}, violations  # lease_exclusive: resource 4, slot 120, before the fix
    leases = [e for e in trace.read(str(tmp_path / "run" / "trace.jsonl"))[1]
              if e.get("type") == "award" and e.get("fate") == "sent" and e["msg"]["resource"] == 4]
    assert any(e["msg"]["holder"] == 1 and e["msg"]["first"] == 10 for e in leases)  # the lease it must not lose


def test_an_interrupted_chaos_run_still_writes_what_it_judged(tmp_path):
    # A real `python -m ground chaos` stopped with SIGINT (Ctrl-C) after its
    # first verdict: exit 130, and chaos.json holds the schedules that finished.
    # Deterministic, whatever the machine's load: one worker runs a short
    # scenario (its fault fails its gate), then one that cannot finish before
    # the signal (a million mission seconds); the signal goes after the first
    # verdict line is read (a blocking read: pytest-timeout bounds the test);
    # the pool acts on SIGINT between jobs (ground/sigint.py), so the signal
    # is never lost in a finalizer and no worker outlives chaos. The child
    # gets SIGINT's default action back: a test run started in the background
    # (nohup, `make test &`) has it ignored, and Python keeps it ignored.
    import signal

    short = tmp_path / "short.yaml"
    short.write_text(TINY.replace("gates:", "faults:\n  - {at_s: 5, crash: 1, duration_s: 3}\ngates:"))
    endless = tmp_path / "endless.yaml"
    endless.write_text(TINY.replace("name: tiny", "name: endless").replace("duration_s: 20", "duration_s: 1000000"))
    out = tmp_path / "out"
    p = subprocess.Popen([sys.executable, "-m", "ground", "chaos", "--as-is", str(short), str(endless), "--gates",
                          "--workers", "1", "--out", str(out), "--quiet"],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        seen = []
        for line in p.stdout:  # blocking: the header, then the first verdict
            seen.append(line)
            if "GATE" in line:
                break
        assert "GATE" in seen[-1] and "tiny" in seen[-1], seen
        p.send_signal(signal.SIGINT)
        rest, err = p.communicate()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 130, err
    summary = json.loads((out / "chaos.json").read_text())
    assert summary["interrupted"] is True
    assert [(v["name"], v["result"]) for v in summary["verdicts"]] == [("tiny", "gate")]
    assert "interrupted after 1 of 2" in err
    assert not os.path.exists(out / ".work")  # the endless run's folder went with its worker


def test_a_shorter_mission_drops_the_bases_late_steps_and_refuses_what_cannot_start(tmp_path, capsys):
    # --mission-s shorter than the base's own steps: those steps would never fire, so they go (the loader refused
    # the generated schedule before: exit 3, "a bug in chaos_schedules"); a step the base needs is bad input.
    late = _tiny(tmp_path, TINY + "faults:\n  - {at_s: 5, crash: 2}\n  - {at_s: 15, crash: 3}\n")
    data = gen.schedule(gen.load_base(late), 1, gen.parse_rates(["all=0"]), mission_s=10)
    assert [f["at_s"] for f in data["faults"]] == [5]
    gen.check_text(gen.to_yaml(data), "short.yaml")
    rollout = os.path.join(ROOT, "scenarios", "rollout-boards.yaml")
    assert cli.main(["chaos", rollout, "--schedules", "1", "--mission-s", "10", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "--mission-s 10 is too short for" in err and "rollout-boards.yaml" in err and len(err.strip().splitlines()) == 1
