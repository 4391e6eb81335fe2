"""Links played from data, as pipeline stages: TraceReplay replays the
delays and drops a link had in a recorded run trace (the `replay` link spec
key), Mahimahi plays a Mahimahi link trace as the line (the `mahimahi` key),
RateSchedule and DelaySchedule follow a contact plan's per-contact rates and
light times (`rate_schedule`, `delay_schedule`; ground/contacts.py makes
them from ION or HDTN plans). Files are read when the pipeline is built,
once per process (cached by path, size and mtime: a scenario builds one
pipeline per directed link); the stages themselves read nothing, like every
stage (ground/stages.py). Where the data comes from: docs/TRACE_TOOLS.md.
"""
import math
import os
from bisect import bisect_right

from ground.stages import BLACKOUT, BURST_LOSS, LOSS, NS_PER_MS, PARTITION, QUEUE, Stage, check_ns

_FILE_CACHE = {}


def _cached(path, loader):
    try:
        st = os.stat(path)
    except OSError as e:
        raise ValueError("%s: cannot read: %s" % (path, e.strerror)) from None
    key = (loader.__name__, os.path.abspath(path), st.st_size, st.st_mtime_ns)
    v = _FILE_CACHE.get(key)
    if v is None:
        v = _FILE_CACHE[key] = loader(path)
    return v


# Drop reasons a recorded run's link decided (the others, node_down, run_end,
# version, unknown_dst, bad_frame, are about the nodes, not the link).
REPLAY_REASONS = (LOSS, BURST_LOSS, QUEUE, PARTITION, BLACKOUT)


def _load_trace_links(path):
    from ground.pcap import read_trace  # the strict reader, with file:line errors

    header, events, _ = read_trace(path, allow_torn=True)
    src_of = {}
    per_link = {}  # (src, to) -> {frame id: delay_ns | reason}
    for _, ev in events:
        if ev["kind"] != "frame":
            continue
        fate = ev["fate"]
        if fate == "sent":
            src_of[ev["id"]] = ev.get("src")
        elif fate in ("delivered", "dropped") and ev.get("copy", 0) == 0 and ev.get("to") is not None:
            key = (src_of.get(ev["id"]), ev["to"])
            if fate == "delivered":
                per_link.setdefault(key, {})[ev["id"]] = int(ev.get("delay_ns", 0))
            elif ev.get("reason") in REPLAY_REASONS:
                per_link.setdefault(key, {})[ev["id"]] = ev["reason"]
    return {k: tuple(v[i] for i in sorted(v)) for k, v in per_link.items()}


def trace_link_outcomes(path, src, dst):
    """The recorded outcomes of link src -> dst in a run trace, in the order
    the frames were sent: an int (delay_ns) for a delivery, a str (the reason)
    for a drop. Duplicates and frames lost for reasons outside the link
    (node_down, run_end, ...) are left out."""
    links = _cached(path, _load_trace_links)
    out = links.get((src, dst))
    if not out:
        have = ", ".join("%s->%s" % k for k in sorted(links, key=str)[:12]) or "none"
        raise ValueError("%s: no frames on link %s -> %s (links with frames: %s)" % (path, src, dst, have))
    return out


class TraceReplay(Stage):
    """Replays a recorded link: the k-th frame on this link gets the k-th
    outcome recorded on link (src -> dst) of a run trace: delivered after
    the same delay_ns (released at t + delay, so recorded reordering is
    reproduced), or dropped for the same reason. The recording loops when it
    runs out; with loop=False the link is down from then on (`blackout`).
    What it does not replay: duplicates, corruption (the delivered bytes),
    and the dependence of delay on load (it replays delays by frame index,
    whatever this run sends)."""

    fans_out = False

    def __init__(self, outcomes, loop=True):
        if not outcomes:
            raise ValueError("replay: no recorded outcomes")
        for o in outcomes:
            if not (o.__class__ is int and o >= 0) and o not in REPLAY_REASONS:
                raise ValueError("replay: outcome %r is neither a delay in ns nor a drop reason" % (o,))
        if loop.__class__ is not bool:
            raise ValueError("replay loop must be true or false, got %r" % (loop,))
        self.outcomes = tuple(outcomes)
        self.loop = loop
        self._i = 0  # the index of the next frame's outcome

    def process(self, pkt, t):
        # the k-th frame gets outcome k: t + delay or the reason; past the
        # end, the first again (loop) or the link is over
        i = self._i
        if i >= len(self.outcomes):
            if not self.loop:
                return BLACKOUT
            i = 0
        self._i = i + 1
        o = self.outcomes[i]
        return t + o if o.__class__ is int else o

    def __repr__(self):
        return "TraceReplay(%d outcomes, loop=%r)" % (len(self.outcomes), self.loop)


