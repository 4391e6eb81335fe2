# Auditors and quarantine in the core (node/audit.py, node/quarantine.py):
# an auditor of another lineage that re-runs an honest round finds nothing,
# and finds a defective lineage's round with evidence; an accusation needs
# two different auditors, is refused without evidence or from a non-auditor,
# and a quarantine never exceeds the cluster's cap nor takes its last
# standby. CPython and MicroPython.
from node import audit, auction, catalog as cat, msgs, refusal
from node.audit import defective
from node.market import clearing
from node import quarantine as q
from node.auction import NO_RESOURCE, BidBook
from node.ledger import Ledger
from node.rng import Rng

UNITS = (2, 2, 1, 0, 1, 1, 0, 0)
IDS = cat.starts(UNITS)
HOLDERS = 8


def _round(seed):
    """A ledger before round 9 (some leases held) and the round's bids."""
    rng = Rng(seed)
    led = Ledger(IDS[cat.N_CLASSES], 64, 6, HOLDERS)
    led.advance(5)
    for _ in range(10):
        r = rng.below(IDS[cat.N_CLASSES])
        led.add(r, rng.below(HOLDERS), 10 + rng.below(12), 1, 1, 1)
    book = BidBook(32)
    for _ in range(6 + rng.below(20)):
        book.add(rng.below(HOLDERS), 0, 10 + rng.below(4), NO_RESOURCE, 1 + rng.below(50), 1 << rng.below(6),
                 1, 1 + rng.below(3), 1, auction.F_FLEX if rng.below(2) else 0)
    return led, book


def _coordinate(led, book, clear_fn):
    """What a coordinator of some lineage prepares: (digest, awards, prices, its cleared book)."""
    mine = Ledger(led.n_res, led.horizon, led.per_holder, led.n_holders)
    audit.copy_ledger(mine, led)
    mine.advance(10)
    cleared = BidBook(32)
    audit.copy_rows(cleared, book, book.n)
    prices = [0] * cat.N_CLASSES
    won = clear_fn(cleared, cleared.n, mine, UNITS, IDS, prices)
    return mine.digest(), won, prices, cleared


def _auditor(lin):
    return audit.Auditor(31, lin, IDS[cat.N_CLASSES], 64, 6, HOLDERS, 32)


def test_an_auditor_of_the_other_lineage_agrees_with_an_honest_round():
    aud = _auditor(1)
    for seed in range(30):
        led, book = _round(seed)
        digest, won, prices, cleared = _coordinate(led, book, clearing(0))
        assert aud.check(3, 9, 1, 1, led, book, book.n, UNITS, IDS, digest, won, prices, cleared) is None
    assert aud.audited == 30 and aud.disagreed == 0


def test_a_defective_lineage_is_caught_with_evidence():
    aud = _auditor(1)
    caught = 0
    for seed in range(30):
        led, book = _round(seed)
        digest, won, prices, cleared = _coordinate(led, book, defective(clearing(0)))
        fields = aud.check(3, 9, 1, 1, led, book, book.n, UNITS, IDS, digest, won, prices, cleared)
        if fields is None:
            continue
        caught += 1
        assert audit.has_evidence(fields)
        assert fields[0] == 3 and fields[1] == 9 and fields[2] == 1 and fields[5] == 1
        msgs.unpack(msgs.ACCUSE, msgs.pack(msgs.ACCUSE, *fields))  # fits the wire layout
    assert caught >= 15  # the dropped last bid usually mattered
    assert aud.disagreed == caught


def test_an_accusation_without_evidence_fails_the_check():
    ok = (3, 9, 1, 1, audit.REASON_DIGEST, 1, 5, 6, 2, 2, 0, NO_RESOURCE, NO_RESOURCE, 0, 0, 0, 1, 1)
    assert audit.has_evidence(ok)
    assert not audit.has_evidence(ok[:4] + (0,) + ok[5:])  # no reason
    assert not audit.has_evidence(ok[:6] + (5, 5) + ok[8:])  # "digest differs", equal digests
    assert not audit.has_evidence(ok[:4] + (audit.REASON_PRICES,) + ok[5:])  # equal prices
    assert not audit.has_evidence(ok[:4] + (0x40,) + ok[5:])  # unknown reason bit


def _table(cluster_sizes=(5, 5), auditors=(3, 8)):
    roster = []
    clusters = {}
    n = 1
    for k, size in enumerate(cluster_sizes):
        for _ in range(size):
            roster.append(n)
            clusters[n] = k + 1
            n += 1
    return q.Quarantine(roster, clusters, auditors, probation_ms=1000)


def test_two_different_auditors_quarantine_one_alone_never():
    t = _table()
    assert t.accuse(3, 1, 9, True, 0) == q.SUSPECT
    for r in range(9, 30):  # the same auditor, over and over: still one witness
        t.accuse(3, 1, r, True, 0)
        t.tick(r, 0)
    assert not t.is_quarantined(1) and t.electable(1)
    assert t.accuse(8, 1, 30, True, 0) == q.QUARANTINED
    assert t.is_quarantined(1) and not t.electable(1) and t.quarantines == 1


def test_forged_and_evidence_free_accusations_are_refused_and_counted():
    t = _table()
    assert t.accuse(4, 1, 9, True, 0) == -1  # 4 is no auditor
    assert t.refused[refusal.FORGED] == 1
    assert t.accuse(3, 1, 9, False, 0) == -1
    assert t.refused[refusal.EVIDENCE] == 1
    assert t.state[0] == q.NORMAL


