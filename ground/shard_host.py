"""Lean shards (ground/shard.py) in a child process run by another Python,
PyPy as a rule (`ground run --lean --shard-python PY`): the same shard code,
seeds and windows, so the same frames, counters and trace, on an
interpreter with a JIT (docs/FLEET_RUN.md "Shards on PyPy").

The parent's side is ShardHost: it starts `PY -m ground.shard_host` with
this checkout first on PYTHONPATH, hands it the shards' Shard arguments,
then makes one request per call a backend makes (advance, finish, where,
peak_rss_kb). A message is a 4-byte big-endian length and a pickle
(protocol 4, which Python 3.9 reads) on the child's stdin or stdout; the
child's stderr is the parent's. The child's own reply says which of its
shards raised; a child that exits (a crash, a kill, an injected death) is
seen at once as the end of its stdout; no reply is awaited longer than its
timeout. The child ignores SIGINT: Ctrl-C is the parent's to handle, and the
parent still asks it for its counters.

Two backends for ground/fleetrun.py use it: ChildShards here (--workers 1:
one child for every shard), and ground/fleetray.py's actors (each actor's
shards in a child of its own).
"""

import gc
import os
import pickle
import select
import shutil
import signal
import struct
import subprocess
import sys
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PICKLE_PROTOCOL = 4
START_TIMEOUT_S = 600.0  # the child imports the engine and builds its shards' nodes
REPLY_TIMEOUT_S = 3600.0  # one window's reply at the latest: the biggest shards take minutes
CLOSE_TIMEOUT_S = 10.0
# The child collects its garbage in full once its RSS has grown by this much since the last time (a
# fraction of it, and at least the MB): PyPy's collector left a 10,000-node hour's shard processes
# growing by about 0.6 GB an hour each (to 2.3 GB, against 1.0 GB at the start), garbage a full
# collection frees; CPython's RSS is flat and never reaches it.
GROWTH_FRACTION = 0.1
GROWTH_MIN_MB = 32
_LEN = struct.Struct(">I")
S = 1_000_000_000


class HostError(Exception):
    """The child failed. shard: the index, among this host's shards, of the
    one that raised (now_ns: its mission time then), or None when the
    process itself failed (it exited, or did not answer in time) or a
    request failed outside the shards."""

    def __init__(self, message, shard=None, now_ns=None, text=""):
        super().__init__(message)
        self.shard = shard
        self.now_ns = now_ns
        self.text = text  # the child's traceback, when it sent one


# --shard-python auto (the command line's default): PyPy when the project has one (.venv-pypy, `make
# pypy`, or FLEETLOOP_SHARD_PYTHON), the run is at least AUTO_NODE_S node-mission-seconds and its windows
# at least AUTO_WINDOW_NODE_S. Below the first PyPy's JIT does not pay for its warm-up: 1,000 nodes for 60
# mission s took 5.2 CPU s on PyPy against 3.3 on CPython, for 300 mission s 9.7 against 15.0 (one
# process). Below the second a window's round trip to the child (about 0.1 ms) outweighs its work:
# autonomy-30d (3 nodes, 276,480 windows of 10 s) took 27.9 s against 4.9 (docs/FLEET_RUN.md "Shards on
# PyPy").
AUTO_NODE_S = 200_000
AUTO_WINDOW_NODE_S = 100
# ... and the host has the memory: PyPy's shards held about twice CPython's (50,000 nodes on 2 workers: 7.3
# and 7.0 GB against 3.3 GB each; the host's used memory 14.6 GB against 7.9), so auto wants this much
# available per node and otherwise keeps CPython, which fits in half.
PYPY_MB_PER_NODE = 0.3
PYPY_VENV = os.path.join(ROOT, ".venv-pypy", "bin", "python")


def choose(option, nodes, duration_s, window_s):
    """The interpreter path --shard-python's value gives a run of `nodes`
    for duration_s mission seconds in windows of window_s, or None (this
    interpreter, in-process or in the Ray workers): "this"; "auto" (see
    AUTO_NODE_S); or a path or command."""
    if option == "this":
        return None
    if option == "auto":
        found = project_pypy()
        if found is None or nodes * duration_s < AUTO_NODE_S or nodes * window_s < AUTO_WINDOW_NODE_S:
            return None
        avail = available_mb()
        if avail is not None and nodes * PYPY_MB_PER_NODE > avail:
            return None
        return resolve(found, "--shard-python " if found == PYPY_VENV else "FLEETLOOP_SHARD_PYTHON=")
    return resolve(option)


