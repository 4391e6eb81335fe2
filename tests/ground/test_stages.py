# The per-link impairment pipeline (ground/stages.py, ground/pipeline.py,
# ground/linkstate.py), read as its spec:
#  - a link's outcomes are a function of (seed, stages, frames sent, times);
#  - each stage does what its docstring says, statistically, within generous
#    bounds (the seeds are fixed, so these are deterministic, not flaky);
#  - skipping quiet stages (the counted stages left out while quiet) gives
#    exactly the outcomes of running every stage on every frame;
#  - link state gates sends; partition helpers return the right cut sets;
#  - a bad link spec is refused with the key and the value in the message.
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ground import linkstate as L
from ground import stages as S
from ground.linkstate import LinkState, Schedule
from ground.pipeline import Pipeline, build_pipeline, build_stages
from ground.stages import (
    BLACKOUT,
    BURST_LOSS,
    LOSS,
    PARTITION,
    QUEUE,
    Corrupt,
    Delay,
    Duplicate,
    GilbertElliott,
    Loss,
    Packet,
    Rate,
    Stage,
    link_seed,
)

MS = 1_000_000
FULL = {
    "delay_ms": 1300, "jitter": "normal", "jitter_ms": 50, "reorder": False, "loss": 0.01,
    "gilbert": {"p_good_to_bad": 0.01, "p_bad_to_good": 0.3}, "duplicate": 0.01,
    "corrupt": {"bitflip": 0.01, "drop_bytes": 0.005, "garbage": 0.005}, "rate_bps": 9600, "queue_bytes": None,
}


def _drive(pipe, n, gap_ns=1 * MS, data=b"\x11fleetloop-frame\x22", start_ns=0):
    """Send n frames gap_ns apart; a flat list of outcomes as plain tuples."""
    out = []
    for i in range(n):
        now = start_ns + i * gap_ns
        for when, p in pipe.send(Packet(i, data, now), now):
            out.append((when, p.frame_id, p.copy, p.data, tuple(p.how or ())))
    return out


def _delivered(out):
    return [o for o in out if o[0].__class__ is int]


def _dropped(out, reason=None):
    return [o for o in out if o[0].__class__ is str and (reason is None or o[0] == reason)]


class Identity(Stage):
    """A custom stage that changes nothing; it may fan out (Stage.fans_out),
    so a pipeline with it calls every stage for every frame."""

    def process(self, pkt, t_ns):
        return t_ns


# -- reproducibility ----------------------------------------------------------

def test_same_seed_same_outcomes():
    a = _drive(build_pipeline(FULL, 42), 5000)
    b = _drive(build_pipeline(FULL, 42), 5000)
    assert a == b
    assert _dropped(a) and any(o[2] for o in a) and any(o[4] for o in a)  # the spec did something


def test_different_seed_different_outcomes():
    assert _drive(build_pipeline(FULL, 1), 5000) != _drive(build_pipeline(FULL, 2), 5000)


def test_link_seed_is_per_direction_and_order_free():
    assert link_seed(7, 3, 4) == link_seed(7, 3, 4)
    assert len({link_seed(7, 3, 4), link_seed(7, 4, 3), link_seed(8, 3, 4), link_seed(7, 3, 5)}) == 4
    assert 0 <= link_seed(7, 3, 4) < 1 << 63
    # links built and driven in any order behave the same: each owns its Random
    a34, a43 = build_pipeline(FULL, link_seed(7, 3, 4)), build_pipeline(FULL, link_seed(7, 4, 3))
    first = (_drive(a34, 500), _drive(a43, 500))
    b43, b34 = build_pipeline(FULL, link_seed(7, 4, 3)), build_pipeline(FULL, link_seed(7, 3, 4))
    second = _drive(b43, 500)
    assert (_drive(b34, 500), second) == first


def test_a_stage_belongs_to_one_pipeline():
    loss = Loss(0.1)
    Pipeline([loss], 1)
    with pytest.raises(ValueError, match="already belongs"):
        Pipeline([loss], 2)


# -- skipping quiet stages is exact ------------------------------------------------------

