"""The market family of the metrics: how the regional market allocated
(MarketTally) and how fast and how often it answered bids (AuctionTally);
MarketMetrics feeds both from the shared views (ground/metrics/fleet.py).

    tally = MarketTally(start_ns)
    tally.sent(src, type_name, msg, dst, mission_ns)   # every sent frame's decoded fields
    section, flat = tally.result(end_ns)

MarketTally reads two kinds of frame (docs/MARKET.md, docs/METRICS.md):
  - MARKET_TEL (node -> ground): each node's running totals since its boot
    (produced, lost: units short of the uncoordinated ideal, bids, awards,
    refused), the leases it holds now, and its autonomy mode. The latest
    report counts; when a total goes down the node rebooted, and what it had
    reported before is carried over, so totals span the whole run. The time
    between reports is charged to the mode the earlier one named.
  - PRICES broadcast by the regional coordinator: one per round; counted
    once per (term, round) by status (complete, void).
AuctionTally (docs/METRICS.md "Auction decisions") pairs each BID a node
sent with the AWARD for it (same holder and seq) delivered to that node.
Nothing here reads a clock; times are the trace's mission ns. State: per
node its latest report and time per mode; per round its status; the bids not
yet answered (pruned two rounds after their round closes) and one latency
sample per awarded bid (the percentiles need them: memory grows with awards,
not frames).
"""

from ground.metrics.common import stats
from ground.protocol import MODE_NAMES, ROUND_STATUS_NAMES
from ground.regions import announces_to_region

TOTALS = ("produced", "lost", "leases", "bids", "awards", "refused")
COUNTERS = ("produced", "lost", "bids", "awards", "refused")  # since boot; leases is a level
COMPLETE, VOID = ROUND_STATUS_NAMES.index("complete"), ROUND_STATUS_NAMES.index("void")  # PRICES status

# Gateable keys (metrics FLAT): name -> (unit, meaning); None without market frames.
FLAT = {
    "market_lost_share": ("ratio", "units lost / (produced + lost), all nodes, latest MARKET_TEL of each"),
    "market_refused": ("count", "bids refused, all nodes"),
    "market_rounds_complete": ("count", "auction rounds the regional coordinator broadcast as complete"),
    "market_rounds_void": ("count", "auction rounds broadcast as void (nothing awarded, bid again)"),
    "market_conservative_share_max": ("ratio", "largest share of a node's reported time in conservative mode"),
}


def _mode_name(mode):
    return MODE_NAMES[mode] if 0 <= mode < len(MODE_NAMES) else "mode_%d" % mode


def _int(msg, key):
    v = msg.get(key)
    return v if isinstance(v, int) and not isinstance(v, bool) else None


