"""The history checker's re-run of the market's clearing (invariant
`audit_rerun`, docs/CONTAINMENT.md): from what the trace holds, clear every
audited round again with the firmware's own clearings (node/auction.py and
node/auction_b.py, both lineages, imported as the in-process runs import
them) and judge the coordinator's awards and each auditor's verdict by it.

What the trace holds, per round of a region with auditors:
  - the inputs the coordinator published: its AUDIT_BID rows (every bid row
    of the round as bid, with the digest of the ledger it starts from; a row
    an auditor asked for again with AUDIT_MISS, node/rowfetch.py, and got
    again counts as delivered, not as the round closed again);
  - what it said it cleared: its PREPARE (digest, award count, prices) and
    its AWARD frames of the round (replicas and awards);
  - each auditor's verdict: its ACCUSE to the ground, or its silence;
  - the region's market settings: the header's `audit` record (roster,
    units, ledger dimensions, auditors, the planted defect's lineage).
The ledger before a round is not carried whole: it is rebuilt here by
chaining the re-runs (the previous round's cleared ledger, the releases the
coordinator passed on, moved to the round's first slot) and used only when
its digest is the one the coordinator's AUDIT_BID rows state; a round whose
start cannot be rebuilt (a takeover's recovered ledger, claims) is not
judged, and counted in the report's notes.

A round's re-run with the coordinator's own implementation (its lineage's
clearing; the declared planted defect if its lineage has one) must give the
PREPARE it sent and every AWARD it sent for the round; a re-run with each
auditor's own clearing (one of the other clearing: an auditor of the same
clearing skips, as the firmware does) must agree with that auditor: an
ACCUSE exactly when the re-run differs from the PREPARE, quoting the re-run's
own digest, award count and price; silence only where the auditor could not
judge (it missed a row or the PREPARE, or its ledger did not match the
coordinator's: its first ROUND_ACK of the round gave another digest). A row
or PREPARE delivered while the auditor did not follow the coordinator (its
last heartbeat on the region's address named no coordinator, or another, or
another term for a PREPARE) counts as missed: an elector takes rows and
PREPAREs only from the coordinator it follows (node/audit.py on_frame,
node/region.py), so it refused them (chaos containment-auditors seed 13: an
auditor whose clock ran x13 timed out its coordinator between heartbeats).
"""

from ground import firmware  # noqa: F401 (puts firmware/ on sys.path)
from node import audit as fw_audit  # noqa: E402
from node import bidcopy  # noqa: E402
from node import catalog as cat  # noqa: E402
from node.auction import F_ALL, F_WON, BidBook  # noqa: E402
from node.ledger import Ledger  # noqa: E402
from node.market import clearing  # noqa: E402
from node.wire import cluster_addr  # noqa: E402

from ground.regions import region_cluster  # noqa: E402

_PREPARE = 3  # msgs.ROUND_PREPARE
_COPY_FLAGS = 2 | 16  # msgs.AWARD_SYNC | AWARD_CLAIM: a ledger copy or a claim, not the round's award


def header(sc):
    """The trace header's `audit` record: each region with auditors, by its
    region number (str), with what a re-run of its clearing needs."""
    out = {}
    for r in sc.regions:
        m = r.market
        if m is None or not m.auditors:
            continue
        out[str(m.region)] = {
            "roster": list(m.roster), "units": list(m.units), "horizon_slots": m.horizon_slots,
            "leases_per_node": m.leases_per_node, "max_bids": m.max_bids, "auditors": list(m.auditors),
            "defect_lineage": m.defect_lineage, "defect_kind": m.defect_kind,
        }
    return {"audit": out} if out else {}