_spec = st.fixed_dictionaries({}, optional={
    "delay_ms": st.integers(0, 2000),
    "jitter_ms": st.integers(1, 100),
    "reorder": st.booleans(),
    "loss": st.sampled_from([0.0, 0.01, 0.2, 1.0]),
    "gilbert": st.fixed_dictionaries({"p_good_to_bad": st.sampled_from([0.0, 0.05, 0.5]),
                                      "p_bad_to_good": st.sampled_from([0.1, 0.5, 1.0])},
                                     optional={"loss_good": st.sampled_from([0.0, 0.1]),
                                               "loss_bad": st.sampled_from([0.5, 1.0])}),
    "duplicate": st.sampled_from([0.0, 0.05, 0.5]),
    "corrupt": st.fixed_dictionaries({}, optional={"bitflip": st.sampled_from([0.0, 0.05]),
                                                   "drop_bytes": st.sampled_from([0.05, 0.3]),
                                                   "garbage": st.sampled_from([0.05, 1.0])}),
    "rate_bps": st.sampled_from([9600, 115200]),
    "queue_bytes": st.sampled_from([None, 40, 400]),
})


@settings(max_examples=150, deadline=None)
@given(spec=_spec, seed=st.integers(0, 2**32), gaps=st.lists(st.integers(0, 5 * MS), min_size=1, max_size=300),
       jitter=st.sampled_from(["uniform", "normal", "pareto"]))
def test_skipping_quiet_stages_changes_nothing(spec, seed, gaps, jitter):
    # invariant: skipping the counted stages while they are quiet gives
    # exactly the outcomes of calling every stage for every frame (an
    # Identity stage forces that), with the same draws
    spec = dict(spec)
    if "jitter_ms" in spec:
        spec["jitter"] = jitter
    if "queue_bytes" in spec and "rate_bps" not in spec:
        del spec["queue_bytes"]
    fast = build_pipeline(spec, seed)
    stages, _ = build_stages(spec)
    slow = Pipeline(stages + [Identity()], seed)
    assert fast.skips and not slow.skips
    now = 0
    for i, g in enumerate(gaps):
        now += g
        a = [(w, p.frame_id, p.copy, p.data, p.how) for w, p in fast.send(Packet(i, b"abcdefgh" * (i % 5), now), now)]
        b = [(w, p.frame_id, p.copy, p.data, p.how) for w, p in slow.send(Packet(i, b"abcdefgh" * (i % 5), now), now)]
        assert a == b, (i, spec)
    assert fast.rng.getstate() == slow.rng.getstate()


# -- loss ---------------------------------------------------------------------------

def test_loss_rate():
    out = _drive(Pipeline([Loss(0.1)], 5), 20000)
    lost = len(_dropped(out, LOSS))
    assert 0.09 <= lost / 20000 <= 0.11
    assert len(out) == 20000


def test_loss_edges():
    assert len(_dropped(_drive(Pipeline([Loss(1.0)], 5), 100), LOSS)) == 100
    p = Pipeline([Loss(0.0)], 5)
    assert p.stages == ()  # a no-op stage is left out
    assert len(_delivered(_drive(p, 100))) == 100


def test_gilbert_elliott_bursts():
    p_gb, p_bg = 0.02, 0.25
    n = 100000
    out = _drive(Pipeline([GilbertElliott(p_gb, p_bg)], 9), n, gap_ns=1000)
    lost = [o[0] == BURST_LOSS for o in out]
    bursts, run = [], 0
    for x in lost:
        if x:
            run += 1
        elif run:
            bursts.append(run)
            run = 0
    mean_burst = statistics.mean(bursts)
    assert 0.8 / p_bg <= mean_burst <= 1.2 / p_bg
    rate = sum(lost) / n
    stationary = p_gb / (p_gb + p_bg)
    assert 0.8 * stationary <= rate <= 1.2 * stationary
    # bursty: far more back-to-back losses than independent loss would give
    pairs = sum(1 for a, b in zip(lost, lost[1:]) if a and b) / n
    assert pairs > 5 * rate * rate


def test_gilbert_elliott_partial_loss_in_each_state():
    # loss_good 0.01, loss_bad 0.5, equal time in each state: ~25.5 %
    out = _drive(Pipeline([GilbertElliott(0.1, 0.1, loss_good=0.01, loss_bad=0.5)], 3), 40000, gap_ns=1000)
    rate = len(_dropped(out, BURST_LOSS)) / 40000
    assert 0.22 <= rate <= 0.29


# -- duplicate, corrupt -----------------------------------------------------------