class MarketTally:
    def __init__(self, start_ns=0):
        self.start_ns = start_ns
        self.nodes = {}  # node id -> {"last": {field: value}, "mode": int, "since": ns, "mode_ns": {mode: ns}}
        self.rounds = {}  # (region, term, round) -> status
        self.malformed = 0

    def sent(self, src, type_, msg, dst, t, region=None):
        """region: the sender's region, with several (each region's rounds are its own)."""
        if type_ == "market_tel":
            self._tel(src, msg, t)
        elif type_ == "prices" and announces_to_region(dst):
            term, rnd, status = _int(msg, "term"), _int(msg, "round"), _int(msg, "status")
            if None in (term, rnd, status):
                self.malformed += 1
            elif status in (COMPLETE, VOID):
                self.rounds.setdefault((region, term, rnd), status)

    def _tel(self, src, msg, t):
        mode = _int(msg, "mode")
        values = {k: _int(msg, k) for k in TOTALS}
        if mode is None or None in values.values():
            self.malformed += 1
            return
        n = self.nodes.get(src)
        if n is None:
            n = self.nodes[src] = {"mode": mode, "since": t, "mode_ns": {}, "carried": dict.fromkeys(COUNTERS, 0),
                                   "boots": 1}
        elif any(values[k] < n["last"][k] for k in COUNTERS):  # a reboot started its totals again
            for k in COUNTERS:
                n["carried"][k] += n["last"][k]
            n["boots"] += 1
        self._charge(n, t)
        n["mode"] = mode
        n["last"] = values

    @staticmethod
    def _charge(n, t):
        if t > n["since"]:
            n["mode_ns"][n["mode"]] = n["mode_ns"].get(n["mode"], 0) + t - n["since"]
            n["since"] = t

    def result(self, end_ns):
        """(the metrics' "market" section or None, the FLAT keys)."""
        flat = dict.fromkeys(FLAT)
        if not self.nodes and not self.rounds:
            return None, flat
        nodes = {}
        totals = dict.fromkeys(TOTALS, 0)
        worst = None
        for nid in sorted(self.nodes):
            n = self.nodes[nid]
            self._charge(n, end_ns)
            span = sum(n["mode_ns"].values())
            shares = {_mode_name(m): round(ns / span, 4) for m, ns in sorted(n["mode_ns"].items())} if span else {}
            conservative = shares.get("conservative", 0.0) if span else None
            if conservative is not None and (worst is None or conservative > worst):
                worst = conservative
            row = {k: n["last"][k] + n["carried"].get(k, 0) for k in TOTALS}
            nodes[str(nid)] = dict(row, mode=_mode_name(n["mode"]), mode_share=shares, boots_reported=n["boots"])
            for k in TOTALS:
                totals[k] += row[k]
        complete = sum(1 for s in self.rounds.values() if s == COMPLETE)
        void = sum(1 for s in self.rounds.values() if s == VOID)
        made = totals["produced"] + totals["lost"]
        flat.update({
            "market_lost_share": round(totals["lost"] / made, 4) if made else None,
            "market_refused": totals["refused"],
            "market_rounds_complete": complete,
            "market_rounds_void": void,
            "market_conservative_share_max": worst,
        })
        section = dict(totals, rounds_complete=complete, rounds_void=void, malformed=self.malformed, nodes=nodes)
        return section, flat


# ---- auction decisions: bid sent -> award received ---------------------------

# msgs.AWARD_REPLICA | AWARD_SYNC | AWARD_CLAIM: copies of the ledger between
# electors and a holder's claim, not a holder's award (copied, like
# ground/protocol.py does, so the ground never imports firmware).
AWARD_NOT_A_DECISION = 1 | 2 | 16
OUTCOMES = ("awarded", "not_awarded", "void", "lost", "unannounced", "open")
_PRUNE_ROUNDS = 2  # a bid still unanswered this many rounds after its round closed is decided

AUCTION_FLAT = {
    "market_decision_s_p50": ("s", "bid sent to its award received, median"),
    "market_decision_s_p99": ("s", "bid sent to its award received, 99th percentile"),
    "market_decision_s_max": ("s", "bid sent to its award received, maximum"),
    "market_decision_rounds_p50": ("rounds", "bid to award in auction rounds (slot_ms), median"),
    "market_decision_rounds_p99": ("rounds", "bid to award in auction rounds (slot_ms), 99th percentile"),
    "market_decision_rounds_max": ("rounds", "bid to award in auction rounds (slot_ms), maximum"),
    "market_bids_not_awarded": ("count", "bids whose round completed with no award for them (refused or outbid)"),
    "market_bids_lost": ("count", "bids the links dropped before the coordinator"),
}


