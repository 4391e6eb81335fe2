# A new regional coordinator's first job: start from the most recent ledger
# a majority of the electors hold, so nothing ever committed is sold again.
#
# Every ledger knows the (term, round) of the last round in it (Market.
# led_term, led_round: set when an elector acks a round whose digest it
# matches, or when the coordinator closes one; -1 after a boot or while a
# copy is under way: "I know nothing"). A round is committed only once a
# majority of electors hold it (node/market.py), and an elector that answers
# a new coordinator's query follows the new term, so it acks nothing for an
# older one afterwards. Any two majorities share an elector, so the most
# recent (term, round) among a majority's answers is a ledger with every
# committed round in it (Paxos' phase 1; Raft's election restriction reaches
# the same place by refusing votes instead). Terms compare first: a round
# closed in an older term but never committed loses to any later term's.
#
#   lead      PRICES QUERY to every other elector; ROUND_ACK status QUERY
#             answers (round = led_round, 0xFFFFFFFF for none; digest = led_term)
#   majority  once a majority (this elector included) have answered with a
#             ledger: the most recent is ours -> Market.recovered(); another
#             elector's -> PRICES FETCH to it; it sends its ledger as AWARD
#             SYNC records (round = the fetch id) and PRICES SYNC with the
#             count and digest; when ours matches -> adopt, recovered()
#   retry     every ack_timeout_ms: query those that have not answered, fetch
#             again; after 4 fetches, start the query over
#   catch-up  an elector that knows nothing (a boot) says so to the coordinator
#             it follows, unasked; an OPEN coordinator sends it a copy and the
#             PREPARE of the round its ledger holds at once
#   fallback  when so many electors answered "I know nothing" (power cuts)
#             that no majority can ever know: after waiting up to cutoff_ms
#             for the silent ones, the best ledger there is, plus holders'
#             claims (ROUND_RESYNC); docs/MARKET.md names this exposure.
# Functions of the Market (`m`), like node/replica.py.

from micropython import const

from node import msgs, refusal, wire
from node.auction import F_ADDED
from node.ledger import end_s

_NONE = const(0xFFFFFFFF)  # led_round on the wire: this ledger knows nothing
_IDLE = const(0)  # market.IDLE, OPEN, RECOVERING (market.py imports this module)
_OPEN = const(1)
_RECOVERING = const(3)
_FETCH_TRIES = const(4)


def init(m):
    """The Market's fields for this module, at its construction."""
    # What this elector's ledger holds: the (term, round) of the last round
    # in it, as the coordinator that closed it numbered it; led_round -1:
    # unknown (a fresh boot, or a copy under way).
    m.led_term = 0
    m.led_round = -1
    m._answers = {}  # elector -> (led_term, led_round) it reported; led_round -1: knows nothing
    m._fetch_from = msgs.NO_NODE
    m._fetch_id = 0
    m._fetch_key = None  # (term, round) of the ledger being fetched
    m._fetch_want = -1  # records the copy has (its end marker), -1 before the marker
    m._fetch_digest = 0
    m._fetch_started = False
    m._tries = 0
    m._fallback = False
    m._wait_until = 0  # when a recovery that cannot reach a majority stops waiting for the silent
    m._asked = None  # (coordinator, term) told that this ledger knows nothing


def start(m, now_ms):
    m._answers = {}
    m._fallback = False
    m._wait_until = 0
    m._tries = 0
    m._fetch_from = msgs.NO_NODE
    m.resync_until = 0
    m._answers[m.id] = (m.led_term, m.led_round)
    _query(m, now_ms)
    decide(m, now_ms)


def _query(m, now_ms):
    for e in m.others:
        a = m._answers.get(e)
        if a is None or a[1] < 0:
            m._announce(m.round, msgs.ROUND_QUERY, e)
    m._retry_ms = now_ms + m.cfg.ack_timeout_ms


def retry(m, now_ms):
    if m._fetch_from != msgs.NO_NODE:
        m._tries += 1
        if m._tries < _FETCH_TRIES:
            _fetch(m, m._fetch_from, now_ms)
            return
        # The elector with the best ledger went quiet: ask everyone again.
        m._fetch_from = msgs.NO_NODE
        m._tries = 0
        m._answers = {m.id: (m.led_term, m.led_round)}
    _query(m, now_ms)
    if m._wait_until and m._fetch_from == msgs.NO_NODE:
        decide(m, now_ms)  # the wait for silent electors may be over


