# An auditor's check of one round (docs/CONTAINMENT.md): re-run the clearing
# with this node's own lineage's implementation on the same inputs (the
# ledger as it was before the round, the round's bids) and compare with what
# the coordinator prepared and published: the ledger digest, the award count,
# each award, the class prices. A difference becomes the fields of an ACCUSE
# frame with its evidence (round, both digests, the first award and the first
# price that differ); agreement is None.
#
# PeerReview's witness, in the market's terms: the clearing is a
# deterministic function of (ledger, bids), so any node that has them can
# replay it. An auditor of another lineage replays it with code written
# independently (node/lineage.py), so a defect in one implementation shows
# as a disagreement rather than being repeated by every checker.
#
# Pure: no I/O, no clock. The scratch ledger and book are sized once (the
# region's dimensions) and reused round after round.

from node import catalog as cat, lineage, msgs
from node.auction import F_ALL, F_WON, NO_RESOURCE, BidBook
from node.ledger import Ledger


def copy_ledger(dst, src):
    """Make dst (same dimensions) hold exactly what src holds."""
    dst.base = src.base
    dst.n = src.n
    dst.busy[:] = src.busy
    dst.res[:] = src.res
    dst._first[:] = src._first
    dst.span[:] = src.span
    dst.period[:] = src.period
    dst.count[:] = src.count


def copy_rows(dst, src, n):
    """Rows 0..n-1 of book src into book dst, as bid (no clearing marks)."""
    dst.reset()
    for i in range(n):
        dst.add(src.node[i], src.seq[i], src.first[i], src.hint[i], src.price[i], src.mask[i], src.span[i],
                src.period[i], src.count[i], src.flags[i] & F_ALL)


class Auditor:
    """One auditor's re-run of rounds. `lineage_id`: this node's lineage
    (its clearing); ledger dimensions as the region's Ledger; max_bids as
    the region's book."""

    def __init__(self, node_id, lineage_id, n_res, horizon, per_holder, n_holders, max_bids):
        self.id = node_id
        self.lineage = lineage_id
        self.clear = lineage.clearing(lineage_id)
        self.ledger = Ledger(n_res, horizon, per_holder, n_holders)
        self.book = BidBook(max_bids)
        self.prices = [0] * cat.N_CLASSES
        self.audited = 0  # rounds re-run
        self.disagreed = 0  # rounds that gave an accusation

    def check(self, term, rnd, accused, region, before, bids, n, units, first_ids, claimed_digest,
              claimed_awards, claimed_prices, claimed_book=None):
        """Re-run round `rnd` from the ledger `before` (base not yet moved to
        rnd + 1) and the n bid rows of `bids` (as bid, uncleared). The
        claimed result: the ledger digest and award count the coordinator
        prepared, its eight class prices and, when known, its cleared book
        (its awards, row for row). Returns ACCUSE field values, or None."""
        led = self.ledger
        copy_ledger(led, before)
        led.advance(rnd + 1)
        book = self.book
        copy_rows(book, bids, n)
        won = self.clear(book, n, led, units, first_ids, self.prices)
        self.audited += 1
        own_digest = led.digest()
        reason = 0
        if own_digest != claimed_digest:
            reason |= msgs.ACCUSE_DIGEST
        pc = 0
        for c in range(cat.N_CLASSES):
            if self.prices[c] != claimed_prices[c]:
                reason |= msgs.ACCUSE_PRICES
                pc = c
                break
        if won != claimed_awards:
            reason |= msgs.ACCUSE_AWARDS
        holder = 0
        c_res = o_res = NO_RESOURCE
        c_first = o_first = 0
        if claimed_book is not None:
            for i in range(n):
                mine = book.flags[i] & F_WON
                theirs = claimed_book.flags[i] & F_WON
                r_mine = book.hint[i] if mine else NO_RESOURCE
                r_theirs = claimed_book.hint[i] if theirs else NO_RESOURCE
                f_mine = book.first[i] if mine else 0
                f_theirs = claimed_book.first[i] if theirs else 0
                if r_mine != r_theirs or f_mine != f_theirs:
                    holder = book.node[i]
                    c_res, o_res, c_first, o_first = r_theirs, r_mine, f_theirs, f_mine
                    if not reason:
                        reason = msgs.ACCUSE_AWARDS
                    break
        if not reason:
            return None
        self.disagreed += 1
        return (term, rnd & 0xFFFFFFFF, accused, region, reason, self.lineage, claimed_digest & 0xFFFFFFFF,
                own_digest & 0xFFFFFFFF, min(claimed_awards, 0xFFFF), min(won, 0xFFFF), holder, c_res, o_res,
                c_first & 0xFFFFFFFF, o_first & 0xFFFFFFFF, pc, claimed_prices[pc], self.prices[pc])


def has_evidence(fields):
    """An ACCUSE's fields show a difference for every reason it gives: an
    accusation that does not is refused (refusal.EVIDENCE)."""
    reason = fields[4]
    if not reason or reason & ~msgs.ACCUSE_ALL:
        return False
    if reason & msgs.ACCUSE_DIGEST and fields[6] == fields[7]:
        return False
    if reason & msgs.ACCUSE_AWARDS and fields[8] == fields[9] and fields[11] == fields[12] \
            and fields[13] == fields[14]:
        return False
    if reason & msgs.ACCUSE_PRICES and (fields[16] == fields[17] or fields[15] >= cat.N_CLASSES):
        return False
    return True