def test_duplicate():
    out = _drive(Pipeline([Duplicate(0.05)], 11), 20000)
    copies = [o for o in out if o[2]]
    assert 0.04 <= len(copies) / 20000 <= 0.06
    assert all(o[2] == 1 for o in copies)
    originals = {o[1]: o for o in out if o[2] == 0}
    assert len(originals) == 20000
    for o in copies:
        assert originals[o[1]][0] == o[0] and originals[o[1]][3] == o[3]  # same time, same bytes


def test_duplicates_are_numbered_by_the_pipeline():
    class Triple(Stage):
        def process(self, pkt, t_ns):
            return [(t_ns, pkt), (t_ns + 1, pkt.clone()), (t_ns + 2, pkt.clone())]

    out = Pipeline([Triple(), Duplicate(1.0)], 1).send(Packet(5, b"x", 0), 0)
    assert sorted(p.copy for _, p in out) == [0, 1, 2, 3, 4, 5]
    assert {p.frame_id for _, p in out} == {5}


def test_a_stage_returning_nonsense_is_a_type_error():
    class Bad(Stage):
        def process(self, pkt, t_ns):
            return 1.5

    with pytest.raises(TypeError, match="returned 1.5"):
        Pipeline([Bad()], 1).send(Packet(1, b"x", 0), 0)


def _bitdiff(a, b):
    return sum(bin(x ^ y).count("1") for x, y in zip(a, b))


def test_corrupt_bitflip():
    data = bytes(range(1, 41))
    out = _drive(Pipeline([Corrupt(bitflip_p=0.1)], 4), 10000, data=data)
    hit = [o for o in out if o[4]]
    assert 0.09 <= len(hit) / 10000 <= 0.11
    for o in hit:
        assert o[4] == (S.BITFLIP,) and len(o[3]) == len(data) and _bitdiff(o[3], data) == 1
    assert all(o[3] == data for o in out if not o[4])


def test_corrupt_drop_bytes_and_garbage():
    data = bytes(range(1, 41))
    out = _drive(Pipeline([Corrupt(drop_bytes_p=0.1)], 4), 5000, data=data)
    hit = [o for o in out if o[4]]
    assert 0.08 <= len(hit) / 5000 <= 0.12
    assert all(o[4] == (S.DROP_BYTES,) and 1 <= len(data) - len(o[3]) <= 4 for o in hit)
    out = _drive(Pipeline([Corrupt(garbage_p=0.1)], 4), 5000, data=data)
    hit = [o for o in out if o[4]]
    assert 0.08 <= len(hit) / 5000 <= 0.12
    assert all(o[4] == (S.GARBAGE,) and 1 <= len(o[3]) - len(data) <= 8 for o in hit)
    # garbage is random bytes, delimiter included: a receiver's splitter
    # must cope with one frame arriving as two
    out = _drive(Pipeline([Corrupt(garbage_p=1.0, garbage_max_bytes=8)], 4), 3000, data=data)
    assert any(0 in o[3] for o in out)


def test_corrupt_applies_every_kind_in_order():
    out = Pipeline([Corrupt(1.0, 1.0, 1.0)], 2).send(Packet(1, b"0123456789", 0), 0)
    (when, p), = out
    assert when == 0 and p.how == [S.BITFLIP, S.DROP_BYTES, S.GARBAGE]


def test_corrupting_one_copy_leaves_the_other():
    out = Pipeline([Duplicate(1.0), Corrupt(bitflip_p=0.5)], 8)
    res = [out.send(Packet(i, b"abc", 0), 0) for i in range(200)]
    mixed = [r for r in res if bool(r[0][1].how) != bool(r[1][1].how)]
    assert mixed  # each copy corrupted independently
    for r in mixed:
        clean = [p for _, p in r if not p.how][0]
        assert clean.data == b"abc"


# -- delay --------------------------------------------------------------------------

def test_fixed_delay_in_ns_from_ms():
    out = _drive(build_pipeline({"delay_ms": 1300}, 1), 100)
    assert all(o[0] == o[1] * MS + 1_300_000_000 for o in out)
    out = _drive(build_pipeline({"delay_ms": 0.25}, 1), 3)
    assert [o[0] for o in out] == [250_000, 1_250_000, 2_250_000]


