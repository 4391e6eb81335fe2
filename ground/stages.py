# Per-directed-link impairments: a pipeline of seeded stages that decides each
# frame's fate on one link (src node -> dst node). Pure and sans-IO, like
# h11's connection: the caller passes virtual time in integer nanoseconds and
# gets back what happens; nothing here reads a clock, sleeps or touches I/O.
# (One exception, at build time only: a spec naming a recording, `replay:` a
# run trace or `mahimahi:` a link trace, is read when the pipeline is built,
# once per file and process; the stages themselves never read anything.)
#
#     pipe = build_pipeline({"delay_ms": 1300, "loss": 0.01}, link_seed(7, 3, 4))
#     for when, pkt in pipe.send(Packet(17, line[:-1], now_ns), now_ns):
#         if when.__class__ is int: deliver pkt.data at `when` (ns)
#         else: record dropped, reason `when`
#
#     out = pipe.route(17, data, now_ns)   # the same, without a Packet when it can
#     if out.__class__ is int: deliver data (copy 0, untouched) at `out`
#     elif out.__class__ is str: record dropped (copy 0), reason `out`
#     else: for when, pkt in out: ... as above
#
# The rules:
#  - One `random.Random` per link, owned by its Pipeline and seeded from
#    (run seed, src, dst) through link_seed(), so a run is reproducible and
#    does not depend on the order links were created in. Stages draw only from
#    it. A stage instance belongs to one pipeline (it keeps per-link state).
#  - A stage's `process(pkt, t_ns)` returns one of:
#        int                 pkt goes on to the next stage, released at t_ns
#        str                 pkt is dropped; the string is the drop reason
#        list of (t_ns, pkt) fan-out (a duplicate): each goes on separately
#    Drop reasons and corruption names are docs/TRACE.md's words: LOSS,
#    BURST_LOSS, QUEUE, PARTITION, BLACKOUT; BITFLIP, DROP_BYTES, GARBAGE.
#  - Pipeline.send returns a list of outcomes, one per copy that came out:
#    (deliver_at_ns: int, pkt) or (reason: str, pkt). Packet.copy > 0 marks a
#    duplicate (record `duplicated`); Packet.how lists corruptions applied to
#    that copy (record one `corrupted` per entry). A duplicate may itself be
#    dropped by a later stage; with build_pipeline's order it never is.
#  - Link state (partition, blackout, contact windows) gates at send time: a
#    frame sent while the link is down is dropped; frames already in flight
#    are delivered. The router can ask `pipe.state.is_up(now_ns)` and
#    `pipe.state.next_change_ns(now_ns)` for its `link` events.
#
# The hot path. The goal is >= 1M frames/s per core in virtual time, so:
#  - Random events are Bernoulli processes drawn as geometric gaps: a stage
#    keeps "frames until the next loss" (or duplicate, corruption, Gilbert-
#    Elliott state change) and draws a new gap only when it fires. This is
#    exactly the same distribution as one coin per frame (the geometric
#    distribution is memoryless) at one random draw per event, not per frame.
#  - Stages that only count (Loss, GilbertElliott, Duplicate, Corrupt) say
#    how many upcoming frames they are sure to pass untouched (`quiet()`).
#    The pipeline skips them for that many frames and settles the count with
#    `skip(n)` before it next needs them, so a typical frame only runs the
#    stages that move time (Rate, Delay).
#  - The stages that move time write their per-frame work once as source (a
#    "step"); each pipeline pastes its steps into a send() generated for it,
#    so a quiet frame makes no Python call (see "per-frame steps" below).
#  - No per-frame dict; thresholds precomputed; stages that cannot do
#    anything (Loss(0), Rate(None)...) are left out when the pipeline is built.
#  - The one allocation per frame is the returned list and its tuple; route()
#    spares those and the caller's Packet when nothing happens to the frame.
#  Measured: see "Measured" at the Pipeline.
#
# Size: one module of several sections (stages, link state, pipeline,
# partitions, spec) rather than the house's small modules, because that is
# how the work was assigned; it splits cleanly at the section rules.
# Probabilities are per frame throughout, including Corrupt's (netem's
# convention), so `loss: 0.01` and `corrupt: {bitflip: 0.01}` both mean "one
# frame in a hundred" whatever the frame length.

import hashlib
import itertools
import math
import random
import re
from bisect import bisect_right
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
_re_data = re.compile(r"\bdata\b")


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


def _check_prob(name, p):
    if p.__class__ is bool or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ValueError("%s must be a probability in [0, 1], got %r" % (name, p))
    return float(p)


def _check_ns(name, v):
    if v.__class__ is bool or not isinstance(v, int) or v < 0:
        raise ValueError("%s must be a non-negative integer of nanoseconds, got %r" % (name, v))
    return v


def flip_bits(data, ber, rng):
    """Flip each bit of data independently with probability ber (a bit error
    rate, e.g. for a corruption burst fault): (new bytes, bits flipped).
    Draws geometric gaps from rng, so a low rate costs about one draw."""
    ber = _check_prob("ber", ber)
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


# -- per-frame steps, written once as source ---------------------------------
# A stage that moves time (Delay, Rate, the schedules, the recordings) writes
# its per-frame work once, as a few lines of Python: a "step". Both its
# process() method and the Pipeline's fast path are compiled from that one
# text: the pipeline pastes the steps of its time stages one after the other
# into a send() made for it (Pipeline._compile), so a frame on the fast path
# makes no Python call at all. On CPython 3.11 a call costs about as much as a
# stage's own work, so this is 15-25% of a frame (fewer instructions per frame
# under callgrind: delay only -27%, delay + jitter + loss -15%, every stage
# -17%, with Delay's cheaper float-to-int below).
# A step's rules:
#  - inputs: `self` (the stage), `t` (when the frame reaches the stage, int
#    ns) and `data` (the frame's bytes: read them, never change them);
#  - output: `t` again, the int ns the frame leaves at, or a drop reason (a
#    str; only a stage with may_drop);
#  - no `return` (nor def, lambda, class, yield, global), and it assigns no
#    name starting with "_" (the pipeline's own locals) nor self, data, pkt,
#    frame_id, now_ns; other names are the step's scratch. _check_step
#    enforces this.

