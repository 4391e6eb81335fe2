"""Push an update to one board over its serial line, through ground link
pipelines (ground/pipeline.py: loss, delay, rate) both ways, in real time:
the ground's UpdateSender (ground/update_sender.py) on this end, the board's
update agent on the other (docs/UPDATES.md). Used by the emulated-board
tests and bench/bench_update.py.

    push = Push(port, node_id=1, down={"loss": 0.05, "delay_ms": 100, "rate_bps": 64000}, up={...}, seed=3)
    push.start(sender)
    push.run_until(lambda s: s.state == "verified", timeout_s=120)
    sender.install(); push.run_until(...)

Every frame the board sends is kept in `frames` (ground.protocol parses);
update ACKs go to the sender as they come out of the up pipeline.
"""

from __future__ import annotations

import heapq
import os
import select
import time

from ground import firmware
from ground import protocol as P
from ground.pipeline import build_pipeline
from ground.stages import link_seed

wire = firmware.wire
_NS = 1_000_000_000


class Push:
    def __init__(self, port, node_id, down, up, seed=1, rate_bps=None, splitter=None, lines=()):
        self.port = port  # an open pyserial port to the board (non-blocking)
        self.node_id = node_id
        self.down = build_pipeline(dict(down), link_seed(seed, 0, node_id))
        self.up = build_pipeline(dict(up), link_seed(seed, node_id, 0))
        self.rate_Bps = (rate_bps or down.get("rate_bps") or 1e9) / 8.0
        self.splitter = splitter or wire.FrameSplitter()
        self.frames = []  # (wall s, parsed frame) of every frame the board sent
        self.acks = []  # parsed UPD_ACK fields, as the sender got them
        self.sender = None
        self.seq = 0
        self.bytes_down = 0  # line bytes the sender put on the down link
        self._t0 = time.monotonic()
        self._credit = 0.0
        self._last = 0.0  # now() of the last step
        self._queue: list = []  # (due s, n, direction, data)
        self._n = 0
        for line in lines:
            self._from_board(line)

    def now(self):
        return time.monotonic() - self._t0

    def start(self, sender):
        self.sender = sender

    def _ns(self, s):
        return int(s * _NS)

    def _route(self, pipe, direction, data, now):
        out = pipe.route(self.node_id, data, self._ns(now))
        if out.__class__ is str:
            return  # dropped (loss, queue): counted by nobody here; the sender recovers
        deliveries = [(out, data)] if out.__class__ is int else [(w, p.data) for w, p in out if w.__class__ is int]
        for when, d in deliveries:
            self._n += 1
            heapq.heappush(self._queue, (when / _NS, self._n, direction, bytes(d)))

    def _from_board(self, line):
        try:
            f = P.parse_line(bytes(line))
        except P.FrameError:
            return  # a boot banner, a traceback line
        self.frames.append((self.now(), f))
        if f.type == P.UPD_ACK and f.src == self.node_id:
            self._route(self.up, "up", bytes(line), self.now())

    def step(self, wait_s=0.01):
        now = self.now()
        # The sender's frames, paced at the down link's rate.
        self._credit = min(self._credit + (now - self._last) * self.rate_Bps, 4 * 256)
        self._last = now
        s = self.sender
        if s is not None and self._credit > 0:
            for type, payload in s.due(now, max(1, int(self._credit // 230))):
                line = bytes(wire.encode(type, wire.ADDR_GROUND, self.node_id, payload, self.seq))
                self.seq = (self.seq + 1) & 0xFF
                self._credit -= len(line)
                self.bytes_down += len(line)
                self._route(self.down, "down", line[:-1], now)
        # What the pipelines release now.
        while self._queue and self._queue[0][0] <= now:
            _, _, direction, data = heapq.heappop(self._queue)
            if direction == "down":
                self._write(data + b"\x00")
            else:
                f = P.parse_line(data)
                fields = dict(f.msg)
                self.acks.append(fields)
                if s is not None:
                    s.on_ack(fields)
        # What the board says.
        timeout = wait_s if not self._queue else max(0.0, min(wait_s, self._queue[0][0] - now))
        r, _, _ = select.select([self.port.fileno()], [], [], timeout)
        if r:
            try:
                data = self.port.read(self.port.in_waiting or 1)
            except OSError:
                data = b""
            for line in self.splitter.feed(data):
                self._from_board(line)

    def _write(self, data):
        view = memoryview(data)
        deadline = time.monotonic() + 10
        while view:
            _, w, _ = select.select([], [self.port.fileno()], [], 0.05)
            if w:
                try:
                    view = view[os.write(self.port.fileno(), view):]
                except BlockingIOError:
                    pass
            if time.monotonic() > deadline:
                raise TimeoutError("board %d took no input for 10 s" % self.node_id)

    def run_until(self, done, timeout_s, what="the condition"):
        """Step until done(sender) holds; TimeoutError naming `what` after timeout_s."""
        deadline = time.monotonic() + timeout_s
        while not done(self.sender):
            if time.monotonic() > deadline:
                raise TimeoutError("node %d: no %s within %d s (%s)" % (
                    self.node_id, what, timeout_s, self.sender.progress() if self.sender else "no sender"))
            self.step()
