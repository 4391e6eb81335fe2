"""fleetloop's pytest plugin: a rig's boards, the ground harness and the run's
trace as fixtures (docs/HIL.md).

    pytest tests/bench                                   # emulated Picos (the default)
    pytest tests/bench --rig boards/rig-lab.yaml         # the boards of a rig file
    pytest tests/bench --rig sim                         # in-process nodes, virtual time
    pytest tests/bench --hil-out runs/hil --junitxml runs/hil/junit.xml

Options: --rig RIG (a rig file, `emulated` (default) or `sim`), --hil-out DIR
(run folders, serial logs of failed tests, the session's metrics.prom),
--hil-logs failed|all (whose serial logs to keep).

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
of its trace and metrics; a failed test keeps each board's serial log; at the
end of the session every run's metrics.prom is merged into
<hil-out>/metrics.prom with `test` and `run` labels.

Where this departs from STYLE.md: labgrid's plugin is thin because drivers
and strategies live elsewhere. The live-run machinery here (a subclass of
ground.run.Run with two hooks and a thread) belongs in ground/run.py as
public hooks (an event listener and a thread-safe `inject(fault)`); until it
is there it lives in this file, behind the Live class.
"""

import functools
import json
import os
import re
import select
import subprocess
import sys
import tempfile
import threading
import time

import pytest

# Key metrics recorded as JUnit properties for every run (plus every gated one).
KEY_METRICS = (
    "mission_s", "frames_sent", "unfated_frames", "split_brain", "overlap_count", "leader_changes",
    "failover_count", "failover_incomplete", "failover_s_max", "failover_T_max", "decision_T_max",
    "detection_T_max", "no_coordinator_share_max", "coordination_bytes_share", "anomalies",
)
MAX_EMULATED_BOARDS = 16  # CPU-bound: each emulated board is one MicroPython process
EMULATED_FEATURES = ("watchdog", "led", "power_control")  # boards/emulated_pico.yaml, if it cannot be read
TICK_WALL_S = 0.025  # real-time runs: how often the run thread looks at steps and deadlines
BOOT_TIMEOUT_S = 30.0  # a board's HELLO after a reset
CONFIGURE_TIMEOUT_S = 60.0  # mpremote writing board.json + version.json to one board
_S = 1_000_000_000


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


def pytest_configure(config):
    config.addinivalue_line("markers", "boards(count, kind=None): the boards a test needs (fleetloop HIL plugin)")
    config.addinivalue_line("markers", "needs(*features): board features the test needs, e.g. power_control, radio")
    config.stash[_SESSION] = s = _Session(config)
    if (config.getoption("rig", None) or "emulated") not in ("emulated", "sim"):
        s.rig()  # a bad rig file stops the session here, naming file:line


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
        return frozenset(EMULATED_FEATURES) | {"uart", "radio"}


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


# ---- rigs ------------------------------------------------------------------------------


def _kind_matches(want, board_kind):
    """Kind `want` (None: any) is met by a board of that kind or by its emulation."""
    return want is None or want == board_kind or board_kind == "emulated_" + want


class _Prepared:
    """A scenario's boards, booted: `boards` for ground.run (node id -> board
    object or device path), `mode` for the trace header."""

    def __init__(self, mode, boards, stop=None, logs=None):
        self.mode = mode
        self.boards = boards
        self._stop = stop
        self._logs = logs

    def logs(self):
        """{node id: bytes the board printed}, for the serial logs."""
        return self._logs() if self._logs else {}

    def stop(self):
        if self._stop is not None:
            stop, self._stop = self._stop, None
            stop()


class EmulatedRig:
    """The default: one emulated Pico per scenario node (ground.emulated_run),
    flashed with the scenario's board.json and booted for each run."""

    mode = "emulated"
    name = "emulated"
    kind = "emulated_pico"

    def __init__(self):
        try:
            from hil import boards as boards_mod

            self.features = tuple(boards_mod.kind("emulated_pico").features)
        except Exception:
            self.features = EMULATED_FEATURES

    def unmet(self, count, kind, needs):
        if not _kind_matches(kind, self.kind):
            return "emulated boards are %s; the test needs kind %s (run it with --rig and a rig that has them)" % (
                self.kind, kind)
        lack = [f for f in needs if f not in self.features]
        if lack:
            return "emulated boards lack %s (they have: %s)" % (", ".join(lack), ", ".join(self.features))
        if count is not None and count > MAX_EMULATED_BOARDS:
            return "the test needs %d boards; at most %d emulated boards run at once" % (count, MAX_EMULATED_BOARDS)
        return None

    def prepare(self, sc, folder):
        from ground import emulated_run

        farm = emulated_run.start_farm(sc, folder)
        boards = farm.devices()
        for nid, b in boards.items():
            _keep_boot_hello_only(b, nid)
        return _Prepared("emulated", boards, farm.stop, lambda: {n: b.log for n, b in boards.items()})

    def close(self):
        pass


class SimRig:
    """In-process nodes in virtual time: no boards, exact and fast. For
    developing tests; a HIL result needs boards."""

    mode = "sim"
    name = "sim"
    features = ("power_control",)  # the in-process link models power cuts

    def unmet(self, count, kind, needs):
        if kind not in (None, "sim"):
            return "--rig sim runs in-process nodes, not %s boards" % kind
        lack = [f for f in needs if f not in self.features]
        if lack:
            return "in-process nodes have no %s" % ", ".join(lack)
        return None

    def prepare(self, sc, folder):
        return _Prepared("sim", None)

    def close(self):
        pass


