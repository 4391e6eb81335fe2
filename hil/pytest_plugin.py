"""fleetloop's pytest plugin: a rig's boards, the ground harness and the run's
trace as fixtures (docs/HIL.md).

    pytest tests/bench                                   # emulated Picos (the default)
    pytest tests/bench --rig boards/rig-lab.yaml         # the boards of a rig file
    pytest tests/bench --rig sim                         # in-process nodes, virtual time
    pytest tests/bench --hil-out runs/hil --junitxml runs/hil/junit.xml

Options: --rig RIG (a rig file, `emulated` (default) or `sim`), --hil-out DIR
(run folders, serial logs of failed tests, the session's metrics.prom),
--hil-logs failed|all (whose serial logs to keep), --hil-spares N (ini
hil_spares; default 1): with --rig emulated, a scenario with replication:
gets N spare emulated boards, off until a daughter takes one (a rig file
names its own: spare: true). Spares are off at the start of every run and
again after it; an emulated spare's flash is wiped before a daughter boots
on it (docs/HIL.md "Spare boards").

Markers:
    @pytest.mark.boards(4, kind="pico")     boards the test needs (kind optional)
    @pytest.mark.needs("power_control")     features every one of them must have
A test whose markers the rig cannot meet is skipped, with the reason: the
kind or feature missing, or the serial numbers of the rig's boards that are
not attached. An emulated board of kind emulated_pico stands in for kind pico.

Fixtures:
    rig       (session) the rig: .name, .mode, .unmet(count, kind, needs)
    boards    the test's boards: .count, .kind, .needs, .rig; booted per scenario
    harness   .scenario(text|dict|path), .run(sc) -> HilResult, .start(sc) -> Live,
              .check(result, gates) asserts status, gates and a clean history
    trace     the test's latest trace: .path, .read(), .events(), .frames(), .check()

A Live run (`with harness.start(sc) as live:`) runs the scenario while the
test watches it: live.wait_for(predicate, timeout_s=mission seconds) waits on
the nodes' telemetry and heartbeats (a Fleet view), live.wait_s(s) lets
mission time pass, live.step({"crash": 3}) applies a scenario fault now.
Every wait has a mission-time timeout (and a generous wall-clock guard, in case
the run itself wedges); pytest-timeout guards each test.

Reports: every harness run writes its run folder (trace.jsonl, metrics.json,
metrics.prom, metrics.txt, timeline.png, history.txt) under --hil-out; JUnit
XML gets the key metrics of each run as test-case properties, with the paths
of its trace and metrics, and `daughters`: which spare board each daughter
became (board_added) or why it was not placed (also printed under a failed
test's failure); a failed test keeps each board's serial log; at the
end of the session every run's metrics.prom is merged into
<hil-out>/metrics.prom with `test` and `run` labels.

This module is the thin pytest layer: options, markers, fixtures, JUnit
properties, serial logs and the merged Prometheus file. The rigs (emulated,
sim, a rig file) are hil/rig.py's, shared with `ground run`; the fixtures'
objects (Harness, Boards, HilResult, TraceHandle) are hil/harness.py's; the
live-run control (Live, Fleet, WaitTimeout) is the engine's, ground/live.py
and ground/fleet.py.
"""

import functools
import json
import os
import re
import tempfile

import pytest

from ground.fleet import Fleet, NodeState  # noqa: F401  (what predicates get; importable from here as before)
from ground.live import Live, WaitTimeout  # noqa: F401
from hil import rig as rig_mod
from hil.harness import Boards, Harness, HilResult, TraceHandle  # noqa: F401

# Key metrics recorded as JUnit properties for every run (plus every gated one).
KEY_METRICS = (
    "mission_s", "frames_sent", "unfated_frames", "split_brain", "overlap_count", "leader_changes",
    "failover_count", "failover_incomplete", "failover_s_max", "failover_T_max", "decision_T_max",
    "detection_T_max", "no_coordinator_share_max", "coordination_bytes_share", "anomalies",
)
_S = 1_000_000_000
DEFAULT_SPARES = 1  # --rig emulated: spare boards for a scenario with replication: (--hil-spares N)


# ---- options, markers ------------------------------------------------------------


