# The market's capacity (docs/MARKET.md "Capacity"): the defaults follow the
# roster (today's sizes up to 700 nodes, the compact market above), and what
# happens at the limits is a market outcome, counted: a bid beyond the book
# is refused (FULL), an award its holder's record slots cannot hold is not
# made (Ledger.no_room), in both clearings; never an exception. CPython and
# MicroPython.
from node import auction, auction_b, catalog as cat, refusal
from node.auction import F_FLEX, F_WON, NO_RESOURCE, BidBook
from node.config import MarketConfig
from node.ledger import Ledger
from node.market import Market
from node.strategy import Intent

UNITS = (2, 0, 0, 0, 0, 0, 0, 0)


def _cfg(n, **kw):
    return MarketConfig(roster=range(1, n + 1), electors=[1], units=UNITS, slot_ms=60000, horizon_slots=32,
                        window_slots=16, **kw)


def test_the_defaults_keep_todays_sizes_up_to_700_nodes_and_are_compact_above():
    assert (_cfg(9).max_bids, _cfg(9).leases_per_node) == (64, 6)
    assert (_cfg(673).max_bids, _cfg(673).leases_per_node) == (689, 6)  # the library's largest region
    assert (_cfg(700).max_bids, _cfg(700).leases_per_node) == (716, 6)
    assert (_cfg(701).max_bids, _cfg(701).leases_per_node) == (256, 1)
    assert (_cfg(1000).max_bids, _cfg(1000).leases_per_node) == (256, 1)
    c = _cfg(1000, max_bids=300, leases_per_node=2)  # the keys still say what a region wants
    assert (c.max_bids, c.leases_per_node) == (300, 2)


def _round(clear, per_holder, bids, held=()):
    """Clear one round of `bids` (node, first, span, period, count, price, flags) over a ledger of
    `per_holder` record slots a node, after the leases `held` (res, node, first)."""
    ids = cat.starts(UNITS)
    led = Ledger(ids[cat.N_CLASSES], 32, per_holder, 4)
    led.advance(10)
    for res, node, first in held:
        assert led.add(res, node, first, 1, 1, 1) >= 0
    book = BidBook(8)
    for node, first, span, period, count, price, flags in bids:
        book.add(node, 0, first, NO_RESOURCE, price, 0x01, span, period, count, flags)
    prices = [0] * cat.N_CLASSES
    won = clear(book, book.n, led, UNITS, ids, prices)
    return book, led, won


def test_an_award_the_holders_records_cannot_hold_is_not_made_and_is_counted():
    for clear in (auction.clear, auction_b.clear):
        # node 0 holds slot 11 of resource 0 in its one record; it and node 1 bid for slot 12 (a
        # losing bid above a winner's would set the class's price above it: node 1 bids more)
        book, led, won = _round(clear, 1, [(0, 12, 1, 1, 1, 20, 0), (1, 12, 1, 1, 1, 50, 0)], held=[(0, 0, 11)])
        assert won == 1 and not book.flags[0] & F_WON and book.flags[1] & F_WON
        assert led.no_room == 1 and led.n == 2 and led.conflicts() == 0
        assert [led.lease(i)[1] for i in range(led.max) if led.count[i]] == [0, 1]
        # a pre-allocation (several occurrences) needs 3 record slots a node: with 1 it is refused, counted
        book, led, won = _round(clear, 1, [(2, 12, 1, 4, 3, 30, F_FLEX)])
        assert won == 0 and led.no_room == 1 and led.n == 0
        # with today's 6 the same rounds place both
        book, led, won = _round(clear, 6, [(0, 12, 1, 1, 1, 20, 0), (2, 12, 1, 4, 3, 30, F_FLEX)],
                                held=[(0, 0, 11)])
        assert won == 2 and led.no_room == 0


def test_a_compact_market_refuses_the_bids_beyond_its_book_and_counts_them():
    mcfg = _cfg(720)  # compact: 256 bid rows, 1 record a node
    m = Market(1, mcfg, Intent(), lambda dst, t, p: None)
    m.lead(1, 0, 0, [1] * 8)
    for node in range(1, 301):
        m.on_bid(node, (0, 1, 2, NO_RESOURCE, 10, 0x01, 1, 1, 1, 0, 0), 0)
    assert m.book.n == 256 and m.bids_in == 256 and m.refused[refusal.FULL] == 300 - 256
    assert m.ledger.max == 720 and m.ledger.no_room == 0


def test_a_full_holder_does_not_make_its_shape_hopeless_for_the_others():
    # The compact market's ~104 awards a round (docs/MARKET.md "Capacity"): the dearest bid's
    # holder still holds a lease in its one record slot, so it loses (no_room); the bids of the
    # same shape after it, other holders with free slots, must still be placed, not skipped as
    # a shape that found no resource (only a resource the ledger lacks makes a shape hopeless).
    for clear in (auction.clear, auction_b.clear):
        # node 0 holds slot 11 of resource 0 (UNITS: resources 0 and 1); it bids 50 for slot 12,
        # nodes 1 and 2 bid 40 and 30 with the same shape: two resources, two winners
        book, led, won = _round(clear, 1, [(0, 12, 1, 1, 1, 50, 0), (1, 12, 1, 1, 1, 40, 0),
                                           (2, 12, 1, 1, 1, 30, 0)], held=[(0, 0, 11)])
        assert led.no_room == 1 and won == 2, (clear, won)
        assert not book.flags[0] & F_WON and book.flags[1] & F_WON and book.flags[2] & F_WON
        assert led.conflicts() == 0
        # a pre-allocation of a holder without room (its 3 slots full) is its own loss too: the same
        # shape from another holder with room still places
        book, led, won = _round(clear, 3, [(0, 12, 1, 4, 3, 50, F_FLEX), (1, 12, 1, 4, 3, 40, F_FLEX)],
                                held=[(0, 0, 10), (0, 0, 11), (1, 0, 11)])
        assert led.no_room == 1 and won == 1 and book.flags[1] & F_WON and not book.flags[0] & F_WON, clear
        # and a shape that found no resource is still hopeless: a third bid for slot 12 loses untried
        book, led, won = _round(clear, 6, [(0, 12, 1, 1, 1, 50, 0), (1, 12, 1, 1, 1, 40, 0),
                                           (2, 12, 1, 1, 1, 30, 0), (3, 12, 1, 1, 1, 20, 0)])
        assert won == 2 and led.no_room == 0 and not book.flags[2] & F_WON and not book.flags[3] & F_WON
