"""A commit sends a big round's awards over several polls (node/market.py
AWARDS_PER_POLL, docs/HEAP.md): the same frames in the same order as all at
once, PRICES COMPLETE last, and bids of the next round kept meanwhile."""

from node import msgs
from node.auction import NO_RESOURCE
from node.config import MarketConfig
from node.market import AWARDS_PER_POLL, Market
from node.strategy import Intent

N = 41  # roster: the elector (1) and 40 bidders


def _market():
    mcfg = MarketConfig(roster=list(range(1, N + 1)), electors=[1], units=(8, 1, 1, 1, 1, 1, 1, 1),
                        slot_ms=60000, horizon_slots=32, window_slots=16, max_bids=64)
    out = []
    m = Market(1, mcfg, Intent(), lambda dst, t, p: out.append((dst, t, bytes(p))))
    m.lead(1, 0, 0, [1] * 8)
    m.poll(0)  # one elector: recovered at once
    for node in range(2, N + 1):  # 40 bids, 8 units a slot over slots 2..6: all win
        m.on_bid(node, (0, 1, 2 + node % 5, NO_RESOURCE, 10, 0x01, 1, 1, 1, 0, 0), 1000)
    del out[:]
    return m, out


def _close(m):
    t = m.close_ms(m.round)
    m.poll(t)
    return t


def _kinds(frames):
    return [("award" if t == msgs.AWARD else "complete") for _, t, _ in frames if t in (msgs.AWARD, msgs.PRICES)]


def test_a_big_round_goes_out_over_polls_frame_for_frame_as_at_once():
    paced, out = _market()
    t = _close(paced)
    assert paced.awarded == N - 1  # committed: every bid won
    first = _kinds(out)
    assert first == ["award"] * AWARDS_PER_POLL  # one poll's worth, no COMPLETE yet
    assert paced.next_deadline_ms() == 0  # the rest is due at once
    polls = 0
    while paced.next_deadline_ms() == 0:
        paced.poll(t)
        polls += 1
    assert polls == (N - 1 + AWARDS_PER_POLL - 1) // AWARDS_PER_POLL - 1
    assert _kinds(out) == ["award"] * (N - 1) + ["complete"]
    assert paced.book.n == 0  # the committed rows left the book

    at_once, out2 = _market()
    _close(at_once)
    at_once.flush_awards()
    assert out2 == out  # same bytes, same order, same destinations


def test_bids_that_come_while_awards_go_out_stay_for_the_next_round():
    m, out = _market()
    t = _close(m)
    assert m.book.n == N - 1  # the committed rows are still being sent from
    m.on_bid(2, (m.round, 2, 9, NO_RESOURCE, 10, 0x01, 1, 1, 1, 0, 0), t)
    assert m.book.n == N
    while m.next_deadline_ms() == 0:
        m.poll(t)
    assert m.book.n == 1 and m.book.node[0] == 1 and m.book.first[0] == 9  # roster index of node 2
    assert _kinds(out) == ["award"] * (N - 1) + ["complete"]


def test_stepping_down_sends_what_was_committed():
    m, out = _market()
    _close(m)
    m.step_down()
    assert _kinds(out) == ["award"] * (N - 1) + ["complete"]
    assert m.next_deadline_ms() is None and m.book.n == 0