def test_accusations_expire_without_a_second_auditor():
    t = _table()
    t.accuse(3, 2, 9, True, 0)
    t.tick(14, 0)
    assert t.state[1] == q.NORMAL
    t.accuse(8, 2, 15, True, 0)  # too late to pair with 3's: a new first witness
    assert t.state[1] == q.SUSPECT


def test_the_cap_and_the_last_standby_are_never_exceeded():
    t = _table(cluster_sizes=(5,))
    for node in (1, 2):
        t.accuse(3, node, 9, True, 0)
        t.accuse(8, node, 9, True, 0)
    assert t.is_quarantined(1)
    assert not t.is_quarantined(2)  # 2 of 5 is over a third
    assert t.state[1] == q.SUSPECT and t.refused[refusal.QUARANTINE_CAP] == 1
    small = _table(cluster_sizes=(3,), auditors=(1, 2))
    small.accuse(1, 3, 9, True, 0)
    small.accuse(2, 3, 9, True, 0)
    assert small.is_quarantined(3)  # 1 of 3; two electable left
    assert small.byzantine(1, "bad tags", 0) is False  # would leave one electable: the last standby stays


def test_probation_then_back_and_ground_reinstates():
    t = _table()
    t.byzantine(6, "stale-term claims", 0)
    assert t.is_quarantined(6)
    t.tick(9, 999)
    assert t.is_quarantined(6)
    t.tick(9, 1000)
    assert t.state[5] == q.PROBATION and not t.electable(6) and not t.is_quarantined(6)
    t.tick(9, 2000)
    assert t.state[5] == q.NORMAL
    t.byzantine(7, "bad-frame storm", 0)
    assert t.reinstate(7, 5)
    assert t.electable(7)
    names = [e[1] for e in t.take_events()]
    assert names == ["quarantined", "probation", "normal", "quarantined", "normal"]


def test_the_state_table_refuses_what_it_does_not_know():
    try:
        q.next_state(q.NORMAL, q.EV_SERVED)
    except q.QuarantineError:
        return
    raise AssertionError("served from normal")



def test_the_held_out_nodes_survive_a_reboot_and_probation_restarts():
    # What an elector keeps on flash (node/durable.py writes pack() when
    # `changes` moves): the nodes held out, quarantined or on probation; a
    # suspect is one auditor's word and is not kept.
    t = _table()
    assert t.changes == 0
    t.byzantine(6, "stale-term claims", 0)
    t.accuse(3, 4, 1, True, 0)  # suspect: no change to what is kept
    assert t.changes == 1 and t.state[3] == q.SUSPECT
    t.tick(0, 1000)  # 6 served: on probation
    assert t.changes == 2
    t.byzantine(2, "stale-term claims", 1000)
    assert t.state[5] == q.PROBATION and t.state[1] == q.QUARANTINED and t.changes == 3
    blob = t.pack()
    fresh = _table()  # the elector after the reboot
    assert fresh.load(blob) == [(2, "quarantined"), (6, "probation")]
    assert not fresh.electable(6) and fresh.is_quarantined(2) and fresh.state[3] == q.NORMAL
    assert fresh.changes == 0 and fresh.quarantines == 0 and fresh.take_events() == []
    fresh.tick(1, 500000)  # probation restarts at the first tick after the boot
    assert fresh.state[1] == q.QUARANTINED and fresh.state[5] == q.PROBATION
    fresh.tick(1, 500999)
    assert fresh.state[1] == q.QUARANTINED
    fresh.tick(1, 501000)
    assert fresh.state[1] == q.PROBATION and fresh.state[5] == q.NORMAL


def test_a_damaged_quarantine_section_restores_nothing():
    t = _table()
    t.byzantine(6, "stale-term claims", 0)
    blob = bytearray(t.pack())
    for bad, why in ((blob[:-1], "bytes"), (blob[:-1] + bytes([blob[-1] ^ 1]), "crc"), (b"MK" + blob[2:], "bytes")):
        fresh = _table()
        try:
            fresh.load(bytes(bad))
        except ValueError as e:
            assert why in str(e), e
        else:
            raise AssertionError("loaded a damaged table")
        assert fresh.electable(6)


class _Cfg:
    lead_ms = 1000
    slot_ms = 12000
    region = 2


class _Elector:
    """What audit.tick reads and calls of a node/region.py Region."""

    def __init__(self, table):
        self.cfg = _Cfg()
        self.quarantine = table
        self.q_tick_ms = 0
        self.auditor = None
        self.h_boot = 1
        self.h_again = {}
        self.sent = []

    def _send(self, dst, t, payload):
        self.sent.append((dst, t, payload))


def test_a_booted_elector_tells_its_clusters_in_cluster_order_on_every_interpreter():
    # cluster numbers whose set iterates out of order: CPython by hash slot (9, 130, 5, 70),
    # PyPy by insertion (130, 5, 70, 9), MicroPython by its own table: each order went on the wire
    clusters = {1: 130, 2: 5, 3: 70, 4: 9, 5: 130, 6: 5}
    el = _Elector(q.Quarantine([1, 2, 3, 4, 5, 6], clusters, (1, 2), probation_ms=1000))
    audit.tick(el, 0)
    held = [(dst, msgs.unpack(msgs.HELD, payload)) for dst, t, payload in el.sent if t == msgs.HELD]
    assert [dst & 0xFFF for dst, _ in held] == [5, 9, 70, 130]
    assert all(fields[1] == 0 for _, fields in held)  # "I hold nobody" (node 0)
