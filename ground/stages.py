"""The stages of a link's impairment pipeline: each stage is one plain class
that decides, frame by frame, one part of a frame's fate on one directed link
(delay, loss, duplication, corruption, serialisation...). Pure and sans-IO,
like h11's connection: the caller passes virtual time in integer nanoseconds
and gets back what happens; nothing here reads a clock, sleeps or touches I/O.
ground/pipeline.py chains stages into a link's Pipeline (from a scenario's
link spec), ground/linkreplay.py holds the stages played from data (a run
trace, a Mahimahi trace, a contact plan's schedules), ground/linkstate.py
whether a link is up.

The rules:
 - One `random.Random` per link, owned by its Pipeline and seeded from
   (run seed, src, dst) through link_seed(), so a run is reproducible and
   does not depend on the order links were created in. The Pipeline hands it
   to each stage once (`attach(rng)`); stages draw only from it. A stage
   instance belongs to one pipeline (it keeps per-link state).
 - A stage's `process(pkt, t_ns)` returns one of:
       int                 pkt goes on to the next stage, released at t_ns
       str                 pkt is dropped; the string is the drop reason
       list of (t_ns, pkt) fan-out (a duplicate): each goes on separately
   It may change pkt (Corrupt) but does not keep it: the Pipeline reuses a
   Packet that nothing happened to for the next frame.
   Drop reasons and corruption names are docs/TRACE.md's words: LOSS,
   BURST_LOSS, QUEUE, PARTITION, BLACKOUT; BITFLIP, DROP_BYTES, GARBAGE.
 - Random events are Bernoulli processes drawn as geometric gaps: a stage
   keeps "frames until the next loss" (or duplicate, corruption, Gilbert-
   Elliott state change) and draws a new gap only when it fires. This is
   exactly the same distribution as one coin per frame (the geometric
   distribution is memoryless) at one random draw per event, not per frame;
   the frames in between cost one decrement, or nothing while the Pipeline
   skips the stage (Stage.counted).
 - Thresholds are precomputed; a stage that cannot do anything (Loss(0),
   Delay(0)...) says so (`noop`) and the Pipeline leaves it out.
Probabilities are per frame throughout, including Corrupt's (netem's
convention), so `loss: 0.01` and `corrupt: {bitflip: 0.01}` both mean "one
frame in a hundred" whatever the frame length.
"""

import hashlib
import math
from math import cos, log, sin, sqrt

# Drop reasons and corruption kinds: the words docs/TRACE.md uses.
LOSS = "loss"
BURST_LOSS = "burst_loss"
QUEUE = "queue"
PARTITION = "partition"
BLACKOUT = "blackout"
BITFLIP = "bitflip"
DROP_BYTES = "drop_bytes"
GARBAGE = "garbage"

NS_PER_MS = 1_000_000
_NEVER = 1 << 62  # a gap that never runs out: the event has probability 0
_TWO_PI = 2.0 * math.pi


def link_seed(run_seed, src, dst):
    """The seed of the directed link src -> dst in a run: a 63-bit int that
    depends only on the three values (not on creation order or hash seeds)."""
    h = hashlib.blake2b(("fleetloop-link:%s:%s:%s" % (run_seed, src, dst)).encode(), digest_size=8)
    return int.from_bytes(h.digest(), "big") >> 1


class Packet:
    """One copy of one frame on one link.

    frame_id  the trace's frame `id`
    data      the line frame without its delimiter (bytes); Corrupt replaces it
    sent_ns   when the frame entered the link (the caller's clock)
    copy      0 for the original, 1.. for duplicates (the trace's `copy`)
    how       None, or the corruptions applied in order (BITFLIP, ...)
    tag       free for the caller (a recipient id, a trace record...)
    """

    __slots__ = ("frame_id", "data", "sent_ns", "copy", "how", "tag")

    def __init__(self, frame_id, data, sent_ns=0, copy=0, tag=None):
        self.frame_id = frame_id
        self.data = data
        self.sent_ns = sent_ns
        self.copy = copy
        self.how = None
        self.tag = tag

    def clone(self):
        """A copy of this packet; the pipeline numbers it (`copy`)."""
        p = Packet(self.frame_id, self.data, self.sent_ns, self.copy, self.tag)
        if self.how is not None:
            p.how = list(self.how)
        return p

    def __repr__(self):
        return "Packet(id=%r, copy=%d, len=%d%s)" % (
            self.frame_id, self.copy, len(self.data), ", how=%r" % self.how if self.how else "")


