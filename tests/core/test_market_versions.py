# Protocol 4, the market's versioned layouts (docs/PROTOCOL.md "Versions"):
# BID carries the bidder's hw_gen, AWARD the lease's end in mission seconds.
# Each version reads its own frames and the ones moved to it (down by the
# ground's converter's rule, up by the node's defaults), a mixed region
# (firmware 4.x and 3.x) clears rounds with the old nodes' frames converted,
# and the new fields are used: a holder refuses an award whose end disagrees
# with its own slot clock. CPython and MicroPython.
from fedsim import FedSim
from node import msgs, refusal, wire
from node.ledger import end_s

SLOT = 60000
BID4 = (40, 0x2A00, 41, 0xFFFF, 24, 0x03, 1, 3, 1, 1, 2)  # ... flags, hw_gen
AWARD4 = (2, 40, 0x2A00, 42, 7, 5, 1, 1, 1, 1, 0, 43 * 60)  # ... flags, end_s


def test_the_market_s_new_layouts_only_append():
    for type, old_n in ((msgs.BID, 10), (msgs.AWARD, 11)):
        v3 = msgs.layout(type, 3)
        v4 = msgs.layout(type, 4)
        assert v3 is msgs.layout(type, 1) and v4 is not v3
        assert v4[2][:old_n] == v3[2] and len(v4[2]) == old_n + 1
        assert v4[2][old_n] in msgs.DEFAULTS
    # the rest of the market keeps one layout
    for type in (msgs.PRICES, msgs.ROUND_ACK, msgs.RELEASE, msgs.RECONCILE, msgs.RECONCILE_ACK):
        assert msgs.layout(type, 4) is msgs.layout(type, 1)


def test_each_version_reads_its_own_and_the_converted_frames():
    for type, values in ((msgs.BID, BID4), (msgs.AWARD, AWARD4)):
        p4 = msgs.pack(type, *values, version=4)
        assert msgs.unpack(type, p4, 4) == values  # its own
        for old in (1, 2, 3):
            down = msgs.to_version(type, p4, old)  # what a node at `old` sends, and the router's conversion
            assert len(down) == len(p4) - (1 if type == msgs.BID else 4)
            assert msgs.unpack(type, down, old) == values[:-1]  # the old node reads it
            try:
                msgs.unpack(type, p4, old)  # but never the new layout as is
            except wire.ProtocolError as e:
                assert e.code == wire.ERR_PAYLOAD
            else:
                assert False, "a version-%d node parsed a version-4 payload" % old
            up = msgs.unpack_as(type, down, old)  # a new node reading an old sender: the field "not said"
            assert up == values[:-1] + (0,)
        assert msgs.to_version(type, p4, 4) is p4
    prices = msgs.pack(msgs.PRICES, 2, 40, 0, 1, 1, 17, 1, 1, 1, 2, 1, 7, 1, 1, 12)
    assert msgs.to_version(msgs.PRICES, prices, 1) is prices  # unchanged layouts: the same bytes


def test_the_award_s_end_is_the_last_occurrence_s_end_in_mission_seconds():
    assert end_s(42, 1, 1, 1, 60000) == 43 * 60
    assert end_s(10, 4, 8, 3, 6 * 3600 * 1000) == (10 + 2 * 8 + 4) * 6 * 3600
    assert end_s(3, 1, 1, 1, 1500) == 6  # 4 slots of 1.5 s
    assert end_s(100000, 4, 4, 30, 6 * 3600 * 1000) == (100000 + 29 * 4 + 4) * 21600


def _sim(firmware, **kw):
    n = len(firmware)
    return FedSim(n, (1, 1, 1, 1, 2, 1, 1, 2), seed=2, slot_ms=SLOT, steps_per_slot=12, lead_ms=SLOT // 8,
                  delay_ms=500, horizon_slots=64, window_slots=40, firmware=firmware, **kw)


