"""ground/sigint.py: a Ctrl-C that lands in a finalizer is not lost, wakes the
pool's wait, and raises where the loop checks; an ignored SIGINT stays ignored.
Real signals sent to this process (os.kill), in the main thread."""

import multiprocessing.connection
import os
import signal
import weakref

import pytest

from ground.sigint import SafeInterrupt


@pytest.fixture
def default_sigint():
    """Python's own SIGINT handler for the test (a run started in the
    background has SIGINT ignored), the old one back after."""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


class _Thing:
    pass


def _sigint_in_a_finalizer():
    def fin():
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(1000):  # the handler runs here, inside the finalizer
            pass

    x = _Thing()
    weakref.finalize(x, fin)
    del x  # the finalizer runs now: what the multiprocessing pool's dropped workers do


def test_a_sigint_in_a_finalizer_is_kept_and_wakes_the_wait(default_sigint):
    # With Python's own handler the KeyboardInterrupt raised in a finalizer is
    # printed as "Exception ignored" and lost: `ground chaos` then waited on
    # for its running worker after Ctrl-C (the interrupted-chaos test hung once).
    with SafeInterrupt() as stop:
        assert stop.fds and signal.getsignal(signal.SIGINT) is not signal.default_int_handler
        stop.check()  # nothing yet
        _sigint_in_a_finalizer()
        ready = multiprocessing.connection.wait(stop.fds, timeout=60)  # the guard, not a bound on the test
        assert ready == stop.fds
        with pytest.raises(KeyboardInterrupt):
            stop.check()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back


def test_an_ignored_sigint_stays_ignored(default_sigint):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with SafeInterrupt() as stop:
        assert stop.fds == [] and signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        os.kill(os.getpid(), signal.SIGINT)
        stop.check()  # ignored: nothing raised
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
