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

Run replay re-runs the scenario recorded in the trace header (scenario_text,
seed) in virtual time and compares the new trace with the old, byte for
byte: a sim run is a pure function of its scenario, seed and code.
"""

import heapq
import os
import shutil
import tempfile

from ground import firmware
from ground import protocol
from ground.pcap import PcapError, read_trace

MS = 1_000_000
# Journal kinds of the restored market section (firmware/runtime/journal.py
# _J_KEPT, _J_KEPT_WORD; msgs.J_NAMES names them).
J_KEPT = firmware.msgs.J_NAMES.index("kept")
J_KEPT_WORD = firmware.msgs.J_NAMES.index("kept_word")


class ReplayError(ValueError):
    """A trace that cannot be replayed as asked: names the file (and line)."""


# ---- what a node sent and received, from the trace ---------------------------


class NodeStream:
    """One node's recorded inputs and outputs, in trace order.

    items: list of (line, kind, event, data) with kind in
      "in"    a frame delivered to the node (data: the bytes, no delimiter)
      "out"   a frame the node sent (data: the bytes as the node sent them)
      "fault" a fault on the node
      "end"   the end of the run
    """

    def __init__(self, path, node, header, items, torn):
        self.path = path
        self.node = node
        self.header = header
        self.items = items
        self.torn = torn

    @property
    def outputs(self):
        return [(ev["mission_ns"], data) for _, kind, ev, data in self.items if kind == "out"]

    @property
    def inputs(self):
        return [(ev["mission_ns"], data) for _, kind, ev, data in self.items if kind == "in"]


def node_stream(path, node, allow_torn=False):
    try:
        header, events, torn = read_trace(path, allow_torn=allow_torn)
    except PcapError as e:
        raise ReplayError(str(e)) from None
    nodes = header.get("nodes") or {}
    if str(node) not in nodes:
        added = any(e.get("kind") == "node" and e.get("event") == "node_added" and e.get("node") == node
                    for _, e in events)
        raise ReplayError("%s: node %s is %s (nodes: %s)"
                          % (path, node, "a daughter the run added (node_added): frame replay of a node added"
                             " during a run is not supported" if added else "not in this trace",
                             ", ".join(sorted(nodes, key=int)) or "none"))
    sent = {}
    items = []
    corrupted = set()
    unrecorded = []  # frames the router corrupted without recording the bytes delivered
    for line, ev in events:
        kind = ev["kind"]
        if kind == "frame":
            fate = ev["fate"]
            if fate == "corrupted" and ev.get("to") == node:
                corrupted.add(ev["id"])
            elif fate == "sent":
                data = bytes.fromhex(ev.get("hex", ""))
                sent[ev["id"]] = data
                if ev.get("src") == node:
                    orig = ev.get("orig_hex")
                    items.append((line, "out", ev, bytes.fromhex(orig) if orig else data))
            elif fate == "delivered" and ev.get("to") == node:
                data = bytes.fromhex(ev["hex"]) if "hex" in ev else sent[ev["id"]]
                if "hex" not in ev and ev["id"] in corrupted:
                    unrecorded.append(line)
                items.append((line, "in", ev, data))
        elif kind == "fault" and ev.get("node") == node:
            items.append((line, "fault", ev, None))
        elif kind == "end":
            items.append((line, "end", ev, None))
    stream = NodeStream(path, node, header, items, torn)
    stream.unrecorded = unrecorded
    return stream


def scenario_of(header, path):
    """The Scenario recorded in a trace header (scenario_text)."""
    from ground import scenario as scenario_mod
    from ground.yamlfile import ConfigError

    text = header.get("scenario_text")
    if not text:
        raise ReplayError("%s:1: the header has no scenario_text: this trace cannot be replayed" % path)
    try:
        return scenario_mod.load_text(text, header.get("scenario_path") or "%s (scenario_text)" % path)
    except ConfigError as e:
        raise ReplayError("%s:1: the recorded scenario does not load any more: %s" % (path, e)) from None


# ---- the in-process driver (virtual time) ------------------------------------


class _Clock:
    """The run's clock, as far as _poll / _wake / _node_fault use it."""

    real = False

    def __init__(self):
        self.now = 0
        self.pending = []  # heap of (mission_ns, seq, fn, args)
        self._seq = 0

    def now_ns(self):
        return self.now

    def call_at(self, mission_ns, fn, *args):
        self._seq += 1
        heapq.heappush(self.pending, (max(mission_ns, self.now), self._seq, fn, args))

    def wall_ns(self, time_scale):
        return int(self.now / time_scale)