def on_answer(m, src, fields, now_ms):
    term, rnd, led_term, records, status = fields
    if m.state == _IDLE or term != m.term or src not in m.others:
        m.refused[refusal.UNEXPECTED] += 1
        return
    if m.state != _RECOVERING:
        if rnd == _NONE:
            # An elector that lost its ledger (a power cut) says so unasked: a
            # copy at once, and the PREPARE of the round our ledger holds, so
            # it knows again within a round trip, not at the next close.
            m._copy(src, 0, now_ms)
            if m.state == _OPEN and m.led_round >= 0:
                m._announce(m.led_round, msgs.ROUND_PREPARE, src, 0, m.ledger.digest())
        return  # (else a late answer to our query: we have recovered already)
    m._answers[src] = (led_term, -1 if rnd == _NONE else rnd)
    if m._fetch_from == msgs.NO_NODE:
        decide(m, now_ms)


def decide(m, now_ms):
    """Enough answers to know the most recent ledger of a majority? Then
    take it (ours, or fetch it); if a majority can never know, fall back."""
    best = None
    who = msgs.NO_NODE
    knowers = 0
    for e in m._answers:
        key = m._answers[e]
        if key[1] < 0:
            continue
        knowers += 1
        if best is None or key > best or (key == best and e == m.id):
            best, who = key, e
    unanswered = len(m.others) + 1 - len(m._answers)
    if knowers < m.majority:
        if knowers + unanswered >= m.majority:
            return  # wait: a majority may still answer
        if unanswered:
            # No majority can ever know; the electors still silent may hold
            # the best ledger there is: wait for them up to cutoff_ms.
            if not m._wait_until:
                m._wait_until = now_ms + m.cfg.cutoff_ms
            if now_ms < m._wait_until:
                return
        m._fallback = True
    if who == msgs.NO_NODE or who == m.id or best == (m.led_term, m.led_round):
        m.recovered(now_ms)
    else:
        m._fetch_key = best
        _fetch(m, who, now_ms)


def _fetch(m, src, now_ms):
    m._fetch_from = src
    m._fetch_id = (m._fetch_id + 1) & 0xFFFFFFFF
    m._fetch_want = -1
    m._fetch_started = False
    m.fetches += 1
    m._announce(m._fetch_id, msgs.ROUND_FETCH, src)
    m._retry_ms = now_ms + m.cfg.ack_timeout_ms


def send_copy(m, dst, term, copy_id):
    """Every record of m's ledger to dst as AWARD SYNC (a coordinator's copy
    for an elector, or an elector's answer to a FETCH)."""
    led = m.ledger
    roster = m.cfg.roster
    total = min(led.n, 0xFFFF)
    for i in range(led.max):
        if led.count[i]:
            first, span, period, count = led.first(i), led.span_of(i), led.period[i], led.count[i]
            m.send(dst, msgs.AWARD, msgs.pack(
                msgs.AWARD, term, copy_id, led.base, first, led.res_of(i), roster[led.holder(i)], total, span, period,
                count, msgs.AWARD_SYNC, end_s(first, span, period, count, m.cfg.slot_ms), version=msgs.VERSION))
    return total


