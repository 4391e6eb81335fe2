"""A run a caller watches and steers while it goes: start it, apply a fault
step now, wait for a predicate over the fleet's state with a mission-time
timeout, take the result. The engine's public live-run API; the pytest
plugin's `harness.start()` is this with the test's boards (docs/HIL.md).

    with Live(sc, "runs/x") as live:                  # in-process nodes, virtual time
        c = live.wait_for(lambda fleet: fleet.agreed(1), timeout_s=12, what="a coordinator")
        live.wait_s(4)                                # let 4 mission s pass
        live.step({"crash": c})                       # a scenario fault, now
    live.result                                       # ground.run.RunResult

Live(sc, out, mode="emulated", boards=...) drives boards a back-end booted
(ground/backends.py): the run goes on in real time in its own thread. In
virtual time the run advances only while the caller waits, in lockstep, so a
live run is exactly reproducible.
"""

import threading
import time

from ground import run as run_mod
from ground import scenario as scenario_mod
from ground.fleet import Fleet

TICK_WALL_S = 0.025  # real-time runs: how often the run thread looks at steps and deadlines
_S = 1_000_000_000


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


class Live:
    """A scenario running while the caller (a test) watches it: use as a
    context manager, or start() and finish().

    Real-time runs (boards) run freely in a thread; the caller's waits watch
    them and its steps are applied within TICK_WALL_S. Virtual-time runs
    (in-process nodes) advance only while the caller waits, in lockstep, so
    they stay exactly reproducible: a step is applied at the mission time the
    previous wait ended. Every wait has a mission-time timeout and a generous
    wall-clock guard in case the run itself wedges.
    """

    def __init__(self, sc, out_dir, mode="sim", boards=None, seed=None, name=None, progress=None, update_image=None,
                 spare_board=None):
        """sc: a ground.scenario.Scenario; out_dir: the run folder; mode and
        boards as for Run (boards: {node id: board or device}, None for
        in-process nodes); name: who runs it, for the steps' `where`
        (default: the scenario's name); update_image: the back-end's rollout
        images for boards (BoardSet.update_image), or None; spare_board: its
        spare boards for daughters (BoardSet.spare_board), or None."""
        self.sc = sc
        self.out_dir = out_dir
        self.mode = mode
        self.boards = boards
        self.update_image = update_image
        self.spare_board = spare_board
        self.seed = seed
        self.name = name or sc.name
        self.progress = progress
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

    @property
    def virtual(self):
        """True for in-process nodes in virtual time (the run advances only while the test waits)."""
        return self.mode == "sim" and not self.boards

    def start(self):
        """Start the run in its own thread (what `with` does); returns self."""
        if self._thread is not None:
            raise RuntimeError("run %s: already started" % self.sc.name)
        self._run = run_mod.Run(self.sc, self.out_dir, mode=self.mode, seed=self.seed, boards=self.boards,
                                progress=self.progress, update_image=self.update_image,
                                spare_board=self.spare_board)
        self._run.listeners.append(self._on_event)
        self._run.on_start.append(self._on_start)
        self._fleet = Fleet(self._run.header()["nodes"])
        self._thread = threading.Thread(target=self._main, name="live-run-%s" % self.sc.name, daemon=True)
        self._thread.start()
        return self

    def __enter__(self):
        return self.start()

    def __exit__(self, exc_type, exc, tb):
        self.finish(stop=exc_type is not None)
        return False

    @property
    def run(self):
        """The ground.run.Run behind this (its router, clock, trace path); None before start()."""
        return self._run

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

        self._step_count += 1
        where = "step %d of %s" % (self._step_count, self.name)
        if isinstance(fault, str):
            fault = yaml.safe_load(fault)
        if not isinstance(fault, dict):
            raise ValueError("%s: a step is a mapping like a scenario fault, got %r" % (where, fault))
        if "at_s" in fault:
            raise ValueError("%s: a step happens now; at_s belongs in the scenario's faults" % where)
        text = yaml.safe_dump({"faults": [dict(fault, at_s=0)]}, default_flow_style=None, sort_keys=False)
        try:  # the scenario loader's own YAML reader and fault parser: a step is checked like a scenario fault
            faults = scenario_mod._parse_faults(scenario_mod.loads(text, where)["faults"], self.sc.nodes,
                                                self.sc.clusters, where)
        except ValueError as e:
            if not any(c.__name__ == "ConfigError" for c in type(e).__mro__):
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
            run.apply_fault(f)

    def _at_deadline(self, run, w):
        with self._cv:
            if self._waiter is w and self._evaluate(run, at_deadline=True):
                self._pause(run)

    def _tick(self, run):
        with self._cv:
            self._after_resume(run)  # queued steps onto the clock, the wait's deadline, the predicate
        run.clock.call_at(run.clock.now_ns() + int(TICK_WALL_S * self.sc.time_scale * _S), self._tick, run)

    def _on_event(self, event):
        run = self._run
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
