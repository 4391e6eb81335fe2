# Auditors see the bids (node/bidcopy.py): a bid whose digest an auditor got
# is found in the coordinator's rows (this round or the next), or is
# reported dropped; a row that differs from the digest is reported altered;
# loss (a digest that came too late, a round not collected, a bid that went
# to another coordinator) is no evidence. The digest is the same bytes on
# both runtimes. CPython and MicroPython.
from node import bidcopy
from node.auction import F_FLEX, NO_RESOURCE, BidBook

C = 1  # the coordinator audited
T = 3  # its term


def _bid(book, node, seq, price=10):
    book.add(node, seq, 20, NO_RESOURCE, price, 1, 1, 2, 1, F_FLEX)


def _digest(node, seq, price=10):
    return bidcopy.digest(seq, 20, NO_RESOURCE, price, 1, 1, 2, 1, F_FLEX)


def _rows(*bids):
    b = BidBook(16)
    for node, seq in bids:
        _bid(b, node, seq)
    return b


def test_the_digest_is_fixed_bytes():
    assert bidcopy.digest(0x2A06, 41, 0xFFFF, 24, 1, 1, 3, 1, 1) == 0x6B0FEFA6
    assert _digest(2, 7) != _digest(2, 8) and _digest(2, 7) != _digest(2, 7, price=11)


def test_a_bid_in_the_rows_is_no_accusation():
    s = bidcopy.Seen(8)
    s.add(2, 5, 7, C, _digest(2, 7))
    assert s.check(C, T, 5, _rows((2, 7), (3, 1)), 2) is None
    assert s.n == 0 and s.dropped == s.altered == 0


def test_a_bid_cleared_a_round_late_is_no_accusation():
    s = bidcopy.Seen(8)
    s.add(2, 5, 7, C, _digest(2, 7))
    assert s.check(C, T, 5, _rows((3, 1)), 1) is None  # it reached the coordinator after the close
    assert s.check(C, T, 6, _rows((2, 7)), 1) is None
    assert s.n == 0 and s.dropped == 0


def test_a_bid_in_neither_round_is_dropped():
    s = bidcopy.Seen(8)
    s.add(2, 5, 7, C, _digest(2, 7))
    s.add(4, 5, 9, C, _digest(4, 9))
    assert s.check(C, T, 5, _rows((4, 9)), 1) is None
    assert s.check(C, T, 6, _rows((3, 1)), 1) == (2, 7, _digest(2, 7), 0)
    assert s.dropped == 1 and s.n == 0


def test_an_altered_row_is_reported_with_both_digests():
    s = bidcopy.Seen(8)
    s.add(2, 5, 7, C, _digest(2, 7))
    rows = BidBook(4)
    _bid(rows, 2, 7, price=1)  # the coordinator cut its price
    assert s.check(C, T, 5, rows, 1) == (2, 7, _digest(2, 7), _digest(2, 7, price=1))
    assert s.altered == 1


def test_loss_is_no_evidence():
    # A digest that arrived after its round was checked is not judged.
    s = bidcopy.Seen(8)
    assert s.check(C, T, 5, _rows((3, 1)), 1) is None
    s.add(2, 5, 7, C, _digest(2, 7))
    assert s.check(C, T, 6, _rows((3, 2)), 1) is None and s.n == 0
    # A round not collected between: the next check does not follow it.
    s = bidcopy.Seen(8)
    s.add(2, 5, 7, C, _digest(2, 7))
    assert s.check(C, T, 5, _rows((3, 1)), 1) is None
    assert s.check(C, T, 7, _rows((3, 2)), 1) is None and s.n == 0
    # A bid that went to another coordinator (lost with its book at a takeover).
    s = bidcopy.Seen(8)
    s.add(2, 5, 7, 9, _digest(2, 7))
    assert s.check(C, T, 5, _rows((3, 1)), 1) is None
    assert s.check(C, T, 6, _rows((3, 2)), 1) is None and s.dropped == 0
    # Another term of the same coordinator (it lost and won the seat again).
    s = bidcopy.Seen(8)
    s.add(2, 5, 7, C, _digest(2, 7))
    assert s.check(C, T, 5, _rows((3, 1)), 1) is None
    assert s.check(C, T + 1, 6, _rows((3, 2)), 1) is None and s.dropped == 0


def test_the_table_is_bounded_and_duplicates_count_once():
    s = bidcopy.Seen(2)
    s.add(2, 5, 7, C, 1)
    s.add(2, 5, 7, C, 1)
    s.add(3, 5, 8, C, 1)
    s.add(4, 5, 9, C, 1)
    assert s.n == 2 and s.full == 1
