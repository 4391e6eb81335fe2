# Contact plans (ground/contacts.py and the scenario key contact_plan), read
# as ionrc(5) and HDTN's contact plan JSON:
#  - an ION plan with several windows and ranges drives a sim run whose trace
#    shows node-to-node frames delivered only when sent inside a contact,
#    each one exactly its light time (the range in force) after it left the
#    line at the contact's rate, and every frame sent outside a contact
#    dropped `blackout`; pairs with no contact never up (unplanned: down);
#  - ION details: rates in bytes/s, `@` moves the reference time, a range
#    from the lower node number holds both ways unless the reverse has its
#    own, registration and hypothetical contacts schedule nothing, absolute
#    times need the plan's epoch, other admin sections are skipped;
#  - the same plan written as HDTN JSON gives the same link windows and rates;
#  - bad plans are refused naming the plan's file:line: overlapping windows
#    for one pair, an unknown command or key, bad numbers, nodes the scenario
#    does not have; bad contact_plan keys name the scenario's file:line.
import json
import os

import pytest

from ground import contacts as C
from ground import scenario, trace
from ground.yamlfile import ConfigError

MS = 1_000_000
S = 1_000_000_000
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCENARIO = os.path.join(ROOT, "tests", "ground", "scenarios", "contacts.yaml")
PLAN = os.path.join(ROOT, "tests", "ground", "scenarios", "contacts.ionrc")


@pytest.fixture(scope="module")
def contact_run(scenario_runs):
    sc, res, out = scenario_runs.get(SCENARIO)  # the run test_metrics_stream.py asserts on too (conftest.py)
    assert res.status == "ok"
    return sc, os.path.join(out, "trace.jsonl")


# The plan, as ionrc(5) reads it (written out by hand from contacts.ionrc):
WINDOWS = {  # (src, dst) -> [(start s, stop s, bytes/s)]
    (1, 2): [(2, 6, 2000), (10, 14, 1000), (20, 25, 4000)],
    (2, 1): [(2, 6, 2000), (10, 14, 1000), (20, 25, 4000)],
    (1, 3): [(3, 9, 500)],
}
RANGES = {  # (src, dst) -> [(start s, stop s, owlt s)]; 1 < 2 and 1 < 3: both ways
    (1, 2): [(0, 15, 1), (15, 30, 2)],
    (2, 1): [(0, 15, 1), (15, 30, 2)],
    (1, 3): [(0, 30, 3)],
    (3, 1): [(0, 30, 3)],
}


def _in(windows, t_ns):
    return next((w for w in windows if w[0] * S <= t_ns < w[1] * S), None)


def test_the_plan_parses_as_ionrc_says():
    plan = C.load(PLAN)
    for pair, ws in WINDOWS.items():
        keys = plan.link_keys(*pair)
        assert keys["contacts_ms"] == [[a * 1000.0, b * 1000.0] for a, b, _ in ws]
        assert keys["rate_schedule"] == [[a * 1000.0, b * 1000.0, r * 8.0] for a, b, r in ws]
    for pair, rs in RANGES.items():
        assert plan.link_keys(*pair)["delay_schedule"] == [[a * 1000.0, b * 1000.0, o * 1000.0] for a, b, o in rs]
    assert plan.pairs() == sorted(set(WINDOWS) | set(RANGES))
    assert plan.min_delay_ms() == 1000