class AuctionTally:
    """One region's bids and their answers (docs/METRICS.md "Auction decisions")."""

    def __init__(self, slot_ms=None):
        self.slot_s = slot_ms / 1000.0 if isinstance(slot_ms, int) and slot_ms > 0 else None
        self.bids = {}  # (node, seq) -> [sent_ns, round]
        self.in_flight = {}  # frame id -> ("bid", key, dst) | ("award", key), until its first fate
        self.status = {}  # round -> COMPLETE or VOID (complete wins: one term completed it)
        self.last_closed = None  # highest round announced complete or void
        self.outcomes = dict.fromkeys(OUTCOMES, 0)
        self.rounds = {}  # bid round -> {"bids": n, "awarded": n, "s_max": s}
        self.samples_s = []  # one per awarded bid
        self.unmatched = 0  # awards received for no bid still waiting (a resend, a bid from before the trace)
        self.malformed = 0

    def sent(self, src, type_, msg, dst, t, fid):
        if type_ == "bid":
            rnd, seq = _int(msg, "round"), _int(msg, "seq")
            if rnd is None or seq is None:
                self.malformed += 1
                return
            if (src, seq) in self.bids:
                return  # the same bid again: the first one counts
            self.bids[(src, seq)] = [t, rnd]
            self._round(rnd)["bids"] += 1
            self.in_flight[fid] = ("bid", (src, seq), dst)
        elif type_ == "award":
            holder, seq, flags = _int(msg, "holder"), _int(msg, "seq"), _int(msg, "flags")
            if holder is None or seq is None or flags is None:
                self.malformed += 1
            elif not flags & AWARD_NOT_A_DECISION and holder == dst:
                self.in_flight[fid] = ("award", (holder, seq))
        elif type_ == "prices" and announces_to_region(dst):
            rnd, status = _int(msg, "round"), _int(msg, "status")
            if rnd is None or status not in (COMPLETE, VOID):
                return  # malformed ones are MarketTally's to count
            if self.status.get(rnd) != COMPLETE:
                self.status[rnd] = status
            if self.last_closed is None or rnd > self.last_closed:
                self.last_closed = rnd
                self._decide(lambda r: r <= rnd - _PRUNE_ROUNDS)

    def fate(self, fate, fid, to, copy, t):
        entry = self.in_flight.get(fid)
        if entry is None:
            return
        if entry[0] == "bid":
            if copy or to not in (entry[2], None):
                return
            del self.in_flight[fid]
            if fate == "dropped" and self.bids.pop(entry[1], None) is not None:
                self.outcomes["lost"] += 1
        elif fate == "delivered" and to == entry[1][0]:
            del self.in_flight[fid]
            bid = self.bids.pop(entry[1], None)
            if bid is None:
                self.unmatched += 1
                return
            d_s = (t - bid[0]) / 1e9
            self.samples_s.append(d_s)
            self.outcomes["awarded"] += 1
            row = self._round(bid[1])
            row["awarded"] += 1
            row["s_max"] = d_s if row["s_max"] is None else max(row["s_max"], d_s)
        elif fate == "dropped" and not copy and to in (entry[1][0], None):
            del self.in_flight[fid]

    def _round(self, rnd):
        row = self.rounds.get(rnd)
        if row is None:
            row = self.rounds[rnd] = {"bids": 0, "awarded": 0, "s_max": None}
        return row

    def _decide(self, due):
        """Bids still unanswered whose round `due(round)` says is over: by what their round became."""
        for key in [k for k, b in self.bids.items() if due(b[1])]:
            rnd = self.bids.pop(key)[1]
            st = self.status.get(rnd)
            if st == COMPLETE:
                self.outcomes["not_awarded"] += 1
            elif st == VOID:
                self.outcomes["void"] += 1
            elif self.last_closed is None or rnd > self.last_closed:
                self.outcomes["open"] += 1
            else:
                self.outcomes["unannounced"] += 1

    def result(self):
        self._decide(lambda r: True)
        st = stats(self.samples_s, self.slot_s, unit="rounds")
        st["s_sum"] = round(sum(self.samples_s), 9)  # for a Prometheus summary's _sum
        rounds = {str(r): dict(row, s_max=None if row["s_max"] is None else round(row["s_max"], 9))
                  for r, row in sorted(self.rounds.items())}
        return {"bids": sum(row["bids"] for row in self.rounds.values()), "outcomes": dict(self.outcomes),
                "decision": st, "round_s": self.slot_s, "awards_unmatched": self.unmatched,
                "malformed": self.malformed, "rounds": rounds}