def pytest_addoption(parser):
    g = parser.getgroup("fleetloop-hil", "fleetloop hardware in the loop")
    g.addoption("--rig", metavar="RIG", default=None,
                help="boards to run on: a rig file (boards/rig-*.yaml), 'emulated' (default: one emulated Pico"
                     " per scenario node) or 'sim' (in-process nodes, virtual time)")
    g.addoption("--hil-out", metavar="DIR", default=None,
                help="where run folders, serial logs and the session's metrics.prom go (default: pytest's basetemp/hil)")
    g.addoption("--hil-logs", choices=("failed", "all"), default="failed",
                help="keep boards' serial logs for failed tests only (default) or for every test")
    g.addoption("--hil-spares", metavar="N", type=int, default=None,
                help="--rig emulated: spare emulated boards for the daughters of a scenario with replication:, off"
                     " until a daughter takes one (default: the hil_spares ini value, else %d); a rig file names its"
                     " own spares (spare: true)" % DEFAULT_SPARES)
    parser.addini("hil_spares", "spare emulated boards per scenario with replication: (--hil-spares)",
                  default=str(DEFAULT_SPARES))


def pytest_configure(config):
    config.addinivalue_line("markers", "boards(count, kind=None): the boards a test needs (fleetloop HIL plugin)")
    config.addinivalue_line("markers", "needs(*features): board features the test needs, e.g. power_control, radio")
    config.stash[_SESSION] = s = _Session(config)
    which = config.getoption("rig", None) or "emulated"
    s.spares = _spares(config, which)
    workers = config.getoption("numprocesses", None)  # pytest-xdist's -n (None without pytest-xdist)
    if which not in ("emulated", "sim") and workers not in (None, 0):
        # each worker would open the rig and drive the same boards (serial ports, power, emulated flash folders)
        raise pytest.UsageError("--rig %s: a rig file's boards are one set, and pytest-xdist's workers (-n %s) would"
                                " each drive all of them at once; run with -n 0 (--rig emulated gives each worker"
                                " boards of its own)" % (which, workers))
    if which not in ("emulated", "sim"):
        s.rig()  # a bad rig file stops the session here, naming file:line


def _spares(config, which):
    """The emulated rig's spare boards per scenario with replication:, from
    --hil-spares or the hil_spares ini value; UsageError for a bad one, or
    for --hil-spares with another rig."""
    opt = config.getoption("hil_spares", None)
    if opt is not None and which != "emulated":
        raise pytest.UsageError("--hil-spares %d: only with --rig emulated (%s); a rig file names its spare boards"
                                " itself (spare: true, docs/BOARDS.md)" % (opt, "--rig sim runs daughters in-process"
                                                                           if which == "sim" else "--rig " + which))
    where = "--hil-spares"
    if opt is None:
        raw = config.getini("hil_spares")
        where = "%s: hil_spares" % (config.inipath or "ini")
        try:
            opt = int(str(raw).strip())
        except ValueError:
            raise pytest.UsageError("%s = %r: a whole number of spare boards" % (where, raw)) from None
    if not 0 <= opt <= rig_mod.MAX_EMULATED_BOARDS:
        raise pytest.UsageError("%s %d: between 0 and %d spare boards" % (where, opt, rig_mod.MAX_EMULATED_BOARDS))
    return opt


def pytest_unconfigure(config):
    s = config.stash.get(_SESSION, None)
    if s is not None:
        s.close()


_SESSION = pytest.StashKey()
_RESULTS = pytest.StashKey()  # item -> the harness's runs, for the report hooks


@functools.lru_cache(maxsize=None)
def _feature_names():
    try:
        from hil import boards as boards_mod

        return frozenset(boards_mod.FEATURES)
    except Exception:
        return frozenset(rig_mod.EMULATED_FEATURES) | {"uart", "radio"}


@functools.lru_cache(maxsize=None)
def _kind_names():
    """Board kinds a marker may name: boards/<kind>.yaml, what they emulate, and sim."""
    try:
        from hil import boards as boards_mod

        names = set(boards_mod.kinds())
    except Exception:
        return None  # cannot tell: do not refuse
    return frozenset(names | {n[len("emulated_"):] for n in names if n.startswith("emulated_")} | {"sim"})


