"""Ctrl-C (SIGINT) as a flag that a loop acts on at a point of its choosing:
`SafeInterrupt`, used by the worker pool of `ground chaos` and `ground matrix`
(ground/chaos.py run_jobs).

Why not Python's own KeyboardInterrupt: it is raised wherever the main thread
happens to be, and where that is a weakref callback or a __del__ (the
multiprocessing finalizer that closes a finished worker's pipes runs as one
when the pool drops the worker) the exception is printed as "Exception
ignored" and lost: the pool then waits on for its running worker, up to
--timeout-s, as if nobody had pressed Ctrl-C. A raised exception between a
fork and the line that records the new worker would also leave a worker the
cleanup does not know. Here the handler only sets a flag and wakes the loop's
wait (a pipe given to signal.set_wakeup_fd, which the loop waits on with its
workers); the loop calls check(), which raises KeyboardInterrupt there.

Installed only in the main thread and only over Python's default handler: a
SIGINT the user's shell ignores (nohup, a background job) stays ignored, and a
handler someone else installed stays theirs (then `fds` is empty and check()
never raises: the old behaviour)."""

import os
import signal
import threading


class SafeInterrupt:
    """with SafeInterrupt() as stop: ... wait(conns + stop.fds) ... stop.check()"""

    def __init__(self):
        self.hit = False
        self.fds = []  # wait on these too: readable once SIGINT came
        self._old = self._old_fd = self._r = self._w = None

    def __enter__(self):
        if threading.current_thread() is not threading.main_thread():
            return self
        if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
            return self
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        os.set_blocking(self._w, False)
        self._old_fd = signal.set_wakeup_fd(self._w, warn_on_full_buffer=False)
        self._old = signal.signal(signal.SIGINT, self._on_sigint)
        self.fds = [self._r]
        return self

    def _on_sigint(self, signum, frame):
        self.hit = True  # nothing raised here: check() raises where the loop can stop cleanly

    def check(self):
        """Raise KeyboardInterrupt if SIGINT came; drain the wake-up pipe."""
        if self._r is not None:
            try:
                while os.read(self._r, 512):
                    pass
            except BlockingIOError:
                pass
        if self.hit:
            raise KeyboardInterrupt

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
            signal.set_wakeup_fd(self._old_fd)
            os.close(self._r)
            os.close(self._w)
            self._old = self._r = self._w = None
            self.fds = []
        return False
