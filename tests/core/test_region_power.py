# mpy-heap: 256K (two Nodes alive at once: the one before the cut, kept to compare with, and the one booted from its blob; a board holds one)
# One Node's market section through a power cut (node/durable.py): an
# elector's ledger, its (term, round) and a holder's leases come back from
# the saved blob exactly, before the node answers anything; a damaged
# section is reported and nothing of it kept; the board journal carries the
# section whole so the ground replays the exact boot. The whole region
# through power cuts: tests/core/test_region_powercut.py (CPython).
# CPython and MicroPython.
from node import durable, msgs, wire
from node.config import Config, MarketConfig
from node.node import Node, restore_all
from runtime.journal import Journal

UNITS = (1, 1, 1, 1, 2, 1, 1, 2)
J_KEPT = msgs.J_NAMES.index("kept")  # journal kinds 9, 10 (runtime/journal.py)
J_KEPT_WORD = msgs.J_NAMES.index("kept_word")


def _cfg(members=(1,)):
    m = MarketConfig(roster=[1, 2, 3], electors=[1, 2, 3], units=UNITS, slot_ms=12000, lead_ms=3000,
                     horizon_slots=32, window_slots=16, max_bids=16)
    return Config(members=list(members), market=m)


def _elector_with_a_ledger():
    n = Node(1, _cfg(), seed=3)
    m = n.region.market
    led = m.ledger
    led.advance(4)
    assert led.add(0, 0, 5, 1, 1, 1) >= 0
    assert led.add(2, 1, 6, 2, 4, 3) >= 0  # a periodic lease of holder index 1 (node 2)
    assert led.add(9, 2, 4, 2, 2, 1) >= 0  # its only occurrence under way at the cut
    led.advance(5)
    m.led_term, m.led_round = 7, 4
    n.region.trader.leases = [[3, 6, 1, 1, 1, 1, False], [4, 8, 2, 3, 2, 2, True]]
    n.region.trader.awards = 2
    return n


def test_an_elector_keeps_its_ledger_and_round_across_a_power_cut():
    n = _elector_with_a_ledger()
    m = n.region.market
    blob = n.take_persist()
    assert blob is not None
    assert n.take_persist() is None  # nothing changed since: no second write
    terms, kept = durable.split(blob)
    assert len(terms) == 28 and kept is not None  # node and seat term/vote, then the section
    assert len(kept) == durable.HEAD_LEN + 3 * 9 + 2 * 11 + 4
    assert len(restore_all(blob)) == 2
    b = Node(1, _cfg(), seed=4, saved=blob)  # power back on
    m2 = b.region.market
    assert (m2.led_term, m2.led_round, m2.ledger.base) == (7, 4, 5)
    assert m2.ledger.n == 3 and m2.ledger.digest() == m.ledger.digest()
    for res, slot in ((2, 6), (2, 10), (2, 14), (9, 5)):
        assert m2.ledger.is_busy(res, slot)
    assert not m2.ledger.is_busy(2, 8) and not m2.ledger.is_busy(0, 6)
    assert b.region.trader.leases == n.region.trader.leases
    assert b.take_persist() is None  # restored is kept: no write at boot for it
    m2.led_round = 5  # the next round held: written once
    blob2 = b.take_persist()
    assert durable.split(blob2)[1] != kept
    assert b.take_persist() is None


def test_half_a_copy_never_replaces_the_ledger_on_flash():
    n = _elector_with_a_ledger()
    blob = n.take_persist()
    m = n.region.market
    digest = m.ledger.digest()
    m.ledger.reset(9)  # a copy under way: knows nothing until it is whole
    m.led_round = -1
    n.term += 1
    n._dirty = True  # a term change writes the last whole section again
    blob2 = n.take_persist()
    assert durable.split(blob2)[1] == durable.split(blob)[1]
    # A lease released meanwhile is written beside that ledger: a crash
    # then must not hand the holder back what it gave up (chaos
    # containment-auditors seed 31: the same slot released twice).
    tr = n.region.trader
    kept_lease = tr.leases[1]
    del tr.leases[0]
    tr.released += 1
    blob3 = n.take_persist()
    assert blob3 is not None and n.take_persist() is None
    b = Node(1, _cfg(), seed=4, saved=blob3)  # power back on
    assert b.region.trader.leases == [kept_lease]
    m3 = b.region.market
    assert (m3.led_term, m3.led_round, m3.ledger.n) == (7, 4, 3) and m3.ledger.digest() == digest
    m.led_round = 6  # the copy is whole: the ledger is written again, with the leases
    assert durable.split(n.take_persist())[1] == durable.pack(m, tr)


def test_a_damaged_section_is_reported_and_nothing_of_it_kept():
    n = _elector_with_a_ledger()
    n.term = 5
    n._dirty = True
    blob = bytearray(n.take_persist())
    terms, kept = durable.split(bytes(blob))
    blob[len(terms) + durable.HEAD_LEN] ^= 0x40  # a bit flips in the first record
    b = Node(1, _cfg(), seed=4, saved=bytes(blob))
    m = b.region.market
    assert m.led_round == -1 and m.ledger.n == 0 and b.region.trader.leases == []
    assert b.term == 5  # the term/vote part is intact and kept
    out = b.poll(0)
    assert [line for _dst, line in out if b"market state: bad crc; ledger and leases not restored" in line]
    try:
        durable.check(bytes(blob[len(terms):]))
        raise AssertionError("a damaged section passed the check")
    except ValueError as e:
        assert "bad crc" in str(e)


