# cpython-only
# (A region of four electors that all audit keeps two more ledgers and books
# per elector, and compiling node/audit.py from source at the first one needs
# a contiguous block the unix port's 192K heap no longer has by then; the
# auditor's and the quarantine's logic runs under MicroPython in
# tests/core/test_containment.py. On a board the code is frozen .mpy.)
# Auditors and quarantine in a region of real Nodes (tests/core/federation.py):
# a coordinator whose clearing carries a planted defect is accused by the two
# auditors of the other lineage, quarantined by every elector and replaced;
# a lying auditor alone quarantines nobody and a non-auditor's accusation is
# refused.
from federation import Federation
from node import audit, durable, msgs, refusal, wire
from node.auction import NO_RESOURCE
from node.audit import clearing_impl, defective

SLOT = 12000
FED_UNITS = (1, 1, 1, 1, 2, 1, 1, 2)
# Lineage is id % 3 in the federation: 3 and 6 run clearing A, 4 and 7 run B,
# so whoever coordinates, two auditors of the other clearing watch it.
FED_ELECTORS = (3, 4, 6, 7)


def _fed(seed):
    # Small, for the MicroPython unix port's 192K heap: four one-elector
    # clusters; the region counts as one cluster for the quarantine cap.
    return Federation([[3], [4], [6], [7]], FED_UNITS, max_bids=24, seed=seed, electors=FED_ELECTORS, slot_ms=SLOT,
                      steps_per_slot=12, lead_ms=3000, horizon_slots=32, window_slots=16, delay_ms=5, jitter_ms=5,
                      keep_ground=True, auditors=FED_ELECTORS)


def test_a_defective_coordinator_is_accused_by_two_auditors_and_quarantined():
    f = _fed(5)
    assert f.run_until(f.now + 30000, until=lambda x: x.region_coordinator() is not None)
    f.run_for(3 * SLOT)
    bad = f.region_coordinator()
    assert not f.ground_frames(msgs.ACCUSE)  # honest rounds, audited by the other lineage: no accusation
    audited = sum(f.nodes[e].region.auditor.audited for e in FED_ELECTORS)
    assert audited >= 2
    m = f.nodes[bad].region.market
    m.clear = defective(m.clear)  # the planted defect (scenario fault lineage_defect)
    f.run_for(6 * SLOT)
    accusers = set()
    for src, payload in f.ground_frames(msgs.ACCUSE):
        fields = msgs.unpack(msgs.ACCUSE, payload)
        assert fields[2] == bad and audit.has_evidence(fields)
        assert clearing_impl(src % 3) != clearing_impl(bad % 3)
        accusers.add(src)
    assert len(accusers) == 2, accusers
    for e in FED_ELECTORS:
        assert f.nodes[e].region.quarantine.is_quarantined(bad), e
    new = f.region_coordinator()
    assert new is not None and new != bad
    assert f.conflicts() == 0


