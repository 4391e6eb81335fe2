"""Scenario runs that more than one test file asserts on, made once per
pytest session. test_library.py runs every scenario of the library
(scenarios/*.yaml) and test_metrics_stream.py every test scenario
(tests/ground/scenarios/*.yaml), each checking the run's live metrics
against its trace file; test_sever.py, test_replication.py, test_contacts.py,
test_pcap.py, test_replay.py and test_replay_rollout.py assert more on the
same plain runs (`ground run FILE --sim`: the scenario's seed, plots drawn).
Whichever asks first runs it, the others read the same run's result and
trace (none of them writes into the run's folder). Only the SHARED runs are
kept; any other is run into the asking test's own folder, as before."""

import os

import pytest

from ground import run, scenario

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LIBRARY = os.path.join(_ROOT, "scenarios")
TEST_SCENARIOS = os.path.join(_ROOT, "tests", "ground", "scenarios")
SHARED = {os.path.join(LIBRARY, n) for n in ("containment-sever.yaml", "replication-twice.yaml")} | {
    os.path.join(TEST_SCENARIOS, n) for n in ("contacts.yaml", "pcap.yaml", "replay.yaml", "replay-rollout.yaml",
                                              "skew.yaml")}


class ScenarioRuns:
    def __init__(self, tmp_path_factory):
        self._factory = tmp_path_factory
        self._kept = {}  # path -> (scenario, run result, output folder)

    def get(self, name, out=None):
        """(sc, res, out) of `ground run FILE --sim`, FILE a path or the name of a
        library scenario: a SHARED one from the session's first run of it, any
        other run now into `out` (a fresh folder if None)."""
        path = os.path.abspath(name if name.endswith(".yaml") else os.path.join(LIBRARY, name + ".yaml"))
        if path in self._kept:
            return self._kept[path]
        sc = scenario.load(path)
        if path in SHARED or out is None:
            out = str(self._factory.mktemp(os.path.basename(path)[:-5]))
        res = run.run(sc, out)
        if path in SHARED:
            self._kept[path] = (sc, res, out)
        return sc, res, out


@pytest.fixture(scope="session")
def scenario_runs(tmp_path_factory):
    return ScenarioRuns(tmp_path_factory)
