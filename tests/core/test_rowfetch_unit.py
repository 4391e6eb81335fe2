# The missing AUDIT_BID rows, asked for and resent (node/rowfetch.py), one
# step at a time: the auditor's AUDIT_MISS frames map exactly the rows it
# lacks (gaps and the trailing rows alike), a round is asked for at most
# MAX_ASKS times, the coordinator resends exactly the mapped rows of the
# round it kept and nothing for another round or to a non-auditor, and the
# resent rows complete the auditor's round. CPython and MicroPython.
from node import audit, catalog as cat, msgs, refusal, rowfetch
from node.auction import NO_RESOURCE, BidBook
from node.ledger import Ledger

UNITS = (2, 2, 1, 0, 1, 1, 0, 0)
IDS = cat.starts(UNITS)
HOLDERS = 8
ROWS = 40
COORD = 5
AUD = 31


class Cfg:
    """The few MarketConfig fields rowfetch reads."""

    def __init__(self):
        self.roster = [10 + i for i in range(HOLDERS)]
        self.auditors = (COORD, AUD)


class Side:
    """An in-process stand-in for a region and its market (rowfetch's glue
    reads only these): what it sends is recorded."""

    def __init__(self, book=None):
        self.cfg = Cfg()
        self.sent = []
        self.refused = [0] * (refusal.UNEXPECTED + 1)
        self.book = book
        self.round = 9
        self.market = self

    def send(self, dst, type, payload):
        self.sent.append((dst, type, msgs.unpack(type, payload)))

    _send = send


def _book():
    b = BidBook(64)
    for i in range(ROWS):
        b.add(i % HOLDERS, 100 + i, 12 + i % 5, NO_RESOURCE, 1 + i, 1, 1, 2, 1, 0)
    return b


def _auditor():
    a = audit.Auditor(AUD, 1, IDS[cat.N_CLASSES], 64, 6, HOLDERS, 64, Cfg().roster)
    return a, Ledger(IDS[cat.N_CLASSES], 64, 6, HOLDERS)


def _coordinator():
    c = Side(_book())
    rowfetch.keep(c, ROWS, 0x1234)
    return c


def _rows(c, skip):
    """The coordinator's rows as AUDIT_BID fields, but those in skip (lost)."""
    k = c.kept.book
    out = []
    for i in range(ROWS):
        if i not in skip:
            out.append((9, ROWS, i, c.cfg.roster[k.node[i]], 0x1234, k.seq[i], k.first[i], k.hint[i], k.price[i],
                        k.mask[i], k.span[i], k.period[i], k.count[i], k.flags[i]))
    return out


def test_an_ask_maps_exactly_the_missing_rows_and_the_resend_completes_the_round():
    c = _coordinator()
    a, replica = _auditor()
    lost = (3, 35, 37, 38, 39)  # a gap in each window, and the last rows
    for f in _rows(c, lost):
        assert a.on_bid_copy(2, f, f[3] - 10, replica)
    a.on_prepare(2, 9, 1, 1, [0] * 8)
    assert not a.ready()
    me = Side()
    assert rowfetch.ask(me, a, COORD)
    asks = [(dst, f) for dst, t, f in me.sent if t == rowfetch.AUDIT_MISS]
    assert asks == [(COORD, (9, 0, 1 << 3)), (COORD, (9, 32, (1 << 3) | (1 << 5) | (1 << 6) | (1 << 7)))]
    for _, f in asks:
        rowfetch.on_miss(c, AUD, f)
    resent = [f for dst, t, f in c.sent if t == msgs.AUDIT_BID]
    assert sorted(f[2] for f in resent) == list(lost) and c.kept.resent == len(lost)
    assert all(dst == AUD for dst, _, _ in c.sent)
    for f in resent:
        assert f in _rows(c, ())  # byte for byte the row as first sent
        assert a.on_bid_copy(2, f, f[3] - 10, replica)
    assert a.ready() and a.asked == 2


def test_asks_are_bounded_and_a_late_row_does_not_reopen_a_round():
    c = _coordinator()
    a, replica = _auditor()
    for f in _rows(c, (0,)):
        a.on_bid_copy(2, f, f[3] - 10, replica)
    a.on_prepare(2, 9, 1, 1, [0] * 8)
    me = Side()
    for _ in range(rowfetch.MAX_ASKS):
        assert rowfetch.ask(me, a, COORD)
    assert not rowfetch.ask(me, a, COORD)
    assert len(me.sent) == rowfetch.MAX_ASKS
    # The next round starts: round 9 stays unjudged, and its row 0 coming late is not taken.
    nxt = (10, 1, 0, 10, 0x1234, 1, 12, NO_RESOURCE, 1, 1, 1, 2, 1, 0)
    assert a.on_bid_copy(2, nxt, 0, replica)
    assert a.unjudged == 1 and a.asks == 0
    assert not a.on_bid_copy(2, _rows(c, ())[0], 0, replica)
    assert a._key == (2, 10)


def test_the_coordinator_resends_only_its_kept_round_and_only_to_auditors():
    c = _coordinator()
    rowfetch.on_miss(c, AUD, (8, 0, 0xFFFFFFFF))  # a round it no longer keeps
    assert c.sent == [] and c.kept.stale == 1
    rowfetch.on_miss(c, 77, (9, 0, 1))  # not an auditor
    assert c.sent == [] and c.refused[refusal.UNEXPECTED] == 1
    rowfetch.on_miss(c, AUD, (9, 32, 0xFFFFFFFF))  # rows past the round's 40 are not sent
    assert sorted(f[2] for _, _, f in c.sent) == list(range(32, ROWS))