@pytest.mark.parametrize("jitter", ["uniform", "normal", "pareto"])
def test_jitter_shapes(jitter):
    d = Delay(100 * MS, jitter, 10 * MS, reorder=True)
    p = Pipeline([d], 6)
    n = 20000
    extra = [o[0] - o[1] * MS - 100 * MS for o in _drive(p, n)]
    m = statistics.mean(extra)
    if jitter == "uniform":
        assert min(extra) >= -10 * MS and max(extra) <= 10 * MS
        assert abs(m) < 0.5 * MS
        assert 5 * MS <= statistics.pstdev(extra) <= 6.5 * MS  # 10/sqrt(3) = 5.77
    elif jitter == "normal":
        assert abs(m) < 0.5 * MS
        assert 9 * MS <= statistics.pstdev(extra) <= 11 * MS
    else:
        assert min(extra) >= 0  # never early
        assert 8 * MS <= m <= 12 * MS
        assert max(extra) > 5 * m  # a heavy tail


def test_jitter_never_releases_before_the_frame_arrived():
    p = Pipeline([Delay(1 * MS, "normal", 50 * MS, reorder=True)], 2)
    assert all(o[0] >= o[1] * MS for o in _drive(p, 5000))


@pytest.mark.parametrize("jitter", ["uniform", "normal", "pareto"])
def test_no_reordering_when_reorder_is_false(jitter):
    p = build_pipeline({"delay_ms": 100, "jitter": jitter, "jitter_ms": 40, "reorder": False, "duplicate": 0.1}, 3)
    out = _drive(p, 10000, gap_ns=100_000)  # 0.1 ms apart, jitter 40 ms: would reorder wildly
    times = [o[0] for o in out]
    assert times == sorted(times)
    assert [o[1] for o in out] == sorted(o[1] for o in out)


def test_reordering_when_reorder_is_true():
    p = build_pipeline({"delay_ms": 100, "jitter": "uniform", "jitter_ms": 40, "reorder": True}, 3)
    out = sorted(_drive(p, 1000, gap_ns=100_000))
    ids = [o[1] for o in out]
    assert ids != sorted(ids)


# -- rate and queue ---------------------------------------------------------------

def test_rate_spacing():
    # 20 frames of 119 bytes (+1 delimiter) handed over at once at 9600 bps
    p = Pipeline([Rate(9600)], 1)
    data = bytes(119)
    out = [p.send(Packet(i, data, 0), 0)[0][0] for i in range(20)]
    for n, t in enumerate(out):
        assert t * 9600 >= (n + 1) * 120 * 8 * 10**9  # departs at >= n * bits / rate
        assert t - (n + 1) * 100 * MS < 100  # and no later than rounding
    # an idle line sends at once
    assert p.send(Packet(99, data, 10**10), 10**10)[0][0] == 10**10 + 100 * MS


def test_rate_uart_bits_per_byte():
    p = build_pipeline({"rate_bps": 9600, "bits_per_byte": 10}, 1)
    (t, _), = p.send(Packet(0, bytes(95), 0), 0)
    assert t == 100 * MS  # 96 bytes at 960 bytes/s


def test_unlimited_queue_holds_more_than_1000_frames_in_flight():
    # netem's default limit (1,000 packets) would drop most of these
    p = build_pipeline({"delay_ms": 8000, "rate_bps": 10_000_000}, 1)
    out = _drive(p, 20000, gap_ns=100_000)  # 10,000 frames/s into an 8 s light delay
    assert not _dropped(out)
    assert len(out) == 20000
    in_flight_at_2s = sum(1 for o in out if o[1] * 100_000 <= 2 * 10**9 < o[0])
    assert in_flight_at_2s > 1000
    # and a backlog of thousands waiting for a slow line is kept too
    p = build_pipeline({"rate_bps": 9600}, 1)
    out = [p.send(Packet(i, bytes(50), 0), 0) for i in range(5000)]
    assert all(o[0][0].__class__ is int for o in out)


def test_limited_queue_drops_with_reason_queue():
    limit = 1000
    p = build_pipeline({"rate_bps": 9600, "queue_bytes": limit}, 1)
    data = bytes(99)  # 100 bytes on the line
    out = [p.send(Packet(i, data, 0), 0)[0] for i in range(30)]
    ok = [o for o in out if o[0].__class__ is int]
    assert len(ok) == 10  # exactly the limit's worth
    assert all(o[0] == QUEUE for o in out[10:])
    # once the line has drained, frames are accepted again
    later = 2 * 10**9
    assert p.send(Packet(99, data, later), later)[0][0].__class__ is int