class MarketMetrics:
    """The market family as a consumer of the shared views. Auction
    decisions are tallied per region: the header's `regions` (a scenario of
    several, each its own market) say which region a node's cluster is in;
    with one market, every node is in its region."""

    VIEWS = ("sent", "fate")  # the view kinds its feed() reads (the composer hands it only those)
    FATES = ("delivered", "dropped")  # the fates among its fate views it reads

    FLAT = dict(FLAT, **AUCTION_FLAT)

    def __init__(self, fleet):
        self.fleet = fleet
        self.tally = MarketTally(fleet.start_ns)  # the fleet's (every region's rounds apart)
        header = fleet.header
        market = header.get("market") if isinstance(header.get("market"), dict) else {}
        self.region = "unknown" if fleet.region is None else str(fleet.region)
        rows = header.get("regions") if isinstance(header.get("regions"), list) else []
        rows = [r for r in rows if isinstance(r, dict) and isinstance(r.get("region"), int)]
        self.auctions = {str(r["region"]): AuctionTally(r.get("slot_ms")) for r in rows}
        self.region_of_cluster = {str(c): str(r["region"]) for r in rows for c in (r.get("clusters") or ())}
        if not self.auctions:
            self.auctions = {self.region: AuctionTally(market.get("slot_ms"))}
        # several regions: each its own allocation figures too (the fleet's tally holds them all)
        self.tallies = {r: MarketTally(fleet.start_ns) for r in self.auctions} if len(self.auctions) > 1 else {}
        self.owner = {}  # frame id -> the AuctionTally waiting for its fate

    def _auction(self, v):
        if len(self.auctions) == 1:
            return next(iter(self.auctions.values()))
        return self.auctions.get(self.region_of_cluster.get(v.cluster))

    def feed(self, v):
        if v.kind == "sent":
            if v.msg is None or v.type not in ("market_tel", "prices", "bid", "award"):
                return
            if v.type in ("market_tel", "prices"):
                region = self.region_of_cluster.get(v.cluster) if self.tallies else None
                self.tally.sent(v.nid, v.type, v.msg, v.dst, v.t, region)
                if region is not None:
                    self.tallies[region].sent(v.nid, v.type, v.msg, v.dst, v.t)
            a = self._auction(v)
            if a is not None:
                a.sent(v.nid, v.type, v.msg, v.dst, v.t, v.fid)
                if v.fid in a.in_flight:
                    self.owner[v.fid] = a
        elif v.kind == "fate" and v.fate in ("delivered", "dropped"):
            a = self.owner.get(v.fid)
            if a is not None:
                a.fate(v.fate, v.fid, v.to, v.copy, v.t)
                if v.fid not in a.in_flight:
                    del self.owner[v.fid]

    def result(self, span):
        section, flat = self.tally.result(span.end_ns)
        flat.update(dict.fromkeys(AUCTION_FLAT))
        if section is not None:
            per = {r: a.result() for r, a in sorted(self.auctions.items())}
            section["auction"] = per
            if len(per) == 1:
                d = next(iter(per.values()))["decision"]
            else:  # the fleet's figures: every region's decisions together, in the first region's rounds
                first = next(iter(self.auctions.values()))
                d = stats([x for a in self.auctions.values() for x in a.samples_s], first.slot_s, unit="rounds")
            flat.update({"market_decision_%s" % k: d[k] for k in ("s_p50", "s_p99", "s_max", "rounds_p50",
                                                                  "rounds_p99", "rounds_max")})
            flat["market_bids_not_awarded"] = sum(a["outcomes"]["not_awarded"] for a in per.values())
            flat["market_bids_lost"] = sum(a["outcomes"]["lost"] for a in per.values())
            if self.tallies:
                section["regions"] = {r: self._region(r, span) for r in sorted(self.tallies, key=int)}
        return {"market": section, "flat": flat}

    def _region(self, r, span):
        """One region's allocation figures (its nodes' MARKET_TEL, its coordinator's rounds)."""
        part, fl = self.tallies[r].result(span.end_ns)
        if part is None:
            part = dict(dict.fromkeys(TOTALS, 0), rounds_complete=0, rounds_void=0, malformed=0, nodes={})
        row = {k: part[k] for k in TOTALS + ("rounds_complete", "rounds_void")}
        row["nodes"] = len(part["nodes"])
        row["lost_share"] = fl["market_lost_share"]
        row["conservative_share_max"] = fl["market_conservative_share_max"]
        return row
