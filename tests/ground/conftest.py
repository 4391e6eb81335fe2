"""Runs of library scenarios (scenarios/*.yaml) that more than one test file
asserts on, made once per pytest session: test_library.py runs every
scenario of the library and checks its gates and its claims; test_sever.py
and test_replication.py assert more on the runs of containment-sever and
replication-twice. Whichever asks first runs it (tests/ground/ runs
test_library.py first), the others read the same run's result and trace.
Only the SHARED scenarios are kept: the rest are run into the asking test's
own folder and forgotten, as before."""

import os

import pytest

from ground import run, scenario

LIBRARY = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "scenarios")
SHARED = ("containment-sever", "replication-twice")


class LibraryRuns:
    def __init__(self, tmp_path_factory):
        self._factory = tmp_path_factory
        self._kept = {}  # name -> (scenario, run result, output folder)

    def get(self, name, out=None):
        """(sc, res, out) of `ground run scenarios/NAME.yaml --sim` (plots
        included, as the library test always ran it): a SHARED one from the
        session's first run of it, any other run now into `out`."""
        if name in self._kept:
            return self._kept[name]
        sc = scenario.load(os.path.join(LIBRARY, name + ".yaml"))
        if name in SHARED or out is None:
            out = str(self._factory.mktemp(name))
        res = run.run(sc, out)
        if name in SHARED:
            self._kept[name] = (sc, res, out)
        return sc, res, out


@pytest.fixture(scope="session")
def library_runs(tmp_path_factory):
    return LibraryRuns(tmp_path_factory)