def settle(m, now_ms):
    """After recovery: complete the round in flight if this ledger acked it
    (send its awards again), drop half a replica no majority held, ask for
    holders' claims on a fallback, void the rounds no majority held, open
    the next round."""
    book = m.book
    now_round = m._round_at(now_ms)
    if m.round < now_round and now_ms < (m.round + 1) * m.cfg.slot_ms:
        now_round = m.round  # it closed while we recovered, but its slots have not begun: clear it late
    last = m.led_round
    announced = False
    if m._rep_key is not None and m._rep_key[0] == m.led_term:
        rnd = m._rep_key[1]
        if m._rep_acked and rnd == last:
            # Acked: the old coordinator may have sent some awards. Send them all.
            for i in range(book.n):
                m._send_award(i, rnd, msgs.AWARD_RESEND)
            m.completed += 1
            m._announce(rnd, msgs.ROUND_COMPLETE, wire.ADDR_BROADCAST, book.n)
            announced = True
        elif rnd > last:
            # Half a replica of a round no majority held: never committed.
            for i in range(book.n):
                if book.flags[i] & F_ADDED:
                    m.ledger.release(book.hint[i], book.node[i], book.first[i], book.span[i], book.period[i],
                                     book.count[i], 0)
    book.reset()
    m._rep_key = None
    if m._fallback:
        # No majority of electors remembers (power cuts): keep the best
        # ledger there is and add what holders claim before selling.
        if last < 0:
            m.ledger.reset(now_round + 1)
        m.resync_until = now_ms + 2 * m.cfg.lead_ms
        m._announce(now_round - 1 if now_round else 0, msgs.ROUND_RESYNC, wire.ADDR_BROADCAST)
        announced = True  # and no verdict on rounds nobody left can vouch for
    else:
        # Rounds the clock says closed after the most recent ledger of a
        # majority were held by no majority, so never committed: void.
        for rnd in range(last + 1, now_round):
            m._announce(rnd, msgs.ROUND_VOID, wire.ADDR_BROADCAST)
            m.voided += 1
            announced = True
    if not announced:
        m._announce(last if last >= 0 else 0, msgs.ROUND_COMPLETE, wire.ADDR_BROADCAST)
    m.round = now_round if now_round > last else last + 1


# ---- the electors' side ------------------------------------------------


def ask_copy(m, coordinator, term):
    """A replica that knows nothing (fresh from a boot) tells the coordinator
    it follows, once per coordinator and term: the same answer as to a QUERY."""
    if m._asked == (coordinator, term):
        return
    m._asked = (coordinator, term)
    m.send(coordinator, msgs.ROUND_ACK, msgs.pack(msgs.ROUND_ACK, term, _NONE, 0, 0, msgs.ROUND_QUERY))


def on_query(m, src, fields, now_ms):
    """A new coordinator (the one we follow) asks how recent our ledger is."""
    if m.state != _IDLE:  # we follow a newer term now: whatever we ran is over
        m.step_down()
    m.send(src, msgs.ROUND_ACK, msgs.pack(msgs.ROUND_ACK, fields[0], m.led_round & 0xFFFFFFFF, m.led_term,
                                          min(m.ledger.n, 0xFFFF), msgs.ROUND_QUERY))


def on_fetch(m, src, fields, now_ms):
    """It wants our ledger: every record, then PRICES SYNC with the count and digest."""
    term, copy_id = fields[0], fields[1]
    total = send_copy(m, src, term, copy_id)
    p = m.prices
    m.send(src, msgs.PRICES, msgs.pack(msgs.PRICES, term, copy_id, m.ledger.digest(), 0, m.cfg.region, total,
                                       msgs.ROUND_SYNC, p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7]))


# ---- the new coordinator receiving the copy -------------------------------


def fetching(m, src, term, copy_id):
    return m.state == _RECOVERING and src == m._fetch_from and term == m.term and copy_id == m._fetch_id


def on_copy(m, src, fields, now_ms):
    term, rnd, base, first, res, holder, price, span, period, count, flags, _ = fields
    idx = m.cfg.index(holder)
    if idx < 0:
        m.refused[refusal.UNKNOWN_NODE] += 1
        return
    if not m._fetch_started:
        m._fetch_started = True
        m.ledger.reset(base)
        m.led_round = -1  # half a copy knows nothing yet
    m.ledger.add(res, idx, first, span, period, count, False, True)
    _maybe_adopt(m, now_ms)


def on_copy_end(m, src, fields, now_ms):
    m._fetch_want = fields[5]
    m._fetch_digest = fields[2]
    if m._fetch_want == 0 and not m._fetch_started:
        m._fetch_started = True
        m.ledger.reset(m.round + 1)
        m.led_round = -1
    _maybe_adopt(m, now_ms)


def _maybe_adopt(m, now_ms):
    if m._fetch_want < 0 or m.ledger.n < m._fetch_want or m.ledger.digest() != m._fetch_digest:
        return
    m.led_term, m.led_round = m._fetch_key
    m._fetch_from = msgs.NO_NODE
    m._rep_key = None
    m.recovered(now_ms)