MAHIMAHI_PACKET_BYTES = 1500  # one delivery opportunity (mahimahi's PACKET_SIZE)


def load_mahimahi(path):
    """The opportunities of a Mahimahi link trace: a tuple of integer ms.

    One integer per line, each line one delivery opportunity of 1,500 bytes;
    timestamps never decrease; the last must be above 0 (the trace's span).
    Refused with file:line: an empty line, a line that is not a non-negative
    integer, a timestamp below the one before, a file with no timestamps."""
    return _cached(path, _parse_mahimahi)


def _parse_mahimahi(path):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ValueError("%s: cannot read: %s" % (path, e.strerror)) from None
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    out = []
    last = 0
    for i, raw in enumerate(lines):
        s = raw.strip()
        if not s:
            raise ValueError("%s:%d: empty line (one integer millisecond timestamp per line)" % (path, i + 1))
        if not s.isdigit():
            raise ValueError("%s:%d: %r is not a non-negative integer of milliseconds"
                             % (path, i + 1, s.decode("utf-8", "replace")))
        ms = int(s)
        if ms < last:
            raise ValueError("%s:%d: timestamp %d ms is below the one before it (%d ms): timestamps never decrease"
                             % (path, i + 1, ms, last))
        last = ms
        out.append(ms)
    if not out:
        raise ValueError("%s:1: no timestamps: a Mahimahi trace has one per line" % path)
    if out[-1] == 0:
        raise ValueError("%s:%d: the trace must last a nonzero time (its last timestamp is 0)" % (path, len(out)))
    return tuple(out)