# -- probabilities as geometric gaps ---------------------------------------

def _log_q(p):
    # log(1 - p), the denominator of every gap draw; 0.0 marks "never".
    if p <= 0.0:
        return 0.0
    if p >= 1.0:
        return -math.inf
    return math.log1p(-p)


def _gap(rnd, lq):
    """Frames up to and including the next event of a Bernoulli(p) process
    (lq = log(1 - p)): 1 means the very next frame."""
    if lq == 0.0:
        return _NEVER
    g = 1 + int(log(1.0 - rnd()) / lq)  # 1 - rnd() is in (0, 1]
    return g if g < _NEVER else _NEVER


def check_prob(name, p):
    """p as a float, or ValueError naming `name` if it is not a probability."""
    if p.__class__ is bool or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ValueError("%s must be a probability in [0, 1], got %r" % (name, p))
    return float(p)


def check_ns(name, v):
    """v, or ValueError naming `name` if it is not a non-negative int of ns."""
    if v.__class__ is bool or not isinstance(v, int) or v < 0:
        raise ValueError("%s must be a non-negative integer of nanoseconds, got %r" % (name, v))
    return v


def flip_bits(data, ber, rng):
    """Flip each bit of data independently with probability ber (a bit error
    rate, e.g. for a corruption burst fault): (new bytes, bits flipped).
    Draws geometric gaps from rng, so a low rate costs about one draw."""
    ber = check_prob("ber", ber)
    nbits = len(data) * 8
    lq = _log_q(ber)
    rnd = rng.random
    i = _gap(rnd, lq) - 1
    if i >= nbits:
        return data, 0
    buf = bytearray(data)
    n = 0
    while i < nbits:
        buf[i >> 3] ^= 1 << (i & 7)
        n += 1
        i += _gap(rnd, lq)
    return bytes(buf), n


# -- stages ----------------------------------------------------------------

class Stage:
    """The stage interface (a tiny abstract class, like labgrid's protocols).

    process(pkt, t_ns) -> int | str | list of (t_ns, pkt); see the header.
    attach(rng)  called once by the Pipeline with the link's Random, before
                 the first frame; a stage that draws keeps what it needs.
    noop         True when the stage can never change anything: the Pipeline
                 leaves it out.
    fans_out     False when process() only ever returns an int or a str
                 (never a list); a custom stage is assumed to fan out.
    counted      True for a stage that only counts frames to its next random
                 event (Loss, GilbertElliott, Duplicate, Corrupt): quiet() is
                 how many upcoming frames it is sure to pass untouched, with
                 no draw, and skip(n) (n <= quiet()) accounts n such frames
                 as process() would have. The Pipeline skips such a stage
                 while it is quiet (see Pipeline).
    time_only    True when process() reads nothing of the packet and always
                 returns an int (a release time): Delay. A link whose only
                 stage besides the counted ones is such a stage runs it alone
                 while they are quiet (Pipeline.route).
    """

    noop = False
    fans_out = True
    counted = False
    time_only = False

    def attach(self, rng):
        pass

    def process(self, pkt, t_ns):
        return t_ns

    def quiet(self):
        return 0

    def skip(self, n):
        pass