def project_pypy():
    """The interpreter `auto` would take (FLEETLOOP_SHARD_PYTHON, else
    .venv-pypy's), unresolved, or None."""
    return os.environ.get("FLEETLOOP_SHARD_PYTHON") or (PYPY_VENV if os.access(PYPY_VENV, os.X_OK) else None)


def available_mb():
    """This host's available memory (MemAvailable, MB), or None where
    /proc/meminfo does not say."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def resolve(python, named="--shard-python "):
    """The path of the interpreter --shard-python names (a path or a
    command on PATH); ValueError naming it if there is none."""
    path = shutil.which(python)
    if path is None:
        raise ValueError("%s%s: no such program (a Python 3.9 or later with construct and PyYAML:"
                         " `make pypy` sets up .venv-pypy/bin/python from Debian's pypy3)" % (named, python))
    return path


class ShardHost:
    """Shards built from specs (Shard keyword arguments) in a child process
    of interpreter `python`."""

    def __init__(self, python, specs, start_timeout_s=START_TIMEOUT_S, reply_timeout_s=REPLY_TIMEOUT_S):
        self.python = python
        self.reply_timeout_s = reply_timeout_s
        self._pending = 0  # replies not read yet (a call interrupted by Ctrl-C)
        self._buf = bytearray()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([ROOT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
        try:
            self.proc = subprocess.Popen([python, "-m", "ground.shard_host"], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, env=env)
        except OSError as e:
            raise ValueError("--shard-python %s: cannot start it: %s" % (python, e)) from None
        try:
            self.call("start", specs, timeout_s=start_timeout_s)
        except HostError as e:
            self.close(kill=True)
            raise ValueError("--shard-python %s: the shard process did not start: %s" % (python, e)) from None
        except BaseException:
            self.close(kill=True)
            raise

    def call(self, op, *args, timeout_s=None):
        """The child's answer to op(*args); HostError if it failed."""
        while self._pending:  # a reply an interrupted call left in the pipe
            self._read(self.reply_timeout_s)
            self._pending -= 1
        blob = pickle.dumps((op, args), PICKLE_PROTOCOL)
        try:
            self.proc.stdin.write(_LEN.pack(len(blob)) + blob)
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise HostError(self._gone()) from None
        self._pending += 1
        reply = self._read(self.reply_timeout_s if timeout_s is None else timeout_s)
        self._pending -= 1
        if reply[0] == "ok":
            return reply[1]
        _, shard, now_ns, what, text = reply
        raise HostError(what, shard, now_ns, text)

    def _read(self, timeout_s):
        """One message from the child."""
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout_s
        buf = self._buf
        while True:
            if len(buf) >= 4:
                n = _LEN.unpack_from(buf)[0]
                if len(buf) >= 4 + n:
                    msg = pickle.loads(bytes(buf[4:4 + n]))
                    del buf[:4 + n]
                    return msg
            left = deadline - time.monotonic()
            if left <= 0:
                raise HostError("the shard process (%s) did not answer in %.0f s" % (self.python, timeout_s))
            ready, _, _ = select.select([fd], [], [], min(left, 1.0))
            if ready:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    raise HostError(self._gone())
                buf += chunk

    def _gone(self):
        try:
            code = self.proc.wait(timeout=CLOSE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            code = None
        how = "closed its pipe" if code is None else "exited with code %d" % code
        return "the shard process (%s) %s" % (self.python, how)

    def close(self, kill=False):
        """End the child (it exits when its stdin closes), killing it if it
        does not within CLOSE_TIMEOUT_S, or at once (kill: it failed)."""
        proc = self.proc
        if kill and proc.poll() is None:
            proc.kill()
        try:
            proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(timeout=CLOSE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=CLOSE_TIMEOUT_S)
        proc.stdout.close()


class ChildShards:
    """ground/fleetrun.py's backend for --workers 1 with --shard-python:
    every shard in one child process, each window one after the other, as
    InProcess runs them in this one."""

    def __init__(self, specs, python):
        self.name = "child (%s)" % os.path.basename(python)
        self.clusters = [kw["clusters"] for kw in specs]
        self.host = ShardHost(python, specs)  # an injected death raises there and is named, as in InProcess
        self.last_cpu_s = [0.0]
        self.dead = False
        self.child_cpu_s = None  # the child's CPU in all, read as the run finishes

    def _died(self, e, doing):
        from ground.fleetrun import ShardDied, _span, shard_failed

        self.dead = e.shard is None
        if e.shard is None:
            if e.text:  # the child's own failure, not a shard's: its traceback, for a bug report
                sys.stderr.write(e.text)
            raise ShardDied("shards 0..%d (clusters %s) died while %s: %s" % (
                len(self.clusters) - 1, _span([c for cl in self.clusters for c in cl]), doing, e)) from None
        raise shard_failed(e.shard, self.clusters[e.shard], e.now_ns, e) from None

    def advance(self, until_ns, inboxes, last):
        try:
            outs, cpu = self.host.call("advance", until_ns, inboxes, last)
        except HostError as e:
            self._died(e, "running the window to mission %.3f s" % (until_ns / S))
        self.last_cpu_s[0] = cpu
        return outs

    def finish(self, inboxes, status, reason):
        if self.dead:
            return [None] * len(self.clusters)
        try:
            states = self.host.call("finish", inboxes, status, reason)
            self.child_cpu_s = self.host.call("cpu_s")
            return states
        except HostError as e:
            sys.stderr.write("ground run: shards' counters lost: %s\n" % e)
            return [None] * len(self.clusters)

    def peak_rss_kb(self):
        try:
            return [None if self.dead else self.host.call("peak_rss_kb", timeout_s=CLOSE_TIMEOUT_S)]
        except HostError:
            return [None]

    def close(self):
        self.host.close()


# ---- the child ---------------------------------------------------------------

def _serve(op, args, shards):
    """One request's value (ground/shard.py's ShardFailed when a shard raised)."""
    from ground.shard import advance_all, finish_all

    if op == "advance":
        return advance_all(shards, *args)
    if op == "finish":
        return finish_all(shards, *args)
    if op == "where":
        return shards[0].now
    if op == "cpu_s":  # the child's CPU in all: its start, the shards' setup and windows
        return time.process_time()
    if op == "peak_rss_kb":
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    raise ValueError("unknown request %r" % (op,))


class _Tidy:
    """The child's full collections (see GROWTH_FRACTION): after() once a
    request is served."""

    def __init__(self):
        self.base_mb = None
        self.collections = 0

    @staticmethod
    def rss_mb():
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // (1 << 20)
        except (OSError, ValueError, IndexError):
            return None  # not Linux: the collector as it is

    def after(self):
        rss = self.rss_mb()
        if rss is None:
            return
        if self.base_mb is None or rss > self.base_mb + max(GROWTH_MIN_MB, self.base_mb * GROWTH_FRACTION):
            if self.base_mb is not None:
                gc.collect()
                self.collections += 1
            self.base_mb = self.rss_mb()


def _raised(e):
    """The reply for a request that raised e: a shard's failure names the
    shard (ground/shard.py ShardFailed); anything else is the process's."""
    shard = sys.modules.get("ground.shard")  # not imported yet: e cannot be a shard's
    if shard is not None and isinstance(e, shard.ShardFailed):
        return ("raised", e.index, e.now_ns, str(e), traceback.format_exc())
    return ("raised", None, None, "%s: %s" % (type(e).__name__, e), traceback.format_exc())


def _recv(stream):
    head = stream.read(4)
    if len(head) < 4:
        return None  # the parent closed the pipe: done
    n = _LEN.unpack(head)[0]
    blob = stream.read(n)
    return blob if len(blob) == n else None


def main():
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's (see the module's note)
    stdin = sys.stdin.buffer
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything a shard prints goes to stderr, never into the replies
    shards = []
    tidy = _Tidy()
    while True:
        blob = _recv(stdin)
        if blob is None:
            return 0
        op = None
        try:
            op, args = pickle.loads(blob)  # imports the engine's modules the first time (a bare Python fails here)
            if op == "start":
                from ground.shard import Shard

                shards = [Shard(**kw) for kw in args[0]]
                reply = ("ok", len(shards))
            else:
                reply = ("ok", _serve(op, args, shards))
        except Exception as e:
            reply = _raised(e)
        blob = pickle.dumps(reply, PICKLE_PROTOCOL)
        out.write(_LEN.pack(len(blob)) + blob)
        out.flush()
        if op == "start":
            gc.collect()  # the shards' setup: its garbage out before the baseline is read
        tidy.after()


if __name__ == "__main__":
    sys.exit(main())