def test_frames_are_delivered_only_inside_the_windows_after_the_light_time(contact_run):
    sc, path = contact_run
    _, events, _ = trace.read(path)
    sent = {e["id"]: e for e in events if e["kind"] == "frame" and e["fate"] == "sent"}
    fates = {}  # (src, dst) -> [(sent event, fate event)] in send order
    for e in events:
        if e["kind"] == "frame" and e["fate"] in ("delivered", "dropped") and e.get("to"):
            s = sent[e["id"]]
            if s["src"]:
                fates.setdefault((s["src"], e["to"]), []).append((s, e))
    checked = 0
    for pair in [(a, b) for a in (1, 2, 3) for b in (1, 2, 3) if a != b]:
        items = sorted(fates.get(pair, []), key=lambda x: x[0]["id"])
        assert items, pair
        windows = WINDOWS.get(pair, [])
        busy = 0  # the sender's line, at the contact's rate (FIFO)
        for s, e in items:
            w = _in(windows, s["mission_ns"])
            if w is None:
                assert e["fate"] == "dropped" and e["reason"] == "blackout", (pair, s, e)
                continue
            if e["fate"] == "dropped":
                assert e["reason"] == "run_end", (pair, s, e)
                continue
            start = max(s["mission_ns"], busy)
            busy = start + -(-(s["len"] * 8 * S) // (w[2] * 8))  # line bytes incl. the 00, ceil ns
            owlt = _in(RANGES[pair], busy)[2] * S
            assert e["mission_ns"] == busy + owlt and e["delay_ns"] == busy + owlt - s["mission_ns"], (pair, s, e)
            checked += 1
    assert checked > 50
    # and the windows were really used: deliveries in every window of 1 -> 2
    got = [s["mission_ns"] for s, e in fates[(1, 2)] if e["fate"] == "delivered"]
    assert all(any(a * S <= t < b * S for t in got) for a, b, _ in WINDOWS[(1, 2)])


def test_hdtn_json_gives_the_same_links(tmp_path):
    doc = {"contacts": []}
    for (src, dst), ws in sorted(WINDOWS.items()):
        for a, b, rate in ws:
            owlt = _in(RANGES[(src, dst)], a * S)[2]
            doc["contacts"].append({"contact": len(doc["contacts"]), "source": src, "dest": dst, "startTime": a,
                                    "endTime": b, "rateBitsPerSec": rate * 8, "owlt": owlt})
    p = tmp_path / "plan.json"
    p.write_text(json.dumps(doc, indent=4))
    hdtn = C.load(str(p))
    ion = C.load(PLAN)
    assert hdtn.format == "hdtn"
    for pair in WINDOWS:
        h, i = hdtn.link_keys(*pair), ion.link_keys(*pair)
        assert h["contacts_ms"] == i["contacts_ms"] and h["rate_schedule"] == i["rate_schedule"]
        # HDTN's owlt belongs to each contact and its direction only
        for a, b, d in h["delay_schedule"]:
            assert _in(RANGES[pair], a * MS)[2] * 1000 == d
    assert hdtn.link_keys(3, 1) == {}  # nothing implied backwards
    assert C.load(str(p), fmt="hdtn").link_keys(1, 2) == hdtn.link_keys(1, 2)


def test_ion_details():
    text = """\
## begin ionadmin
# comment
1 1 ''
s
e 1
m horizon +0
a contact -1 +0 5 5 0
a contact +0 0 1 2 100
a contact +1.5 +2.25 1 2 100 0.5
@ +10
a contact +1 +2 2 1 100
a range +0 +5 2 1 4
a range +0 +5 1 2 3
## end ionadmin
## begin ipnadmin
a plan 2 ltp/2
z whatever
## end ipnadmin
x
"""
    plan = C.load("inline.ionrc", text=text)
    assert plan.link_keys(1, 2)["contacts_ms"] == [[1500.0, 2250.0]]  # registration, hypothetical skipped
    assert plan.link_keys(2, 1)["contacts_ms"] == [[11000.0, 12000.0]]  # @ +10
    assert plan.link_keys(2, 1)["delay_schedule"] == [[10000.0, 15000.0, 4000.0]]  # its own, not 1 2's
    assert plan.link_keys(1, 2)["delay_schedule"] == [[10000.0, 15000.0, 3000.0]]
    ab = C.load("abs.ionrc", text="a contact 2030/01/01-00:00:10 2030/01/01-00:01:00 1 2 10\n",
                epoch="2030/01/01-00:00:00")
    assert ab.link_keys(1, 2)["contacts_ms"] == [[10000.0, 60000.0]]


@pytest.mark.parametrize("text, line, msg", [
    ("a contact +0 +10 1 2 100\na contact +5 +20 1 2 100\n", 2, r"overlaps the contact at bad\.ionrc:1"),
    ("a range +0 +10 1 2 1\n\na range +9 +20 1 2 1\n", 3, "overlaps the range at bad.ionrc:1"),
    ("# ok\nfrobnicate 1 2\n", 2, "unknown ionadmin command 'frobnicate 1 2'"),
    ("d contact * 1 2\n", 1, "not supported"),
    ("a contact +0 +10 1 2\n", 1, "want 5 or 6"),
    ("a contact +0 +10 1 2 fast\n", 1, "rate .* is not a number"),
    ("a contact +0 +10 1 2 0\n", 1, "rate above 0"),
    ("a contact +10 +5 1 2 10\n", 1, "stops .* before it starts"),
    ("a contact 10 +20 1 2 10\n", 1, "want \\+seconds"),
    ("a contact 2030/01/01-00:00:00 +20 1 2 10\n", 1, "needs the plan's epoch"),
    ("a range +0 +10 one 2 1\n", 1, "not a node number"),
])
def test_bad_ion_plans_name_file_and_line(text, line, msg):
    with pytest.raises(C.PlanError, match=r"^bad\.ionrc:%d: .*%s" % (line, msg)):
        C.load("bad.ionrc", text=text)


@pytest.mark.parametrize("text, line, msg", [
    ('{"contacts": [\n  {"source": 1, "dest": 2, "startTime": 0, "endTime": 10},\n'
     '  {"source": 1, "dest": 2, "startTime": 9, "endTime": 20}\n]}', 3, r"overlaps the contact at bad\.json:2"),
    ('{"contacts": [\n  {"source": 1, "dest": 2, "startTime": 0, "endTime": 10, "colour": 1}\n]}', 2, "unknown key 'colour'"),
    ('{"contacts": [\n  {"source": 1, "dest": 2, "startTime": 0}\n]}', 2, "missing 'endTime'"),
    ('{"contacts": [\n  {"source": 1, "dest": 2, "startTime": 5, "endTime": 5}\n]}', 2, "not after startTime"),
    ('{"contacts": [\n  {"source": 1, "dest": 2, "startTime": 0, "endTime": 5, "owlt": -1}\n]}', 2, "owlt must be"),
    ('{"contacts": [\n  {"source": 1, "dest": 2,\n}', 3, "not JSON"),
    ('[1, 2]', 1, "an object with a \"contacts\" list"),
])
def test_bad_hdtn_plans_name_file_and_line(text, line, msg):
    with pytest.raises(C.PlanError, match=r"^bad\.json:%d: .*%s" % (line, msg)):
        C.load("bad.json", text=text)


SC = """\
name: plan
duration_s: 10
clusters:
  - {id: 1, nodes: [1, 2, 3]}
%s"""


def test_contact_plan_key_errors_name_the_scenario_line(tmp_path):
    for body, msg in [
        ("contact_plan: {path: x.ionrc, text: 'a'}\n", r"sc\.yaml:5: contact_plan: give exactly one of path"),
        ("contact_plan: {path: x.ionrc, colour: red}\n", r"sc\.yaml:5: contact_plan: unknown key 'colour'"),
        ("contact_plan: {path: x.ionrc, format: dtn2}\n", r"sc\.yaml:5: contact_plan.format: 'dtn2' unknown"),
        ("contact_plan: {path: x.ionrc, unplanned: maybe}\n", r"sc\.yaml:5: contact_plan.unplanned"),
        ("contact_plan: {text: 'a contact +0 +1 1 2 9'}\n", r"sc\.yaml:5: contact_plan: an inline plan needs format"),
        ("contact_plan: {path: missing.ionrc}\n", r"missing\.ionrc: cannot read"),
        ("contact_plan:\n  format: ion\n  text: |\n    a contact +0 +1 1 2 9\n    a contact +0 +1 1 9 9\n",
         r"sc\.yaml:7 \(contact_plan.text\):2: contact plan: node 9 is not in the scenario"),
    ]:
        p = tmp_path / "sc.yaml"
        p.write_text(SC % body)
        with pytest.raises(ConfigError, match=msg):
            scenario.load(str(p))


def test_plan_paths_are_relative_to_the_scenario_and_merge_into_link_spec(tmp_path):
    (tmp_path / "plans").mkdir()
    (tmp_path / "plans" / "p.ionrc").write_text("a contact +1 +2 1 2 100\na range +0 +9 1 2 2\n")
    (tmp_path / "sc.yaml").write_text(SC % "links:\n  intra_cluster: {delay_ms: 7, loss: 0.1}\n"
                                      "contact_plan: {path: plans/p.ionrc}\n")
    cwd = os.getcwd()
    try:
        os.chdir("/")
        sc = scenario.load(str(tmp_path / "sc.yaml"))
    finally:
        os.chdir(cwd)
    assert sc.link_spec(1, 2) == {"delay_ms": 7, "loss": 0.1, "contacts_ms": [[1000.0, 2000.0]],
                                  "rate_schedule": [[1000.0, 2000.0, 800.0]], "delay_schedule": [[0.0, 9000.0, 2000.0]]}
    assert sc.link_spec(2, 1) == {"delay_ms": 7, "loss": 0.1, "delay_schedule": [[0.0, 9000.0, 2000.0]]}  # unplanned: up
    assert sc.link_spec(1, 3) == {"delay_ms": 7, "loss": 0.1}
    assert sc.min_delay_ms() == 7


def test_rate_and_delay_schedule_spec_keys_are_checked():
    from ground import stages
    from ground.pipeline import build_pipeline

    for spec, msg in [({"rate_schedule": [[0, 10, 100], [5, 20, 100]]}, "entries overlap"),
                      ({"rate_schedule": [[10, 5, 100]]}, "must end after it starts"),
                      ({"rate_schedule": [[0, 5, -3]]}, "bps must be a number"),
                      ({"delay_schedule": [[0, 5]]}, "an entry must be"),
                      ({"delay_schedule": [[0, 5, 1]], "jitter_ms": 3}, "not supported with delay_schedule")]:
        with pytest.raises(ValueError, match=msg):
            build_pipeline(spec, seed=0)
    pipe = build_pipeline({"rate_schedule": [[0, 1000, 8000], [1000, 2000, None]], "rate_bps": 80,
                                  "delay_schedule": [[500, 1500, 100]], "delay_ms": 1}, seed=0)
    out = []
    for t_ms in (0, 999, 1200, 2500):
        (when, _), = pipe.send(stages.Packet(0, b"x" * 9, t_ms * MS), t_ms * MS)
        out.append(when)
    # 10 bytes: 10 ms at 8000 bps (then 100 ms light time from 500 ms), none unlimited, 1 s at 80 bps
    assert out == [(10 + 1) * MS, 999 * MS + 10 * MS + 100 * MS, 1300 * MS, 3500 * MS + 1 * MS]
