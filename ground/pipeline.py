"""A directed link's Pipeline: its stages in order with the link's Random
and its LinkState, run frame by frame; and build_pipeline(), which makes
one from a scenario's link spec (the `links:` keys of docs/SCENARIOS.md).

    pipe = build_pipeline({"delay_ms": 1300, "loss": 0.01}, link_seed(7, 3, 4))
    for when, pkt in pipe.send(Packet(17, line[:-1], now_ns), now_ns):
        if when.__class__ is int: deliver pkt.data at `when` (ns)
        else: record dropped, reason `when`

    out = pipe.route(17, data, now_ns)   # the same, for a caller without a Packet
    if out.__class__ is int: deliver data (copy 0, untouched) at `out`
    elif out.__class__ is str: record dropped (copy 0), reason `out`
    else: for when, pkt in out: ... as above

The stages (ground/stages.py, ground/linkreplay.py) say what happens to a
frame; the Pipeline only calls them in order: the link state gate first (a
frame sent while the link is down is dropped: ground/linkstate.py), then each
stage's process(pkt, t) with the time the previous one released it at. A
stage's list (a duplicate) sends each copy on through the stages after it,
the original first; the Pipeline numbers the copies. Pure and sans-IO like
the stages; the one exception is at build time: a spec naming a recording
(`replay:` a run trace, `mahimahi:` a link trace) reads it, once per file and
process.

Measured (bench/bench_links.py, bench/bench_fleet.py; a 2-core Xeon VM
shared with other work, CPython 3.11, medians of interleaved rounds against
the generated code this replaced): the pipeline is a small share of a run.
The real router spends ~5 us per recipient; there the plain stages cost
2-6 % (typical link 210k -> 205k recipients/s, every stage on 210k -> 197k)
though the pipeline alone is slower by a third (send(), typical link: 2.6M
-> 1.8M frames/s). A 1,000-node --sim run (60 mission s, 472,577
deliveries) takes the same CPU time, 21.5 s before and 21.3 s after: most
of it goes to the nodes' core, the trace and the metrics. Skipping quiet
stages (Pipeline) is kept because without it the router with every stage on
lost another ~10 %. The router's own per-recipient path was then trimmed
(ground/router.py: the clock's methods bound once, a per-source table of
pipelines, the sent bytes and their delimiter made once per frame, the
common delivery's event written out; route() runs the quiet case inline;
VirtualClock without max()), and the plain stages are now faster end to
end than the generated code was: typical link 225k (generated, ab96ba7) ->
214k (plain, before the trim) -> 263k recipients/s, every stage on 210k ->
192k -> 225k (python -m bench.bench_router_trees ab96ba7 387ed04 ., medians
of 7 interleaved rounds).
"""

import math
import random

from ground import airtime
from ground.linkreplay import DelaySchedule, Mahimahi, RateSchedule, TraceReplay, load_mahimahi, trace_link_outcomes
from ground.linkstate import LinkState, Schedule
from ground.stages import (
    NS_PER_MS,
    Corrupt,
    Delay,
    Duplicate,
    GilbertElliott,
    Loss,
    Packet,
    Rate,
    Stage,
    check_prob,
)

_EVERY_FRAME = 1 << 62  # frames every counted stage passes untouched, when there are none


