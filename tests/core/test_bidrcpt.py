# A receipt for every bid (node/bidcopy.py: Held, on_bid, receipt;
# docs/CONTAINMENT.md "A receipt for every bid"), a real Trader and a real
# Market joined by hand, one frame at a time: a BID lost on its way is
# resent (the same bytes) and receipted, and only then copied to the auditors;
# a BID whose receipt was lost is taken once and receipted again; a bid the
# coordinator refuses is never receipted nor copied, and its resends stop; a
# region without auditors sends no receipts and holds nothing. (The trader's
# own needs would bid too: the tests drive Held.poll, not Trader.poll;
# tests/core/test_bidrcpt_region.py runs it all in a region.) CPython and
# MicroPython.
from node import auction, bidcopy, msgs, needs, refusal
from node.config import MarketConfig
from node.market import Market
from node.msgs_tiers import BID_RECEIPT
from node.rng import Rng
from node.strategy import Intent
from node.trader import Trader

UNITS = (2, 2, 1, 0, 1, 1, 0, 0)
COORD = 1
AUDITORS = (2, 3)
BIDDER = 5
SLOT = 60000  # lead_ms 7,500: a held bid is resent every 1,875 ms, until 52,500 (round 0's close)


def _cfg(auditors=AUDITORS, max_bids=64):
    return MarketConfig(roster=range(1, 10), electors=[1, 2, 3], auditors=auditors, units=UNITS, slot_ms=SLOT,
                        horizon_slots=32, window_slots=16, max_bids=max_bids)


class Link:
    """What the trader and the market send, kept until the test delivers or loses it."""

    def __init__(self):
        self.frames = []

    def send(self, dst, type, payload):
        self.frames.append((dst, type, bytes(payload)))

    def take(self, type):
        out = [f for f in self.frames if f[1] == type]
        self.frames = [f for f in self.frames if f[1] != type]
        return out


def _pair(auditors=AUDITORS, max_bids=64):
    cfg = _cfg(auditors, max_bids)
    mk, tl = Link(), Link()
    m = Market(COORD, cfg, Intent(), mk.send)
    m.lead(1, 2, 0, [1] * 8)
    for e in (2, 3):  # the other electors answer the new coordinator's query: it opens round 0
        m.on_ack(e, (1, 0xFFFFFFFF, 0, 0, msgs.ROUND_QUERY), 0)
    mk.frames = []
    tr = Trader(BIDDER, 2, 0, cfg, Rng(3), tl.send, 0)
    tr.coord, tr.term = COORD, 1
    return m, mk, tr, tl


def _bid(tr, now_ms, price=10):
    needs.send_bid(tr, now_ms, needs.G_FEED, False, 0, 1, 1, 1, 1, price, auction.F_ASAP, auction.NO_RESOURCE)


def _deliver_bids(m, tl, now_ms):
    for dst, t, p in tl.take(msgs.BID):
        assert dst == COORD
        f = msgs.unpack(msgs.BID, p, msgs.VERSION)
        if m.cfg.auditors:  # as node/region.py hands it on
            bidcopy.on_bid(m, BIDDER, f, now_ms)
        else:
            m.on_bid(BIDDER, f, now_ms)


def _deliver_receipts(tr, mk):
    for dst, t, p in mk.take(BID_RECEIPT):
        assert dst == BIDDER
        bidcopy.on_receipt(tr, COORD, msgs.unpack(BID_RECEIPT, p))