class Delay(Stage):
    """Propagation delay: fixed_ns plus jitter, per frame.

    jitter: "none"; "uniform" (+-jitter_ns, netem's default shape); "normal"
    (standard deviation jitter_ns; exact Box-Muller, one pair of draws per
    two frames: random.gauss is ~10x slower here); "pareto" (never negative,
    heavy tail: Pareto of shape pareto_alpha scaled so its mean is
    jitter_ns).
    A frame never leaves before it arrived (negative jitter is clipped).
    reorder=False (the default: a point-to-point link is FIFO): a frame never
    leaves before the one sent before it on this link, release = max(release,
    last release). reorder=True lets jitter reorder frames, as netem does.
    """

    fans_out = False
    time_only = True

    def __init__(self, fixed_ns, jitter="none", jitter_ns=0, reorder=False, pareto_alpha=3.0):
        self.fixed_ns = check_ns("delay fixed_ns", fixed_ns)
        if jitter not in ("none", "uniform", "normal", "pareto"):
            raise ValueError("jitter must be one of none, uniform, normal, pareto, got %r" % (jitter,))
        self.jitter = jitter
        self.jitter_ns = check_ns("delay jitter_ns", jitter_ns)
        if reorder.__class__ is not bool:
            raise ValueError("reorder must be true or false, got %r" % (reorder,))
        self.reorder = reorder
        if pareto_alpha.__class__ is bool or not isinstance(pareto_alpha, (int, float)) or not pareto_alpha > 1.0:
            raise ValueError("pareto_alpha must be > 1 (a finite mean), got %r" % (pareto_alpha,))
        self.pareto_alpha = float(pareto_alpha)
        if self.jitter_ns == 0:
            self.jitter = jitter = "none"
        self.noop = self.fixed_ns == 0 and jitter == "none" and reorder
        self._uniform_base = self.fixed_ns - self.jitter_ns  # fixed_ns - jitter_ns + [0, 2 jitter_ns)
        self._uniform_span = 2.0 * self.jitter_ns
        self._neg_inv_alpha = -1.0 / self.pareto_alpha
        self._pareto_scale = (self.pareto_alpha - 1.0) * self.jitter_ns  # Pareto(a, 1) - 1 has mean 1/(a - 1)
        self._last = 0  # the last release (FIFO)
        self._spare = None  # Box-Muller's second value, for the next frame
        self._rnd = None

    def attach(self, rng):
        self._rnd = rng.random

    def process(self, pkt, t):
        jitter = self.jitter
        if jitter == "none":
            r = t + self.fixed_ns
        elif jitter == "normal":
            z = self._spare
            if z is None:
                rnd = self._rnd
                rho = sqrt(-2.0 * log(1.0 - rnd())) * self.jitter_ns
                theta = _TWO_PI * rnd()
                z = rho * cos(theta)
                self._spare = rho * sin(theta)
            else:
                self._spare = None
            r = t + self.fixed_ns + int(z)
            if r < t:
                r = t
        elif jitter == "uniform":
            r = t + self._uniform_base + int(self._rnd() * self._uniform_span)
            if r < t:
                r = t
        else:  # pareto: never negative
            r = t + self.fixed_ns + int(((1.0 - self._rnd()) ** self._neg_inv_alpha - 1.0) * self._pareto_scale)
        if self.reorder:
            return r
        if r < self._last:
            r = self._last
        self._last = r
        return r

    def __repr__(self):
        return "Delay(%d, jitter=%r, jitter_ns=%d, reorder=%r)" % (self.fixed_ns, self.jitter, self.jitter_ns, self.reorder)


