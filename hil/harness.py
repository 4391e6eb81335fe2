"""What a test drives through the pytest plugin's fixtures: its boards, the
harness that runs scenarios on them, the runs' results and trace
(docs/HIL.md). The plugin (hil/pytest_plugin.py) builds these per test; the
rigs are hil/rig.py's and the live-run control is the engine's
(ground/live.py).

    harness.scenario(text | dict | path, **overrides) -> Scenario
    harness.run(sc) -> HilResult          harness.start(sc) -> a ground.live.Live on the boards
    harness.check(result, gates)          trace.path / .read() / .events() / .frames() / .check()
"""

import os
import time

import pytest
import yaml

from ground import history
from ground import metrics as metrics_mod
from ground import scenario as scenario_mod
from ground import trace as trace_mod
from ground.live import Live
from hil.serialboard import SerialBoard

DAUGHTER_EVENTS = ("node_added", "board_added", "daughter_lost")  # where a daughter went (ground/replication.py)


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
        self.daughters = []  # the run's node_added / board_added / daughter_lost events, in order (placements())
        self.trace_path = os.path.join(self.out_dir, "trace.jsonl")
        self.metrics_path = os.path.join(self.out_dir, "metrics.json")
        self.prom_path = os.path.join(self.out_dir, "metrics.prom")

    @property
    def ok(self):
        return self.status == "ok" and not self.failures and self.history.ok

    def placements(self):
        """Where the run's daughters went, one line each: "node 4 (daughter of
        node 1) on board spare0 (/dev/pts/7), booted in 150 wall ms", "node 5
        (daughter of node 2) not placed: no_spare_board", "node 6 (daughter of
        node 3) in-process" (a sim run)."""
        added = {e.get("node"): e for e in self.daughters if e.get("event") == "node_added"}
        on_board = {e.get("node"): e for e in self.daughters if e.get("event") == "board_added"}
        out = []
        for e in self.daughters:
            ev = e.get("event")
            if ev == "daughter_lost":
                out.append("node %s (daughter of node %s) not placed: %s" % (e.get("daughter", "?"), e.get("node"),
                                                                            e.get("reason") or e.get("detail")))
            elif ev == "node_added":
                nid = e.get("node")
                b = on_board.get(nid)
                where = ("on board %s (%s), booted in %s wall ms" % (b.get("board"), b.get("device"),
                                                                    b.get("boot_wall_ms")) if b else "in-process")
                out.append("node %s (daughter of node %s) %s" % (nid, e.get("parent"), where))
        for nid, b in on_board.items():
            if nid not in added:  # a board added without its node_added (should not happen): still named
                out.append("node %s on board %s (%s)" % (nid, b.get("board"), b.get("device")))
        return out

    def __repr__(self):
        return "<HilResult %s %s %s>" % (self.scenario.name, self.status, self.out_dir)


class Harness:
    """Runs scenarios on the test's boards: the router, impairments, faults,
    metrics, the trace, and the history check of every run."""

    def __init__(self, test_name, boards, out_dir, on_run=None, on_gate=None):
        """on_run(result) after every run (the plugin records JUnit properties
        and keeps it for the merged metrics.prom); on_gate(result, name,
        value) for every metric check() gates on."""
        self.boards = boards
        self.out_dir = out_dir
        self.test_name = test_name
        self.runs = []
        self._on_run = on_run
        self._on_gate = on_gate

    def scenario(self, source, **overrides):
        """A Scenario from YAML text, a dict, or a path (scenarios/x.yaml);
        overrides replace top-level keys (seed=..., duration_s=...)."""
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
        gates = dict(gates or {}, **more)
        problems = []
        if result.status != "ok":
            problems.append("run status %s" % result.status)
        problems += result.failures
        problems += metrics_mod.evaluate(result.metrics, gates)
        problems += [str(v) for v in result.history.violations]
        for name in gates:
            if self._on_gate is not None:
                self._on_gate(result, name, result.flat.get(name))
        assert not problems, "run %s (%s):\n  %s" % (result.scenario.name, result.out_dir, "\n  ".join(problems))
        return result

    def _folder(self, index):
        return os.path.join(self.out_dir, "run%d" % index if index > 1 else "run")

    def _finish_run(self, sc, live, prepared, wall_s):
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
            router = getattr(live.run, "router", None)
            for nid, link in (router.links.items() if router is not None else ()):
                raw = getattr(link, "raw", None)
                if raw and isinstance(prepared.boards.get(nid), SerialBoard):  # an emulated board's log has it all
                    serial[nid] = bytes(serial.get(nid, b"")) + bytes(raw)
        res = HilResult(index, sc, prepared.mode, rr, rep, serial, wall_s)
        res.daughters = list(live.daughters)
        self.runs.append(res)
        if self._on_run is not None:
            self._on_run(res)
        return res


class _ManagedLive(Live):
    """Live with the boards: prepared on entry, stopped on exit, pass or fail."""

    def __init__(self, harness, sc, seed):
        index = len(harness.runs) + 1
        super().__init__(sc, harness._folder(index), seed=seed, name=harness.test_name)
        self.harness = harness
        self.prepared = None
        self._index = index
        self.daughters = []  # node events of daughters (HilResult.daughters), as the run records them

    def _on_event(self, event):
        if event.get("kind") == "node" and event.get("event") in DAUGHTER_EVENTS:
            self.daughters.append(event)
        super()._on_event(event)

    def __enter__(self):
        folder = os.path.join(self.harness.boards.folder, "run%d" % self._index)
        self._t0 = time.monotonic()
        self.prepared = self.harness.boards._prepare(self.sc, folder)
        self.mode, self.boards = self.prepared.mode, self.prepared.boards
        if self.prepared.has_update_images:  # a rollout's images for the boards (the compiled firmware)
            self.update_image = self.prepared.update_image
        self.spare_board = self.prepared.spare_board  # spare boards for daughters (docs/CONTAINMENT.md), or None
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
        try:
            p = self.rig.prepare(sc, folder)
        except ValueError as e:
            if type(e).__name__ != "CannotRun":
                raise
            pytest.skip(str(e))
        self._live.append(p)
        return p

    def stop(self):
        for p in self._live:
            try:
                p.stop()
            except Exception:
                pass
        self._live = []


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
        return history.check(self.path, scenario=scenario)
