# A trader's stocks survive its reboot (node/durable.py's stock trailer):
# feed, parts, the output buffer and a daughter's progress are physical, so a
# node that reboots resumes with the stocks it saved at its last slot start,
# not with fresh ones; a first boot gets the initial stocks; a torn or
# foreign section is ignored (initial stocks) and counted. The blob is
# written at most once per slot for them. CPython and MicroPython.
from node import durable, stocks
from node import production as pr
from node.config import Config, MarketConfig
from node.node import Node

UNITS = (1, 1, 1, 1, 2, 1, 1, 2)
SLOT_MS = 12000
STEPS = 12


def _cfg():
    m = MarketConfig(roster=[1, 2, 3], electors=[1], units=UNITS, slot_ms=SLOT_MS, lead_ms=3000,
                     horizon_slots=32, window_slots=16, max_bids=16, steps_per_slot=STEPS)
    return Config(members=[2], market=m)


def _initial(prod):
    return (pr.FEED_INIT_SLOTS * prod.rate, 0, pr.LOT_MP[0], pr.LOT_MP[1], pr.LOT_MP[2], 0)


def _stocks(prod):
    return (prod.feed, prod.buf, prod.parts[0], prod.parts[1], prod.parts[2], prod.repl)


def _run(until_ms, every_ms=250):
    """Holder 2 (no elector answers it: no leases, its stocks only drain)
    polled every every_ms to until_ms; (node, last blob written, writes by
    slot)."""
    n = Node(2, _cfg(), seed=3)
    blob, writes = None, {}
    t = 0
    while t <= until_ms:
        n.poll(t)
        b = n.take_persist()
        if b is not None:
            blob = bytes(b)
            s = t // SLOT_MS
            writes[s] = writes.get(s, 0) + 1
        t += every_ms
    return n, blob, writes


def test_a_trader_rebooted_mid_slot_resumes_with_the_stocks_of_its_last_slot_start():
    n, blob, writes = _run(3 * SLOT_MS + SLOT_MS // 2)
    tr = n.region.trader
    assert tr.stock_at[0] == 3
    saved = tr.stock_at[1:]
    assert saved != _initial(tr.prod)  # production drew on them
    assert saved[0] < pr.FEED_INIT_SLOTS * tr.prod.rate and saved[1] > 0 and saved[5] > 0
    assert _stocks(tr.prod) != saved  # mid-slot: it went on since the slot start
    # once per slot (slot 0 also has the term of its election written)
    assert sorted(writes) == [0, 1, 2, 3] and writes[1] == writes[2] == writes[3] == 1
    b = Node(2, _cfg(), seed=5, saved=blob)  # power back on, mid-slot 3
    prod = b.region.trader.prod
    assert _stocks(prod) == saved  # what it had at the start of slot 3, not fresh stocks
    assert b._keep.stocks_ignored == 0
    b.poll(3 * SLOT_MS + SLOT_MS // 2 + 1)
    assert b.region.trader.stock_at == (3,) + saved  # it starts slot 3 again from them


def test_a_first_boot_gets_the_initial_stocks():
    n = Node(2, _cfg(), seed=3)
    assert _stocks(n.region.trader.prod) == _initial(n.region.trader.prod)
    assert n._keep.stocks_ignored == 0
    # A saved blob without a stock section (an older firmware's): initial
    # stocks, nothing counted, the leases still restored.
    n.region.trader.leases = [[1, 9, 1, 1, 1, 0, False]]
    n.region.trader.awards = 1
    blob = n.take_persist()
    assert durable.stock_split(durable.split(blob)[1])[1] is None  # no slot started yet: no stocks to keep
    b = Node(2, _cfg(), seed=5, saved=blob)
    assert _stocks(b.region.trader.prod) == _initial(b.region.trader.prod)
    assert b._keep.stocks_ignored == 0 and b.region.trader.leases == [[1, 9, 1, 1, 1, 0, False]]


def _logs(node, t_ms):
    return [line for _dst, line in node.poll(t_ms) if b"stocks:" in line]


def test_a_torn_stock_section_is_ignored_and_counted():
    n, blob, _ = _run(2 * SLOT_MS + 1000)
    n.region.trader.leases = [[1, 9, 1, 1, 1, 0, False]]
    n.region.trader.awards = 1
    blob = bytearray(n.take_persist())
    blob[len(blob) - durable.STOCK_LEN + 8] ^= 0x10  # a bit of the saved feed flips
    b = Node(2, _cfg(), seed=5, saved=bytes(blob))
    assert _stocks(b.region.trader.prod) == _initial(b.region.trader.prod)
    assert b._keep.stocks_ignored == 1
    assert b.region.trader.leases == [[1, 9, 1, 1, 1, 0, False]]  # the market section is whole: kept
    assert len(_logs(b, 2 * SLOT_MS + 2000)) == 1  # and it says so ("stocks: bad crc; initial stocks")


def test_a_foreign_stock_section_is_ignored_and_counted():
    n, blob, _ = _run(SLOT_MS + 1000)
    terms, kept = durable.split(blob)
    body, sec = durable.stock_split(kept)
    assert sec is not None and len(sec) == durable.STOCK_LEN
    at = n.region.trader.stock_at
    gen = n.region.trader.prod.gen
    other = stocks.pack(gen + 1, at)  # another generation's board: not this node's stocks
    b = Node(2, _cfg(), seed=5, saved=terms + body + bytes(other))
    assert _stocks(b.region.trader.prod) == _initial(b.region.trader.prod)
    assert b._keep.stocks_ignored == 1
    assert len(_logs(b, SLOT_MS + 2000)) == 1
    same = stocks.pack(gen, at)  # its own generation's: restored
    assert bytes(same) == bytes(sec)
    c = Node(2, _cfg(), seed=5, saved=terms + body + bytes(same))
    assert _stocks(c.region.trader.prod) == at[1:] and c._keep.stocks_ignored == 0


def test_a_daughter_launched_after_the_slot_start_is_not_built_again_by_a_reboot():
    # The slot starts with a daughter's worth of replication output; it is
    # launched in that slot. A reboot later in the slot must not restore the
    # slot start's output and launch the same daughter again (scenarios/
    # replication-twice.yaml: node 6, power-cycled, made a ninth daughter).
    n, blob, writes = _run(4 * SLOT_MS - 500)
    tr = n.region.trader
    tr.prod.repl = pr.DAUGHTER_MU  # ready when slot 4 starts
    t = 4 * SLOT_MS - 250
    while tr.daughters == 0 and t < 5 * SLOT_MS:
        n.poll(t)
        b = n.take_persist()
        if b is not None:
            blob = bytes(b)
        t += 250
    assert tr.daughters == 1 and tr.stock_at[0] == 4 and t < 5 * SLOT_MS
    b = Node(2, _cfg(), seed=5, saved=blob)  # power back on, later in slot 4
    assert b.region.trader.prod.repl < pr.DAUGHTER_MU
    t2 = t + SLOT_MS // 4
    while t2 < 5 * SLOT_MS:
        b.poll(t2)
        t2 += 250
    assert b.region.trader.daughters == 0