def test_a_lying_auditor_alone_quarantines_nobody_and_a_stranger_is_refused():
    f = _fed(6)
    assert f.run_until(f.now + 30000, until=lambda x: x.region_coordinator() is not None)
    rc = f.region_coordinator()
    liar = [e for e in FED_ELECTORS if e != rc][0]
    lie = msgs.pack(msgs.ACCUSE, 1, 2, rc, 1, audit.REASON_DIGEST, liar % 3, 1, 2, 0, 0, 0, NO_RESOURCE,
                    NO_RESOURCE, 0, 0, 0, 1, 1)
    for _ in range(5):
        for e in FED_ELECTORS:
            f.nodes[e].region.receive(liar, f.region_dst, msgs.ACCUSE, lie, f.now)
            f.nodes[e].region.receive(99, f.region_dst, msgs.ACCUSE, lie, f.now)  # 99 is no auditor
        f.run_for(SLOT // 2)
    for e in FED_ELECTORS:
        q_ = f.nodes[e].region.quarantine
        assert not q_.is_quarantined(rc) and q_.electable(rc)
        assert q_.refused[refusal.FORGED] >= 5
    assert f.region_coordinator() == rc


def test_stale_term_claims_quarantine_first_hand_and_only_the_ground_reinstates():
    f = _fed(6)
    assert f.run_until(f.now + 30000, until=lambda x: x.region_coordinator() is not None)
    rc = f.region_coordinator()
    seer = [e for e in FED_ELECTORS if e != rc][0]
    region = f.nodes[seer].region
    q_ = region.quarantine
    for i in range(audit.STALE_CLAIMS - 1):  # a node back from a partition claims a few times: no more
        audit.stale_claim(region, rc, 1, 2, 2000, f.now + i * 500)
    assert q_.electable(rc)
    # the window passed: counting starts again
    late = f.now + audit.STALE_WINDOW_T * 2000 + 5000
    for i in range(audit.STALE_CLAIMS - 1):
        audit.stale_claim(region, rc, 1, 2, 2000, late + i * 500)
    assert q_.electable(rc)
    audit.stale_claim(region, rc, 1, 2, 2000, late + 2000)  # the STALE_CLAIMS-th within the window
    assert q_.is_quarantined(rc) and not q_.electable(rc)
    # a REINSTATE not from the ground is refused and counted; the ground's is obeyed
    forged = q_.refused[refusal.FORGED]
    region.receive(seer, f.region_dst, msgs.REINSTATE, msgs.pack(msgs.REINSTATE, 1, rc), f.now)
    assert q_.is_quarantined(rc) and q_.refused[refusal.FORGED] == forged + 1
    region.receive(wire.ADDR_GROUND, f.region_dst, msgs.REINSTATE, msgs.pack(msgs.REINSTATE, 2, rc), f.now)
    assert q_.is_quarantined(rc)  # another region's
    region.receive(wire.ADDR_GROUND, f.region_dst, msgs.REINSTATE, msgs.pack(msgs.REINSTATE, 1, rc), f.now)
    assert q_.electable(rc) and not q_.is_quarantined(rc)
    f.run_for(100)  # the elector's LOG lines go out at its next poll
    texts = [msgs.unpack_log(p) for _, p in f.ground_frames(msgs.LOG)]
    assert any(t.startswith("quarantine node %d quarantined: %d stale-term claims" % (rc, audit.STALE_CLAIMS))
               for t in texts), texts
    assert "quarantine node %d normal: ground intent" % rc in texts
    assert "refused reinstatement from %d of %d" % (seer, rc) in texts


def _witness(region_id, node, term, own, claims):
    return msgs.pack(msgs.WITNESS, region_id, node, term, own, claims)


def test_a_first_hand_quarantine_is_witnessed_to_every_elector():
    f = _fed(6)
    assert f.run_until(f.now + 30000, until=lambda x: x.region_coordinator() is not None)
    rc = f.region_coordinator()
    seer = [e for e in FED_ELECTORS if e != rc][0]
    region = f.nodes[seer].region
    for i in range(audit.STALE_CLAIMS):
        audit.stale_claim(region, rc, 1, 2, 2000, f.now + i * 500)
    others = [e for e in FED_ELECTORS if e != seer]
    assert region.quarantine.is_quarantined(rc)
    assert not any(f.nodes[e].region.quarantine.is_quarantined(rc) for e in others)  # nobody else saw the claims
    f.run_for(2000)  # the WITNESS reaches the region's other electors
    for e in FED_ELECTORS:
        assert f.nodes[e].region.quarantine.is_quarantined(rc), e
    sent = [(src, msgs.unpack(msgs.WITNESS, p)) for src, p in f.ground_frames(msgs.WITNESS)]
    assert sent == [(seer, (1, rc, 1, 2, audit.STALE_CLAIMS))], sent
    texts = [msgs.unpack_log(p) for _, p in f.ground_frames(msgs.LOG)]
    why = "quarantine node %d quarantined: witnessed by %d: %d stale-term claims (term 1, its 2)" % (
        rc, seer, audit.STALE_CLAIMS)
    assert texts.count(why) == len(others), texts
    f.run_for(3 * SLOT)
    new = f.region_coordinator()
    assert new is not None and new != rc  # it resigned everywhere
    assert f.conflicts() == 0


def test_a_forged_or_empty_witness_is_refused_with_its_reason():
    f = _fed(7)
    assert f.run_until(f.now + 30000, until=lambda x: x.region_coordinator() is not None)
    rc = f.region_coordinator()
    judge, liar = [e for e in FED_ELECTORS if e != rc][:2]
    region = f.nodes[judge].region
    q_ = region.quarantine
    n = audit.STALE_CLAIMS
    cases = (
        (99, _witness(1, rc, 1, 2, n), refusal.FORGED),  # not an elector
        (rc, _witness(1, rc, 1, 2, n), refusal.FORGED),  # about itself
        (liar, _witness(1, rc, 2, 2, n), refusal.EVIDENCE),  # the term claimed is not stale
        (liar, _witness(1, rc, 1, 2, n - 1), refusal.EVIDENCE),  # too few claims
        (liar, _witness(2, rc, 1, 2, n), refusal.REGION),  # another region's
        (liar, _witness(1, 999, 1, 2, n), refusal.UNKNOWN_NODE),  # no such node
    )
    for src, payload, why in cases:
        counters = q_.refused if why != refusal.REGION else region.refused
        before = counters[why]
        region.receive(src, f.region_dst, msgs.WITNESS, payload, f.now)
        assert counters[why] == before + 1, (src, why)
        assert q_.electable(rc)
    # An elector of another cluster cannot have seen the claims first hand.
    q_.clusters[liar] = q_.clusters[rc] + 1
    region.receive(liar, f.region_dst, msgs.WITNESS, _witness(1, rc, 1, 2, n), f.now)
    assert q_.electable(rc)
    q_.clusters[liar] = q_.clusters[rc]
    region.receive(liar, f.region_dst, msgs.WITNESS, _witness(1, rc, 1, 2, n), f.now)  # a sound one
    assert q_.is_quarantined(rc)
    f.run_for(100)
    texts = [msgs.unpack_log(p) for _, p in f.ground_frames(msgs.LOG)]
    assert "refused witness from 99 against %d (forged)" % rc in texts
    assert "refused witness from %d against %d (evidence)" % (liar, rc) in texts


def _split_fed(seed):
    # One cluster of six (the cap counts clusters: cluster_of), electors in both halves.
    return Federation([[3, 4, 5, 6, 7, 8]], FED_UNITS, max_bids=24, seed=seed, electors=FED_ELECTORS, slot_ms=SLOT,
                      steps_per_slot=12, lead_ms=3000, horizon_slots=32, window_slots=16, delay_ms=5, jitter_ms=5,
                      keep_ground=True, auditors=FED_ELECTORS, cluster_of=[1] * 6)


def test_after_a_split_the_cap_is_counted_per_new_cluster():
    # Before the split: a cluster of six may lose two (a third) to quarantine.
    f = _split_fed(8)
    f.run_for(2000)
    q_ = f.nodes[3].region.quarantine
    assert q_.byzantine(7, "test", f.now) and q_.byzantine(8, "test", f.now)
    # The split (node/join.py) moves 6, 7 and 8 to cluster 2: each says so
    # with a HELLO on the region's address, and every elector moves it.
    f = _split_fed(8)
    f.run_for(2000)
    for src in (6, 7, 8):
        hello = msgs.pack(msgs.HELLO, 2, 1, 0, src % 3, 1, msgs.VERSION, 2)
        line = wire.encode(msgs.HELLO, src, f.region_dst, hello)
        for e in FED_ELECTORS:
            if e != src:
                f.nodes[e].receive(bytes(line[:-1]), f.now)
    for e in FED_ELECTORS:
        q_ = f.nodes[e].region.quarantine
        assert [q_.clusters[n] for n in (3, 4, 5, 6, 7, 8)] == [1, 1, 1, 2, 2, 2] or e in (6, 7), (e, q_.clusters)
    q_ = f.nodes[3].region.quarantine
    capped = q_.refused[refusal.QUARANTINE_CAP]
    assert q_.byzantine(7, "test", f.now)
    assert not q_.byzantine(8, "test", f.now)  # 6 would be cluster 2's last electable member: its last standby
    assert q_.refused[refusal.QUARANTINE_CAP] == capped + 1 and not q_.is_quarantined(8)
    assert q_.byzantine(4, "test", f.now)  # cluster 1 counts its own three
    # A seat's HELLO names the region's address, not a cluster: nothing moves.
    seat_hello = msgs.pack(msgs.HELLO, 2, 1, 0, 1, 1, msgs.VERSION, 0xE01)
    f.nodes[3].receive(bytes(wire.encode(msgs.HELLO, 4, f.region_dst, seat_hello)[:-1]), f.now)
    assert q_.clusters[4] == 1


def _held_sent(f):
    """(t, src, node, state) of every HELD the electors send from now on."""
    got = []

    def on_sent(t, src, dst, line):
        fr = wire.decode(bytes(line))
        if fr.type == msgs.HELD:
            fields = msgs.unpack(msgs.HELD, fr.payload)
            got.append((t, src, fields[1], fields[2]))

    f.on_sent = on_sent
    return got


def test_electors_power_cut_after_a_quarantine_still_hold_the_node_and_say_so():
    # node/quarantine.py pack() in the saved blob (node/durable.py): three of
    # the four electors lose power after quarantining the defective
    # coordinator; each boots holding it, says so in its HELD frames (not the
    # "I hold nobody" of a table lost), and it is not elected nor awarded
    # again. A torn table (bad crc) is not restored, and that elector says
    # it holds nobody.
    f = Federation([[3, 4, 5, 6, 7, 8]], FED_UNITS, max_bids=24, seed=5, electors=FED_ELECTORS, slot_ms=SLOT,
                   steps_per_slot=12, lead_ms=3000, horizon_slots=32, window_slots=16, delay_ms=5, jitter_ms=5,
                   keep_ground=True, keep_awards=True, auditors=FED_ELECTORS, cluster_of=[1] * 6)
    assert f.run_until(f.now + 30000, until=lambda x: x.region_coordinator() is not None)
    f.run_for(2 * SLOT)
    bad = f.region_coordinator()
    m = f.nodes[bad].region.market
    m.clear = defective(m.clear)
    assert f.run_until(f.now + 8 * SLOT, until=lambda x: all(
        x.nodes[e].region.quarantine.is_quarantined(bad) for e in FED_ELECTORS))
    cut = [e for e in FED_ELECTORS if e != bad]
    torn = cut[0]
    for e in cut:
        f.crash(e, lose_in_flight=True)
    f.run_for(1000)
    blob = bytearray(f.flash[torn])
    end = len(blob) - (durable.STOCK_LEN if durable.stock_split(bytes(blob))[1] is not None else 0)
    blob[end - 1] ^= 0xFF  # the table's crc (the node's stocks follow it: node/stocks.py)
    f.flash[torn] = bytes(blob)
    f.to_ground.clear()
    held = _held_sent(f)
    booted = f.now
    terms = set(f.region_leaders)
    for e in cut:
        f.restart(e)
    f.run_for(3000 * 4)
    frames = [(src, wire.decode(line)) for t, src, line in f.to_ground]
    logs = {src: bytes(fr.payload) for src, fr in frames
            if fr.type == msgs.LOG and fr.payload.startswith(b"quarantine")}
    assert logs[torn] == b"quarantine table: bad crc; not restored", logs
    for e in cut[1:]:
        assert logs[e] == b"quarantine restored: node %d quarantined" % bad, logs
        assert f.nodes[e].region.quarantine.is_quarantined(bad)
        said = [(node, state) for t, src, node, state in held if src == e]
        assert said and set(said) == {(bad, 2)}, said  # whom it holds, never "nobody" (node 0)
    assert not f.nodes[torn].region.quarantine.is_quarantined(bad)
    assert (torn, 0) in {(src, node) for t, src, node, state in held}  # lost it: "I hold nobody"
    # Two restored tables and the coordinator's own: a majority still holds it out.
    # (Run until someone is awarded again: the traders' demand comes in waves,
    # and this seed's next award after the reboot came about 7 slots later.)
    f.run_until(f.now + 12 * SLOT, until=lambda x: [a for a in x.awards_seen if a[0] > booted])
    assert f.region_coordinator() not in (None, bad)
    assert all(bad not in ids for term, ids in f.region_leaders.items() if term not in terms)
    late = [a for a in f.awards_seen if a[0] > booted]
    assert late and [a for a in late if a[1] == bad and not a[3] & 0x17] == [], late