def test_a_region_of_mixed_firmware_clears_rounds_with_converted_frames():
    # the coordinator and half the traders run 4.x, the standby and the rest 3.x
    fw = [(4, 0), (3, 2), (4, 1), (3, 0), (4, 0), (3, 1)]
    sim = _sim(fw)
    by_version = {}

    def seen(t, src, dst, type, payload):
        if type in (msgs.BID, msgs.AWARD):
            key = (type, sim.regions[src].proto, len(payload))
            by_version[key] = by_version.get(key, 0) + 1

    sim.on_frame = seen
    sim.run_until(10 * SLOT)
    m = sim.market()
    assert m.rounds == 10 and sim.conflicts() == 0 and m.ledger.conflicts() == 0
    for tr in sim.traders():
        assert tr.awards > 0 and tr.refused[refusal.SHAPE] == 0, tr.id
        assert tr.refused[refusal.MALFORMED] == 0
    # each side sent its own layout: 4.x bids of 22 bytes, 3.x of 21, awards of 30 from the 4.x coordinator
    assert by_version.get((msgs.BID, 4, 22)) and by_version.get((msgs.BID, 3, 21))
    assert by_version.get((msgs.AWARD, 4, 30))
    assert not any(k[1] == 4 and k[2] in (21, 26) for k in by_version)
    assert sim.converted > 0  # the 4.x coordinator's awards, moved down for the 3.x holders and standby
    assert m.refused[refusal.CLASS] == 0 and sim.malformed == 0


def test_a_holder_refuses_an_award_whose_end_its_slot_clock_disagrees_with():
    sim = _sim([(4, 0)] * 4)
    sim.run_until(2 * SLOT)
    tr = sim.regions[3].trader
    rnd = sim.market().round
    res = 4  # the logistics resource (class 4, units 2: resources 4 and 5)
    first = rnd + 2
    good = end_s(first, 1, 1, 1, SLOT)
    before_shape, before_awards = tr.refused[refusal.SHAPE], tr.awards
    for end, awards in ((good + 60, 0), (good, 1)):  # a coordinator a slot off, then the right one
        p = msgs.pack(msgs.AWARD, 1, rnd, 0, first, res, 3, 1, 1, 1, 1, 0, end, version=4)
        sim.regions[3].receive(1, 3, msgs.AWARD, p, sim.now, 4)
        assert tr.refused[refusal.SHAPE] == before_shape + 1
        assert tr.awards == before_awards + awards  # the right one was taken
    # an older coordinator's award (no end) is taken on its slots, as before
    p3 = msgs.pack(msgs.AWARD, 1, rnd, 0, first + 1, res, 3, 1, 1, 1, 1, 0, version=3)
    sim.regions[3].receive(1, 3, msgs.AWARD, p3, sim.now, 3)
    assert tr.awards == before_awards + 2 and tr.refused[refusal.SHAPE] == before_shape + 1


def test_a_4x_coordinator_refuses_a_bid_whose_generation_the_roster_contradicts():
    sim = _sim([(4, 0)] * 4)  # gens 1, 2, 3, 1 (fedsim: 1 + i % 3)
    sim.run_until(SLOT // 2)
    m = sim.market()
    rnd = m.open_round()
    # node 4 (gen 1) says gen 3, for a feedstock type gen 1 could use too: the lie alone refuses it
    lie = msgs.pack(msgs.BID, rnd, 1 << 28, rnd + 2, 0xFFFF, 5, 0x01, 1, 1, 1, 0, 3, version=4)
    sim.regions[1].receive(4, 1, msgs.BID, lie, sim.now, 4)
    assert m.refused[refusal.CLASS] == 1, m.refused
    honest = msgs.pack(msgs.BID, rnd, (1 << 28) + 1, rnd + 2, 0xFFFF, 5, 0x01, 1, 1, 1, 0, 1, version=4)
    n = m.book.n
    sim.regions[1].receive(4, 1, msgs.BID, honest, sim.now, 4)
    assert m.refused[refusal.CLASS] == 1 and m.book.n == n + 1
