"""Replays from a run trace: one node's input frames, or the whole run.

    ground replay-frames runs/x/trace.jsonl --node 3              # in-process core, virtual time
    ground replay-frames runs/x/trace.jsonl --node 3 --into /dev/ttyACM0   # a board, real time
    ground replay-run runs/x/trace.jsonl [--out DIR]

Frame replay (DESIGN.md: "replaying a recorded input stream reproduces the
recorded output exactly"). A node's input stream is what the trace recorded
as `delivered` to it (the bytes it got, corrupted or not, at the mission time
it got them), its faults (crash, restart, reset, power cut, power on, skew),
and time itself: the core is polled when its own timers say so. Replay feeds
that stream to a fresh node built exactly as the run built it (run.py's
node_config and node factory, the run's seed) and compares what it sends
with the node's recorded `sent` frames, bytes and mission time; `orig_hex`
is compared where a byzantine fault rewrote the frame after the node sent it.

In virtual time against the in-process core the result must be identical:
the driver reuses run.py's own _poll / _wake / _node_fault (bound to a small
stand-in for the Run, so they stay the run's code), and it replays the trace
in its recorded order. The one thing a trace does not record is when a
timer poll that sent nothing happened relative to a frame arriving at the
very same nanosecond; the replay orders such ties as the trace shows them:
if the node sent something at that instant before the frame's `delivered`
line, its timer ran first, otherwise the frame did.

Into a device (a pyserial URL: /dev/ttyACM0, an emulated board's pty,
rfc2217://...), replay runs in real time scaled by the trace's time scale:
each recorded input is written at its mission time, and what the board
sends is captured with the mission time it arrived at. Timing on a real
line jitters, so outputs are compared by bytes, in order, and times are
shown, not required to match. Mission 0 is the board's boot: the replay
opens the port, asks for the board to be reset, and starts its clock at the
board's HELLO (as the run did); a trace whose node sent no HELLO first
starts at once. Faults are not replayed into a device (power and reset are
the rig's), and are listed.

By job: replay_stream.py reads a node's stream from the trace,
replay_core.py replays it into the in-process core, replay_device.py into a
device, rerun.py re-runs a whole sim run; this module compares and reports
and re-exports their public names.

Run replay re-runs the scenario recorded in the trace header (scenario_text,
seed) in virtual time and compares the new trace with the old, byte for
byte: a sim run is a pure function of its scenario, seed and code.
"""

from ground import protocol
from ground.replay_core import J_KEPT, J_KEPT_WORD, JournalReplay, _replay_sim  # noqa: F401 (re-exported)
from ground.replay_device import _replay_device
from ground.replay_stream import MS, NodeStream, ReplayError, node_stream, scenario_of  # noqa: F401 (re-exported)
from ground.rerun import RunResult, replay_run  # noqa: F401 (re-exported)


class Diff:
    """The comparison of recorded and replayed frames."""

    def __init__(self, recorded, replayed, times_matter=True):
        self.recorded = recorded
        self.replayed = replayed
        self.index = None  # first differing position
        self.what = None
        n = min(len(recorded), len(replayed))
        for i in range(n):
            (t1, d1), (t2, d2) = recorded[i], replayed[i]
            if d1 != d2:
                self.index, self.what = i, "bytes"
                break
            if times_matter and t1 != t2:
                self.index, self.what = i, "time"
                break
        else:
            if len(recorded) != len(replayed):
                self.index, self.what = n, "count"

    @property
    def identical(self):
        return self.index is None

    def report(self, node):
        r, p = self.recorded, self.replayed
        if self.identical:
            return "identical: node %d sent the same %d frames%s" % (
                node, len(r), "" if not r else " (last at mission %.6f s)" % (r[-1][0] / 1e9))
        i = self.index
        lines = ["differs: node %d, frame #%d (of %d recorded, %d replayed): %s"
                 % (node, i + 1, len(r), len(p), {"bytes": "different bytes", "time": "same bytes, different time",
                                                 "count": "one side has more frames"}[self.what])]
        lines.append("  recorded: " + (_show(*r[i]) if i < len(r) else "(none: the recording ends here)"))
        lines.append("  replayed: " + (_show(*p[i]) if i < len(p) else "(none: the replay sent nothing more)"))
        return "\n".join(lines)


def _show(t_ns, data):
    try:
        d = protocol.describe(data)
        fields = " ".join("%s=%s" % (k, v) for k, v in d.items()
                          if k not in ("type", "type_code", "version", "dst_name", "line_bytes", "payload_bytes"))
        desc = "%s %s" % (d["type"], fields)
    except protocol.FrameError as e:
        desc = "(does not decode: %s)" % e
    return "t=%.6f s %s\n            hex %s" % (t_ns / 1e9, desc, data.hex())


class Result:
    def __init__(self, node, stream, replayed, diff, notes):
        self.node = node
        self.stream = stream
        self.replayed = replayed
        self.diff = diff
        self.notes = notes

    @property
    def identical(self):
        return self.diff.identical

    def report(self):
        return "\n".join(self.notes + [self.diff.report(self.node)])


def replay_frames(path, node, into="sim", allow_torn=False, sc=None, time_scale=None, wait_hello_s=30.0, say=None):
    """Replay node `node`'s recorded inputs; Result (see Diff.report())."""
    stream = node_stream(path, node, allow_torn)
    header = stream.header
    notes = []
    if stream.torn:
        notes.append("note: %s: the last line was torn; replaying the events before it" % path)
    end = [ev for _, kind, ev, _ in stream.items if kind == "end"]
    if end and end[-1].get("status") != "ok":
        notes.append("note: the run ended %s (%s): outputs after that point were never recorded"
                     % (end[-1].get("status"), end[-1].get("reason") or "no reason given"))
    if stream.unrecorded:
        notes.append("note: %s:%d (and %d more): a frame to node %d was corrupted (`corrupted` event) but its "
                     "delivered event has no hex, so the bytes the node got are not in the trace; the replay feeds "
                     "the sent bytes and cannot be exact from there" % (
                         path, stream.unrecorded[0], len(stream.unrecorded) - 1, node))
    if sc is None:
        sc = scenario_of(header, path)
    if node not in sc.nodes:
        raise ReplayError("%s: node %d is not in the recorded scenario" % (path, node))
    if into == "sim":
        link = (header.get("nodes", {}).get(str(node)) or {}).get("link")
        board = link not in (None, "sim")
        journal = JournalReplay(stream) if board else None
        if journal is not None and journal.entries:
            notes.append("replaying node %d's board journal (%d core calls over %d boot(s)) into the in-process core: "
                         "inputs at the board's own mission ms, outputs compared by bytes, in order"
                         % (node, len(journal.entries), journal.boots))
            replayed = journal.run(sc)
            notes.extend(journal.notes)
            return Result(node, stream, replayed, Diff(journal.recorded, replayed, times_matter=False), notes)
        if board:
            notes.append("note: node %d ran on a board (%s) in this %s run: the in-process core is built as the board "
                         "built it (its board.json seed) but polled in virtual time, when its timers fall due; a board "
                         "polls on its own loop, so frames that depend on when it polled can differ"
                         % (node, link, header.get("mode")))
        replayed = _replay_sim(stream, sc, header.get("seed", sc.seed), board)
        diff = Diff(stream.outputs, replayed)
    else:
        replayed, more = _replay_device(stream, sc, into, time_scale or header.get("time_scale") or sc.time_scale,
                                        wait_hello_s, say)
        notes.extend(more)
        diff = Diff(stream.outputs, replayed, times_matter=False)
    return Result(node, stream, replayed, diff, notes)
