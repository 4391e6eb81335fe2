"""The hot path of a lean shard (ground/shard.py): a frame sent in the shard
reaching a recipient of the same shard as it was sent (copy 0, bytes
untouched), written out: its counters, the recipient's core, and the poll
that follows. Anything else (a traced recipient, a node that is down or
skewed, a frame not decoded once) goes the general way, Shard._deliver; what
either way does to the nodes and the counters is the same.

Two savings, each exact:

- **per recipient, no per-frame work**: a frame's fields travel as one tuple
  shared by its recipients (`Shard._send` makes it once), and the
  recipient's counter cells (its per-type row, its cluster's buckets, its
  usage row) are looked up once per node, not per delivery;
- **the idle poll**: Run and Shard._poll poll a node after every delivery.
  For a plain follower (node/node.py's Node without a regional seat, market,
  joins or update agent, not coordinating) whose timers are not due, that
  poll does nothing but hand over what receive queued: Node.poll runs only
  the timers that are due (its boot, the election timeout, heartbeat and
  telemetry, each behind `now_ms >= deadline`), and take_persist has
  nothing unless the node is dirty. `idle()` says so from the node's own
  fields (Node.next_deadline_ms() is the earliest of those deadlines); then
  the poll is skipped and only its next deadline read. A coordinator always
  polls (coordinator_tick acts on how long it has held the term).
  `Landing.check_idle = True` (tests/ground/test_shard_land.py) polls the
  node anyway after each skip and fails if the poll did anything, so a core
  change that breaks the reading is caught.
"""

from ground import firmware
from ground import fleetcount as fc

MS = 1_000_000
_COORDINATOR = firmware.election.COORDINATOR
_POLLS, _RX_FRAMES, _RX_BYTES = fc.POLLS, fc.RX_FRAMES, fc.RX_BYTES


def idle(node, now_ms, deadline_ms):
    """True when node.poll(now_ms) would return nothing and change nothing,
    and node.take_persist() would return None (deadline_ms: the node's
    next_deadline_ms()): see the module's note."""
    return (now_ms < deadline_ms and node.role != _COORDINATOR and not node._out and not node._dirty
            and node._booted and node.seat is None and node.region is None and node.joins is None
            and node.update is None and node._keep is None)


class Landing:
    """A shard's deliveries of its own frames to its own nodes (Shard._land)."""

    check_idle = False  # a test's switch: poll anyway after each skipped poll and fail if it did anything

    def __init__(self, shard):
        self.shard = shard
        # node -> (link, {type: [sent, delivered, dropped]}, its cluster's buckets, usage row, the general way?)
        self._rx = {}
        self._bucket_ns = shard.counters.bucket_ns
        self._last_bucket = shard.counters.n_buckets - 1
        self.skipped = 0  # polls skipped as idle

    def _rows(self, dst):
        sh = self.shard
        c = sh.counters
        link = sh.links.get(dst)
        if link is None or dst in sh.traced:  # not here, or traced: the general way (Shard._deliver)
            rx = (link, None, None, None, True)
        else:
            rx = (link, c.nodes.setdefault(dst, {}), c._rows.get(dst), c.use(dst), False)
        self._rx[dst] = rx
        return rx

    def land(self, dst, fr):
        """Deliver frame fr = (data, type, sent_ns, src, nseq, Frame or None)
        to dst now: Shard._deliver(dst, 0, *fr), and the poll after it."""
        sh = self.shard
        rx = self._rx.get(dst)
        if rx is None:
            rx = self._rows(dst)
        link, cells, rows, use, general = rx
        frame = fr[5]
        if general or frame is None or not link.up or link.skew != 1.0 or link.updates is not None:
            # (update slots: SimLink.poll installs, restarts, reverts; ground/shard_rollout.py)
            sh._deliver(dst, 0, *fr)
            return
        now = sh.now
        typ = fr[1]
        cell = cells.get(typ)  # Counters.count(dst, typ, DELIVERED, now), written out
        if cell is None:
            cell = cells[typ] = [0, 0, 0]
        cell[1] += 1
        if rows is not None:
            k = now // self._bucket_ns
            rows[k if k < self._last_bucket else self._last_bucket][1] += 1
        use[_RX_FRAMES] += 1
        use[_RX_BYTES] += len(fr[0]) + 1
        now_ms = now // MS
        node = link.node
        node.receive_decoded(frame, now_ms)
        # Shard._poll(dst), written out, with the idle poll skipped (idle(), written out)
        use[_POLLS] += 1
        d = node.next_deadline_ms()
        if (now_ms < d and node.role != _COORDINATOR and not node._out and not node._dirty and node._booted
                and node.seat is None and node.region is None and node.joins is None and node.update is None
                and node._keep is None):
            self.skipped += 1
            if self.check_idle:
                self._check(node, now_ms, d)
        else:
            out = node.poll(now_ms)
            blob = node.take_persist()
            if blob is not None:
                link.flash = blob  # "written to flash" before the frames leave
            for _, line in out:
                sh._send(dst, bytes(line[:-1]))
            d = node.next_deadline_ms()
        if d is not None:
            at = d * MS
            if at <= now:  # not before the next mission ms
                at = (now_ms + 1) * MS
            wake_at = sh.wake_at
            w = wake_at[dst]
            if w is None or at < w:
                wake_at[dst] = at
                sh._call(at, sh._wake, dst, at)

    def _check(self, node, now_ms, d):
        out = node.poll(now_ms)
        blob = node.take_persist()
        after = node.next_deadline_ms()
        if out or blob is not None or after != d or not idle(node, now_ms, d):
            raise AssertionError("node %d: a poll called idle at %d ms did something: %d frames, persist %r,"
                                 " deadline %r -> %r" % (node.id, now_ms, len(out), blob, d, after))
