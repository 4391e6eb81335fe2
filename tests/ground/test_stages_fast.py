# The Pipeline (ground/pipeline.py) and its time stages, read as their spec:
#  - Delay and Rate give exactly what the plain formulas of their docstrings
#    give: Delay against a transcription of its docstring (int() and all),
#    Rate against exact rational arithmetic;
#  - a Pipeline gives, frame for frame, the outcomes of a reference
#    composition of its stages (every stage called for every frame, in
#    order, each copy of a duplicate on through the stages after it,
#    numbered as it comes out) over 10,000 seeded frames, and leaves the
#    link's Random in the same state: skipping quiet stages changes nothing;
#  - route(frame_id, data, t) is send(Packet(frame_id, data, t), t) without
#    the Packet when the one copy is delivered or dropped untouched;
#  - custom stages: one that may fan out turns the skipping off, one that
#    does not keeps it, and both give the same outcomes; a stage returning
#    something else is refused, naming the stage.
import math
import random
from fractions import Fraction

import pytest

from ground.pipeline import Pipeline, build_pipeline, build_stages
from ground.stages import LOSS, QUEUE, Delay, Packet, Rate, Stage

MS = 1_000_000
N = 10_000


def _times(seed, n=N, gaps=(0, 1, 37, 100_000, 3 * MS, 40 * MS)):
    """n non-decreasing send times with ties and gaps of every size."""
    rnd = random.Random(seed)
    now, out = 0, []
    for _ in range(n):
        now += rnd.choice(gaps)
        out.append(now)
    return out


def _data(i):
    return bytes(range(1 + i % 61))  # lengths 1..61: Rate's per-length cache fills up and is used


# -- the time stages are the plain formulas --------------------------------------------------

def _reference_delay(seed, fixed, jitter, jitter_ns, reorder, alpha, times):
    """Delay as its docstring says, written plainly (int(), max, math.*)."""
    rnd = random.Random(seed).random
    last, spare, out = 0, None, []
    for t in times:
        if jitter == "none":
            r = t + fixed
        elif jitter == "uniform":
            r = max(t, t + (fixed - jitter_ns) + int(rnd() * (2.0 * jitter_ns)))
        elif jitter == "normal":
            if spare is None:
                rho = math.sqrt(-2.0 * math.log(1.0 - rnd())) * jitter_ns
                theta = 2.0 * math.pi * rnd()
                z, spare = rho * math.cos(theta), rho * math.sin(theta)
            else:
                z, spare = spare, None
            r = max(t, t + fixed + int(z))
        else:
            r = t + fixed + int(((1.0 - rnd()) ** (-1.0 / alpha) - 1.0) * ((alpha - 1.0) * jitter_ns))
        if not reorder:
            r = last = max(r, last)
        out.append(r)
    return out


@pytest.mark.parametrize("reorder", [False, True])
@pytest.mark.parametrize("jitter, jitter_ns", [("none", 0), ("uniform", 40 * MS), ("normal", 40 * MS),
                                               ("pareto", 7 * MS), ("normal", 1)])
def test_delay_is_the_plain_formulas(jitter, jitter_ns, reorder):
    times = _times(1)
    want = _reference_delay(11, 500 * MS, jitter, jitter_ns, reorder, 2.5, times)
    pipe = Pipeline([Delay(500 * MS, jitter, jitter_ns, reorder, pareto_alpha=2.5)], 11)
    got = [pipe.send(Packet(i, b"x", t), t)[0][0] for i, t in enumerate(times)]
    assert got == want


def _reference_rate(bps, limit_bytes, bits_per_byte, frames):
    """Rate as its docstring says, in exact rationals: release = max(t, line
    free) + bytes * bits / bps, rounded up; a queue drop when the bytes not
    yet on the line, this frame's included, would exceed the limit."""
    bps = Fraction(round(bps * 1000), 1000)
    free, out = Fraction(0), []
    for t, n in frames:
        end = max(Fraction(t), free) + Fraction((n + 1) * bits_per_byte * 10**9) / bps
        if limit_bytes is not None and end - t > Fraction(limit_bytes * bits_per_byte * 10**9) / bps:
            out.append(QUEUE)
            continue
        free = end
        out.append(math.ceil(end))
    return out


@pytest.mark.parametrize("bps, limit, bpb", [(9600, None, 8), (115200, 300, 10), (10_000_000, None, 8),
                                             (1234.567, 500, 8), (2400, 64, 8)])
def test_rate_is_exact_arithmetic(bps, limit, bpb):
    frames = [(t, len(_data(i))) for i, t in enumerate(_times(2, gaps=(0, 0, 1, 999, 20 * MS, 300 * MS)))]
    want = _reference_rate(bps, limit, bpb, frames)
    pipe = Pipeline([Rate(bps, limit, bpb)], 1)
    got = [pipe.send(Packet(i, _data(i), t), t)[0][0] for i, (t, _) in enumerate(frames)]
    assert got == want
    assert limit is None or QUEUE in got