def _marks(item):
    """(count, kind, needs) from an item's markers; UsageError naming the test if malformed."""
    count = kind = None
    m = item.get_closest_marker("boards")
    if m is not None:
        args = list(m.args)
        count = args.pop(0) if args else m.kwargs.get("count")
        kind = args.pop(0) if args else m.kwargs.get("kind")
        extra = set(m.kwargs) - {"count", "kind"}
        if isinstance(count, bool) or not isinstance(count, int) or count < 1 or args or extra:
            raise pytest.UsageError("%s: @pytest.mark.boards(count, kind=None): count is a positive integer, got %r"
                                    % (item.nodeid, m))
        if kind is not None and not isinstance(kind, str):
            raise pytest.UsageError("%s: @pytest.mark.boards: kind is a board kind name, got %r" % (item.nodeid, kind))
        kinds = _kind_names()
        if kind is not None and kinds is not None and kind not in kinds:
            raise pytest.UsageError("%s: @pytest.mark.boards(kind=%r): unknown board kind (known: %s)"
                                    % (item.nodeid, kind, ", ".join(sorted(kinds))))
    needs = []
    known = _feature_names()
    for m in item.iter_markers("needs"):
        for f in m.args:
            if f not in known:
                raise pytest.UsageError("%s: @pytest.mark.needs(%r): unknown feature (known: %s)"
                                        % (item.nodeid, f, ", ".join(sorted(known))))
            if f not in needs:
                needs.append(f)
    return count, kind, tuple(needs)


def pytest_collection_modifyitems(config, items):
    for item in items:
        _marks(item)  # a typo in a marker fails the collection, naming the test


def pytest_runtest_setup(item):
    if item.get_closest_marker("boards") is None and item.get_closest_marker("needs") is None:
        return
    count, kind, needs = _marks(item)
    reason = item.config.stash[_SESSION].rig().unmet(count, kind, needs)
    if reason:
        pytest.skip(reason)


# ---- the session -------------------------------------------------------------------


class _Session:
    def __init__(self, config):
        self.config = config
        self._rig = None
        self._out = None
        self.spares = 0  # the emulated rig's spare boards per scenario with replication: (--hil-spares)
        self.runs = []  # (nodeid, HilResult) in order, for the merged metrics.prom

    def out_dir(self):
        if self._out is None:
            opt = self.config.getoption("hil_out", None)
            if opt:
                self._out = os.path.abspath(opt)
            else:
                base = self.config._tmp_path_factory.getbasetemp() if hasattr(self.config, "_tmp_path_factory") else None
                self._out = str(base / "hil") if base is not None else tempfile.mkdtemp(prefix="hil-")
            os.makedirs(self._out, exist_ok=True)
        return self._out

    def rig(self):
        """The session's rig (hil.rig): UsageError naming file:line for a bad rig file."""
        if self._rig is None:
            which = self.config.getoption("rig", None) or "emulated"
            try:
                self._rig = rig_mod.open_rig(which, lambda: os.path.join(self.out_dir(), "rig"), spares=self.spares)
            except ValueError as e:
                if not any(c.__name__ == "ConfigError" for c in type(e).__mro__):
                    raise
                raise pytest.UsageError("--rig %s: %s" % (which, e)) from None
        return self._rig

    def close(self):
        if self._rig is not None:
            self._rig.close()


def pytest_sessionfinish(session):
    s = session.config.stash.get(_SESSION, None)
    if s is None or not s.runs:
        return
    path = os.path.join(s.out_dir(), "metrics.prom")
    with open(path, "w") as f:
        f.write(merge_prometheus([(r.prom_path, {"test": nodeid, "run": str(r.index)}) for nodeid, r in s.runs
                                  if os.path.exists(r.prom_path)],
                                 extra=[("fleetloop_hil_history_violations",
                                         "History invariants broken in the run (ground/history.py)", "gauge",
                                         [({"test": nodeid, "run": str(r.index)}, len(r.history.violations))
                                          for nodeid, r in s.runs])]))


