"""Market-tier metrics from a trace: how the regional market allocated.

    tally = MarketTally(start_ns)
    tally.sent(src, type_name, msg, dst, mission_ns)   # every sent frame's decoded fields
    section, flat = tally.result(end_ns)

Read from two kinds of frame (docs/MARKET.md, docs/METRICS.md):
  - MARKET_TEL (node -> ground): each node's running totals since its boot
    (produced, lost: units short of the uncoordinated ideal, bids, awards,
    refused), the leases it holds now, and its autonomy mode. The latest
    report counts; when a total goes down the node rebooted, and what it had
    reported before is carried over, so totals span the whole run. The time
    between reports is charged to the mode the earlier one named.
  - PRICES broadcast by the regional coordinator: one per round; counted
    once per (term, round) by status (complete, void).
Nothing here reads a clock; times are the trace's mission ns.
"""

from ground.protocol import MODE_NAMES, ROUND_STATUS_NAMES

TOTALS = ("produced", "lost", "leases", "bids", "awards", "refused")
COUNTERS = ("produced", "lost", "bids", "awards", "refused")  # since boot; leases is a level
BROADCAST = 0xFFFF
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
        self.rounds = {}  # (term, round) -> status
        self.malformed = 0

    def sent(self, src, type_, msg, dst, t):
        if type_ == "market_tel":
            self._tel(src, msg, t)
        elif type_ == "prices" and dst == BROADCAST:
            term, rnd, status = _int(msg, "term"), _int(msg, "round"), _int(msg, "status")
            if None in (term, rnd, status):
                self.malformed += 1
            elif status in (COMPLETE, VOID):
                self.rounds.setdefault((term, rnd), status)

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