class _Region:
    """One region's settings and its rebuilt ledger."""

    def __init__(self, number, spec):
        self.number = number
        self.roster = [int(n) for n in spec["roster"]]
        self.addr = cluster_addr(region_cluster(number))  # the electors' heartbeats go there
        self.index = {n: i for i, n in enumerate(self.roster)}
        self.units = tuple(spec["units"])
        self.first_ids = cat.starts(self.units)
        self.auditors = [int(a) for a in spec["auditors"]]
        # the planted clearing defect's lineage (defect_kind 1 drops a bid before the rows: its clearing is sound)
        self.defect = spec.get("defect_lineage", -1) if not spec.get("defect_kind", 0) else -1
        dims = (self.first_ids[cat.N_CLASSES], spec["horizon_slots"], spec["leases_per_node"], len(self.roster))
        self.dims = dims
        self.ledger = Ledger(*dims)  # the coordinator's ledger as rebuilt (after the last re-run round)
        self.scratch = Ledger(*dims)
        self.post = Ledger(*dims)  # the coordinator's re-run's cleared ledger, while the auditors' re-runs go
        self.bids = BidBook(spec["max_bids"])
        self.book = BidBook(spec["max_bids"])

    def clear_fn(self, lineage, own_defect=True):
        fn = clearing(lineage)
        if own_defect and lineage == self.defect:
            fn = fw_audit.defective(fn)
        return fn

    def rerun(self, rnd, rows, fn):
        """Rows (row -> msg) cleared by fn from the rebuilt ledger: (digest,
        awards, prices, won set) and the cleared ledger left in scratch."""
        led = self.scratch
        fw_audit.copy_ledger(led, self.ledger)
        led.advance(rnd + 1)
        b = self.bids
        b.reset()
        n = len(rows)
        for i in range(n):
            r = rows[i]
            b.add(self.index[r["holder"]], r["seq"], r["first"], r["resource"], r["price"], r["classes"], r["span"],
                  r["period"], r["count"], r["flags"] & F_ALL)
        book = self.book
        fw_audit.copy_rows(book, b, n)
        prices = [0] * cat.N_CLASSES
        won = fn(book, n, led, self.units, self.first_ids, prices)
        awards = set()
        for i in range(n):
            if book.flags[i] & F_WON:
                awards.add((self.roster[book.node[i]], book.hint[i], book.first[i], book.span[i], book.period[i],
                            book.count[i]))
        return led.digest(), won, tuple(prices), awards


class _Round:
    def __init__(self, region, coord, term, rnd, rows, before, line):
        self.region = region
        self.coord = coord
        self.term = term
        self.round = rnd
        self.want = rows
        self.rows = {}
        self.sent_rows = set()  # (auditor, row) sent
        self.asked = set()  # (auditor, row) an auditor's AUDIT_MISS asked for: sent again, not closed again
        self.before = before
        self.line = line
        self.result = None  # the coordinator's implementation's re-run: (digest, awards, prices, won set)
        self.prepare = None  # (digest, awards, prices) of its first PREPARE
        self.expect = {}  # auditor -> its clearing's re-run (digest, awards, prices), where it is of the other clearing
        self.got = {}  # auditor -> set of its rows delivered, and "prepare"
        self.ack = {}  # auditor -> digest of its first ROUND_ACK of the round
        self.accused = set()  # auditors that accused this round
        self.unfollowed = set()  # auditors a row or PREPARE reached while they did not follow the coordinator