class Pipeline:
    """The stages of one directed link, in order, with the link's Random.

    send(pkt, now_ns) -> list of (deliver_at_ns: int, pkt) or (reason: str,
    pkt), one per copy that came out. Packet.copy > 0 marks a duplicate
    (record `duplicated`); Packet.how lists the corruptions applied to that
    copy (record one `corrupted` per entry). A duplicate may itself be
    dropped by a later stage; with build_pipeline's order it never is. Calls
    must come in non-decreasing now_ns (the router's clock) for Rate and
    FIFO Delay to mean what they say.

    route(frame_id, data, now_ns) is send(Packet(frame_id, data, now_ns),
    now_ns) for a caller that keeps no Packet: it returns an int (the ns the
    frame is delivered at) or a str (the reason it is dropped) when the
    outcome is that one copy, untouched (copy 0, the same data, no
    corruption), and send()'s list otherwise. The same draws and the same
    link state afterwards as send(); the two can be mixed on one link.
    (route() lends the stages a Packet of the Pipeline's own and hands it
    to the caller only in a list, making a new one for the next frame; so a
    frame nothing happens to costs no Packet. Stages never keep the Packet
    they are given: ground/stages.py.)

    Stages that can do nothing (`noop`) are left out; each kept stage gets
    the link's Random once (`attach`), in order, before any frame.

    Skipping quiet stages: the counted stages (Stage.counted: loss,
    duplicate, corruption...) fire on a few frames in a hundred or a
    thousand, and each knows how many frames it will pass untouched
    (quiet()). While all of them are quiet, a frame runs only the other
    stages (Rate, Delay...) and the Pipeline counts it; before a counted
    stage next has to act, it is given the frames it missed (skip(n)). The
    outcomes and draws are exactly those of calling every stage for every
    frame (tests/ground/test_stages.py checks it); it needs every other
    stage to return an int or a str, never a list (`fans_out` False), and is
    off otherwise. Measured: with it, a frame through every stage of the
    bench's "all stages" link costs a bit over half as much
    (bench/bench_links.py "pipeline.send, all stages": 0.71M -> 1.27M
    frames/s); the real router ~10 % (the module's note).
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
        self._copies = 0  # the highest copy number given to this frame so far
        self._spare = Packet(0, b"")  # route()'s Packet, while no caller has it
        # skipping quiet stages: the counted stages (index, stage), the
        # others (index, process); frames_left counts down the frames every
        # counted stage passes untouched, from frames_quiet at the last
        # settlement (so frames_quiet - frames_left of them await skip())
        self._counted = tuple((i, s) for i, s in enumerate(kept) if s.counted)
        others = [(i, s) for i, s in enumerate(kept) if not s.counted]
        self._others = tuple((i, s.process) for i, s in others)
        self.skips = not any(s.fans_out for _, s in others)
        self._frames_left = self._frames_quiet = self._quiet()
        # route()'s quietest case: one stage besides the counted ones, reading nothing of the packet (while
        # skipping is off, frames_left stays 0 and route never takes it)
        self._time_only = others[0][1].process if len(others) == 1 and others[0][1].time_only else None

    def send(self, pkt, now_ns):
        state = self.state
        if state.gated:
            reason = state.down_reason(now_ns)
            if reason is not None:
                return [(reason, pkt)]
        r = self._first(pkt, now_ns)
        return r if r.__class__ is list else [(r, pkt)]

    def route(self, frame_id, data, now_ns):
        state = self.state
        if state.gated:
            reason = state.down_reason(now_ns)
            if reason is not None:
                return reason
        pkt = self._spare  # a Packet no caller holds (see the class's note on route)
        left = self._frames_left
        if left and self._time_only is not None:  # the counted stages quiet, the other one reads no packet
            self._frames_left = left - 1
            return self._time_only(pkt, now_ns)
        pkt.frame_id = frame_id
        pkt.data = data
        pkt.sent_ns = now_ns
        if left:  # _first's quiet case, written out: the router's path for nearly every frame
            self._frames_left = left - 1
            r = now_ns
            for i, process in self._others:
                r = process(pkt, r)
                if r.__class__ is not int:
                    self._settle(i)
                    break
        else:
            r = self._first(pkt, now_ns)
        if r.__class__ is not list and pkt.how is None and pkt.data is data:
            return r  # nothing happened to pkt: it serves the next frame too
        self._spare = Packet(0, b"")  # pkt goes to the caller
        return r if r.__class__ is list else [(r, pkt)]

    def _first(self, pkt, t):
        # a frame from the first stage on: past the counted stages while
        # they are quiet, else through every stage (see "Skipping quiet
        # stages"); the outcome as _walk gives it
        left = self._frames_left
        if left:
            self._frames_left = left - 1
            for i, process in self._others:
                r = process(pkt, t)
                if r.__class__ is not int:  # a drop: the counted stages after i did not see this frame
                    self._settle(i)
                    return r
                t = r
            return t
        self._copies = pkt.copy
        if not self.skips:
            return self._walk(pkt, t, 0)
        self._settle(len(self._procs))
        r = self._walk(pkt, t, 0)
        self._frames_left = self._frames_quiet = self._quiet()
        return r

    def _quiet(self):
        # frames every counted stage is sure to pass untouched, from now
        # (with none, every frame)
        if not self.skips:
            return 0
        return min((s.quiet() for _, s in self._counted), default=_EVERY_FRAME)

    def _settle(self, dropped_at):
        # give the counted stages the frames they were skipped for: those
        # before index dropped_at saw all of them, those after it not the
        # last one (it was dropped before it reached them); then count anew
        k = self._frames_quiet - self._frames_left
        for i, s in self._counted:
            n = k if i < dropped_at else k - 1
            if n:
                s.skip(n)
        self._frames_left = self._frames_quiet = 0
        if dropped_at < len(self._procs):
            self._frames_left = self._frames_quiet = self._quiet()

    def _walk(self, pkt, t, first):
        # pkt through the stages from index `first` on, reaching it at t: the
        # one outcome of pkt itself (int or str, as a stage returns it), or
        # a list of (outcome, pkt) when a stage fanned it out (its copies
        # each go on from the next stage, in order; the Pipeline numbers them)
        procs = self._procs
        i = first
        n = len(procs)
        while i < n:
            r = procs[i](pkt, t)
            i += 1
            c = r.__class__
            if c is int:
                t = r
            elif c is str:
                return r
            elif c is list or c is tuple:
                out = []
                for t2, p2 in r:
                    if p2 is not pkt:
                        self._copies += 1
                        p2.copy = self._copies
                    r2 = self._walk(p2, t2, i)
                    if r2.__class__ is list:
                        out.extend(r2)
                    else:
                        out.append((r2, p2))
                return out
            else:
                raise TypeError("stage %r returned %r: want int ns, a drop reason or a list of (ns, packet)"
                                % (self.stages[i - 1], r))
        return t

    def __repr__(self):
        return "Pipeline(%r, seed=%r)" % (list(self.stages), self.seed)


# -- from a scenario's link spec -------------------------------------------

SPEC_KEYS = ("delay_ms", "jitter", "jitter_ms", "reorder", "loss", "gilbert", "duplicate", "corrupt",
             "rate_bps", "queue_bytes", "bits_per_byte", "contacts_ms", "blackouts_ms",
             "replay", "mahimahi", "rate_schedule", "delay_schedule", "radio")
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
        return check_prob(key, v)
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


def build_pipeline(spec, seed, where="", radios=None, src=None):
    """A Pipeline from a scenario's link spec: Pipeline(*build_stages(spec), seed)
    with the arguments in that order; see build_stages."""
    stages, state = build_stages(spec, where, radios, src)
    return Pipeline(stages, seed, state)


def build_stages(spec, where="", radios=None, src=None):
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
      delay_ms outside its entries (DelaySchedule; a contact plan's ranges);
      radio {sf, bw_khz, cr, preamble, explicit_header, crc, ldro,
      duty_cycle, window_s, dwell_ms, over_budget}: a LoRa-class radio as
      the sender's line, instead of rate_bps (ground/airtime.py). Its
      transmitter is radios.transmitter(src, settings) (an
      airtime.Radios: shared by every link out of src with the same
      settings), or one of the link's own without radios.
      File paths are taken as given (relative to the current directory).
    Stage order: Airtime / Rate / RateSchedule / Mahimahi (the sender's line: every
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

    if "radio" in s:
        for k in ("rate_bps", "rate_schedule", "mahimahi", "queue_bytes", "bits_per_byte"):
            if k in s:
                raise ValueError("%sradio: the radio is the line, so %s cannot be given with it" % (where, k))
        try:
            radio = airtime.Radio(s["radio"])
        except airtime.RadioError as e:
            e.args = ("%s%s" % (where, e.args[0]),)
            raise
        tx = radios.transmitter(src, radio) if radios is not None else airtime.Transmitter(radio)
        stages.append(airtime.Airtime(tx))
    elif "mahimahi" in s:
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