def pytest_report_header(config):
    opt = config.getoption("rig", None) or "emulated"
    s = config.stash.get(_SESSION, None)
    spares = ", %d spare board%s per scenario with replication:" % (s.spares, "" if s.spares == 1 else "s") \
        if opt == "emulated" and s is not None else ""
    return "fleetloop hil: rig %s%s, runs in %s" % (opt, spares, config.getoption("hil_out", None) or "<basetemp>/hil")


# ---- Prometheus: one file per run, merged per session ------------------------------------


def _label_value(v):
    return str(v).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _with_labels(sample, labels):
    extra = ",".join('%s="%s"' % (k, _label_value(v)) for k, v in labels.items())
    m = re.match(r"([A-Za-z_:][A-Za-z0-9_:]*)(\{(.*)\})?\s+(.*)$", sample)
    if m is None:
        return None
    name, _, inner, value = m.groups()
    inner = (inner + "," + extra) if inner else extra
    return "%s{%s} %s" % (name, inner, value)


def merge_prometheus(files, extra=()):
    """One Prometheus text exposition from several runs' metrics.prom: each
    family's HELP and TYPE once, then its samples from every run with the
    run's labels added. files: [(path, {label: value})]. extra: [(family,
    help, type, [(labels, value)])] appended."""
    families = {}  # name -> [help, type, [samples]]
    order = []
    for path, labels in files:
        family = None
        with open(path, encoding="utf-8") as f:
            for raw in f:
                line = raw.rstrip("\n")
                if not line:
                    continue
                if line.startswith("# HELP ") or line.startswith("# TYPE "):
                    parts = line.split(" ", 3)
                    family = parts[2]
                    if family not in families:
                        families[family] = [None, None, []]
                        order.append(family)
                    families[family][0 if parts[1] == "HELP" else 1] = parts[3] if len(parts) > 3 else ""
                    continue
                if line.startswith("#") or family is None:
                    continue
                s = _with_labels(line, labels)
                if s is not None:
                    families[family][2].append(s)
    for name, help_, type_, samples in extra:
        families[name] = [help_, type_, ["%s{%s} %s" % (name, ",".join('%s="%s"' % (k, _label_value(v))
                                                                       for k, v in labels.items()), value)
                                         for labels, value in samples]]
        order.append(name)
    out = []
    for name in order:
        help_, type_, samples = families[name]
        if help_ is not None:
            out.append("# HELP %s %s" % (name, help_))
        if type_ is not None:
            out.append("# TYPE %s %s" % (name, type_))
        out.extend(samples)
    return "\n".join(out) + "\n"


# ---- JUnit properties, serial logs -------------------------------------------------------------


def _rel(path, config):
    base = str(config.invocation_params.dir)
    try:
        rel = os.path.relpath(path, base)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel


def _record(item, res, name, value):
    if value is None:
        return
    key = name if res.index == 1 else "run%d.%s" % (res.index, name)
    if any(k == key for k, _ in item.user_properties):
        return
    item.user_properties.append((key, value))


def _record_run(item, res):
    cfg = item.config
    for name, value in (("scenario", res.scenario.name), ("mode", res.mode), ("status", res.status),
                        ("trace", _rel(res.trace_path, cfg)), ("metrics", _rel(res.metrics_path, cfg)),
                        ("metrics_prom", _rel(res.prom_path, cfg)),
                        ("history_violations", len(res.history.violations)), ("wall_s", round(res.wall_s, 1))):
        _record(item, res, name, value)
    for name in list(KEY_METRICS) + sorted(res.scenario.gates):
        _record(item, res, name, res.flat.get(name))
    placed = res.placements()
    if placed:  # which board became which daughter (board_added), and the daughters not placed
        _record(item, res, "daughters", "; ".join(placed))


def _render_serial(data):
    """A readable rendering of a board's serial output: text lines as they
    are, frames decoded (type, source, destination, fields)."""
    from ground import firmware
    from ground.router import _decode_fields

    wire, msgs = firmware.wire, firmware.msgs
    out = []
    for chunk in bytes(data).split(b"\x00"):
        if not chunk:
            continue
        try:
            f = wire.decode(chunk)
        except Exception:
            text = chunk.decode("utf-8", "replace").replace("\r", "")
            out.extend("  | " + ln for ln in text.split("\n") if ln.strip())
            continue
        out.append("frame %s %d -> %d seq %d %s" % (msgs.name(f.type), f.src, f.dst, f.seq,
                                                    json.dumps(_decode_fields(f), sort_keys=True)))
    return "\n".join(out) + "\n"