class _PerFrame(Stage):
    """A stage that acts on each frame with probability p. It draws the gap
    to its next hit (geometric) instead of a number per frame, so frames in
    between cost one decrement. Subclasses say what a hit does in `_hit`."""

    counted = True
    _name = ""

    def __init__(self, p):
        self.p = check_prob(self._name, p)
        self.noop = self.p == 0.0
        self._lq = _log_q(self.p)
        self._next = _NEVER
        self._rnd = None

    def attach(self, rng):
        self._rnd = rng.random
        self._next = _gap(self._rnd, self._lq)

    def process(self, pkt, t):
        n = self._next - 1
        if n:
            self._next = n
            return t
        self._next = _gap(self._rnd, self._lq)
        return self._hit(pkt, t)

    def quiet(self):
        return self._next - 1

    def skip(self, n):
        self._next -= n

    def __repr__(self):
        return "%s(%r)" % (self.__class__.__name__, self.p)


class Loss(_PerFrame):
    """Independent loss: each frame is dropped with probability p (reason
    `loss`)."""

    _name = "loss"
    fans_out = False

    def _hit(self, pkt, t):
        return LOSS


class GilbertElliott(Stage):
    """Bursty loss: a two-state Markov chain stepped once per frame (not per
    unit of time). In state good a frame is lost with loss_good, in bad with
    loss_bad; after each frame the chain moves good->bad with p_good_to_bad
    and bad->good with p_bad_to_good. It starts in good. With loss_good=0 and
    loss_bad=1 a burst lasts 1/p_bad_to_good frames on average and the loss
    rate is p_good_to_bad / (p_good_to_bad + p_bad_to_good). Reason
    `burst_loss`.
    """

    counted = True
    fans_out = False

    def __init__(self, p_good_to_bad, p_bad_to_good, loss_good=0.0, loss_bad=1.0):
        self.p_good_to_bad = check_prob("gilbert p_good_to_bad", p_good_to_bad)
        self.p_bad_to_good = check_prob("gilbert p_bad_to_good", p_bad_to_good)
        self.loss_good = check_prob("gilbert loss_good", loss_good)
        self.loss_bad = check_prob("gilbert loss_bad", loss_bad)
        self.noop = self.loss_good == 0.0 and (self.loss_bad == 0.0 or self.p_good_to_bad == 0.0)
        # per state (good=0, bad=1): log(1 - leave probability), log(1 - loss)
        self._lq_leave = (_log_q(self.p_good_to_bad), _log_q(self.p_bad_to_good))
        self._lq_loss = (_log_q(self.loss_good), _log_q(self.loss_bad))
        self.bad = 0
        self._stay = self._next = _NEVER
        self._rnd = None

    def attach(self, rng):
        self._rnd = rng.random
        self._stay = _gap(self._rnd, self._lq_leave[0])
        self._next = _gap(self._rnd, self._lq_loss[0])

    def process(self, pkt, t):
        stay = self._stay - 1
        n = self._next - 1
        if n:
            self._next = n
            r = t
        else:
            self._next = _gap(self._rnd, self._lq_loss[self.bad])
            r = BURST_LOSS
        if stay:
            self._stay = stay
        else:
            # the chain moves after this frame; the loss gap is redrawn for
            # the new state's probability (memoryless, so this is exact)
            b = self.bad = 1 - self.bad
            self._stay = _gap(self._rnd, self._lq_leave[b])
            self._next = _gap(self._rnd, self._lq_loss[b])
        return r

    def quiet(self):
        a, b = self._stay, self._next
        return (a if a < b else b) - 1

    def skip(self, n):
        self._stay -= n
        self._next -= n

    def __repr__(self):
        return "GilbertElliott(%r, %r, loss_good=%r, loss_bad=%r)" % (
            self.p_good_to_bad, self.p_bad_to_good, self.loss_good, self.loss_bad)


class Duplicate(_PerFrame):
    """Each frame is sent twice with probability p; both copies go on through
    the following stages independently. The pipeline numbers copies."""

    _name = "duplicate"

    def _hit(self, pkt, t):
        return [(t, pkt), (t, pkt.clone())]