class _Capture:
    """Stands in for the router: collects what the node sends."""

    def __init__(self, clock):
        self.clock = clock
        self.out = []  # (mission_ns, line without delimiter)

    def from_node(self, src, line):
        self.out.append((self.clock.now, bytes(line)))

    def _event(self, kind, **fields):
        pass

    def to_node(self, dst, type, payload):  # a skew fault on a serial link; never for sim
        raise ReplayError("replay into the in-process core: unexpected frame from the ground")


def _driver_class():
    from ground import run as run_mod

    class Driver:
        """Replays one node's stream through run.py's own scheduling code."""

        _poll = run_mod.Run._poll
        _wake = run_mod.Run._wake
        _node_fault = run_mod.Run._node_fault
        _make_node_factory = run_mod.Run._make_node_factory
        _replicating_config = run_mod.Run._replicating_config

        def __init__(self, sc, seed, node, board=False):
            from ground.links import SimLink

            self.replication = None
            if sc.replication is not None and not board:
                # A run that adds nodes: its nodes boot with their cluster's spares and the
                # widened markets (ground/replication.py), as the run built them at mission 0.
                from ground.replication import Replication, scenario_copy, widen_markets

                if node not in sc.nodes:
                    raise ReplayError("node %d is a daughter this run added: frame replay of a node added during"
                                      " a run is not supported (its config depends on the roster when it booted)"
                                      % node)
                sc = scenario_copy(sc)
                self.replication = Replication(sc, sc.replication)
                widen_markets(sc, self.replication)
            self.sc = sc
            self.seed = seed
            self.clock = _Clock()
            self.router = _Capture(self.clock)
            make = _board_factory(sc, node) if board else self._make_node_factory(node)
            self.link = SimLink(node, make)
            self.link.wake_at = None
            self.router.links = {node: self.link}
            self.clock.call_at(0, self._wake, self.link, 0)

        def fire(self, t, inclusive):
            p = self.clock.pending
            while p and (p[0][0] < t or (inclusive and p[0][0] == t)):
                at, _, fn, args = heapq.heappop(p)
                self.clock.now = at
                fn(*args)
            if t > self.clock.now:
                self.clock.now = t

        def deliver(self, t, data):
            self.fire(t, inclusive=False)
            self.clock.now = t
            link = self.link
            if link.up:  # the run records node_down instead when it is not
                link.deliver(data + b"\x00", t // MS)
                self._poll(link)

        def fault(self, t, ev):
            from ground.scenario import Fault

            self.fire(t, inclusive=False)
            self.clock.now = t
            a = ev.get("fault")
            detail = ev.get("detail") or {}
            if a in ("byzantine", "corruption_burst"):
                return  # the router alters frames after the node: the node itself is untouched
            params = {k: detail[k] for k in ("factor", "rewrite", "bitflip") if k in detail}
            f = Fault(at_s=t / 1e9, action=a, target=self.link.node_id, params=params)
            # duration_s stays None: the fault's end is its own line in the trace
            self._node_fault(a, self.link.node_id, self.link, f)

    return Driver


def _board_factory(sc, node):
    """A node built as an emulated board builds it (firmware/main.py with the
    board.json ground/board_json.py gives it): the same Config, the board's
    seed, which does not change across reboots."""
    from ground import run as run_mod

    cfg = run_mod.node_config(sc, node)
    try:
        from ground.board_json import board_config

        seed = board_config(sc, node)["seed"]
    except ImportError:
        seed = (sc.seed * 100_003 + node * 7) & 0xFFFFFFFF

    def make(saved, boots):
        return firmware.core.Node(node, cfg, seed, saved)

    return make


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


class JournalReplay:
    """Frame replay of a board run from the board's own call journal.

    A board with board.json "journal": true sends, before each batch of
    frames, JOURNAL frames listing every node.receive() and node.poll() it
    made with the mission ms it passed (its own clock), plus how each Node was
    built (fresh or from saved term/vote/counter) and the text of each
    node.log() (by crc; the text is that of the LOG frame it produced). With
    those, the in-process core is driven through exactly the board's calls:
    the lines are the bytes the trace recorded as delivered to the node, cut
    by the firmware's own FrameSplitter and matched to the journal by crc32,
    so the outputs must be byte-identical. Outputs are compared in order,
    by bytes (the board's ms are not the ground's mission ns).
    """

    def __init__(self, stream):
        msgs, wire = firmware.msgs, firmware.wire
        self.stream = stream
        self.entries = []  # (kind, t_ms, arg)
        self.recorded = []  # (mission_ns, line): what the node sent, journals excepted
        self.logs = []  # LOG payloads the node sent, in order
        self.notes = []
        self.boots = 0
        expect = None
        for line, kind, ev, data in stream.items:
            if kind != "out":
                continue
            try:
                f = wire.decode(data)
            except wire.ProtocolError:
                f = None
            if f is None or f.type != msgs.JOURNAL:
                self.recorded.append((ev["mission_ns"], data))
                if f is not None and f.type == msgs.LOG:
                    self.logs.append(f.payload)
                continue
            try:
                first, entries = msgs.unpack_journal(f.payload)
            except wire.ProtocolError as e:
                raise ReplayError("%s:%d: node %d's journal frame does not decode: %s"
                                  % (stream.path, line, stream.node, e)) from None
            if entries and entries[0][0] == msgs.J_BOOT and first == 0:
                expect = 0
            if expect is None or first != expect:
                raise ReplayError("%s:%d: node %d's journal jumps to entry %d where %s was due: journal frames are "
                                  "missing, the replay cannot be exact" % (stream.path, line, stream.node, first,
                                                                           "a boot" if expect is None else expect))
            expect = first + len(entries)
            self.entries.extend(entries)
        self.boots = sum(1 for e in self.entries if e[0] == msgs.J_BOOT)

    def _lines(self):
        """The lines the board's splitter cut from the bytes delivered to it."""
        splitter = firmware.wire.FrameSplitter()
        lines = []
        for _, kind, _, data in self.stream.items:
            if kind == "in":
                lines.extend(bytes(x) for x in splitter.feed(data + b"\x00"))
        return lines

    def _factory(self, sc):
        """make(saved, seed): the Node built exactly as firmware/main.py
        builds it from the board.json (and version.json) ground/board_json.py
        writes; the seed is the journal's (the board's own), board.json's if
        the journal has none."""
        from ground.board_json import board_config

        from runtime import boardcfg

        node = self.stream.node
        board = boardcfg.parse_board(board_config(sc, node), "board.json (node %d)" % node)
        board.fw_version = sc.nodes[node].fw_version
        cfg = boardcfg.core_config(board)

        def make(saved, seed=None):
            n = firmware.core.Node(node, cfg, board.seed if seed is None else seed, saved)
            n.time_scale_milli = board.time_scale_milli
            return n

        return make

    def run(self, sc):
        import binascii

        msgs = firmware.msgs
        make = self._factory(sc)
        lines = self._lines()
        li = 0
        logs = iter(self.logs)
        out = []
        node = None
        poll_noted = False
        entries = self.entries
        i = 0
        boot = None  # the boot entries being gathered: {kind: arg}; the Node is built at the first call
        while i < len(entries):
            kind, t_ms, arg = entries[i]
            i += 1
            if kind == msgs.J_BOOT:
                boot, node = {kind: arg}, None
                continue
            if kind in (msgs.J_SEED, msgs.J_TERM, msgs.J_VOTE, msgs.J_COUNTER, J_KEPT, J_KEPT_WORD):
                if boot is None or node is not None:
                    raise ReplayError("%s: node %d's journal entry %d (%s) is not part of a boot"
                                      % (self.stream.path, self.stream.node, i - 1, msgs.J_NAMES[kind]))
                boot.setdefault(kind, []).append(arg)
                continue
            if node is None:
                if boot is None:
                    raise ReplayError("%s: node %d's journal starts without a boot entry"
                                      % (self.stream.path, self.stream.node))
                saved = None
                if boot[msgs.J_BOOT]:  # the node's saved state, then its regional seat's, if any
                    saved = b"".join(firmware.core.save(*part) for part in
                                     zip(boot[msgs.J_TERM], boot[msgs.J_VOTE], boot[msgs.J_COUNTER]))
                    if J_KEPT in boot:  # the market section (node/durable.py), 4 bytes an entry
                        words = b"".join(w.to_bytes(4, "little") for w in boot.get(J_KEPT_WORD, ()))
                        saved += words[:boot[J_KEPT][0]]
                seed = boot.get(msgs.J_SEED)
                node = make(saved, seed[0] if seed else None)
            if kind == msgs.J_LOG:
                text = next(logs, None)
                if text is None or binascii.crc32(text) != arg:
                    self.notes.append("note: journal entry %d: a node.log() whose LOG frame is not in the trace; "
                                      "replayed with an empty text" % (i - 1))
                    text = b""
                node.log(text.decode())
            elif kind == msgs.J_RX:
                start = li
                while li < len(lines) and binascii.crc32(lines[li]) != arg:
                    li += 1
                if li == len(lines):
                    self.notes.append("note: journal entry %d: the board received a line (crc32 %08x) at its %d ms "
                                      "that no delivered frame in the trace gives; replay stops there"
                                      % (i - 1, arg, t_ms))
                    break
                if li > start:
                    self.notes.append("note: %d delivered line(s) before journal entry %d never reached the node "
                                      "(lost across a reset)" % (li - start, i - 1))
                node.receive(lines[li], t_ms)
                li += 1
            elif kind == msgs.J_POLL:
                sent = node.poll(t_ms)
                node.take_persist()
                if len(sent) != arg and not poll_noted:
                    poll_noted = True
                    self.notes.append("note: journal entry %d: the board's poll at %d ms returned %d frame(s), the "
                                      "replayed core's %d (first such poll)" % (i - 1, t_ms, arg, len(sent)))
                for _dst, line in sent:
                    out.append((t_ms * MS, bytes(line[:-1])))
        return out


def _replay_sim(stream, sc, seed, board=False):
    d = _driver_class()(sc, seed, stream.node, board)
    end_ns = None
    for line, kind, ev, data in stream.items:
        t = ev["mission_ns"]
        if kind == "in":
            d.deliver(t, data)
        elif kind == "out":
            d.fire(t, inclusive=True)  # the node sent at t: its timers due at t ran by now
        elif kind == "fault":
            d.fault(t, ev)
        elif kind == "end":
            end_ns = t
    if end_ns is None:  # torn: up to the last recorded event
        end_ns = stream.items[-1][2]["mission_ns"] if stream.items else 0
    d.fire(end_ns, inclusive=True)
    return d.router.out


# ---- into a device (real time) -------------------------------------------------


def _wait_hello(link, node, wait_s, say):
    """Read the device until node's HELLO; returns it and the lines after it."""
    import select
    import time

    msgs, wire = firmware.msgs, firmware.wire
    if say:
        say("replay-frames: waiting up to %g s for node %d's HELLO on %s: reset the board now" % (wait_s, node, link.url))
    deadline = time.monotonic() + wait_s
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise ReplayError("no HELLO from node %d on %s within %g s: reset (or power on) the board while the "
                              "replay waits" % (node, link.url, wait_s))
        r, _, _ = select.select([link.fileno()], [], [], min(left, 0.2))
        if not r:
            continue
        lines, eof = link.read_lines()
        for i, line in enumerate(lines):
            try:
                f = wire.decode(line)
            except wire.ProtocolError:
                continue
            if f.type == msgs.HELLO and f.src == node:
                return [bytes(x) for x in lines[i:]]
        if eof:
            raise ReplayError("%s closed before node %d said HELLO" % (link.url, node))


def _replay_device(stream, sc, url, time_scale, wait_hello_s=30.0, say=None):
    from ground.clock import RealClock
    from ground.links import LinkError, SerialLink
    from ground.realtime import Scheduler

    notes = ["replaying into %s in real time at time scale %g (outputs compared by bytes, in order)" % (url, time_scale)]
    inputs = stream.inputs
    msgs, wire = firmware.msgs, firmware.wire
    outputs = stream.outputs
    boots_with_hello = False
    if outputs:
        try:
            boots_with_hello = wire.decode(outputs[0][1]).type == msgs.HELLO
        except wire.ProtocolError:
            pass
    has_config = False
    for _, data in inputs:
        try:
            has_config = has_config or wire.decode(data).type == msgs.CONFIG
        except wire.ProtocolError:
            pass
    try:
        link = SerialLink(stream.node, url)
    except LinkError as e:
        raise ReplayError(str(e)) from None
    out = []
    try:
        if boots_with_hello and wait_hello_s:
            out.extend((0, line) for line in _wait_hello(link, stream.node, wait_hello_s, say))
    except BaseException:
        link.close()
        raise
    clock = RealClock(time_scale, Scheduler())  # mission 0: the board's HELLO

    def readable():
        lines, eof = link.read_lines()
        now = clock.now_ns()
        for line in lines:
            out.append((now, bytes(line)))
        if eof:
            clock.remove_reader(link.fileno())

    def write(data):
        link.deliver(data + b"\x00")

    try:
        clock.add_reader(link.fileno(), readable)
        if not has_config:
            auth = wire.Auth(sc.auth_key) if sc.auth_key else None
            cfg = wire.encode(msgs.CONFIG, wire.ADDR_GROUND, stream.node,
                              msgs.pack(msgs.CONFIG, int(time_scale * 1000), 0), 0, auth, 0)
            notes.append("note: the trace has no CONFIG for node %d (a sim run); sent one with time scale %g first"
                         % (stream.node, time_scale))
            link.deliver(bytes(cfg))
        for t, data in inputs:
            clock.call_at(t, write, data)
        end = [ev["mission_ns"] for _, kind, ev, _ in stream.items if kind == "end"]
        clock.run_until(end[-1] if end else (inputs[-1][0] if inputs else 0))
    except LinkError as e:
        raise ReplayError(str(e)) from None
    finally:
        link.close()
    faults = [ev for _, kind, ev, _ in stream.items if kind == "fault"]
    if faults:
        notes.append("note: %d faults on node %d were not replayed into the device (power and reset need the rig)"
                     % (len(faults), stream.node))
    return out, notes


# ---- run replay ---------------------------------------------------------------------


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