def test_a_section_that_does_not_fit_the_config_is_refused():
    n = _elector_with_a_ledger()
    kept = durable.split(n.take_persist())[1]
    small = MarketConfig(roster=[1, 2, 3], electors=[1, 2, 3], units=(1, 1, 1, 1, 1, 1, 1, 1), slot_ms=12000,
                         lead_ms=3000, horizon_slots=32, window_slots=16, max_bids=16)
    b = Node(1, Config(members=[1], market=small), seed=4)
    try:
        durable.restore(kept, b.region.market, b.region.trader)
        raise AssertionError("a record on a resource this region lacks was restored")
    except ValueError as e:
        assert "does not fit" in str(e)
    assert b.region.market.ledger.n == 0 and b.region.market.led_round == -1


def test_a_holder_keeps_its_leases():
    cfg = MarketConfig(roster=[1, 2, 3], electors=[1], units=UNITS, slot_ms=12000, lead_ms=3000,
                       horizon_slots=32, window_slots=16, max_bids=16)
    n = Node(2, Config(members=[2], market=cfg), seed=3)
    assert n.region.market is None
    assert n.take_persist() is None
    n.region.trader.leases = [[1, 9, 1, 1, 1, 0, False]]
    n.region.trader.awards = 1
    blob = n.take_persist()
    assert len(durable.split(blob)[0]) == 14
    b = Node(2, Config(members=[2], market=cfg), seed=5, saved=blob)
    assert b.region.trader.leases == [[1, 9, 1, 1, 1, 0, False]]


def test_the_journal_carries_the_section_whole():
    n = _elector_with_a_ledger()
    blob = n.take_persist()
    kept = durable.split(blob)[1]
    j = Journal(1)
    j.boot(restore_all(blob), 9, kept)
    entries = []
    for line in j.take(True):
        f = wire.decode(line[:-1])
        entries.extend(msgs.unpack_journal(f.payload)[1])
    kinds = [e[0] for e in entries]
    assert kinds[:8] == [msgs.J_BOOT, msgs.J_SEED, msgs.J_TERM, msgs.J_VOTE, msgs.J_COUNTER, msgs.J_TERM,
                         msgs.J_VOTE, msgs.J_COUNTER]
    assert kinds[8] == J_KEPT and entries[8][2] == len(kept)
    words = bytearray()
    for e in entries[9:]:
        assert e[0] == J_KEPT_WORD
        words.extend(e[2].to_bytes(4, "little"))
    assert bytes(words[:len(kept)]) == kept and len(words) - len(kept) < 4


def test_a_persist_that_runs_out_of_heap_is_retried_whole():
    # The board shell survives a MemoryError in take_persist (runtime/shell.py):
    # nothing may be marked written until the blob is whole, or the ledger
    # and the term/vote would never reach flash (docs/HEAP.md).
    n = _elector_with_a_ledger()
    n.term = 9  # a term to persist too
    n._dirty = True
    real = durable.pack

    def no_heap(m, tr):
        raise MemoryError("memory allocation failed, allocating 752 bytes")

    durable.pack = no_heap
    try:
        try:
            n.take_persist()
        except MemoryError:
            pass
        else:
            raise AssertionError("no MemoryError")
    finally:
        durable.pack = real
    blob = n.take_persist()  # the next try: everything still due
    assert blob is not None
    assert restore_all(blob)[0][0] == 9
    terms, kept = durable.split(blob)
    assert kept is not None and len(kept) == durable.HEAD_LEN + 3 * 9 + 2 * 11 + 4
    assert n.take_persist() is None  # and then written once


def test_a_node_that_boots_late_does_not_replay_production_from_mission_0():
    # Node builds its Region before it reads a clock; its trader's first poll
    # then starts production at the step that poll falls in. Before, a node
    # rebooted at 10 slots ran every step since mission 0 at that first poll,
    # with fresh stocks, as if it had produced while it was off.
    cfg = MarketConfig(roster=[1, 2, 3], electors=[1], units=UNITS, slot_ms=12000, lead_ms=3000,
                       horizon_slots=32, window_slots=16, max_bids=16)
    on_time = Node(2, Config(members=[2], market=cfg), seed=3)
    late = Node(2, Config(members=[2], market=cfg), seed=3)
    on_time.region.trader.poll(0)  # the step mission 0 falls in
    late.region.trader.poll(10 * 12000)  # the step 10 slots in falls in
    assert on_time.region.trader.prod.produced > 0
    assert late.region.trader.prod.produced < 2 * on_time.region.trader.prod.produced  # one step, not 80
    late.region.trader.poll(10 * 12000 + 12000)  # a slot on: its steps run as usual
    assert late.region.trader.prod.produced > on_time.region.trader.prod.produced