_STEP_CODE = {}  # (name, source) -> compiled process function
_SOURCE_NUMBER = itertools.count(1)  # names the generated sources for tracebacks
_FAST_CODE = {}  # a pipeline's generated source -> its compiled factory


def _reads_data(src):
    return _re_data.search(src) is not None


def _step_process(name, src):
    """process(self, pkt, t) made from a step's source (compiled once per
    distinct source; its text goes to linecache, so tracebacks show it)."""
    key = (name, src)
    fn = _STEP_CODE.get(key)
    if fn is None:
        _check_step(src)
        body = ("data = pkt.data\n" if _reads_data(src) else "") + src + "return t\n"
        text = "def %s(self, pkt, t):\n%s" % (name, _indent(body, 1))
        fn = _STEP_CODE[key] = _exec_source(text, "step", name)
    return fn


_CHECKED_STEPS = set()
_STEP_RESERVED = {"self", "data", "pkt", "frame_id", "now_ns"}


def _check_step(src):
    """Refuse a step that breaks the rules above (once per distinct text)."""
    if src in _CHECKED_STEPS:
        return
    import ast

    for node in ast.walk(ast.parse(src)):
        if isinstance(node, (ast.Return, ast.Yield, ast.YieldFrom, ast.Await, ast.FunctionDef, ast.AsyncFunctionDef,
                             ast.ClassDef, ast.Lambda, ast.Global, ast.Nonlocal)):
            raise ValueError("a stage step cannot use %s: %r" % (node.__class__.__name__, src))
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)) and (
                node.id in _STEP_RESERVED or node.id.startswith("_")):
            raise ValueError("a stage step cannot assign %r: %r" % (node.id, src))
    _CHECKED_STEPS.add(src)


def _indent(src, levels):
    pad = "    " * levels
    return "".join(pad + line if line.strip() else line for line in src.splitlines(True))


def _exec_source(text, kind, name):
    import linecache

    filename = "<ground.stages %s %s #%d>" % (kind, name, next(_SOURCE_NUMBER))
    linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)
    ns = {}
    exec(compile(text, filename, "exec"), globals(), ns)  # this module's globals: sqrt, QUEUE, ...
    return ns[name]


# -- stages ----------------------------------------------------------------

class Stage:
    """The stage interface (a tiny abstract class, like labgrid's protocols).

    process(pkt, t_ns) -> int | str | list of (t_ns, pkt); see the header.
    attach(rng)  called once by the Pipeline with the link's Random.
    noop         True when the stage can never change anything: left out.
    counted      True for stages that only count frames: they promise to pass
                 the next quiet() frames they see untouched, and skip(n) (n <=
                 quiet()) must account n such frames without process().
    fast         True if process() only ever returns an int (or a str when
                 may_drop). The pipeline's skip-ahead needs every stage that
                 is not counted to be fast; a custom stage that is neither
                 simply makes every frame take the plain path.
    step         None, or the source of process()'s work for this instance
                 (see "per-frame steps" above), for a fast stage: the
                 pipeline then inlines it. A fast stage without one is called.
    """

    noop = False
    counted = False
    fast = False
    may_drop = True
    step = None

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
    (standard deviation jitter_ns; exact Box-Muller, random.gauss is ~10x
    slower here); "pareto" (never negative, heavy tail: Pareto of shape
    pareto_alpha scaled so its mean is jitter_ns).
    A frame never leaves before it arrived (negative jitter is clipped).
    reorder=False (the default: a point-to-point link is FIFO): a frame never
    leaves before the one sent before it on this link, release = max(release,
    last release). reorder=True lets jitter reorder frames, as netem does.
    """

    fast = True
    may_drop = False

    def __init__(self, fixed_ns, jitter="none", jitter_ns=0, reorder=False, pareto_alpha=3.0):
        self.fixed_ns = _check_ns("delay fixed_ns", fixed_ns)
        if jitter not in ("none", "uniform", "normal", "pareto"):
            raise ValueError("jitter must be one of none, uniform, normal, pareto, got %r" % (jitter,))
        self.jitter = jitter
        self.jitter_ns = _check_ns("delay jitter_ns", jitter_ns)
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
        self._pareto_scale = (self.pareto_alpha - 1.0) * self.jitter_ns
        self._last = 0
        self._spare = None
        self._rnd = None
        # One step per configuration, so the hot path has no branches: the
        # jitter draw, then either the FIFO rule or nothing (reorder).
        self.step = _DELAY_JITTER[jitter] + (_DELAY_REORDER if reorder else _DELAY_FIFO)
        self.process = _step_process("delay_%s%s" % (jitter, "_reorder" if reorder else ""), self.step).__get__(self)

    def attach(self, rng):
        self._rnd = rng.random

    def __repr__(self):
        return "Delay(%d, jitter=%r, jitter_ns=%d, reorder=%r)" % (self.fixed_ns, self.jitter, self.jitter_ns, self.reorder)


# Delay's steps: the release time r, then the FIFO rule or not. Each keeps
# the draws and arithmetic of the plain formulas exactly; x.__trunc__() is
# int(x) for a float (the same C function), at a third of the cost of the
# int() call on CPython 3.11.
_DELAY_JITTER = {
    "none": "r = t + self.fixed_ns\n",
    # fixed_ns - jitter_ns + [0, 2 jitter_ns), never before the frame arrived
    "uniform": """\
