"""A sampling CPU profiler for the bench profiles (bench/profile_sim.py,
bench/profile_lean.py): SIGPROF every INTERVAL_S of this process's CPU and a
stack walk per sample, not cProfile's hook on every call (which doubles the
time of small calls and skews the shares toward them). Counts, per function,
the samples in it with what it calls (inclusive) and in it alone (self), and
the self samples per source file."""

import collections
import os
import signal

INTERVAL_S = 0.0005


def _key(frame):
    return "%s:%s" % (os.path.basename(frame.f_code.co_filename), frame.f_code.co_name)


class Sampler:
    """with Sampler(root) as s: work() -- then s.print_table(top)."""

    def __init__(self, root):
        self.root = root  # source files are listed relative to it
        self.own, self.incl, self.files = collections.Counter(), collections.Counter(), collections.Counter()
        self.total = 0
        self._old = None

    def _sample(self, _sig, frame):
        self.total += 1
        self.own[_key(frame)] += 1
        self.files[os.path.relpath(frame.f_code.co_filename, self.root)] += 1
        seen = set()
        while frame is not None:
            k = _key(frame)
            if k not in seen:
                seen.add(k)
                self.incl[k] += 1
            frame = frame.f_back

    def __enter__(self):
        self._old = signal.signal(signal.SIGPROF, self._sample)
        signal.setitimer(signal.ITIMER_PROF, INTERVAL_S, INTERVAL_S)
        return self

    def __exit__(self, *exc):
        signal.setitimer(signal.ITIMER_PROF, 0, 0)
        signal.signal(signal.SIGPROF, self._old)
        return False

    def print_table(self, top, by_file=False):
        n = max(1, self.total)
        print("  %-7s %-7s function" % ("incl", "self"))
        for k, v in self.incl.most_common(top):
            print("  %5.1f %%  %5.1f %%  %s" % (100.0 * v / n, 100.0 * self.own[k] / n, k))
        if by_file:
            print("  self    file")
            for k, v in self.files.most_common(top):
                print("  %5.1f %%  %s" % (100.0 * v / n, k))