class AuditRerun:
    """Fed by ContainmentChecker with every frame a node sent and every
    delivered fate of the frames it watches; violations through `violate`."""

    def __init__(self, header, violate):
        self.violate = violate
        self.lineage = {}
        for k, info in (header.get("nodes") or {}).items():
            try:
                self.lineage[int(k)] = int(info.get("lineage") or 0)
            except (TypeError, ValueError, AttributeError):
                continue
        self.regions = {}
        self.region_of = {}
        for k, spec in (header.get("audit") or {}).items():
            try:
                reg = self.regions[int(k)] = _Region(int(k), spec)
            except (KeyError, TypeError, ValueError) as e:
                violate("audit_rerun", "line 1: the header's audit record for region %s is unreadable (%s)" % (k, e),
                        [], [1])
                continue
            for n in reg.roster:
                self.region_of[n] = reg
        self.rounds = {}  # (coordinator, round) -> _Round
        self.watch = {}  # frame id -> (_Round, what): AUDIT_BID rows and PREPAREs to auditors
        self.bids = {}  # (bidder, seq) -> [coordinator it went to, its digest, delivered to it]
        self.bid_fids = {}  # frame id of a BID -> (bidder, seq)
        self.lost_bids = 0  # bid accusations over a bid the coordinator never got (loss: not its fault)
        self.judged = 0
        self.unjudged = 0  # rounds whose starting ledger could not be rebuilt from the trace
        self.view = {}  # elector -> (coordinator, term) its last heartbeat on the region's address named
        self.unfollowed = 0  # verdicts due but not expected: the auditor did not follow the coordinator then

    def sent(self, src, dst, type_, msg, fid, line):
        reg = self.region_of.get(src)
        if reg is None:
            return
        if type_ == "audit_bid":
            self._row(reg, src, dst, msg, fid, line)
        elif type_ == "audit_miss":
            rd = self.rounds.get((dst, msg.get("round")))
            first, bits = msg.get("from_row"), msg.get("missing")
            if rd is not None and isinstance(first, int) and isinstance(bits, int):
                rd.asked.update((src, first + i) for i in range(32) if bits >> i & 1)
        elif type_ == "prices" and msg.get("status") == _PREPARE:
            self._prepare(src, dst, msg, fid, line)
        elif type_ == "award":
            self._award(src, msg, fid, line)
        elif type_ == "release" and msg.get("holder") != src:
            self._release(reg, msg)
        elif type_ == "heartbeat" and dst == reg.addr:
            self.view[src] = (msg.get("coordinator"), msg.get("term"))
        elif type_ == "round_ack":
            rd = self.rounds.get((dst, msg.get("round")))
            if rd is not None and rd.term == msg.get("term"):
                rd.ack.setdefault(src, msg.get("digest"))
        elif type_ == "accuse" and dst == 0:
            self._accuse(src, msg, fid, line)
        elif type_ == "bid" and isinstance(msg.get("seq"), int):
            d = bidcopy.digest(msg["seq"], msg["first"], msg["resource"], msg["price"], msg["classes"], msg["span"],
                               msg["period"], msg["count"], msg["flags"])
            self.bids[(src, msg["seq"])] = [dst, d, False]
            self.bid_fids[fid] = (src, msg["seq"])
        elif type_ == "bid_seen" and isinstance(msg.get("seq"), int) and msg.get("coordinator") == src:
            # a coordinator's own bid never crosses the wire: its copies to the auditors say what it was
            self.bids.setdefault((src, msg["seq"]), [src, msg.get("digest"), True])

    def delivered(self, fid, to):
        b = self.bid_fids.get(fid)
        if b is not None:
            self.bids[b][2] = True
        w = self.watch.get(fid)
        if w is not None and to is not None:
            rd = w[0]
            v = self.view.get(to)
            if v is not None and (v[0] != rd.coord or w[1] == "prepare" and v[1] != rd.term):
                rd.unfollowed.add(to)  # it refused it (node/audit.py on_frame): not an input it had
                return
            rd.got.setdefault(to, set()).add(w[1])

    def _release(self, reg, msg):
        """A release the coordinator passed on to the other electors: it freed
        those slots in its ledger (copies of one release free nothing more)."""
        idx = reg.index.get(msg.get("holder"))
        if idx is None:
            return
        reg.ledger.release(msg["resource"], idx, msg["first"], msg["span"], msg["period"], msg["count"],
                           msg["from_slot"])

    def _row(self, reg, src, dst, msg, fid, line):
        key = (src, msg.get("round"))  # (AUDIT_BID has no term: its PREPARE names it)
        rd = self.rounds.get(key)
        again = rd is not None and (dst, msg.get("row")) in rd.sent_rows
        if rd is None or again and (dst, msg.get("row")) not in rd.asked:  # the same row to the same auditor,
            # not asked for (node/rowfetch.py): closed again
            rd = self.rounds[key] = _Round(reg, src, None, msg.get("round"), msg.get("rows"),
                                           msg.get("before_digest"), line)
        self.watch[fid] = (rd, msg.get("row"))
        rd.sent_rows.add((dst, msg.get("row")))
        if msg.get("row") not in rd.rows and isinstance(msg.get("row"), int):
            rd.rows[msg["row"]] = msg
        if len(rd.rows) == rd.want and rd.result is None:
            self._rerun(rd)

    def _rerun(self, rd):
        reg = rd.region
        probe = reg.scratch
        fw_audit.copy_ledger(probe, reg.ledger)
        probe.advance(rd.round + 1)
        if probe.digest() != rd.before or rd.coord not in self.lineage:
            self.unjudged += 1
            rd.result = False  # no shared starting point: not judged
            return
        self.judged += 1
        rows = [rd.rows[i] for i in range(rd.want)]
        own = self.lineage[rd.coord]
        rd.result = reg.rerun(rd.round, rows, reg.clear_fn(own))
        fw_audit.copy_ledger(reg.post, reg.scratch)
        for a in reg.auditors:
            lin = self.lineage.get(a)
            if a == rd.coord or lin is None or fw_audit.clearing_impl(lin) == fw_audit.clearing_impl(own):
                continue  # an auditor of the same clearing skips (it would repeat a defect)
            rd.expect[a] = reg.rerun(rd.round, rows, reg.clear_fn(lin, own_defect=False))[:3]
        fw_audit.copy_ledger(reg.ledger, reg.post)  # the coordinator's ledger after the round

    def _name(self, rd):
        return "round %s (term %s) of coordinator %d" % (rd.round, rd.term, rd.coord)

    def _prepare(self, src, dst, msg, fid, line):
        rd = self.rounds.get((src, msg.get("round")))
        if rd is None:
            return
        self.watch[fid] = (rd, "prepare")
        if rd.prepare is not None or not rd.result:
            return
        rd.term = msg.get("term")
        said = (msg.get("digest"), msg.get("awards"), tuple(msg.get("p%d" % c) for c in range(8)))
        rd.prepare = said
        if said != rd.result[:3]:
            self.violate("audit_rerun", "line %d: %s: its PREPARE says digest %s, %s awards, prices %s; the re-run of"
                         " the %d bid rows it sent the auditors (line %d) gives digest %s, %s awards, prices %s"
                         % (line, self._name(rd), said[0], said[1], list(said[2]), rd.want, rd.line, rd.result[0],
                            rd.result[1], list(rd.result[2])), [fid], [rd.line, line])

    def _award(self, src, msg, fid, line):
        rd = self.rounds.get((src, msg.get("round")))
        if rd is None or not rd.result or (msg.get("flags") or 0) & _COPY_FLAGS:
            return
        if rd.term is None:
            rd.term = msg.get("term")  # (its replicas go before its PREPARE)
        got = (msg.get("holder"), msg.get("resource"), msg.get("first"), msg.get("span"), msg.get("period"),
               msg.get("count"))
        if got not in rd.result[3]:
            self.violate("audit_rerun", "line %d: %s awards node %s resource %s from slot %s (span %s, period %s,"
                         " count %s), which the re-run of the bid rows it sent the auditors (line %d) does not"
                         % ((line, self._name(rd)) + got[:] + (rd.line,)), [fid], [rd.line, line])

    def _accuse(self, src, msg, fid, line):
        rd = self.rounds.get((msg.get("accused"), msg.get("round")))
        if rd is None or not rd.result or rd.prepare is None or rd.term != msg.get("term"):
            return
        who = "auditor %d accuses node %d of round %s (term %s)" % (src, rd.coord, rd.round, rd.term)
        if msg.get("reason") == fw_audit.REASON_BID:
            self._bid_accusation(src, rd, msg, who, fid, line)
            return
        rd.accused.add(src)
        exp = rd.expect.get(src)
        if exp is None:
            self.violate("audit_rerun", "line %d: %s, though it runs the coordinator's own clearing (it must skip)"
                         % (line, who), [fid], [line])
            return
        if exp == rd.prepare:
            self.violate("audit_rerun", "line %d: %s, but the re-run of that round with its clearing agrees with the"
                         " PREPARE (digest %s, %s awards)" % (line, who, exp[0], exp[1]), [fid], [line])
            return
        c = msg.get("price_class")
        own_price = exp[2][c] if isinstance(c, int) and 0 <= c < 8 else None
        if (msg.get("own_digest"), msg.get("own_awards")) != exp[:2] or msg.get("own_price") != own_price:
            self.violate("audit_rerun", "line %d: %s with its own side digest %s, %s awards, class %s price %s; the"
                         " re-run gives digest %s, %s awards, price %s" % (line, who, msg.get("own_digest"),
                                                                          msg.get("own_awards"), c,
                                                                          msg.get("own_price"), exp[0], exp[1],
                                                                          own_price), [fid], [line])

    def _bid_accusation(self, src, rd, msg, who, fid, line):
        """A bid the auditor saw, altered in or missing from the rows: the
        bidder sent the coordinator that bid (its digest the accusation's
        own_digest), and no row of this round or the one before has it."""
        bidder, seq, own = msg.get("holder"), msg.get("own_first"), msg.get("own_digest")
        what = "%s over node %s's bid %s" % (who, bidder, seq)
        bid = self.bids.get((bidder, seq))
        if bid is None or bid[0] != rd.coord or bid[1] != own:
            self.violate("audit_rerun", "line %d: %s: node %s sent node %d no such bid (digest %s)"
                         % (line, what, bidder, rd.coord, own), [fid], [line])
            return
        rows = [r for key in ((rd.coord, rd.round), (rd.coord, rd.round - 1)) if key in self.rounds
                for r in self.rounds[key].rows.values() if r.get("holder") == bidder and r.get("seq") == seq]
        crcs = [bidcopy.digest(r["seq"], r["first"], r["resource"], r["price"], r["classes"], r["span"], r["period"],
                               r["count"], r["flags"]) for r in rows]
        if own in crcs:
            self.violate("audit_rerun", "line %d: %s, but the coordinator's rows have that bid as bid" % (line, what),
                         [fid], [line])
        elif msg.get("claimed_digest") not in crcs + [0] or (msg.get("claimed_digest") == 0) != (not crcs):
            self.violate("audit_rerun", "line %d: %s, quoting its row's digest %s: the rows say %s"
                         % (line, what, msg.get("claimed_digest"), crcs or "no such row"), [fid], [line])
        elif not bid[2]:
            self.lost_bids += 1  # the coordinator never got it: a loss looks like a drop (docs/CONTAINMENT.md)

    def judge(self):
        """At the end: an auditor that could judge a round the re-run says it
        should accuse, and did not."""
        for rd in self.rounds.values():
            if not rd.result or rd.prepare is None:
                continue
            for a, exp in rd.expect.items():
                if exp == rd.prepare or a in rd.accused:
                    continue
                got = rd.got.get(a, set())
                if "prepare" not in got or len(got) - 1 < rd.want or rd.ack.get(a) != rd.prepare[0]:
                    if a in rd.unfollowed:
                        self.unfollowed += 1  # (counted in the note)
                    continue  # it missed an input, or its ledger was not the coordinator's: it could not judge
                self.violate("audit_rerun", "%s: auditor %d had every bid row and the PREPARE, and its ledger was the"
                             " coordinator's (its ROUND_ACK gave digest %s), but sent no ACCUSE against node %d,"
                             " though the re-run with its clearing gives digest %s, %s awards, prices %s against the"
                             " PREPARE's digest %s, %s awards, prices %s"
                             % (self._name(rd), a, rd.ack.get(a), rd.coord, exp[0], exp[1], list(exp[2]),
                                rd.prepare[0], rd.prepare[1], list(rd.prepare[2])), [], [rd.line])

    def note(self):
        return ("audit_rerun: %d round(s) re-run from the trace, %d not judged (the ledger they start from could not"
                " be rebuilt from the trace); %d bid accusation(s) over a bid lost on its way to the coordinator;"
                " %d accusation(s) due from an auditor that did not follow the coordinator when its rows or PREPARE"
                " came (refused, not expected)" % (self.judged, self.unjudged, self.lost_bids, self.unfollowed))