class Mahimahi(Stage):
    """A Mahimahi link trace as the line (mahimahi's mm-link LinkQueue).

    Each timestamp (ms since mission 0) is one delivery opportunity of
    1,500 x rate_scale bytes. Frames wait in a FIFO queue of unlimited size;
    at each opportunity the frame at the head takes bytes from it, and if it
    finishes, the rest of the opportunity goes to the next frame that had
    arrived by then, and so on: byte-accounted, several small frames can share
    one opportunity and a large one spans several. Bytes left in an
    opportunity with nobody waiting are lost, and a frame can only use
    opportunities strictly after it arrived (mahimahi burns every
    opportunity up to `now` before it enqueues). A frame is released at the
    time of the opportunity that finishes it, so delivery times fall on the
    trace's milliseconds. A gap in the trace is a gap in capacity: frames
    wait, they are not dropped. Looping: the trace repeats every `span`
    (its last timestamp), as mahimahi does; with loop=False frames that
    cannot finish inside the trace are dropped (`blackout`: the recording,
    and so the link, is over) and so is everything after them.

    A frame occupies len(data) + overhead_bytes bytes (1: its 0x00
    delimiter), as in Rate. rate_scale scales the bytes per opportunity
    (the cellular traces are ~50x faster than a 115200-baud UART: 0.02).
    Integer arithmetic in thousandths of a byte, so no rounding drift.
    """

    fans_out = False

    def __init__(self, schedule_ms, rate_scale=1.0, loop=True, overhead_bytes=1):
        sched = tuple(schedule_ms)
        if not sched or any(b < a for a, b in zip(sched, sched[1:])) or sched[0] < 0 or sched[-1] <= 0:
            raise ValueError("mahimahi: timestamps must be non-negative, non-decreasing, last above 0")
        if rate_scale.__class__ is bool or not isinstance(rate_scale, (int, float)) or not rate_scale > 0 or math.isinf(rate_scale):
            raise ValueError("mahimahi rate_scale must be a number > 0, got %r" % (rate_scale,))
        cap = int(round(MAHIMAHI_PACKET_BYTES * 1000 * rate_scale))
        if cap < 1:
            raise ValueError("mahimahi rate_scale %r leaves under a thousandth of a byte per opportunity" % (rate_scale,))
        if loop.__class__ is not bool:
            raise ValueError("mahimahi loop must be true or false, got %r" % (loop,))
        if overhead_bytes.__class__ is not int or overhead_bytes < 0:
            raise ValueError("mahimahi overhead_bytes must be an integer >= 0, got %r" % (overhead_bytes,))
        self.schedule_ms = sched
        self.rate_scale = rate_scale
        self.loop = loop
        self.overhead_bytes = overhead_bytes
        self._ns = [ms * NS_PER_MS for ms in sched]
        self._n = len(sched)
        self._span = sched[-1] * NS_PER_MS
        self._cap = cap  # thousandths of a byte per opportunity
        self._idx = -1  # global index of the opportunity the last frame finished in
        self._left = 0  # thousandths of a byte left in it
        self._over = False

    def opportunity_ns(self, i):
        """Mission ns of global opportunity i (i >= 0; loops every span)."""
        k, j = divmod(i, self._n)
        return self._ns[j] + k * self._span

    def _first_after(self, t):
        k = t // self._span
        return k * self._n + bisect_right(self._ns, t - k * self._span)

    def process(self, pkt, t):
        if self._over:
            return BLACKOUT
        need = (len(pkt.data) + self.overhead_bytes) * 1000
        i = self._idx
        if i >= 0 and self._left and self.opportunity_ns(i) > t:
            # the last frame finishes in an opportunity still to come: this
            # one is queued by then and takes what is left of it
            if need <= self._left:
                self._left -= need
                return self.opportunity_ns(i)
            need -= self._left
            start = i + 1
        else:
            start = self._first_after(t)
            if start <= i:
                start = i + 1
        k = -(-need // self._cap)
        end = start + k - 1
        if not self.loop and end >= self._n:
            self._over = True
            return BLACKOUT
        self._idx = end
        self._left = k * self._cap - need
        return self.opportunity_ns(end)

    def __repr__(self):
        return "Mahimahi(%d opportunities over %d ms, rate_scale=%r, loop=%r)" % (
            self._n, self.schedule_ms[-1], self.rate_scale, self.loop)


class RateSchedule(Stage):
    """Serialisation at a rate that changes with time (a contact plan's
    per-contact rates): segments [(start_ns, end_ns, bps or None)], None
    meaning no rate limit. A frame takes line time at the rate of the
    segment in force when its transmission starts (the whole frame at that
    rate); outside every segment, default_bps (None: no limit). FIFO: a frame
    starts when the line is free. Line time is rounded up to the ns."""

    fans_out = False

    def __init__(self, segments, default_bps=None, bits_per_byte=8, overhead_bytes=1):
        segs = sorted(segments)
        for s, e, bps in segs:
            if e <= s:
                raise ValueError("rate schedule: a segment must end after it starts, got %r" % ((s, e, bps),))
            if bps is not None and (bps.__class__ is bool or not isinstance(bps, (int, float)) or not bps > 0):
                raise ValueError("rate schedule: bps must be > 0 or null (unlimited), got %r" % (bps,))
        for (s1, e1, _), (s2, e2, _) in zip(segs, segs[1:]):
            if s2 < e1:
                raise ValueError("rate schedule: segments overlap: %r and %r" % ((s1, e1), (s2, e2)))
        self.segments = segs
        self.default_bps = default_bps
        self.bits_per_byte = bits_per_byte
        self.overhead_bytes = overhead_bytes
        self._starts = [s for s, _, _ in segs]
        self._busy = 0

    def rate_at(self, t):
        i = bisect_right(self._starts, t) - 1
        if i >= 0 and t < self.segments[i][1]:
            return self.segments[i][2]
        return self.default_bps

    def process(self, pkt, t):
        start = t if t > self._busy else self._busy
        bps = self.rate_at(start)
        if bps is not None:
            start += int(math.ceil((len(pkt.data) + self.overhead_bytes) * self.bits_per_byte * 1e9 / bps))
        self._busy = start
        return start

    def __repr__(self):
        return "RateSchedule(%d segments, default_bps=%r)" % (len(self.segments), self.default_bps)


class DelaySchedule(Stage):
    """Propagation delay that changes with time (a contact plan's ranges, one
    way light times): segments [(start_ns, end_ns, delay_ns)]; the segment in
    force when the frame leaves the line applies, default_ns outside all of
    them. FIFO like Delay: a frame never leaves before the one sent before it
    on this link (a shrinking light time does not reorder frames)."""

    fans_out = False

    def __init__(self, segments, default_ns=0):
        segs = sorted(segments)
        for s, e, d in segs:
            if e <= s or d.__class__ is not int or d < 0:
                raise ValueError("delay schedule: want (start_ns < end_ns, delay_ns >= 0), got %r" % ((s, e, d),))
        for (s1, e1, _), (s2, e2, _) in zip(segs, segs[1:]):
            if s2 < e1:
                raise ValueError("delay schedule: segments overlap: %r and %r" % ((s1, e1), (s2, e2)))
        self.segments = segs
        self.default_ns = check_ns("delay schedule default_ns", default_ns)
        self._starts = [s for s, _, _ in segs]
        self._last = 0

    def delay_at(self, t):
        i = bisect_right(self._starts, t) - 1
        if i >= 0 and t < self.segments[i][1]:
            return self.segments[i][2]
        return self.default_ns

    def process(self, pkt, t):
        r = t + self.delay_at(t)
        if r < self._last:
            r = self._last
        self._last = r
        return r

    def __repr__(self):
        return "DelaySchedule(%d segments, default_ns=%d)" % (len(self.segments), self.default_ns)
