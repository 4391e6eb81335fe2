"""Run replay (`ground replay-run`): re-run the scenario a sim trace's
header recorded, in virtual time, and compare the new trace with the old,
byte for byte (a sim run is a pure function of its scenario, seed and code)."""

import os
import shutil
import tempfile

from ground.pcap import PcapError, read_trace
from ground.replay_stream import ReplayError, scenario_of


class RunResult:
    def __init__(self, old, new, out_dir, line, old_line, new_line, kept):
        self.old = old
        self.new = new
        self.out_dir = out_dir
        self.line = line  # first differing line number, None if identical
        self.old_line = old_line
        self.new_line = new_line
        self.kept = kept

    @property
    def identical(self):
        return self.line is None

    def report(self):
        where = ("new run in %s" % self.out_dir) if self.kept else "new run discarded"
        if self.identical:
            return "identical: %s and the re-run are the same, byte for byte (%s)" % (self.old, where)
        return "differs: first at line %d (%s)\n  recorded: %s\n  re-run:   %s" % (
            self.line, where, _clip(self.old_line), _clip(self.new_line))


def _clip(b, n=400):
    if b is None:
        return "(no such line: the trace ends before it)"
    s = b.decode("utf-8", "replace").rstrip("\n")
    return s if len(s) <= n else s[:n] + "... (%d more characters)" % (len(s) - n)


def replay_run(path, out_dir=None):
    """Re-run the recorded scenario in virtual time; RunResult."""
    from ground import run as run_mod

    try:
        header, _, torn = read_trace(path, allow_torn=True)
    except PcapError as e:
        raise ReplayError(str(e)) from None
    if header.get("mode") != "sim":
        raise ReplayError("%s:1: a %s run: only sim runs (virtual time) are reproducible byte for byte; "
                          "replay its nodes with replay-frames instead" % (path, header.get("mode")))
    sc = scenario_of(header, path)
    if out_dir is not None and os.path.exists(out_dir):
        raise ReplayError("%s: already exists; give a new folder for the re-run" % out_dir)
    parent = os.path.dirname(os.path.abspath(out_dir)) if out_dir else None
    tmp = tempfile.mkdtemp(prefix=".replay-run-", dir=parent)
    try:
        run_mod.run(sc, tmp, mode="sim", seed=header.get("seed"))
        with open(path, "rb") as f:
            old_lines = f.read().split(b"\n")
        with open(os.path.join(tmp, "trace.jsonl"), "rb") as f:
            new_lines = f.read().split(b"\n")
        line = old = new = None
        for i in range(max(len(old_lines), len(new_lines))):
            a = old_lines[i] if i < len(old_lines) else None
            b = new_lines[i] if i < len(new_lines) else None
            if a != b:
                line, old, new = i + 1, a, b
                break
        if out_dir is not None:
            os.rename(tmp, out_dir)  # complete: the run finished
            tmp = None
        return RunResult(path, out_dir, out_dir, line, old, new, out_dir is not None)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