r = t + self._uniform_base + (self._rnd() * self._uniform_span).__trunc__()
if r < t:
    r = t
""",
    # Box-Muller, one pair per two frames, already scaled by jitter_ns (exact;
    # random.gauss is ~10x slower here)
    "normal": """\
z = self._spare
if z is None:
    rnd = self._rnd
    rho = sqrt(-2.0 * log(1.0 - rnd())) * self.jitter_ns
    theta = _TWO_PI * rnd()
    z = rho * cos(theta)
    self._spare = rho * sin(theta)
else:
    self._spare = None
r = t + self.fixed_ns + z.__trunc__()
if r < t:
    r = t
""",
    # Pareto(a, 1) - 1 has mean 1/(a - 1): scaled by (a - 1) * jitter_ns;
    # never negative
    "pareto": """\
r = t + self.fixed_ns + (((1.0 - self._rnd()) ** self._neg_inv_alpha - 1.0) * self._pareto_scale).__trunc__()
""",
}
_DELAY_FIFO = """\
if r < self._last:
    r = self._last
self._last = r
t = r
"""
_DELAY_REORDER = "t = r\n"


class _PerFrame(Stage):
    """A stage that acts on each frame with probability p. It draws the gap
    to its next hit (geometric) instead of a number per frame, so frames in
    between cost one decrement and a pipeline can skip it (quiet/skip).
    Subclasses say what a hit does in `_hit`."""

    counted = True
    _name = ""

    def __init__(self, p):
        self.p = _check_prob(self._name, p)
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

    def __init__(self, p_good_to_bad, p_bad_to_good, loss_good=0.0, loss_bad=1.0):
        self.p_good_to_bad = _check_prob("gilbert p_good_to_bad", p_good_to_bad)
        self.p_bad_to_good = _check_prob("gilbert p_bad_to_good", p_bad_to_good)
        self.loss_good = _check_prob("gilbert loss_good", loss_good)
        self.loss_bad = _check_prob("gilbert loss_bad", loss_bad)
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

    def __init__(self, bitflip_p=0.0, drop_bytes_p=0.0, garbage_p=0.0, drop_max_bytes=4, garbage_max_bytes=8):
        self.bitflip_p = _check_prob("corrupt bitflip", bitflip_p)
        self.drop_bytes_p = _check_prob("corrupt drop_bytes", drop_bytes_p)
        self.garbage_p = _check_prob("corrupt garbage", garbage_p)
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

    fast = True

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
        self.may_drop = queue_limit_bytes is not None
        # integer arithmetic: transmit ns = ceil(bytes * _bit_ns / _bps) with
        # bps scaled to an integer (a fractional bps keeps 3 decimals)
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
        self.step = _RATE_LIMITED if self.may_drop else _RATE_UNLIMITED
        self.process = _step_process("rate_limited" if self.may_drop else "rate", self.step).__get__(self)

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


# Rate's steps: the line time of this frame (cached per length), when the
# line is free for it, then (limited) the backlog against the limit.
_RATE_START = """\
n = len(data)
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
"""
_RATE_UNLIMITED = _RATE_START + """\
self._busy = end
self._frac = f
t = end + 1 if f else end
"""
# bytes not yet on the line, this frame included, against the limit
_RATE_LIMITED = _RATE_START + """\
if (end - t) * self._bps + f > self._limit_ticks:
    t = QUEUE
else:
    self._busy = end
    self._frac = f
    t = end + 1 if f else end
"""


# -- recorded and planned links: trace replay, Mahimahi, schedules ----------
# (ground/contacts.py and docs/TRACE_TOOLS.md describe where the data comes
# from.) Files are read once per process and cached by path, size and mtime:
# a scenario builds one pipeline per directed link.

_FILE_CACHE = {}


def _cached(path, loader):
    import os

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

    fast = True

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
        self._i = 0
        self.process = _step_process("trace_replay", self.step).__get__(self)

    # the k-th frame gets outcome k: t + delay or the reason; past the end, the
    # first again (loop) or the link is over
    step = """\
i = self._i
if i >= len(self.outcomes) and self.loop:
    i = 0
if i < len(self.outcomes):
    self._i = i + 1
    o = self.outcomes[i]
    t = t + o if o.__class__ is int else o
else:
    t = BLACKOUT
"""

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

    fast = True

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
        self.may_drop = not loop
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

    step = "t = self._release(len(data), t)\n"

    def process(self, pkt, t):
        return self._release(len(pkt.data), t)

    def _release(self, n, t):
        if self._over:
            return BLACKOUT
        need = (n + self.overhead_bytes) * 1000
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

    fast = True
    may_drop = False

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
        self.process = _step_process("rate_schedule", self.step).__get__(self)

    def rate_at(self, t):
        i = bisect_right(self._starts, t) - 1
        if i >= 0 and t < self.segments[i][1]:
            return self.segments[i][2]
        return self.default_bps

    step = """\
start = t if t > self._busy else self._busy
bps = self.rate_at(start)
if bps is not None:
    start += int(math.ceil((len(data) + self.overhead_bytes) * self.bits_per_byte * 1e9 / bps))