@pytest.mark.parametrize("bps", [9600, 1234.567, 7])
def test_rate_at_the_edge_of_a_busy_line(bps):
    # each frame handed over just as the line frees (the ns its predecessor's
    # last bit is out, rounded down or up) or a little before or after: the
    # line is idle only once its exact free time has passed
    pipe = Pipeline([Rate(bps)], 1)
    rnd = random.Random(6)
    frames, t = [], 0
    for i in range(3000):
        frames.append((t, len(_data(i))))
        release = pipe.send(Packet(i, _data(i), t), t)[0][0]
        t = max(t, release + rnd.choice((-2, -1, -1, 0, 0, 1)))
    assert [s for s, _ in frames] == sorted(s for s, _ in frames)
    check = Pipeline([Rate(bps)], 1)
    got = [check.send(Packet(i, _data(i), t), t)[0][0] for i, (t, _) in enumerate(frames)]
    assert got == _reference_rate(bps, None, 8, frames)


# -- the pipeline is the reference composition of its stages ------------------------

SPECS = [
    {"delay_ms": 1300},
    {"delay_ms": 500, "jitter": "normal", "jitter_ms": 40, "reorder": False, "loss": 0.01},  # the bench link
    {"delay_ms": 500, "jitter": "normal", "jitter_ms": 40, "reorder": True, "loss": 0.05},
    {"delay_ms": 20, "jitter": "uniform", "jitter_ms": 15, "loss": 0.1, "duplicate": 0.05},
    {"delay_ms": 20, "jitter": "uniform", "jitter_ms": 15, "reorder": True},
    {"delay_ms": 5, "jitter": "pareto", "jitter_ms": 4, "reorder": True, "loss": 0.02},
    {"delay_ms": 5, "jitter": "pareto", "jitter_ms": 4, "gilbert": {"p_good_to_bad": 0.02, "p_bad_to_good": 0.3}},
    {"delay_ms": 30, "jitter_ms": 4, "loss": 0.05, "duplicate": 0.03,
     "corrupt": {"bitflip": 0.03, "drop_bytes": 0.01, "garbage": 0.01}},
    {"delay_ms": 1300, "jitter": "normal", "jitter_ms": 50, "loss": 0.01, "gilbert": {"p_good_to_bad": 0.001,
     "p_bad_to_good": 0.3}, "duplicate": 0.001, "corrupt": {"bitflip": 0.001, "drop_bytes": 0.0005,
     "garbage": 0.0005}, "rate_bps": 10_000_000},  # bench_links' "all stages"
    {"delay_ms": 100, "rate_bps": 9600, "queue_bytes": 300, "loss": 0.02, "duplicate": 0.05},  # Rate drops
    {"rate_bps": 2400, "queue_bytes": 100, "jitter_ms": 3, "corrupt": {"garbage": 0.1}},
    {"rate_bps": 9600},
    {"loss": 0.3, "duplicate": 0.2},  # no time stage at all
    {"delay_ms": 10, "loss": 0.01, "blackouts_ms": [[100, 2000], [30000, 31000]]},
    {"delay_ms": 10, "jitter_ms": 2, "contacts_ms": [[0, 3000], [4000, 90000]], "rate_bps": 50_000},
    {"delay_schedule": [[0, 5000, 30], [5000, 9000, 10]], "delay_ms": 20, "loss": 0.05,
     "rate_schedule": [[1000, 4000, 2400], [4000, 6000, None]], "rate_bps": 9600},
]


class Reference:
    """The pipeline's semantics written the plain way, independently of
    ground/pipeline.py: the link state gate, then every stage's process()
    for every frame in order; a list sends each packet on through the stages
    after the one that returned it (the original first, depth first), and
    every packet that is not the one going in is numbered as the next copy.
    Stages are attached in order and no-op stages left out, as the Pipeline
    says it does."""

    def __init__(self, stages, seed, state):
        self.rng = random.Random(seed)
        self.state = state
        self.stages = [s for s in stages if not s.noop]
        for s in self.stages:
            s.attach(self.rng)

    def send(self, pkt, now):
        why = self.state.down_reason(now)
        if why is not None:
            return [(why, pkt)]
        self.copies = pkt.copy
        return self._through(self.stages, pkt, now)

    def _through(self, stages, pkt, t):
        for k, stage in enumerate(stages):
            r = stage.process(pkt, t)
            if isinstance(r, str):
                return [(r, pkt)]
            if isinstance(r, list):
                out = []
                for t2, p2 in r:
                    if p2 is not pkt:
                        self.copies += 1
                        p2.copy = self.copies
                    out += self._through(stages[k + 1:], p2, t2)
                return out
            t = r
        return [(t, pkt)]


def _outcomes(out):
    return [(w, p.frame_id, p.copy, p.data, p.how) for w, p in out]