class Corrupt(Stage):
    """Serial-line faults, each with a per-frame probability, independently:

    bitflip_p     one bit flipped at a uniformly random position (`bitflip`)
    drop_bytes_p  a run of 1..drop_max_bytes bytes lost from the frame, as a
                  UART overrun does (`drop_bytes`)
    garbage_p     a run of 1..garbage_max_bytes random bytes inserted at a
                  random position, line noise (`garbage`)

    Applied in that order. The result may no longer be a valid frame, or even
    one frame: garbage can contain the 0x00 delimiter and split it in two for
    the receiver's splitter. That is the point: the receiver has to cope.
    """

    counted = True
    fans_out = False

    def __init__(self, bitflip_p=0.0, drop_bytes_p=0.0, garbage_p=0.0, drop_max_bytes=4, garbage_max_bytes=8):
        self.bitflip_p = check_prob("corrupt bitflip", bitflip_p)
        self.drop_bytes_p = check_prob("corrupt drop_bytes", drop_bytes_p)
        self.garbage_p = check_prob("corrupt garbage", garbage_p)
        for name, v in (("drop_max_bytes", drop_max_bytes), ("garbage_max_bytes", garbage_max_bytes)):
            if v.__class__ is not int or v < 1:
                raise ValueError("corrupt %s must be an integer >= 1, got %r" % (name, v))
        self.drop_max_bytes = drop_max_bytes
        self.garbage_max_bytes = garbage_max_bytes
        self.noop = self.bitflip_p == 0.0 and self.drop_bytes_p == 0.0 and self.garbage_p == 0.0
        self._lq = (_log_q(self.bitflip_p), _log_q(self.drop_bytes_p), _log_q(self.garbage_p))
        self._nb = self._nd = self._ng = _NEVER
        self._rng = self._rnd = None

    def attach(self, rng):
        self._rng = rng
        rnd = self._rnd = rng.random
        self._nb = _gap(rnd, self._lq[0])
        self._nd = _gap(rnd, self._lq[1])
        self._ng = _gap(rnd, self._lq[2])

    def process(self, pkt, t):
        b = self._nb = self._nb - 1
        d = self._nd = self._nd - 1
        g = self._ng = self._ng - 1
        if b and d and g:
            return t
        rnd = self._rnd
        data = pkt.data
        how = pkt.how
        if how is None:
            how = []
        if not b:
            self._nb = _gap(rnd, self._lq[0])
            if data:
                i = int(rnd() * len(data) * 8)
                buf = bytearray(data)
                buf[i >> 3] ^= 1 << (i & 7)
                data = bytes(buf)
                how.append(BITFLIP)
        if not d:
            self._nd = _gap(rnd, self._lq[1])
            if data:
                k = min(1 + int(rnd() * self.drop_max_bytes), len(data))
                i = int(rnd() * (len(data) - k + 1))
                data = data[:i] + data[i + k:]
                how.append(DROP_BYTES)
        if not g:
            self._ng = _gap(rnd, self._lq[2])
            k = 1 + int(rnd() * self.garbage_max_bytes)
            i = int(rnd() * (len(data) + 1))
            data = data[:i] + self._rng.randbytes(k) + data[i:]
            how.append(GARBAGE)
        pkt.data = data
        if how:
            pkt.how = how
        return t

    def quiet(self):
        a, b, c = self._nb, self._nd, self._ng
        if b < a:
            a = b
        return (a if a < c else c) - 1

    def skip(self, n):
        self._nb -= n
        self._nd -= n
        self._ng -= n

    def __repr__(self):
        return "Corrupt(bitflip_p=%r, drop_bytes_p=%r, garbage_p=%r)" % (self.bitflip_p, self.drop_bytes_p, self.garbage_p)