def test_limited_queue_backlog_never_exceeds_the_limit():
    limit = 500
    rate = Rate(9600, limit)
    p = Pipeline([rate], 3)
    import random

    r = random.Random(1)
    now = 0
    for i in range(3000):
        now += r.randrange(0, 30 * MS)
        (w, pkt), = p.send(Packet(i, bytes(r.randrange(0, 200)), now), now)
        if w.__class__ is int:
            backlog_bytes = (w - now) * 9600 / 8e9
            assert backlog_bytes <= limit + 1e-6


# -- link state -------------------------------------------------------------------

def test_schedule_merges_and_finds_edges():
    s = Schedule([(50, 60), (10, 20), (15, 30)])
    assert list(s) == [(10, 30), (50, 60)]
    assert [s.contains(t) for t in (9, 10, 29, 30, 55, 60)] == [False, True, True, False, True, False]
    assert [s.next_edge_ns(t) for t in (0, 10, 29, 30, 59, 60)] == [10, 30, 30, 50, 60, None]
    with pytest.raises(ValueError):
        Schedule([(5, 5)])


def test_blackouts_drop_inside_the_windows():
    p = Pipeline([Delay(5 * MS)], 1, LinkState(blackouts=Schedule([(10 * MS, 20 * MS)])))
    out = _drive(p, 30)
    assert [o[1] for o in _dropped(out, BLACKOUT)] == list(range(10, 20))
    assert len(_delivered(out)) == 20
    assert p.state.next_change_ns(0) == 10 * MS and p.state.next_change_ns(12 * MS) == 20 * MS


def test_contact_windows_pass_only_inside():
    p = build_pipeline({"delay_ms": 1, "contacts_ms": [[5, 10], [20, 25]]}, 1)
    out = _drive(p, 30)
    assert sorted(o[1] for o in _delivered(out)) == list(range(5, 10)) + list(range(20, 25))
    assert len(_dropped(out, BLACKOUT)) == 20
    assert not p.state.is_up(0) and p.state.is_up(7 * MS)


def test_partition_cut_and_heal_and_precedence():
    st_ = LinkState(blackouts=Schedule([(0, 10)]))
    assert st_.down_reason(5) == BLACKOUT
    st_.cut()
    assert st_.down_reason(5) == PARTITION and st_.down_reason(50) == PARTITION
    st_.heal()
    assert st_.down_reason(50) is None and st_.down_reason(5) == BLACKOUT
    p = Pipeline([Delay(1000 * MS)], 1)
    (w1, _), = p.send(Packet(1, b"a", 0), 0)
    p.state.cut()
    assert p.send(Packet(2, b"b", 1), 1)[0][0] == PARTITION
    p.state.heal()
    assert p.send(Packet(3, b"c", 2), 2)[0][0] == 1000 * MS + 2
    assert w1 == 1000 * MS  # gating is at send time: in flight stays in flight


# -- partitions ---------------------------------------------------------------------

def _sym(cut):
    return all((b, a) in cut for a, b in cut) and all(a != b for a, b in cut)


def test_isolate():
    cut = L.isolate(3, [1, 2, 3, 4])
    assert cut == {(3, 1), (3, 2), (3, 4), (1, 3), (2, 3), (4, 3)}
    cluster = L.isolate({1, 2}, [1, 2, 3])
    assert cluster == {(1, 3), (3, 1), (2, 3), (3, 2)} and _sym(cluster)


def test_majority_minority():
    cut = L.majority_minority([1, 2, 3, 4, 5])
    assert cut == L.cut_between([[1, 2, 3], [4, 5]])
    assert len(cut) == 2 * 3 * 2 and _sym(cut)
    assert L.majority_minority([1, 2, 3, 4, 5], minority_size=1) == L.isolate(5, [1, 2, 3, 4, 5])
    with pytest.raises(ValueError):
        L.majority_minority([1, 2, 3, 4], minority_size=2)


def test_bridge():
    cut = L.bridge([1, 2], [3, 4], 9)
    assert cut == L.cut_between([[1, 2], [3, 4]])
    assert not any(9 in pair for pair in cut)
    assert L.bridge([1, 2, 9], [3, 9], 9) == L.cut_between([[1, 2], [3]])


def test_ring():
    nodes = [1, 2, 3, 4, 5]
    cut = L.ring(nodes)
    kept = {(a, b) for a in nodes for b in nodes if a != b} - cut
    assert kept == {(1, 2), (2, 1), (2, 3), (3, 2), (3, 4), (4, 3), (4, 5), (5, 4), (5, 1), (1, 5)}
    assert L.ring([1, 2, 3]) == set() and _sym(cut)