self._busy = t = start
"""

    def __repr__(self):
        return "RateSchedule(%d segments, default_bps=%r)" % (len(self.segments), self.default_bps)


class DelaySchedule(Stage):
    """Propagation delay that changes with time (a contact plan's ranges, one
    way light times): segments [(start_ns, end_ns, delay_ns)]; the segment in
    force when the frame leaves the line applies, default_ns outside all of
    them. FIFO like Delay: a frame never leaves before the one sent before it
    on this link (a shrinking light time does not reorder frames)."""

    fast = True
    may_drop = False

    def __init__(self, segments, default_ns=0):
        segs = sorted(segments)
        for s, e, d in segs:
            if e <= s or d.__class__ is not int or d < 0:
                raise ValueError("delay schedule: want (start_ns < end_ns, delay_ns >= 0), got %r" % ((s, e, d),))
        for (s1, e1, _), (s2, e2, _) in zip(segs, segs[1:]):
            if s2 < e1:
                raise ValueError("delay schedule: segments overlap: %r and %r" % ((s1, e1), (s2, e2)))
        self.segments = segs
        self.default_ns = _check_ns("delay schedule default_ns", default_ns)
        self._starts = [s for s, _, _ in segs]
        self._last = 0
        self.process = _step_process("delay_schedule", self.step).__get__(self)

    def delay_at(self, t):
        i = bisect_right(self._starts, t) - 1
        if i >= 0 and t < self.segments[i][1]:
            return self.segments[i][2]
        return self.default_ns

    step = """\
r = t + self.delay_at(t)
if r < self._last:
    r = self._last