def _write_serial_logs(item, harness):
    written = []
    for res in harness.runs:
        folder = os.path.join(res.out_dir, "serial")
        os.makedirs(folder, exist_ok=True)
        nodes = sorted(set(res.scenario.nodes) | set(res.serial))  # daughters on spare boards too
        for nid in nodes:
            data = res.serial.get(nid, b"")
            base = os.path.join(folder, "node%d" % nid)
            if data:
                with open(base + ".log", "wb") as f:
                    f.write(data)  # the raw bytes the board printed
                with open(base + ".txt", "w") as f:
                    f.write(_render_serial(data))
            if res.mode != "emulated":
                _frames_from_trace(res.trace_path, nid, base + ".frames.txt")
        written.append(folder)
    for i, folder in enumerate(written, 1):
        key = "serial_logs" if i == 1 else "run%d.serial_logs" % i
        item.user_properties.append((key, _rel(folder, item.config)))


def _frames_from_trace(trace_path, nid, path):
    """What a board sent, from the trace (the router does not keep a real
    board's raw bytes): one line per frame, mission time, type, hex."""
    from ground import trace as trace_mod

    try:
        with open(path, "w") as f:
            for e in trace_mod.TraceReader(trace_path):
                if e.get("kind") == "frame" and e.get("fate") == "sent" and e.get("src") == nid:
                    f.write("%12.3f %-16s %s %s\n" % (e["mission_ns"] / _S, e.get("type"), e.get("hex"),
                                                       json.dumps(e.get("msg"), sort_keys=True)))
    except Exception:
        pass


def _daughters_text(harness):
    """Where a test's runs' daughters went, for its failure report: which
    spare board each became (board_added), or why one was not placed; ""
    when no run had a daughter."""
    lines = []
    for res in harness.runs:
        placed = res.placements()
        if placed:
            lines.append("run %d (%s, %s):" % (res.index, res.scenario.name, res.out_dir))
            lines.extend("  " + p for p in placed)
    return "\n".join(lines)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if call.when == "teardown":
        h = item.stash.get(_RESULTS, None)
        if h is not None and h.runs:
            failed = getattr(item, "_hil_failed", False) or report.failed
            if failed or item.config.getoption("hil_logs") == "all":
                _write_serial_logs(item, h)
                report.user_properties = list(item.user_properties)
    elif report.failed:
        item._hil_failed = True
        h = item.stash.get(_RESULTS, None)
        text = _daughters_text(h) if h is not None else ""
        if text:  # printed under the failure (JUnit has them as the `daughters` property of each run)
            report.sections.append(("fleetloop: daughters", text))
    return report


# ---- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def rig(request):
    """The session's rig (hil.rig): EmulatedRig (default), SimRig, or FileRig (--rig FILE)."""
    return request.config.stash[_SESSION].rig()


@pytest.fixture
def boards(request, rig, tmp_path):
    """The test's boards (marker @pytest.mark.boards(count, kind=...)); the
    test is skipped if the rig cannot meet its markers."""
    count, kind, needs = _marks(request.node)
    reason = rig.unmet(count, kind, needs)
    if reason:
        pytest.skip(reason)
    b = Boards(rig, count, kind, needs, str(tmp_path / "boards"))
    yield b
    b.stop()


@pytest.fixture
def harness(request, boards):
    """Runs scenarios on the test's boards; see Harness."""
    session = request.config.stash[_SESSION]
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid).strip("_")[-120:]
    item = request.node

    def on_run(res):
        session.runs.append((item.nodeid, res))
        _record_run(item, res)

    h = Harness(item.nodeid, boards, os.path.join(session.out_dir(), name), on_run=on_run,
                on_gate=lambda res, metric, value: _record(item, res, metric, value))
    item.stash[_RESULTS] = h
    return h


@pytest.fixture
def trace(harness):
    """The trace of the harness's latest run (path, reader, history check)."""
    return TraceHandle(harness)