class FileRig:
    """The boards of a rig file (hil.rig). Emulated entries are started once
    per session; before each run every board of the scenario gets the
    scenario's board.json and version.json (emulated: written into its flash
    folder; real: one mpremote process per board, in parallel), is reset and
    its HELLO awaited."""

    mode = "rig"

    def __init__(self, path, folder):
        """folder: () -> where emulated entries' flash folders go (asked only if there are any)."""
        from hil import rig as rig_mod

        try:
            self.rig = rig_mod.load(path)
        except ValueError as e:
            if not _is_config_error(e):
                raise
            raise pytest.UsageError("--rig %s: %s" % (path, e)) from None
        self.path = path
        self.name = "%s (%s)" % (self.rig.name, path)
        self.folder = folder
        self._started = None

    def unmet(self, count, kind, needs):
        boards = self.rig.boards
        fit = [b for b in boards if _kind_matches(kind, b.kind) and all(f in b.features for f in needs)]
        what = " ".join(x for x in ("" if count is None else str(count), kind or "",
                                    "board" if count == 1 else "boards") if x)
        what += " with " + ", ".join(needs) if needs else ""
        if count is None:
            count = 1 if (kind or needs) else 0
        if len(fit) < count:
            lack = []
            for b in boards:
                if not _kind_matches(kind, b.kind):
                    lack.append("%s is %s" % (b.name, b.kind))
                else:
                    miss = [f for f in needs if f not in b.features]
                    if miss:
                        lack.append("%s lacks %s" % (b.name, ", ".join(miss)))
            return "rig %s: the test needs %s; the rig has %d (%s)" % (self.name, what, len(fit),
                                                                       "; ".join(lack) or "no boards")
        missing = dict(self.rig.missing())
        present = [b for b in fit if b.name not in missing]
        if len(present) < count:
            gone = ", ".join("%s (serial %s)" % (b.name, b.serial) for b in fit if b.name in missing)
            return "rig %s: the test needs %s; %d available; not attached: %s" % (self.name, what, len(present), gone)
        return None

    def _start_emulated(self):
        if self._started is None:
            self._started = []
            if any(b.emulated for b in self.rig.boards):
                self._started = self.rig.start_emulated(os.path.join(self.folder(), "emulated"))
        return self._started

    def prepare(self, sc, folder):
        self._start_emulated()
        try:
            devices = self.rig.devices_for(sc)
        except ValueError as e:  # ConfigError: no board for a node, another cluster; RigError: not attached
            if not _is_config_error(e):
                raise
            pytest.skip("rig %s cannot run scenario %s: %s" % (self.name, sc.name, e))
        boards, errors = {}, {}

        def one(nid):
            try:
                boards[nid] = self._boot(sc, nid, devices[nid], folder)
            except BaseException as e:  # reported below, by board
                errors[nid] = e

        threads = [threading.Thread(target=one, args=(nid,), name="rig-node%d" % nid, daemon=True) for nid in sorted(devices)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(CONFIGURE_TIMEOUT_S + BOOT_TIMEOUT_S + 10)
        stuck = [nid for nid, t in zip(sorted(devices), threads) if t.is_alive()]
        if errors or stuck:
            for b in boards.values():
                _close_board(b)
            text = "; ".join("node %d: %s" % (n, e) for n, e in sorted(errors.items()))
            if stuck:
                text += "; node%s %s: no answer within %.0f s" % ("s" if len(stuck) > 1 else "", stuck,
                                                                    CONFIGURE_TIMEOUT_S + BOOT_TIMEOUT_S)
            raise RuntimeError("rig %s: preparing scenario %s: %s" % (self.name, sc.name, text))

        def stop():
            for b in boards.values():
                _close_board(b)

        return _Prepared("rig", boards, stop, lambda: {n: bytes(getattr(b, "log", b"")) for n, b in boards.items()})

    def _boot(self, sc, nid, device, folder):
        from ground import emulated_run
        from hil import flash

        b = self.rig.by_node(nid)
        spec = sc.nodes[nid]
        cfg = dict(self.rig.board_json(b))
        cfg.update(_scenario_board_json(sc, nid))
        running = self.rig.running.get(b.name)
        if running is not None:  # an emulated entry: its folder is its flash
            flash.write_image(str(running.folder), version=spec.fw_version, label=spec.firmware, board_config=cfg)
            return _keep_boot_hello_only(emulated_run.boot_and_wait_hello(running, nid, BOOT_TIMEOUT_S), nid)
        repl = self.rig.port(b)
        _configure_over_repl(repl, cfg, spec, os.path.join(folder, b.name))
        board = SerialBoard(b.name, device, repl)
        board.boot_and_wait_hello(nid, BOOT_TIMEOUT_S)
        return _keep_boot_hello_only(board, nid)

    def close(self):
        if self._started:
            self.rig.stop_emulated()


def _keep_boot_hello_only(board, nid):
    """Of the lines a board said while it booted (board.open_port[2], which
    ground.run routes at mission 0), keep only its HELLO to the ground.

    Workaround, until ground/run.py routes boot lines after every link is
    wired: Run._build replays node N's boot lines before the links of the
    nodes after N exist, so a cluster frame among them (a heartbeat the board
    sent before its reset, say) reaches only the nodes wired so far and
    leaves the others without a recorded fate. A HELLO to the ground has no
    node recipient; everything else a board says again within a heartbeat."""
    from ground import firmware

    wire, msgs = firmware.wire, firmware.msgs
    port = getattr(board, "open_port", None)
    if not port:
        return board
    seen = port[2]
    keep = []
    for line in seen:
        try:
            f = wire.decode(line)
        except wire.ProtocolError:
            continue
        if f.type == msgs.HELLO and f.src == nid and f.dst == wire.ADDR_GROUND:
            keep = [line]
    seen[:] = keep
    return board


def _is_config_error(e):
    """ground.yamlfile.ConfigError (or hil.rig.RigError), by name: a test
    session may hold two copies of the module (pytester's in-process runs)."""
    return any(c.__name__ == "ConfigError" for c in type(e).__mro__)


def _scenario_board_json(sc, nid):
    """The board.json keys a scenario decides (ground.emulated_run.board_config
    minus the watchdog, which is the rig's business)."""
    from ground import emulated_run

    cfg = emulated_run.board_config(sc, nid)
    cfg.pop("watchdog_ms", None)
    return cfg


def _configure_over_repl(port, cfg, spec, folder):
    """Write board.json and version.json to a real board with mpremote (one
    process per board), leaving the firmware as flashed."""
    os.makedirs(folder, exist_ok=True)
    bj, vj = os.path.join(folder, "board.json"), os.path.join(folder, "version.json")
    with open(bj, "w") as f:
        json.dump(cfg, f)
    with open(vj, "w") as f:
        json.dump({"version": list(spec.fw_version), "label": spec.firmware}, f)
    mpremote = os.path.join(os.path.dirname(sys.executable), "mpremote")
    cmd = [mpremote if os.path.exists(mpremote) else "mpremote", "connect", port, "cp", bj, ":board.json",
           "+", "cp", vj, ":version.json"]
    try:
        p = subprocess.run(cmd, capture_output=True, timeout=CONFIGURE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise RuntimeError("%s: mpremote gave no answer within %.0f s" % (port, CONFIGURE_TIMEOUT_S)) from None
    if p.returncode:
        raise RuntimeError("%s: %s failed: %s" % (port, " ".join(cmd[1:]), (p.stderr or p.stdout).decode(errors="replace").strip()))


def _close_board(b):
    close = getattr(b, "close", None)
    if close is not None:
        try:
            close()
        except Exception:
            pass


class SerialBoard:
    """A real board for ground.run: its frames at `device` (a path or a
    pyserial URL), its REPL at `repl` (the same port unless the frames go over
    a UART). reset() is a soft reset at the REPL (Ctrl-C, Ctrl-B, Ctrl-D:
    main.py runs, USB stays up). No power control: tests that cut power say
    @pytest.mark.needs("power_control"). `log` keeps the bytes read while it
    booted; the router keeps the frames after that (in the trace)."""

    def __init__(self, name, device, repl=None):
        self.name = name
        self.device = device
        self.repl = repl or device
        self.log = bytearray()
        self.open_port = None

    def reset(self):
        import serial

        port = self.open_port[0] if self.open_port and self.repl == self.device else None
        own = port is None
        if own:
            port = serial.serial_for_url(self.repl, timeout=1, write_timeout=2)
        try:
            port.write(b"\x03\x03\x02\x04")
            port.flush()
        finally:
            if own:
                port.close()

    def boot_and_wait_hello(self, node_id, timeout_s):
        import serial

        from ground import firmware

        wire, msgs = firmware.wire, firmware.msgs
        port = serial.serial_for_url(self.device, timeout=0.1, write_timeout=2)
        try:
            port.reset_input_buffer()
            self.open_port = (port, wire.FrameSplitter(), [])
            self.reset()
            try:
                fd = port.fileno()
            except Exception:
                fd = None
            splitter, seen = self.open_port[1], self.open_port[2]
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                if fd is not None:
                    if not select.select([fd], [], [], 0.2)[0]:
                        continue
                    data = port.read(port.in_waiting or 1)
                else:
                    data = port.read(256)
                self.log += data
                for line in splitter.feed(data):
                    seen.append(line)
                    try:
                        f = wire.decode(line)
                    except wire.ProtocolError:
                        continue
                    if f.type == msgs.HELLO and f.src == node_id:
                        port.timeout = 0
                        return self
        except BaseException:
            port.close()
            self.open_port = None
            raise
        port.close()
        self.open_port = None
        raise TimeoutError("board %s (node %d, %s): no HELLO within %.0f s after a soft reset; it said: %r"
                           % (self.name, node_id, self.device, timeout_s, bytes(self.log[-300:])))

    def power_cut(self):
        raise NotImplementedError("board %s: no power control for a USB or network board in this harness yet;"
                                  " tests that cut power say @pytest.mark.needs('power_control')" % self.name)

    power_on = power_cut

    def close(self):
        if self.open_port:
            try:
                self.open_port[0].close()
            except Exception:
                pass

    def __repr__(self):
        return "<SerialBoard %s %s>" % (self.name, self.device)


# ---- the session -------------------------------------------------------------------


class _Session:
    def __init__(self, config):
        self.config = config
        self._rig = None
        self._out = None
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
        if self._rig is None:
            which = self.config.getoption("rig", None) or "emulated"
            if which == "emulated":
                self._rig = EmulatedRig()
            elif which == "sim":
                self._rig = SimRig()
            else:
                self._rig = FileRig(which, lambda: os.path.join(self.out_dir(), "rig"))
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
    return "fleetloop hil: rig %s, runs in %s" % (opt, config.getoption("hil_out", None) or "<basetemp>/hil")


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


# ---- what the test sees of a running fleet --------------------------------------------


class NodeState:
    """What the ground last heard from one node."""

    __slots__ = ("id", "cluster", "role", "term", "coordinator", "standby", "alive", "suspect", "heard_s", "hello",
                 "boots", "down", "last")

    def __init__(self, nid, cluster):
        self.id = nid
        self.cluster = cluster
        self.role = None  # 0 follower, 1 candidate, 2 coordinator, 3 standby (msgs.ROLE_*)
        self.term = None
        self.coordinator = None  # who it names
        self.standby = None
        self.alive = None  # telemetry: members it hears
        self.suspect = None
        self.heard_s = None  # mission s of its latest routed frame
        self.hello = None  # its latest HELLO's fields
        self.boots = 0  # HELLOs seen
        self.down = False  # crashed / powered off by a fault, not heard since
        self.last = {}  # message type -> the decoded fields of its latest such frame (market_tel, ...)

    def copy(self):
        c = NodeState(self.id, self.cluster)
        for k in self.__slots__:
            setattr(c, k, getattr(self, k))
        c.last = dict(self.last)
        return c

    def __repr__(self):
        return "<node %d c%d role %s term %s coord %s%s>" % (self.id, self.cluster, self.role, self.term,
                                                            self.coordinator, " down" if self.down else "")


ROLE_COORDINATOR = 2


class Fleet:
    """The latest heartbeat / telemetry / HELLO of every node, from the trace
    events as they are recorded. Predicates given to Live.wait_for get one."""

    def __init__(self, header_nodes):
        self.now_s = 0.0
        self.nodes = {}
        for key, info in header_nodes.items():
            self.nodes[int(key)] = NodeState(int(key), int(info["cluster"]))
        self.claims = {}  # (cluster, term) -> set of nodes that claimed coordinator
        self.faults = []  # (mission s, fault event)

    def feed(self, e):
        t = e.get("mission_ns")
        if isinstance(t, int):
            self.now_s = max(self.now_s, t / _S)
        kind = e.get("kind")
        if kind == "fault":
            self.faults.append((self.now_s, e))
            if e.get("fault") in ("crash", "power_cut", "reset") and e.get("node") in self.nodes:
                self.nodes[e["node"]].down = True
            return
        if kind != "frame" or e.get("fate") != "sent" or e.get("dst") is None or "bad" in e:
            return
        n = self.nodes.get(e.get("src"))
        if n is None:
            return
        n.down = False
        n.heard_s = self.now_s
        msg = e.get("msg") or {}
        type_ = e.get("type")
        if type_ in ("heartbeat", "coordinator", "standby") and e["dst"] != 0xF000 | n.cluster:
            return  # a regional seat's election traffic (docs/MARKET.md), not the node's cluster role
        n.last[type_] = msg
        if type_ in ("heartbeat", "telemetry"):
            for k in ("role", "term", "coordinator", "standby"):
                if k in msg:
                    setattr(n, k, msg[k])
            if type_ == "telemetry":
                n.alive, n.suspect = msg.get("alive"), msg.get("suspect")
        elif type_ == "coordinator":
            n.role, n.term, n.coordinator, n.standby = ROLE_COORDINATOR, msg.get("term"), n.id, msg.get("standby")
        elif type_ == "hello" and e.get("dst") == 0:  # a node says HELLO to the ground and to its cluster
            n.hello = dict(msg)
            n.boots += 1
        if n.role == ROLE_COORDINATOR and n.term is not None and type_ in ("heartbeat", "telemetry", "coordinator"):
            self.claims.setdefault((n.cluster, n.term), set()).add(n.id)

    def copy(self):
        f = Fleet({})
        f.now_s = self.now_s
        f.nodes = {k: v.copy() for k, v in self.nodes.items()}
        f.claims = {k: set(v) for k, v in self.claims.items()}
        f.faults = list(self.faults)
        return f

    # ---- questions a test asks -------------------------------------------

    def members(self, cluster):
        return sorted(n for n, s in self.nodes.items() if s.cluster == cluster)

    def node(self, nid):
        return self.nodes[nid]

    def coordinator(self, cluster=None):
        """The node a majority of the cluster's members name as coordinator in
        the term it claims, or None. cluster None: the only cluster."""
        cluster = self._cluster(cluster)
        members = self.members(cluster)
        votes = {}
        for m in members:
            s = self.nodes[m]
            if not s.down and s.coordinator and s.term is not None:
                votes[(s.coordinator, s.term)] = votes.get((s.coordinator, s.term), 0) + 1
        for (c, term), k in sorted(votes.items(), key=lambda x: -x[1]):
            cs = self.nodes.get(c)
            if k >= len(members) // 2 + 1 and cs is not None and not cs.down and cs.role == ROLE_COORDINATOR \
                    and cs.term == term:
                return c
        return None

    def agreed(self, cluster=None, nodes=None):
        """The coordinator every listed node (default: the cluster's members
        not down) names, in one term, itself claiming it; else None."""
        cluster = self._cluster(cluster)
        nodes = [n for n in self.members(cluster) if not self.nodes[n].down] if nodes is None else list(nodes)
        named = {(self.nodes[n].coordinator, self.nodes[n].term) for n in nodes}
        if len(named) != 1:
            return None
        c, term = named.pop()
        cs = self.nodes.get(c)
        if not c or cs is None or cs.role != ROLE_COORDINATOR or cs.term != term:
            return None
        return c

    def standby(self, cluster=None):
        c = self.coordinator(cluster)
        return None if c is None else (self.nodes[c].standby or None)

    def term(self, cluster=None):
        """The highest term any member of the cluster reports."""
        cluster = self._cluster(cluster)
        terms = [self.nodes[n].term for n in self.members(cluster) if self.nodes[n].term is not None]
        return max(terms) if terms else None

    def claimants(self, cluster=None, term=None):
        """Nodes that claimed coordinator in `term` (default: every term): {term: set}."""
        cluster = self._cluster(cluster)
        out = {t: set(v) for (c, t), v in self.claims.items() if c == cluster and (term is None or t == term)}
        return out

    def _cluster(self, cluster):
        if cluster is not None:
            return cluster
        clusters = {s.cluster for s in self.nodes.values()}
        if len(clusters) != 1:
            raise ValueError("say which cluster: this fleet has clusters %s" % sorted(clusters))
        return clusters.pop()

    def __repr__(self):
        return "<Fleet at %.1f s: %s>" % (self.now_s, ", ".join(repr(s) for _, s in sorted(self.nodes.items())))


class WaitTimeout(AssertionError):
    """A wait's condition did not hold within its mission-time timeout (or the
    run ended first). An AssertionError: the test fails, it does not error."""


class _Waiter:
    def __init__(self, pred, timeout_ns, what, deadline_ns):
        self.pred = pred  # None: wait for the deadline itself (wait_s)
        self.timeout_ns = timeout_ns
        self.what = what
        self.deadline_ns = deadline_ns
        self.scheduled = False
        self.done = False
        self.value = None
        self.timed_out = False
        self.error = None


def _live_run_class():
    from ground import run as run_mod

    class _HookedRun(run_mod.Run):
        """ground.run.Run with two hooks: every recorded event goes to the
        Live object too, and the run's own start (after the boards are wired,
        before the clock runs) is announced."""

        def __init__(self, live, *a, **kw):
            self._live = live
            super().__init__(*a, **kw)

        def _record(self, event):
            super()._record(event)
            self._live._on_event(self, event)

        def _schedule_faults(self):
            super()._schedule_faults()
            self._live._on_start(self)

    return _HookedRun


class Live:
    """A scenario running while the test watches it: use as a context manager.

    Real-time runs (boards) run freely in a thread; the test's waits watch
    them and its steps are applied within TICK_WALL_S. Virtual-time runs
    (--rig sim) advance only while the test waits, in lockstep, so they stay
    exactly reproducible: a step is applied at the mission time the previous
    wait ended.
    """

    def __init__(self, harness, sc, out_dir, prepared, seed=None):
        self.harness = harness
        self.sc = sc
        self.out_dir = out_dir
        self.prepared = prepared
        self.seed = seed
        self.virtual = prepared is not None and prepared.mode == "sim"
        self.result = None
        self._cv = threading.Condition()
        self._fleet = None
        self._waiter = None
        self._steps = []
        self._step_count = 0
        self._turn = "test"  # virtual time: whose turn it is
        self._free = False  # virtual time: run to the end without pausing
        self._finished = False
        self._error = None
        self._run = None
        self._thread = None

    # ---- the test's side ------------------------------------------------

    def __enter__(self):
        cls = _live_run_class()
        self._run = cls(self, self.sc, self.out_dir, mode=self.prepared.mode, seed=self.seed,
                        boards=self.prepared.boards)
        header = self._run._header()
        self._fleet = Fleet(header["nodes"])
        self._thread = threading.Thread(target=self._main, name="hil-run-%s" % self.sc.name, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type, exc, tb):
        self.finish(stop=exc_type is not None)
        return False

    @property
    def now_s(self):
        """Mission seconds now."""
        with self._cv:
            if self._run is None:
                return 0.0
            return self._run.clock.now_ns() / _S

    @property
    def fleet(self):
        """A copy of the Fleet view as of now."""
        with self._cv:
            f = self._fleet.copy()
            if self._run is not None and self._run.clock.real:
                f.now_s = self._run.clock.now_ns() / _S
            return f

    def step(self, fault):
        """Apply a scenario fault now: a dict or a YAML mapping as in a
        scenario's `faults:` list, without at_s ({"crash": 3},
        {"partition": [[1], [2, 3, 4]]}, {"heal": True}, {"power_cut":
        "coordinator", "cluster": 1, "duration_s": 20}). Recorded in the trace
        as a fault event whose detail names the step."""
        f = self._parse_step(fault)
        with self._cv:
            if self._finished:
                raise RuntimeError("step %r: the run has ended" % (fault,))
            self._steps.append(f)
            self._cv.notify_all()

    def wait_for(self, pred, timeout_s, what=None):
        """Wait until pred(fleet) is true; returns its value. Raises
        WaitTimeout after timeout_s mission seconds, or if the run ends first.
        pred runs in the run's thread at every recorded event: keep it quick
        and side-effect free."""
        return self._wait(pred, timeout_s, what or getattr(pred, "__name__", "a condition"))

    def wait_s(self, seconds):
        """Let `seconds` of mission time pass."""
        self._wait(None, seconds, "%g mission s to pass" % seconds)

    def _wait(self, pred, timeout_s, what):
        if timeout_s is None or timeout_s <= 0:
            raise ValueError("a wait needs a positive timeout in mission seconds, got %r" % (timeout_s,))
        wall_guard = 600.0 if self.virtual else timeout_s / self.sc.time_scale * 4 + 120.0
        with self._cv:
            if self._finished:
                self._raise_finished(what)
            start = self._run.clock.now_ns()
            w = _Waiter(pred, int(timeout_s * _S), what, start + int(timeout_s * _S))
            self._waiter = w
            self._turn = "run"
            self._cv.notify_all()
            give_up = time.monotonic() + wall_guard
            while not w.done and not self._finished:
                left = give_up - time.monotonic()
                if left <= 0:
                    self._waiter = None
                    raise WaitTimeout("waited %.0f wall s for %s (%g mission s from %.1f s) and the run did not"
                                      " advance: is it wedged? %r" % (wall_guard, what, timeout_s, start / _S, self._fleet))
                self._cv.wait(min(left, 0.5))
            self._waiter = None
            if w.error is not None:
                raise w.error
            if w.done and not w.timed_out:
                return w.value
            if w.timed_out:
                raise WaitTimeout("%s: not within %g mission s (from %.1f s to %.1f s); %r"
                                  % (what, timeout_s, start / _S, w.deadline_ns / _S, self._fleet))
            self._raise_finished(what)

    def _raise_finished(self, what):
        if self._error is not None:
            raise RuntimeError("the run failed while waiting for %s: %s" % (what, self._error)) from self._error
        raise WaitTimeout("%s: the run ended (mission %.1f s of %g) first; %r"
                          % (what, self._fleet.now_s, self.sc.duration_s, self._fleet))

    def finish(self, stop=False):
        """Let the run go to its end (stop=True: end it now), wait for it and
        keep its RunResult in `result`."""
        if self._thread is None:
            return self.result
        with self._cv:
            self._waiter = None
            self._free = True
            self._turn = "run"
            self._cv.notify_all()
        if stop:
            self._run.clock.stop()
        left_s = max(0.0, self.sc.duration_s - self.now_s)
        guard = 600.0 if self.virtual else left_s / self.sc.time_scale + 120.0
        self._thread.join(guard)
        if self._thread.is_alive():
            self._run.clock.stop()
            self._thread.join(30)
        thread, self._thread = self._thread, None
        if thread.is_alive():
            raise RuntimeError("run %s did not stop within %.0f wall s" % (self.sc.name, guard + 30))
        self.result = getattr(self._run, "result", None)
        if self._error is not None and not stop:
            raise RuntimeError("run %s failed: %s" % (self.sc.name, self._error)) from self._error
        return self.result

    def _parse_step(self, fault):
        import yaml

        from ground import scenario as scenario_mod

        self._step_count += 1
        where = "step %d of %s" % (self._step_count, self.harness.test_name)
        if isinstance(fault, str):
            fault = yaml.safe_load(fault)
        if not isinstance(fault, dict):
            raise ValueError("%s: a step is a mapping like a scenario fault, got %r" % (where, fault))
        if "at_s" in fault:
            raise ValueError("%s: a step happens now; at_s belongs in the scenario's faults" % where)
        text = yaml.safe_dump({"faults": [dict(fault, at_s=0)]}, default_flow_style=None, sort_keys=False)
        try:  # the scenario loader's own YAML reader and fault parser: a step is checked like a scenario fault
            faults = scenario_mod._parse_faults(scenario_mod.loads(text, where)["faults"], self.sc.nodes,
                                                self.sc.clusters)
        except ValueError as e:
            if not _is_config_error(e):
                raise
            raise ValueError(str(e)) from None
        return faults[0]

    # ---- the run's side (its own thread) ----------------------------------------

    def _main(self):
        try:
            self._run.execute()
        except BaseException as e:  # kept for the test's thread
            self._error = e
        finally:
            with self._cv:
                self._finished = True
                self._cv.notify_all()

    def _on_start(self, run):
        if self.virtual:
            with self._cv:
                self._pause_until_run_turn(run)
        else:
            self._tick(run)

    def _pause_until_run_turn(self, run):
        # called with the lock held, in the run thread
        while True:
            while self._turn != "run" and not self._free:
                self._cv.wait()
            if not self._after_resume(run) or self._free:
                return
            self._turn = "test"  # the new wait was over at once: the test goes on, the run stays here
            self._cv.notify_all()

    def _after_resume(self, run):
        """Steps queued while paused go on the clock now; the new wait gets its
        deadline. True if the new wait is already over (lock held)."""
        if self._steps:
            run.clock.call_at(run.clock.now_ns(), self._apply_steps, run)
        w = self._waiter
        if w is not None and not w.scheduled:
            w.scheduled = True
            run.clock.call_at(w.deadline_ns, self._at_deadline, run, w)
        return self._evaluate(run)

    def _apply_steps(self, run):
        with self._cv:
            steps, self._steps = self._steps, []
        for f in steps:
            run._fault(f)

    def _at_deadline(self, run, w):
        with self._cv:
            if self._waiter is w and self._evaluate(run, at_deadline=True):
                self._pause(run)

    def _tick(self, run):
        with self._cv:
            if self._steps:
                run.clock.call_at(run.clock.now_ns(), self._apply_steps, run)
            w = self._waiter
            if w is not None and not w.scheduled:
                w.scheduled = True
                run.clock.call_at(w.deadline_ns, self._at_deadline, run, w)
            self._evaluate(run)
        run.clock.call_at(run.clock.now_ns() + int(TICK_WALL_S * self.sc.time_scale * _S), self._tick, run)

    def _on_event(self, run, event):
        with self._cv:
            self._fleet.feed(event)
            if self._evaluate(run):
                self._pause(run)

    def _pause(self, run):
        """A wait just ended (lock held): in virtual time the run stops here
        until the test waits again or finishes; real time goes on."""
        if self.virtual and not self._free:
            self._turn = "test"
            self._cv.notify_all()
            self._pause_until_run_turn(run)

    def _evaluate(self, run, at_deadline=False):
        """Is the current wait over? (with the lock held) True when it just ended."""
        w = self._waiter
        if w is None or w.done:
            return False
        now = run.clock.now_ns()
        if w.pred is None:
            if now >= w.deadline_ns:
                w.done = True
        else:
            try:
                v = w.pred(self._fleet)
            except Exception as e:  # the test's predicate is broken: fail the test, not the run
                w.error, w.done = e, True
            else:
                if v:
                    w.value, w.done = v, True
                elif now >= w.deadline_ns or at_deadline:
                    w.timed_out = w.done = True
        if w.done:
            self._cv.notify_all()
        return w.done


# ---- results, the harness -------------------------------------------------------------------


class HilResult:
    """A harness run: ground.run's RunResult (metrics, failures, status, ok)
    plus where it is, the history check, and the boards' serial output."""

    def __init__(self, index, sc, mode, run_result, history, serial, wall_s):
        self.index = index
        self.scenario = sc
        self.mode = mode
        self.out_dir = run_result.out_dir
        self.metrics = run_result.metrics
        self.flat = run_result.metrics.get("flat", {})
        self.failures = list(run_result.failures)
        self.status = run_result.status
        self.history = history
        self.serial = serial  # {node id: bytes}
        self.wall_s = wall_s
        self.trace_path = os.path.join(self.out_dir, "trace.jsonl")
        self.metrics_path = os.path.join(self.out_dir, "metrics.json")
        self.prom_path = os.path.join(self.out_dir, "metrics.prom")

    @property
    def ok(self):
        return self.status == "ok" and not self.failures and self.history.ok

    def __repr__(self):
        return "<HilResult %s %s %s>" % (self.scenario.name, self.status, self.out_dir)


class Harness:
    """Runs scenarios on the test's boards: the router, impairments, faults,
    metrics, the trace, and the history check of every run."""

    def __init__(self, item, boards, out_dir):
        self.item = item
        self.boards = boards
        self.out_dir = out_dir
        self.test_name = item.nodeid
        self.runs = []
        self.serial = {}  # run index -> {node: bytes}

    def scenario(self, source, **overrides):
        """A Scenario from YAML text, a dict, or a path (scenarios/x.yaml);
        overrides replace top-level keys (seed=..., duration_s=...)."""
        import yaml

        from ground import scenario as scenario_mod

        if hasattr(source, "nodes") and hasattr(source, "faults"):
            if overrides:
                raise ValueError("overrides need the scenario's text or dict, not a loaded Scenario")
            return source
        path = "<%s>" % self.test_name
        if isinstance(source, dict):
            data = dict(source)
        elif isinstance(source, str) and "\n" not in source and source.endswith((".yaml", ".yml")):
            path = source
            with open(source, encoding="utf-8") as f:
                text = f.read()
            if not overrides:
                return scenario_mod.load_text(text, path)
            data = yaml.safe_load(text)
        else:
            if not overrides:
                return scenario_mod.load_text(source, path)
            data = yaml.safe_load(source)
        data.update(overrides)
        return scenario_mod.load_text(yaml.safe_dump(data, sort_keys=False, default_flow_style=None), path)

    def start(self, source, seed=None):
        """A Live run of the scenario on the test's boards: `with
        harness.start(sc) as live: ...`; afterwards live.result is the
        HilResult."""
        sc = self.scenario(source)
        return _ManagedLive(self, sc, seed)

    def run(self, source, seed=None):
        """Run the scenario to its end on the test's boards; a HilResult."""
        with self.start(source, seed) as live:
            pass
        return live.result

    def check(self, result, gates=None, **more):
        """Assert the run finished, its gates (ground.metrics names: {name:
        {max: x} | {min: y}}) hold, the scenario's own gates hold, and its
        history is clean. The message names the run folder."""
        from ground import metrics as metrics_mod

        gates = dict(gates or {}, **more)
        problems = []
        if result.status != "ok":
            problems.append("run status %s" % result.status)
        problems += result.failures
        problems += metrics_mod.evaluate(result.metrics, gates)
        problems += [str(v) for v in result.history.violations]
        for name in gates:
            _record(self.item, result, name, result.flat.get(name))
        assert not problems, "run %s (%s):\n  %s" % (result.scenario.name, result.out_dir, "\n  ".join(problems))
        return result

    def _folder(self, index):
        return os.path.join(self.out_dir, "run%d" % index if index > 1 else "run")

    def _finish_run(self, sc, live, prepared, wall_s):
        from ground import history

        index = len(self.runs) + 1
        rr = live.result
        rep = history.check(os.path.join(rr.out_dir, "trace.jsonl"), scenario=sc.name)
        with open(os.path.join(rr.out_dir, "history.txt"), "w") as f:
            f.write(rep.format() + "\n")
        serial = {}
        try:
            serial = prepared.logs()
        except Exception:
            pass
        if prepared.mode == "rig":
            # A real board's bytes after boot are what its link read. ground's
            # SerialLink does not keep them yet; when it keeps a `raw` tail,
            # it lands here.
            router = getattr(live._run, "router", None)
            for nid, link in (router.links.items() if router is not None else ()):
                raw = getattr(link, "raw", None)
                if raw and isinstance(prepared.boards.get(nid), SerialBoard):  # an emulated board's log has it all
                    serial[nid] = bytes(serial.get(nid, b"")) + bytes(raw)
        res = HilResult(index, sc, prepared.mode, rr, rep, serial, wall_s)
        self.runs.append(res)
        self.item.config.stash[_SESSION].runs.append((self.item.nodeid, res))
        _record_run(self.item, res)
        return res


class _ManagedLive(Live):
    """Live with the boards: prepared on entry, stopped on exit, pass or fail."""

    def __init__(self, harness, sc, seed):
        index = len(harness.runs) + 1
        super().__init__(harness, sc, harness._folder(index), None, seed)
        self._index = index

    def __enter__(self):
        folder = os.path.join(self.harness.boards.folder, "run%d" % self._index)
        self._t0 = time.monotonic()
        self.prepared = self.harness.boards._prepare(self.sc, folder)
        self.virtual = self.prepared.mode == "sim"
        try:
            return super().__enter__()
        except BaseException:
            self.prepared.stop()
            raise

    def __exit__(self, exc_type, exc, tb):
        err = None
        try:
            self.finish(stop=exc_type is not None)
        except BaseException as e:
            err = e
        finally:
            self.prepared.stop()
        if self.result is not None:  # whatever happened, what was recorded is measured and checked
            self.result = self.harness._finish_run(self.sc, self, self.prepared, time.monotonic() - self._t0)
        if err is not None and exc_type is None:
            raise err
        return False


class Boards:
    """The test's boards, as its markers ask. A scenario's boards are booted
    when the harness runs it (a board's board.json carries the scenario's
    cluster and timers) and stopped after the run, pass or fail."""

    def __init__(self, rig, count, kind, needs, folder):
        self.rig = rig
        self.count = count
        self.kind = kind
        self.needs = needs
        self.folder = folder
        self._live = []

    def _prepare(self, sc, folder):
        if self.count is not None and len(sc.nodes) > self.count:
            raise ValueError("scenario %s has %d nodes, but the test reserved %d boards (@pytest.mark.boards(%d))"
                             % (sc.name, len(sc.nodes), self.count, self.count))
        reason = self.rig.unmet(len(sc.nodes), self.kind, self.needs)
        if reason:
            pytest.skip(reason)
        p = self.rig.prepare(sc, folder)
        self._live.append(p)
        return p

    def stop(self):
        for p in self._live:
            try:
                p.stop()
            except Exception:
                pass
        self._live = []


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
        nodes = sorted(res.scenario.nodes)
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
    return report


# ---- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def rig(request):
    """The session's rig: EmulatedRig (default), SimRig, or FileRig (--rig FILE)."""
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
    h = Harness(request.node, boards, os.path.join(session.out_dir(), name))
    request.node.stash[_RESULTS] = h
    return h


class TraceHandle:
    """The test's latest run's trace."""

    def __init__(self, harness):
        self._harness = harness

    @property
    def path(self):
        if not self._harness.runs:
            raise LookupError("no run yet: the trace fixture reads the harness's latest run")
        return self._harness.runs[-1].trace_path

    def read(self):
        """(header, events, torn), as ground.trace.read."""
        from ground import trace as trace_mod

        return trace_mod.read(self.path)

    def events(self, kind=None, **match):
        """Events after the header, optionally of one kind and with fields equal to `match`."""
        _, events, _ = self.read()
        return [e for e in events if (kind is None or e.get("kind") == kind)
                and all(e.get(k) == v for k, v in match.items())]

    def frames(self, type=None, fate="sent", **match):
        """Frame events of one fate (default sent), optionally of one message type."""
        if type is not None:
            match["type"] = type
        return self.events("frame", fate=fate, **match)

    def check(self, scenario=None):
        """ground.history.check of this trace."""
        from ground import history

        return history.check(self.path, scenario=scenario)


@pytest.fixture
def trace(harness):
    """The trace of the harness's latest run (path, reader, history check)."""
    return TraceHandle(harness)