def test_by_cluster_and_cut_between():
    cut = L.by_cluster({1: "a", 2: "a", 3: "b", 4: "c"})
    assert cut == L.cut_between([[1, 2], [3], [4]])
    assert (1, 2) not in cut and (1, 3) in cut and (4, 3) in cut and _sym(cut)
    with pytest.raises(ValueError, match="two groups"):
        L.cut_between([[1, 2], [2, 3]])


# -- spec validation ------------------------------------------------------------------

def test_full_spec_builds_every_stage_in_order():
    p = build_pipeline(FULL, 1)
    assert [type(s).__name__ for s in p.stages] == ["Rate", "Loss", "GilbertElliott", "Duplicate", "Corrupt", "Delay"]
    assert build_pipeline({}, 1).stages == ()
    assert build_pipeline({"loss": None, "gilbert": None, "queue_bytes": None}, 1).stages == ()


@pytest.mark.parametrize("spec, words", [
    ({"delay": 5}, ["'delay'"]),
    ({"gilbert": {"p_good_to_bad": 0.1, "p_bad_to_good": 0.2, "burst": 3}}, ["gilbert.burst"]),
    ({"corrupt": {"flip": 0.1}}, ["corrupt.flip"]),
    ({"delay_ms": -1}, ["delay_ms", "-1"]),
    ({"jitter_ms": -3, "jitter": "normal"}, ["jitter_ms", "-3"]),
    ({"loss": 1.5}, ["loss", "1.5"]),
    ({"loss": -0.1}, ["loss", "-0.1"]),
    ({"loss": "0.1"}, ["loss", "'0.1'"]),
    ({"loss": True}, ["loss", "True"]),
    ({"duplicate": 2}, ["duplicate", "2"]),
    ({"corrupt": {"bitflip": 7}}, ["corrupt.bitflip", "7"]),
    ({"gilbert": {"p_good_to_bad": 0.1, "p_bad_to_good": 1.1}}, ["gilbert.p_bad_to_good", "1.1"]),
    ({"gilbert": {"p_good_to_bad": 0.1}}, ["gilbert.p_bad_to_good", "required"]),
    ({"jitter": "gaussian", "jitter_ms": 5}, ["jitter", "gaussian"]),
    ({"jitter": "none", "jitter_ms": 5}, ["jitter_ms", "5"]),
    ({"jitter": "normal"}, ["jitter", "normal"]),
    ({"reorder": "no"}, ["reorder", "'no'"]),
    ({"rate_bps": 0}, ["rate_bps", "0"]),
    ({"rate_bps": 9600, "queue_bytes": -5}, ["queue_bytes", "-5"]),
    ({"queue_bytes": 100}, ["queue_bytes", "rate_bps"]),
    ({"contacts_ms": [[10, 5]]}, ["contacts_ms", "[10, 5]"]),
    ({"blackouts_ms": 5}, ["blackouts_ms", "5"]),
])
def test_bad_specs_name_key_and_value(spec, words):
    with pytest.raises(ValueError) as e:
        build_pipeline(spec, 1, where="links.default: ")
    msg = str(e.value)
    assert msg.startswith("links.default: ")
    for w in words:
        assert w in msg


def test_spec_must_be_a_mapping():
    with pytest.raises(ValueError, match="mapping"):
        build_pipeline([("loss", 0.1)], 1)


def test_stage_constructors_validate():
    for bad in (lambda: Loss(2), lambda: Delay(-1), lambda: Delay(5, "wobbly", 1), lambda: Rate(0),
                lambda: Rate(0.0001), lambda: Rate(9600, 0), lambda: Corrupt(drop_max_bytes=0), lambda: GilbertElliott(0.1, -1)):
        with pytest.raises(ValueError):
            bad()


def test_flip_bits_is_a_bit_error_rate():
    import random

    rng = random.Random(4)
    data = bytes(1000)  # 8,000 bits
    flipped = 0
    for _ in range(20):
        out, n = S.flip_bits(data, 0.001, rng)
        assert len(out) == len(data) and _bitdiff(out, data) == n
        flipped += n
    assert 120 <= flipped <= 200  # 160 expected
    assert S.flip_bits(data, 0.0, rng) == (data, 0)
    out, n = S.flip_bits(b"\x00\xff", 1.0, rng)
    assert (out, n) == (b"\xff\x00", 16)
    with pytest.raises(ValueError):
        S.flip_bits(data, 2, rng)
