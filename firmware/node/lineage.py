# Which implementation of each common-mode-critical step a node runs, by its
# software lineage (Config.lineage, one byte): one small table, so placement
# rules (docs/CONTAINMENT.md) know which lineages really differ.
#
# Two independently written clearings exist today: A (node/auction.py) and
# B (node/auction_b.py). Lineage L runs CLEARING[L % len(CLEARING)]; B is
# imported only by the electors that run it (3 KB of bytecode on a small heap).

from micropython import const

from node import auction

CLEAR_A = const(0)
CLEAR_B = const(1)
CLEARING = (CLEAR_A, CLEAR_B)  # lineage % 2 -> implementation
IMPL_NAMES = ("A", "B")


def clearing_impl(lineage):
    """The clearing implementation id lineage `lineage` runs."""
    return CLEARING[lineage % len(CLEARING)]


def clearing(lineage):
    """The clear(book, n, ledger, units, first_ids, prices) function."""
    if clearing_impl(lineage) == CLEAR_B:
        from node import auction_b

        return auction_b.clear
    return auction.clear


def defective(clear_fn):
    """A clearing with a planted common-mode defect, for containment runs
    only (scenario `faults: lineage_defect`, docs/CONTAINMENT.md): it forgets
    the last bid of the book, a classic off-by-one. Never used unless a
    scenario or a test asks for it."""

    def clear(book, n, ledger, units, first_ids, prices):
        return clear_fn(book, n - 1 if n else 0, ledger, units, first_ids, prices)

    return clear