@pytest.mark.parametrize("spec", SPECS, ids=range(len(SPECS)))
def test_the_pipeline_is_the_reference_composition(spec):
    pipe = build_pipeline(spec, 7)
    stages, state = build_stages(spec)
    ref = Reference(stages, 7, state)
    assert pipe.skips  # the built-in stages never fan out but Duplicate: the quiet ones are skipped
    fates = set()
    for i, t in enumerate(_times(3)):
        if i == 4000:
            pipe.state.cut()
            ref.state.cut()
        if i == 4100:
            pipe.state.heal()
            ref.state.heal()
        a = _outcomes(pipe.send(Packet(i, _data(i), t), t))
        b = _outcomes(ref.send(Packet(i, _data(i), t), t))
        assert a == b, (i, spec)
        fates.update(w if w.__class__ is str else "delivered" for w, *_ in a)
    assert pipe.rng.getstate() == ref.rng.getstate()  # the same draws, no more, no fewer
    assert "delivered" in fates and "partition" in fates  # the run did something


# -- route ------------------------------------------------------------------------------

@pytest.mark.parametrize("spec", SPECS, ids=range(len(SPECS)))
def test_route_is_send_without_the_packet(spec):
    by_send, by_route, mixed = (build_pipeline(spec, 9) for _ in range(3))
    untouched = 0
    for i, t in enumerate(_times(4)):
        data = _data(i)
        want = _outcomes(by_send.send(Packet(i, data, t), t))
        got = by_route.route(i, data, t)
        if got.__class__ in (int, str):
            untouched += 1
            assert want == [(got, i, 0, data, None)], (i, spec)
        else:
            assert _outcomes(got) == want, (i, spec)
            assert len(got) > 1 or got[0][1].how  # a list only when something happened to the frame
        # send and route mixed on one link: the same link
        m = mixed.route(i, data, t) if i % 3 else mixed.send(Packet(i, data, t), t)
        assert (_outcomes(m) if m.__class__ is list else [(m, i, 0, data, None)]) == want
    assert untouched > N // 3
    assert by_send.rng.getstate() == by_route.rng.getstate() == mixed.rng.getstate()


def test_the_specs_cover_routes_delay_alone_case_and_the_others():
    # route() runs a lone Delay by itself while the counted stages are quiet (Pipeline._time_only):
    # the equality above holds on links with and without that case
    alone = [i for i, spec in enumerate(SPECS) if build_pipeline(spec, 9)._time_only is not None]
    assert alone == [0, 1, 2, 3, 4, 5, 6, 7, 13], alone  # not: Rate, schedules, contacts, no time stage


def test_route_returns_a_list_whenever_something_happens():
    p = build_pipeline({"delay_ms": 10, "duplicate": 0.2, "corrupt": {"bitflip": 0.2}, "loss": 0.2,
                        "blackouts_ms": [[500, 700]]}, 3)
    kinds = set()
    for i in range(2000):
        out = p.route(i, b"abcdef", i * MS)
        if out.__class__ is list:
            kinds.update("dup" if q.copy else "corrupt" if q.how else "untouched" for _, q in out)
            assert all(q.frame_id == i for _, q in out)
        else:
            kinds.add(out.__class__.__name__)
    # "untouched": the original of a duplicated frame
    assert kinds == {"int", "str", "dup", "corrupt", "untouched"}


# -- custom stages ------------------------------------------------------------------------

class Shift(Stage):
    """A custom stage that never fans out: the quiet stages are still skipped."""

    fans_out = False

    def __init__(self, by_ns):
        self.by_ns = by_ns

    def process(self, pkt, t):
        return "too_long" if len(pkt.data) > 50 else t + self.by_ns


class ShiftMayFanOut(Shift):
    """The same, but it does not say it never fans out: no skipping."""

    fans_out = True


def test_custom_stages_with_and_without_skipping():
    spec = {"delay_ms": 3, "jitter_ms": 2, "loss": 0.1, "duplicate": 0.05}
    runs = []
    for first in (Shift(7), ShiftMayFanOut(7)):
        stages, _ = build_stages(spec)
        p = Pipeline([first] + stages, 5)
        assert p.skips == (not first.fans_out)
        runs.append([_outcomes(p.send(Packet(i, _data(i), t), t)) for i, t in enumerate(_times(5, n=3000))])
        runs.append(p.rng.getstate())
    assert runs[0] == runs[2] and runs[1] == runs[3]
    flat = [o for r in runs[0] for o in r]
    assert [o for o in flat if o[0] == "too_long"] and [o for o in flat if o[0] == LOSS]
    assert [o for o in flat if o[2]]  # duplicates


def test_a_stage_returning_something_else_is_refused():
    class Bad(Stage):
        def process(self, pkt, t):
            return float(t)

    p = Pipeline([Delay(5 * MS), Bad()], 1)
    with pytest.raises(TypeError, match=r"stage .*Bad.* returned 5000000.0: want int ns"):
        p.send(Packet(1, b"x"), 0)
