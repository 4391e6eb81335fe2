"""Frame replay into the in-process core (ground/replay.py has the
overview): in virtual time through run.py's own scheduling code (Driver,
_replay_sim), or, for a board run with a call journal, through exactly the
board's node.receive()/node.poll() calls (JournalReplay)."""

import heapq

from ground import firmware
from ground.replay_stream import MS, ReplayError

# Journal kinds of the restored market section (firmware/runtime/journal.py
# _J_KEPT, _J_KEPT_WORD; msgs.J_NAMES names them).
J_KEPT = firmware.msgs.J_NAMES.index("kept")
J_KEPT_WORD = firmware.msgs.J_NAMES.index("kept_word")


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
        _sim_updates = run_mod.Run._sim_updates
        _update_events = run_mod.Run._update_events
        _watchdog_reset = run_mod.Run._watchdog_reset

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
            # An in-process node keeps the run's update slots (ground/update_sim.py): an install
            # restarts it with the installed version at the same point, a test build's crash is
            # restarted by the same watchdog. (A board's slots are on the board.)
            self.link = SimLink(node, make, updates=None if board else self._sim_updates(node))
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