class Rate(Stage):
    """Serialisation at bps bits per second through a FIFO transmit queue.

    A frame occupies len(pkt.data) + overhead_bytes bytes on the line (1: its
    0x00 delimiter) of bits_per_byte bits each (8; 10 for a UART at 8N1). It
    starts when the line is free and is released when its last bit is out:
    release = max(t, line free) + bytes * bits_per_byte / bps (rounded up to
    the nanosecond).

    queue_limit_bytes=None (default): NO cap on data waiting or in flight.
    This is deliberate. netem's default limit of 1,000 packets counts every
    packet inside the qdisc, including those only waiting out their delay, so
    a long light delay silently turns into loss once 1,000 frames are in the
    air (1.3 s at 1,000 frames/s). Here only bytes not yet on the line count
    against a limit, never frames in propagation, and by default nothing is
    capped at all. With a limit, a frame that would take the backlog (bytes
    queued, including the untransmitted rest of the frame being sent) above
    queue_limit_bytes is dropped, reason `queue`.
    """

    fans_out = False

    def __init__(self, bps, queue_limit_bytes=None, bits_per_byte=8, overhead_bytes=1):
        if bps.__class__ is bool or not isinstance(bps, (int, float)) or not bps >= 0.001 or math.isinf(bps):
            raise ValueError("rate bps must be a number >= 0.001, got %r" % (bps,))
        if queue_limit_bytes is not None and (queue_limit_bytes.__class__ is not int or queue_limit_bytes < 1):
            raise ValueError("queue limit must be null (unlimited) or an integer >= 1 of bytes, got %r" % (queue_limit_bytes,))
        if bits_per_byte.__class__ is not int or bits_per_byte < 1:
            raise ValueError("bits_per_byte must be an integer >= 1, got %r" % (bits_per_byte,))
        if overhead_bytes.__class__ is not int or overhead_bytes < 0:
            raise ValueError("overhead_bytes must be an integer >= 0, got %r" % (overhead_bytes,))
        self.bps = bps
        self.queue_limit_bytes = queue_limit_bytes
        self.bits_per_byte = bits_per_byte
        self.overhead_bytes = overhead_bytes
        # Line time is kept exactly, as whole ns plus a remainder in units of
        # 1/_bps ns (bps scaled by 1000 to an integer, so a fractional bps
        # keeps 3 decimals): frames sent back to back do not drift and the
        # queue limit is exact. Release times are rounded up to the ns. Small
        # ints and a per-length cache of (ns, remainder) keep it cheap: one
        # big-int product per frame would double the stage's cost.
        self._bps = int(round(bps * 1000))
        self._byte_ticks = bits_per_byte * 10**12  # one byte's line time, in 1/_bps ns
        self._limit_ticks = None if queue_limit_bytes is None else queue_limit_bytes * self._byte_ticks
        self._tx = {}  # data length -> (ns, remainder) of its line time
        self._busy = 0  # the line is free from _busy + _frac / _bps ns
        self._frac = 0

    def process(self, pkt, t):
        # this frame's line time (cached per length), then when the line is
        # free for it: now, or when the frame before it is out
        n = len(pkt.data)
        tx = self._tx.get(n)
        if tx is None:
            tx = self._line_time(n)
        q, r = tx
        busy = self._busy
        if t > busy or (t == busy and not self._frac):
            end, f = t + q, r  # the line is idle: start now
        else:
            end, f = busy + q, self._frac + r
            if f >= self._bps:
                f -= self._bps
                end += 1
        # bytes not yet on the line, this frame included, against the limit
        if self._limit_ticks is not None and (end - t) * self._bps + f > self._limit_ticks:
            return QUEUE
        self._busy = end
        self._frac = f
        return end + 1 if f else end

    def transmit_ns(self, data_len):
        """Line time of a frame whose data is data_len bytes long (rounded up)."""
        q, r = self._line_time(data_len)
        return q + 1 if r else q

    def _line_time(self, n):
        tx = divmod((n + self.overhead_bytes) * self._byte_ticks, self._bps)
        if len(self._tx) < 4096:
            self._tx[n] = tx
        return tx

    def __repr__(self):
        return "Rate(%r, queue_limit_bytes=%r, bits_per_byte=%d)" % (self.bps, self.queue_limit_bytes, self.bits_per_byte)
