# Every other elector's half of a round: keeping a replica of the
# coordinator's ledger.
#
# The coordinator sends each other elector, in any order:
#   AWARD_REPLICA  each award of the round being prepared (kept in the book
#                  too, to send again if this elector must complete the round)
#   AWARD_SYNC     a full copy of the ledger, when the elector said it
#                  differs; each record carries the sync's id (round field),
#                  the ledger's base (seq) and the number of records (price)
#   PRICES PREPARE the round's award count and the coordinator's ledger digest
#   RELEASE        each release it applied
# and the elector answers ROUND_ACK with its own digest and record count once
# it has the whole round (and the whole copy), or at once when the PREPARE is
# repeated. A copy sent again under the same id fills in what was lost on the
# way; a new id starts over (the coordinator sends one when the elector holds
# as many records as it or more, so something there is stale). Equal digests
# from a majority of the electors are the commit point (node/market.py). An
# elector that acked a round with a matching digest holds `_rep_acked` and
# records the round as its ledger's (led_term, led_round): what a new
# coordinator's query learns (node/recovery.py), and what lets this elector,
# if it takes over with the most recent ledger, complete the round.
# Functions of the Market (`m`), so market.py stays the coordinator's.

from node import catalog as cat, msgs, refusal
from node.auction import F_ADDED, F_MERGED


def on_replica(m, src, fields, now_ms):
    """AWARD_REPLICA / AWARD_SYNC from the coordinator we follow."""
    term, rnd, seq, first, res, holder, price, span, period, count, flags, _ = fields
    idx = m.cfg.index(holder)
    if idx < 0 or cat.class_of(m.first_ids, res) < 0:
        m.refused[refusal.UNKNOWN_NODE if idx < 0 else refusal.RESOURCE] += 1
        return
    led = m.ledger
    if flags & msgs.AWARD_SYNC:
        if m._sync_key != (term, rnd):  # a new copy: start from nothing
            m._sync_key = (term, rnd)
            led.reset(seq)  # a sync record's seq field is the coordinator's ledger base
            m.led_round = -1  # half a copy knows nothing until the round's ack
            m._sync_want = price  # and its price field the number of records
        # The same copy again (some records were lost) adds what is missing;
        # a record already here is refused as busy, harmlessly.
        led.add(res, idx, first, span, period, count, False, True)
    else:
        if m._rep_key != (term, rnd):
            new_round(m, term, rnd)
        led.advance(rnd + 1)
        merge = bool(flags & msgs.AWARD_MERGE)
        added = led.add(res, idx, first, span, period, count, merge) >= 0
        row = m.book.add(idx, seq, first, res, price, 0, span, period, count,
                            (F_MERGED if merge else 0) | (F_ADDED if added else 0))
        if row < 0:
            m.refused[refusal.FULL] += 1
    maybe_ack(m, src, False)


def new_round(m, term, rnd):
    m.flush_awards()  # (a coordinator's committed round still going out keeps its rows)
    m._rep_key = (term, rnd)
    m.book.reset()
    m._rep_want = -1
    m._rep_acked = False


def on_prepare(m, src, fields, now_ms):
    term, rnd, digest, intent_seq, region, awards, status = fields[:7]
    if m._rep_key != (term, rnd):
        new_round(m, term, rnd)
    repeated = m._rep_want >= 0
    m._rep_want = awards
    m._rep_digest = digest
    m.ledger.advance(rnd + 1)
    maybe_ack(m, src, repeated)


def maybe_ack(m, src, force):
    """Ack once the round's replica and any sync in progress are all
    here; a repeated PREPARE gets an answer with whatever we have."""
    if m._rep_want < 0 or m._rep_key is None or (m._rep_acked and not force):
        return
    ready = m.book.n >= m._rep_want and m.ledger.n >= m._sync_want
    if not (ready or force):
        return
    term, rnd = m._rep_key
    d = m.ledger.digest()
    m._rep_acked = d == m._rep_digest
    if m._rep_acked and (m.led_round < 0 or (term, rnd) >= (m.led_term, m.led_round)):
        m.led_term = term  # what a new coordinator's query hears (node/recovery.py)
        m.led_round = rnd
    m.send(src, msgs.ROUND_ACK, msgs.pack(msgs.ROUND_ACK, term, rnd, d, min(m.ledger.n, 0xFFFF),
                                          msgs.ROUND_PREPARE))


def on_release_replica(m, src, fields, now_ms):
    seq, first, from_slot, res, holder, span, period, count = fields
    idx = m.cfg.index(holder)
    if idx < 0:
        m.refused[refusal.UNKNOWN_NODE] += 1
        return
    m.ledger.release(res, idx, first, span, period, count, from_slot)