self._last = t = r
"""

    def __repr__(self):
        return "DelaySchedule(%d segments, default_ns=%d)" % (len(self.segments), self.default_ns)


# -- link state: partitions, blackouts, contact windows ---------------------

class Schedule:
    """Time windows [start_ns, end_ns): sorted, overlapping ones merged."""

    __slots__ = ("starts", "ends")

    def __init__(self, windows):
        ws = []
        for w in windows:
            try:
                s, e = w
            except (TypeError, ValueError):
                raise ValueError("a window must be a pair (start, end), got %r" % (w,)) from None
            if s.__class__ is bool or e.__class__ is bool or not isinstance(s, int) or not isinstance(e, int) or s < 0 or e <= s:
                raise ValueError("a window must be integer ns with 0 <= start < end, got %r" % (w,))
            ws.append((s, e))
        ws.sort()
        starts, ends = [], []
        for s, e in ws:
            if ends and s <= ends[-1]:
                if e > ends[-1]:
                    ends[-1] = e
            else:
                starts.append(s)
                ends.append(e)
        self.starts = starts
        self.ends = ends

    def contains(self, t_ns):
        i = bisect_right(self.starts, t_ns) - 1
        return i >= 0 and t_ns < self.ends[i]

    def next_edge_ns(self, t_ns):
        """The first window start or end strictly after t_ns, or None."""
        i = bisect_right(self.starts, t_ns)
        if i > 0 and t_ns < self.ends[i - 1]:
            return self.ends[i - 1]
        return self.starts[i] if i < len(self.starts) else None

    def __iter__(self):
        return iter(zip(self.starts, self.ends))

    def __repr__(self):
        return "Schedule(%r)" % list(self)


class LinkState:
    """Whether a directed link is up, by mission time.

    contacts   Schedule or None: if given, the link is up only inside these
               windows (contact windows); outside it is down, reason `blackout`
    blackouts  Schedule or None: the link is down inside these windows,
               reason `blackout`
    cut()/heal()  a partition (faults decide when), reason `partition`; it
               wins over a blackout when both apply
    """

    __slots__ = ("contacts", "blackouts", "partitioned", "gated")

    def __init__(self, contacts=None, blackouts=None):
        self.contacts = contacts
        self.blackouts = blackouts
        self.partitioned = False
        self.gated = contacts is not None or blackouts is not None  # any reason to look at all

    def cut(self):
        self.partitioned = self.gated = True

    def heal(self):
        self.partitioned = False
        self.gated = self.contacts is not None or self.blackouts is not None

    def down_reason(self, now_ns):
        """None if the link is up at now_ns, else PARTITION or BLACKOUT."""
        if not self.gated:
            return None
        if self.partitioned:
            return PARTITION
        if self.blackouts is not None and self.blackouts.contains(now_ns):
            return BLACKOUT
        if self.contacts is not None and not self.contacts.contains(now_ns):
            return BLACKOUT
        return None

    def is_up(self, now_ns):
        return self.down_reason(now_ns) is None

    def next_change_ns(self, now_ns):
        """When a schedule may next change the state (partitions are not
        scheduled here), or None. The state may stay the same across it, e.g.
        a blackout ending outside any contact window."""
        best = None
        for s in (self.contacts, self.blackouts):
            if s is not None:
                e = s.next_edge_ns(now_ns)
                if e is not None and (best is None or e < best):
                    best = e
        return best


# -- the pipeline ----------------------------------------------------------

class Pipeline:
    """The stages of one directed link, in order, with the link's Random.

    send(pkt, now_ns) -> list of (deliver_at_ns: int, pkt) or (reason: str,
    pkt), one per copy; see the header for the conventions. Calls must come in
    non-decreasing now_ns (the router's clock) for Rate and FIFO Delay to mean
    what they say.

    route(frame_id, data, now_ns) is send(Packet(frame_id, data, now_ns),
    now_ns) for a caller that wants a Packet only when something happens to
    the frame: it returns an int (the ns the frame is delivered at) or a str
    (the reason it is dropped) when the outcome is that one copy, untouched
    (copy 0, the same data, no corruption), and send()'s list otherwise. The
    same draws and the same link state afterwards as send(); the two can be
    mixed on one link.
    """

    def __init__(self, stages, seed, state=None):
        self.seed = seed
        self.rng = random.Random(seed)
        self.state = state if state is not None else LinkState()
        kept = []
        for s in stages:
            if not isinstance(s, Stage):
                raise TypeError("not a stage: %r" % (s,))
            if getattr(s, "_pipeline_attached", False):
                raise ValueError("stage %r already belongs to a pipeline (stages keep per-link state)" % (s,))
            if s.noop:
                continue
            s._pipeline_attached = True
            s.attach(self.rng)
            kept.append(s)
        self.stages = tuple(kept)
        self._procs = tuple(s.process for s in kept)
        self._counted = tuple((i, s) for i, s in enumerate(kept) if s.counted)
        self._quiets = tuple(s.quiet for _, s in self._counted)
        self._skips = tuple((i, s.skip) for i, s in self._counted)
        timed = [(i, s) for i, s in enumerate(kept) if not s.counted]
        self._fast_ok = all(s.fast for _, s in timed)
        self._copies = 0
        # frames every counted stage will pass untouched; _quiet0 is its value
        # at the last settlement, so _quiet0 - _quiet frames await skip()
        self._quiet = self._quiet0 = self._compute_quiet()
        # the generated send() and route(), when there is a fast path
        self.fast_source = self._compile(timed) if self._fast_ok else None

    def _compute_quiet(self):
        if not self._fast_ok:
            return 0
        q = _NEVER
        for quiet in self._quiets:
            n = quiet()
            if n < q:
                q = n
        return q

    def send(self, pkt, now_ns):
        # Without a fast path (a stage neither counted nor fast) every frame
        # runs every stage; _compile replaces this (and route) otherwise.
        st = self.state
        if st.gated:
            reason = st.down_reason(now_ns)
            if reason is not None:
                return [(reason, pkt)]
        return self._send_slow(pkt, now_ns)

    def route(self, frame_id, data, now_ns):
        return self.send(Packet(frame_id, data, now_ns), now_ns)

    # The fast path, generated per pipeline: a frame sent while every counted
    # stage is quiet runs only the time stages (Rate, Delay...), their steps
    # pasted in order, with no call. For delay, jitter and loss it reads:
    #
    #   def send(pkt, now_ns):
    #       if _state.gated:                 # partition, blackout, contacts
    #           ...
    #       _q = _pipe._quiet                # frames the counted stages pass
    #       if not _q:
    #           return _slow(pkt, now_ns)    # every stage, then recount
    #       _pipe._quiet = _q - 1
    #       t = now_ns
    #       self = _s0                       # Delay's step
    #       z = self._spare
    #       ...
    #       return [(t, pkt)]
    #
    # and route() is the same with frame_id and data for pkt. A time stage
    # that may drop is followed by a check that settles the counted stages
    # (_fast_drop); a fast stage without a step is called. `fast_source` holds
    # the text; each distinct text is compiled once per process.
    #
    # Measured (bench/bench_links.py; 2-core EPYC VM, CPython 3.11, a shared
    # host whose speed drifts by up to 1.5x between minutes: compare rows of
    # one run). Instructions per frame under callgrind, old hand-written
    # fast paths -> this: send() delay only 3,608 -> 2,647, delay + normal
    # jitter + loss 6,634 -> 5,576, every stage 8,887 -> 7,338; the bare
    # heapq delay line, the bench's peer, is 7,980. So send() alone runs at
    # ~1.0-1.5M frames/s with delay + jitter + loss, ~0.8-1.1M/s with every
    # stage. Routing, a Packet + send() + a heapq delivery line, is 17,073 ->
    # 16,051 (typical) and 12,146 through route(), which makes no Packet:
    # ~0.4-0.6M/s. The 1M/s goal for routing is out of reach in this design:
    # the delivery heap alone costs what the bare line costs (~1M/s here),
    # and the normal jitter draw (Box-Muller: log, sqrt, cos, sin) and the
    # big-int ns arithmetic are most of what the pipeline adds.

    def _compile(self, timed):
        names = ["_pipe", "_state", "_slow", "_drop", "_drop_untouched", "_Packet"]
        values = [self, self.state, self._send_slow, self._fast_drop, self._fast_drop_untouched, Packet]
        send, route = [], []
        reads = False
        routable = True  # every time stage has a step: route() needs no Packet
        for k, (i, s) in enumerate(timed):
            if s.step is not None:
                _check_step(s.step)
                names.append("_s%d" % k)
                values.append(s)
                code = "self = _s%d\n%s" % (k, s.step)
                send.append(code)
                route.append(code)
                reads = reads or _reads_data(s.step)
            else:
                names.append("_p%d" % k)
                values.append(s.process)
                send.append("t = _p%d(pkt, t)\n" % k)
                routable = False
            if s.may_drop:
                send.append("if t.__class__ is str:\n    return _drop(%d, t, pkt)\n" % i)
                route.append("if t.__class__ is str:\n    return _drop_untouched(%d, t)\n" % i)

        def head(down, packet):
            # the link state gate, then (if any stage counts) the quiet count
            src = "if _state.gated:\n    _why = _state.down_reason(now_ns)\n    if _why is not None:\n"
            src += "        return %s\n" % down
            if self._counted:  # without counted stages every frame is quiet
                src += "_q = _pipe._quiet\nif not _q:\n    return _slow(%s, now_ns)\n_pipe._quiet = _q - 1\n" % packet
            return src + "t = now_ns\n"

        text = "def _make(%s):\n" % ", ".join(names)
        text += "    def send(pkt, now_ns):\n" + _indent(
            head("[(_why, pkt)]", "pkt") + ("data = pkt.data\n" if reads else "") + "".join(send)
            + "return [(t, pkt)]\n", 2)
        if routable:
            text += "    def route(frame_id, data, now_ns):\n" + _indent(
                head("_why", "_Packet(frame_id, data, now_ns)") + "".join(route) + "return t\n", 2)
        else:
            text += "    route = None\n"
        text += "    return send, route\n"
        make = _FAST_CODE.get(text)
        if make is None:
            make = _FAST_CODE[text] = _exec_source(text, "pipeline", "_make")
        self.send, r = make(*values)
        if r is not None:
            self.route = r
        return text

    def _fast_drop(self, i, reason, pkt):
        # a frame dropped on the fast path by the time stage at index i: the
        # counted stages before it saw it, those after did not
        self._settle(i)
        self._quiet = self._quiet0 = self._compute_quiet()
        return [(reason, pkt)]

    def _fast_drop_untouched(self, i, reason):
        self._settle(i)
        self._quiet = self._quiet0 = self._compute_quiet()
        return reason

    def _settle(self, dropped_at=None):
        # Give the counted stages the frames the fast path skipped them for.
        # A frame dropped on the fast path at stage index dropped_at was seen
        # only by the counted stages before it.
        k = self._quiet0 - self._quiet
        if k:
            for i, skip in self._skips:
                n = k if dropped_at is None or i < dropped_at else k - 1
                if n:
                    skip(n)
        self._quiet = self._quiet0 = 0

    def _send_slow(self, pkt, t):
        self._settle()
        out = []
        self._copies = pkt.copy
        self._run(0, pkt, t, out)
        self._quiet = self._quiet0 = self._compute_quiet()
        return out

    def _run(self, i, pkt, t, out):
        procs = self._procs
        n = len(procs)
        while i < n:
            r = procs[i](pkt, t)
            i += 1
            c = r.__class__
            if c is int:
                t = r
            elif c is str:
                out.append((r, pkt))
                return
            elif c is list or c is tuple:
                for t2, p2 in r:
                    if p2 is not pkt:
                        self._copies += 1
                        p2.copy = self._copies
                    self._run(i, p2, t2, out)
                return
            else:
                raise TypeError("stage %r returned %r: want int ns, a drop reason or a list of (ns, packet)"
                                % (self.stages[i - 1], r))
        out.append((t, pkt))

    def __repr__(self):
        return "Pipeline(%r, seed=%r)" % (list(self.stages), self.seed)


# -- partitions: which directed links to cut --------------------------------
# Pure functions over node ids; each returns a set of (src, dst) pairs, never
# (n, n). Groups are taken in the order given, so the caller decides who is
# in the minority.

def cut_between(groups):
    """Cut every link between nodes of different groups (both directions).
    Nodes in no group are untouched."""
    groups = [list(g) for g in groups]
    where = {}
    for gi, g in enumerate(groups):
        for n in g:
            if n in where and where[n] != gi:
                raise ValueError("node %r is in two groups" % (n,))
            where[n] = gi
    return {(a, b) for a in where for b in where if where[a] != where[b]}


def isolate(node_or_nodes, nodes):
    """Cut one node (or a set of nodes, e.g. a cluster) off from the rest."""
    if isinstance(node_or_nodes, (set, frozenset, list, tuple)):
        inside = set(node_or_nodes)
    else:
        inside = {node_or_nodes}
    return cut_between([inside, [n for n in nodes if n not in inside]])


def majority_minority(nodes, minority_size=None):
    """Split into a majority and a minority (the last minority_size nodes in
    the order given; default the largest minority, (n - 1) // 2)."""
    nodes = list(nodes)
    k = (len(nodes) - 1) // 2 if minority_size is None else minority_size
    if k.__class__ is not int or not 0 <= k or 2 * k >= len(nodes) and len(nodes) > 0:
        raise ValueError("minority_size must be an integer below half of %d nodes, got %r" % (len(nodes), minority_size))
    return cut_between([nodes[:len(nodes) - k], nodes[len(nodes) - k:]])


def bridge(group_a, group_b, bridge_node):
    """Two groups that can talk only through bridge_node, which keeps its
    links to both."""
    a = [n for n in group_a if n != bridge_node]
    b = [n for n in group_b if n != bridge_node]
    return cut_between([a, b])


def ring(nodes):
    """Each node keeps links only to its two neighbours in the order given
    (the last and first are neighbours)."""
    nodes = list(nodes)
    n = len(nodes)
    keep = set()
    for i, a in enumerate(nodes):
        for b in (nodes[(i - 1) % n], nodes[(i + 1) % n]):
            keep.add((a, b))
    return {(a, b) for a in nodes for b in nodes if a != b and (a, b) not in keep}


def by_cluster(cluster_of):
    """Cut every link between clusters: cluster_of maps node -> cluster."""
    groups = {}
    for n, c in cluster_of.items():
        groups.setdefault(c, []).append(n)
    return cut_between(groups.values())


# -- from a scenario's link spec -------------------------------------------

SPEC_KEYS = ("delay_ms", "jitter", "jitter_ms", "reorder", "loss", "gilbert", "duplicate", "corrupt",
             "rate_bps", "queue_bytes", "bits_per_byte", "contacts_ms", "blackouts_ms",
             "replay", "mahimahi", "rate_schedule", "delay_schedule")
REPLAY_KEYS = ("trace", "src", "dst", "loop")
MAHIMAHI_KEYS = ("path", "rate_scale", "loop")
GILBERT_KEYS = ("p_good_to_bad", "p_bad_to_good", "loss_good", "loss_bad")
CORRUPT_KEYS = ("bitflip", "drop_bytes", "garbage")


def _ms_to_ns(where, key, v):
    if v.__class__ is bool or not isinstance(v, (int, float)) or not v >= 0 or math.isinf(v):
        raise ValueError("%s%s: must be a non-negative number of milliseconds, got %r" % (where, key, v))
    return int(round(v * NS_PER_MS))


def _prob(where, key, v):
    try:
        return _check_prob(key, v)
    except ValueError:
        raise ValueError("%s%s: must be a probability in [0, 1], got %r" % (where, key, v)) from None


def _windows(where, key, v):
    if not isinstance(v, (list, tuple)):
        raise ValueError("%s%s: must be a list of [start_ms, end_ms] windows, got %r" % (where, key, v))
    out = []
    for w in v:
        if not isinstance(w, (list, tuple)) or len(w) != 2:
            raise ValueError("%s%s: a window must be [start_ms, end_ms], got %r" % (where, key, w))
        s, e = _ms_to_ns(where, key, w[0]), _ms_to_ns(where, key, w[1])
        if e <= s:
            raise ValueError("%s%s: a window must end after it starts, got %r" % (where, key, w))
        out.append((s, e))
    return Schedule(out)


def _segments(where, key, v, value_name):
    """[[start_ms, end_ms, value], ...] -> sorted [(start_ns, end_ns, value)]."""
    if not isinstance(v, (list, tuple)):
        raise ValueError("%s%s: must be a list of [start_ms, end_ms, %s], got %r" % (where, key, value_name, v))
    out = []
    for w in v:
        if not isinstance(w, (list, tuple)) or len(w) != 3:
            raise ValueError("%s%s: an entry must be [start_ms, end_ms, %s], got %r" % (where, key, value_name, w))
        s, e = _ms_to_ns(where, key, w[0]), _ms_to_ns(where, key, w[1])
        if e <= s:
            raise ValueError("%s%s: an entry must end after it starts, got %r" % (where, key, w))
        out.append((s, e, w[2]))
    out.sort(key=lambda x: (x[0], x[1]))
    for a, b in zip(out, out[1:]):
        if b[0] < a[1]:
            raise ValueError("%s%s: entries overlap: [%g, %g] and [%g, %g] ms"
                             % (where, key, a[0] / NS_PER_MS, a[1] / NS_PER_MS, b[0] / NS_PER_MS, b[1] / NS_PER_MS))
    return out


def _sub(where, key, v, keys):
    if not isinstance(v, dict):
        raise ValueError("%s%s: must be a mapping with keys %s, got %r" % (where, key, ", ".join(keys), v))
    for k in v:
        if k not in keys:
            raise ValueError("%sunknown key %r in %s (known: %s)" % (where, "%s.%s" % (key, k), key, ", ".join(keys)))
    return {k: x for k, x in v.items() if x is not None}


def build_pipeline(spec, seed, where=""):
    """A Pipeline from a scenario's link spec: Pipeline(*build_stages(spec), seed)
    with the arguments in that order; see build_stages."""
    stages, state = build_stages(spec, where)
    return Pipeline(stages, seed, state)


def build_stages(spec, where=""):
    """(stages, LinkState) from a scenario's link spec (mission-time ms), for
    a caller that wants to add its own stages before making the Pipeline.

    Keys, all optional; null means absent:
      delay_ms, jitter ("none"|"uniform"|"normal"|"pareto"; "uniform" if only
      jitter_ms is given), jitter_ms, reorder (bool, default false), loss,
      gilbert {p_good_to_bad, p_bad_to_good, loss_good=0, loss_bad=1},
      duplicate, corrupt {bitflip, drop_bytes, garbage} (per-frame
      probabilities), rate_bps, queue_bytes (null: unlimited), bits_per_byte
      (8; 10 for a UART at 8N1), contacts_ms and blackouts_ms (lists of
      [start_ms, end_ms] windows of mission time);
      mahimahi {path, rate_scale=1, loop=true}: a Mahimahi link trace as the
      line, instead of rate_bps (Mahimahi);
      rate_schedule [[start_ms, end_ms, bps or null], ...]: time-varying rate,
      rate_bps outside its entries (RateSchedule; a contact plan's rates);
      replay {trace, src, dst, loop=true}: delays and losses recorded on link
      src -> dst of a run trace (TraceReplay);
      delay_schedule [[start_ms, end_ms, delay_ms], ...]: time-varying delay,
      delay_ms outside its entries (DelaySchedule; a contact plan's ranges).
      File paths are taken as given (relative to the current directory).
    Stage order: Rate / RateSchedule / Mahimahi (the sender's line: every
    frame handed to it takes line time, queue drops happen here), Loss,
    GilbertElliott, Duplicate, Corrupt (in transit), TraceReplay, Delay /
    DelaySchedule (propagation). where (e.g. "links.default: ") prefixes
    error messages. Bad input raises ValueError naming the key and value.
    """
    if not isinstance(spec, dict):
        raise ValueError("%slink spec must be a mapping, got %r" % (where, spec))
    for k in spec:
        if k not in SPEC_KEYS:
            raise ValueError("%sunknown link spec key %r (known: %s)" % (where, k, ", ".join(SPEC_KEYS)))
    s = {k: v for k, v in spec.items() if v is not None}
    stages = []
    contacts = blackouts = None

    if "mahimahi" in s:
        for k in ("rate_bps", "rate_schedule", "queue_bytes", "bits_per_byte"):
            if k in s:
                raise ValueError("%smahimahi: replaces the line model, so %s cannot be given with it" % (where, k))
        m = _sub(where, "mahimahi", s["mahimahi"], MAHIMAHI_KEYS)
        if "path" not in m:
            raise ValueError("%smahimahi.path: required (a Mahimahi link trace)" % where)
        try:
            sched = load_mahimahi(str(m["path"]))
            stages.append(Mahimahi(sched, m.get("rate_scale", 1.0), m.get("loop", True)))
        except ValueError as e:
            raise ValueError("%smahimahi: %s" % (where, e)) from None
    elif "rate_schedule" in s:
        if "queue_bytes" in s:
            raise ValueError("%squeue_bytes: not supported with rate_schedule" % where)
        segs = _segments(where, "rate_schedule", s["rate_schedule"], "bps or null")
        for seg in segs:
            bps = seg[2]
            if bps is not None and (bps.__class__ is bool or not isinstance(bps, (int, float)) or not bps >= 0.001
                                    or math.isinf(bps)):
                raise ValueError("%srate_schedule: bps must be a number >= 0.001 or null (no limit), got %r" % (where, bps))
        dflt = s.get("rate_bps")
        if dflt is not None and (dflt.__class__ is bool or not isinstance(dflt, (int, float)) or not dflt >= 0.001
                                 or math.isinf(dflt)):
            raise ValueError("%srate_bps: must be a number >= 0.001, got %r" % (where, dflt))
        bpb = s.get("bits_per_byte", 8)
        if bpb.__class__ is not int or bpb < 1:
            raise ValueError("%sbits_per_byte: must be an integer >= 1, got %r" % (where, bpb))
        stages.append(RateSchedule(segs, dflt, bpb))
    elif "rate_bps" in s:
        bps = s["rate_bps"]
        if bps.__class__ is bool or not isinstance(bps, (int, float)) or not bps >= 0.001 or math.isinf(bps):
            raise ValueError("%srate_bps: must be a number >= 0.001, got %r" % (where, bps))
        q = s.get("queue_bytes")
        if q is not None and (q.__class__ is not int or q < 1):
            raise ValueError("%squeue_bytes: must be null (unlimited) or an integer >= 1, got %r" % (where, q))
        bpb = s.get("bits_per_byte", 8)
        if bpb.__class__ is not int or bpb < 1:
            raise ValueError("%sbits_per_byte: must be an integer >= 1, got %r" % (where, bpb))
        stages.append(Rate(bps, q, bpb))
    else:
        for k in ("queue_bytes", "bits_per_byte"):
            if k in s:
                raise ValueError("%s%s: given without rate_bps, got %r" % (where, k, s[k]))

    if "loss" in s:
        stages.append(Loss(_prob(where, "loss", s["loss"])))

    if "gilbert" in s:
        g = _sub(where, "gilbert", s["gilbert"], GILBERT_KEYS)
        for k in ("p_good_to_bad", "p_bad_to_good"):
            if k not in g:
                raise ValueError("%sgilbert.%s: required" % (where, k))
        stages.append(GilbertElliott(*(_prob(where, "gilbert." + k, g.get(k, d))
                                       for k, d in zip(GILBERT_KEYS, (None, None, 0.0, 1.0)))))

    if "duplicate" in s:
        stages.append(Duplicate(_prob(where, "duplicate", s["duplicate"])))

    if "corrupt" in s:
        c = _sub(where, "corrupt", s["corrupt"], CORRUPT_KEYS)
        stages.append(Corrupt(*(_prob(where, "corrupt." + k, c.get(k, 0.0)) for k in CORRUPT_KEYS)))

    if "replay" in s:
        r = _sub(where, "replay", s["replay"], REPLAY_KEYS)
        for k in ("trace", "src", "dst"):
            if k not in r:
                raise ValueError("%sreplay.%s: required (replay: {trace: path, src: id, dst: id})" % (where, k))
        for k in ("src", "dst"):
            if r[k].__class__ is not int or r[k] < 0:
                raise ValueError("%sreplay.%s: a node id, got %r" % (where, k, r[k]))
        try:
            stages.append(TraceReplay(trace_link_outcomes(str(r["trace"]), r["src"], r["dst"]), r.get("loop", True)))
        except ValueError as e:
            raise ValueError("%sreplay: %s" % (where, e)) from None

    delay_ns = _ms_to_ns(where, "delay_ms", s["delay_ms"]) if "delay_ms" in s else 0
    jitter_ns = _ms_to_ns(where, "jitter_ms", s["jitter_ms"]) if "jitter_ms" in s else 0
    jitter = s.get("jitter", "uniform" if jitter_ns else "none")
    if jitter not in ("none", "uniform", "normal", "pareto"):
        raise ValueError("%sjitter: must be one of none, uniform, normal, pareto, got %r" % (where, jitter))
    if jitter == "none" and jitter_ns:
        raise ValueError("%sjitter_ms: %r given but jitter is 'none'" % (where, s["jitter_ms"]))
    if jitter != "none" and not jitter_ns:
        raise ValueError("%sjitter: %r needs jitter_ms > 0" % (where, jitter))
    reorder = s.get("reorder", False)
    if reorder.__class__ is not bool:
        raise ValueError("%sreorder: must be true or false, got %r" % (where, reorder))
    if "delay_schedule" in s:
        if jitter_ns:
            raise ValueError("%sjitter_ms: not supported with delay_schedule" % where)
        segs = [(a, b, _ms_to_ns(where, "delay_schedule", d))
                for a, b, d in _segments(where, "delay_schedule", s["delay_schedule"], "delay_ms")]
        stages.append(DelaySchedule(segs, delay_ns))
    elif delay_ns or jitter_ns:
        stages.append(Delay(delay_ns, jitter, jitter_ns, reorder))

    if "contacts_ms" in s:
        contacts = _windows(where, "contacts_ms", s["contacts_ms"])
    if "blackouts_ms" in s:
        blackouts = _windows(where, "blackouts_ms", s["blackouts_ms"])
    return stages, LinkState(contacts, blackouts)