def test_a_bid_lost_on_its_way_is_resent_receipted_and_only_then_copied():
    m, mk, tr, tl = _pair()
    _bid(tr, 1000)
    first = tl.take(msgs.BID)  # lost on the way to the coordinator
    assert len(first) == 1 and tl.take(msgs.BID_SEEN) == []  # no copy before a receipt
    gap = tr.held.gap_ms
    assert tr.next_deadline_ms() <= 1000 + gap
    tr.held.poll(1000 + gap - 1)
    assert tl.take(msgs.BID) == []
    tr.held.poll(1000 + gap)
    again = [f for f in tl.frames if f[1] == msgs.BID]
    assert again == first and tr.held.resent == 1  # the same bytes
    _deliver_bids(m, tl, 1000 + gap)
    assert m.book.n == 1
    receipts = [msgs.unpack(BID_RECEIPT, p) for d, t, p in mk.frames if t == BID_RECEIPT]
    seq = m.book.seq[0]
    crc = bidcopy.digest(seq, m.book.first[0], m.book.hint[0], m.book.price[0], m.book.mask[0], m.book.span[0],
                         m.book.period[0], m.book.count[0], m.book.flags[0])
    assert receipts == [(0, seq, crc)]  # round, seq and the digest as the row carries it
    _deliver_receipts(tr, mk)
    seen = [(d, msgs.unpack(msgs.BID_SEEN, p)) for d, t, p in tl.take(msgs.BID_SEEN)]
    assert seen == [(a, (0, seq, COORD, crc)) for a in AUDITORS if a != COORD]
    assert tr.held.bids == [] and tr.held.receipted == 1 and tr.held.other_digest == 0
    tr.held.poll(1000 + 5 * gap)
    assert tl.frames == []  # receipted: never sent again


def test_a_lost_receipt_gets_the_bid_taken_once_and_receipted_again():
    m, mk, tr, tl = _pair()
    _bid(tr, 1000)
    _deliver_bids(m, tl, 1000)
    assert len(mk.take(BID_RECEIPT)) == 1  # the receipt is lost
    tr.held.poll(1000 + tr.held.gap_ms)
    _deliver_bids(m, tl, 1000 + tr.held.gap_ms)
    assert m.book.n == 1 and m.bids_in == 1 and m.refused[refusal.REPLAY] == 0  # taken once, no replay counted
    assert len([f for f in mk.frames if f[1] == BID_RECEIPT]) == 1  # receipted again
    _deliver_receipts(tr, mk)
    assert len(tl.take(msgs.BID_SEEN)) == len(AUDITORS) and tr.held.receipted == 1
    bidcopy.on_receipt(tr, COORD, (0, m.book.seq[0], 0))  # a second receipt: counted, nothing sent
    assert tr.held.stray == 1 and tl.frames == []
    bidcopy.on_receipt(tr, 7, (0, m.book.seq[0], 0))  # not an elector: refused
    assert tr.refused[refusal.UNEXPECTED] == 1


def test_a_refused_bid_is_never_receipted_nor_copied_and_its_resends_stop():
    m, mk, tr, tl = _pair(max_bids=1)
    bidcopy.on_bid(m, 7, (0, 1, 1, auction.NO_RESOURCE, 50, 6, 1, 1, 1, auction.F_ASAP, 2), 900)  # the book's one row
    mk.frames = []
    _bid(tr, 1000, price=60)  # dearer: a book without auditors would give it 7's row
    t = 1000
    for k in range(bidcopy.RESENDS + 3):
        _deliver_bids(m, tl, t)
        t += tr.held.gap_ms if tr.held.bids else 0
        tr.held.poll(t)
    assert m.book.n == 1 and m.book.node[0] == m.cfg.index(7)  # refused `full`, never displacing a receipted bid
    assert m.refused[refusal.FULL] == 1 + bidcopy.RESENDS
    assert mk.take(BID_RECEIPT) == [] and tl.take(msgs.BID_SEEN) == []
    assert tr.held.bids == [] and tr.held.resent == bidcopy.RESENDS and tr.held.given_up == 1


def test_no_resend_after_the_round_closed():
    m, mk, tr, tl = _pair()
    close = SLOT - m.cfg.lead_ms
    _bid(tr, close - 100)  # round 0's bid, just before its close
    tl.take(msgs.BID)
    tr.held.poll(close - 100 + tr.held.gap_ms)
    assert tl.frames == [] and tr.held.resent == 0 and tr.held.given_up == 1 and tr.held.bids == []


def test_a_region_without_auditors_sends_no_receipts_and_holds_nothing():
    m, mk, tr, tl = _pair(auditors=())
    _bid(tr, 1000)
    _deliver_bids(m, tl, 1000)
    assert m.book.n == 1 and mk.frames == [] and tr.held is None
    assert tl.frames == []  # the BID went, and nothing else: no copies
