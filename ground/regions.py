"""Regions and their markets, from a scenario's `market:` (one region over
every node) or `regions:` (several, each over its clusters: docs/SCENARIOS.md
"Regions"). ground/scenario.py calls parse_market / parse_regions once the
clusters are known; each returns RegionSpec(s) with the node.config.MarketConfig
every node of the region runs. Errors are ConfigErrors naming file:line.
"""

import re
from dataclasses import dataclass, field

from ground.protocol_frame import ADDR_BROADCAST, ADDR_CLUSTER
from ground import wireids
from ground.yamlfile import LocatedList, check_keys, number

_MARKET = {
    "region", "electors", "units", "slot_ms", "lead_ms", "horizon_slots", "window_slots", "steps_per_slot",
    "cutoff_ms", "autonomy_after_ms", "region_timeout_ms", "ack_timeout_ms", "telemetry_ms", "max_bids",
    "leases_per_node", "max_span", "stale_rounds",
    # fault containment (docs/CONTAINMENT.md)
    "auditors", "quarantine_cap_permille", "probation_ms", "defect_lineage", "defect_kind", "lineages",
    "sever",  # the ground's policy for this region (ground/sever.py), not a MarketConfig argument
}
DEFECT_KINDS = ("clearing", "drop_bid")  # MarketConfig.defect_kind 0, 1 (node/audit.py)
CLEARING_IMPLS = 2  # firmware node/market.py clearing(): lineage L runs clearing L % 2 (A or B)
MIN_LINEAGES = 3  # a cluster of ENFORCE_CLUSTER_SIZE or more mixes at least this many lineages
ENFORCE_CLUSTER_SIZE = 5
_REGION = _MARKET | {"clusters"}  # a regions: entry: its clusters and its MarketConfig arguments
# The region address base, the firmware's node/config.py _REGION_CLUSTERS (docs/MARKET.md): cluster
# numbers below it are clusters; from it on, region_cluster(region) is the cluster number a region's
# electors share (its address: cluster_addr(region_cluster(region))). The ground's one copy of it.
REGION_CLUSTERS = 0xE00


def region_cluster(region):
    """The cluster number of region `region`'s address (its electors share it)."""
    return REGION_CLUSTERS | region


def region_of(cluster):
    """The region whose address cluster number `cluster` is, or None for an ordinary cluster."""
    return cluster - REGION_CLUSTERS if cluster >= REGION_CLUSTERS else None


def announces_to_region(addr):
    """True for where a regional coordinator's round announcement (PRICES
    complete, void, resync) goes: the whole fleet, or one ordinary cluster
    (a region of a fleet of several announces to each of its clusters, one
    frame each: MarketConfig.clusters). Not a node, nor a region's address."""
    return addr == ADDR_BROADCAST or addr.__class__ is int and ADDR_CLUSTER <= addr < ADDR_CLUSTER | REGION_CLUSTERS


@dataclass
class RegionSpec:
    """One region (federation) of the scenario: its clusters, its nodes (the
    market's roster), its electors and its market. `market:` gives one, over
    every node; `regions:` gives several (docs/SCENARIOS.md "Regions")."""

    region: int  # the region number: its electors share the address cluster_addr(region_cluster(region))
    clusters: list  # cluster ids, sorted
    nodes: list  # node ids, sorted: the market's roster
    electors: list  # node ids, sorted
    market: object  # node.config.MarketConfig of every node of the region
    market_args: dict  # the MarketConfig arguments, as plain JSON data (a board's board.json)
    where: str = ""  # file:line of its section
    source: object = field(default=None, repr=False, compare=False)  # its Located section (file:line of each key)
    sever: str = ""  # "unreplaced": the ground severs it when its accused coordinator is not replaced (ground/sever.py)
    wire: object = field(default=None, repr=False, compare=False)  # addressing: region: its ids on the wire (ground/wireids.py)


def parse_market(data, sc):
    """market: the regional market tier (docs/MARKET.md): one region over
    every node of the scenario; keys are node.config.MarketConfig's arguments."""
    m = data["market"]
    check_keys(m, _MARKET, "market", required=("electors", "units"), where=data.where("market"))
    market, args = _market_config(m, sc, sorted(sc.nodes), "market")
    return RegionSpec(market.region, sorted(sc.clusters), sorted(sc.nodes), list(market.electors), market, args,
                      m.where(), m, _sever(m))


def parse_regions(data, sc, wide=False):
    """regions: [{region, clusters, electors, units, ...MarketConfig}]: several
    regions, each with a market of its own over its clusters' nodes. Every
    cluster is in exactly one region; region numbers differ. wide
    (`addressing: region`): each region's MarketConfig is in its own wire
    ids (ground/wireids.py), its RegionSpec in the scenario's."""
    rl = data["regions"]
    if not isinstance(rl, LocatedList) or not rl:
        raise data.error("regions", "scenario.regions: a non-empty list of {region, clusters, electors, units, ...}")
    out, owner, numbers = [], {}, {}
    for i, r in enumerate(rl):
        what = "regions[%d]" % i
        check_keys(r, _REGION, what, required=("region", "clusters", "electors", "units"), where=rl.where(i))
        num = number(r, "region", what, lo=0, hi=0x1FE, integer=True)
        if num in numbers:
            raise r.error("region", "%s: region %d is also %s" % (what, num, numbers[num]))
        numbers[num] = "regions[%d] (%s)" % (i, r.where("region"))
        cl = r["clusters"]
        if not isinstance(cl, list) or not cl:
            raise r.error("clusters", "%s.clusters: a non-empty list of cluster ids" % what)
        for c in cl:
            if c not in sc.clusters:
                raise r.error("clusters", "%s.clusters: unknown cluster %r" % (what, c))
            if c in owner:
                raise r.error("clusters", "%s.clusters: cluster %d is also in %s" % (what, c, owner[c]))
            owner[c] = "region %d (%s)" % (num, r.where("clusters"))
        roster = sorted(n for c in cl for n in sc.clusters[c])
        kw = {k: v for k, v in r.items() if k != "clusters"}
        if len(rl) > 1 or wide:  # its rounds are announced to its clusters, not to the whole fleet (MarketConfig.clusters)
            kw["clusters"] = sorted(cl)
        ids = wireids.region_ids(r, num, roster, cl) if wide else None
        market, args = _market_config(r, sc, roster, "region %d" % num, kw, ids)
        electors = sorted(r["electors"]) if ids is not None else list(market.electors)
        out.append(RegionSpec(num, sorted(cl), roster, electors, market, args, r.where(), r, _sever(r), ids))
    missing = sorted(set(sc.clusters) - set(owner))
    if missing:
        raise data.error("regions", "scenario.regions: clusters %s are in no region; every cluster belongs to"
                         " exactly one" % missing[:20])
    return out


# MarketConfig's whole-number arguments and their least values: checked
# here, at their line, because the firmware's MarketConfig range-checks only
# what a board must (node/config.py) and a string or a float gets further.
_INT_KEYS = {
    "slot_ms": 1, "lead_ms": 1, "horizon_slots": 8, "window_slots": 1, "steps_per_slot": 1, "cutoff_ms": 0,
    "autonomy_after_ms": 0, "region_timeout_ms": 1, "ack_timeout_ms": 1, "telemetry_ms": 1, "max_bids": 1,
    "leases_per_node": 1, "max_span": 1, "stale_rounds": 0, "quarantine_cap_permille": 1, "probation_ms": 0,
    "defect_lineage": -1,
}


def _market_config(m, sc, roster, what, kw=None, ids=None):
    """(MarketConfig, its arguments as JSON data) over `roster`; errors at m's
    file:line. ids: the region's wire ids (ground/wireids.py RegionIds), which
    the MarketConfig and its arguments then name nodes and clusters by."""
    from ground import firmware

    for e in m["electors"] if isinstance(m["electors"], list) else ():
        if e not in roster:
            raise m.error("electors", "%s.electors: node %r is not %s" % (
                what, e, "in the scenario" if what == "market" else "in the region's clusters"))
    for key, lo in _INT_KEYS.items():
        if key in m:
            number(m, key, what, lo=lo, integer=True)
    kw = {k: v for k, v in m.items()} if kw is None else kw
    kw.pop("lineages", None)
    kw.pop("sever", None)
    if "defect_kind" in kw:  # the planted defect (containment runs): what it does, as MarketConfig's number
        if kw["defect_kind"] not in DEFECT_KINDS:
            raise m.error("defect_kind", "market.defect_kind: one of %s, got %r" % (", ".join(DEFECT_KINDS),
                                                                                    kw["defect_kind"]))
        kw["defect_kind"] = DEFECT_KINDS.index(kw["defect_kind"])
    kw["units"] = tuple(kw["units"]) if isinstance(kw["units"], list) else kw["units"]
    aud = None
    if "auditors" in m:
        aud = derive_auditors(m, sc) if m["auditors"] == "auto" else m["auditors"]
        _check_auditors(m, sc, aud)
        kw["auditors"] = aud
        kw["cluster_of"] = [sc.nodes[n].cluster for n in roster]  # the quarantine cap is per cluster
    if "lineages" in m:
        if m["lineages"] != "enforce":
            raise m.error("lineages", "market.lineages: 'enforce' (check the placement rules at load), got %r"
                          % (m["lineages"],))
        _enforce_lineages(m, sc, aud or [])
    gens = [sc.nodes[n].hw_gen for n in roster]
    _check_autonomy(m)
    if ids is not None:
        kw = ids.market_kw(dict(kw, roster=roster))
        roster = kw.pop("roster")
    try:
        market = firmware.config.MarketConfig(roster=roster, gens=bytes(gens), **kw)
    except (ValueError, TypeError) as e:
        raise _refused(m, what, kw, str(e)) from None
    args = {"roster": roster, "gens": gens, **{k: list(v) if isinstance(v, tuple) else v for k, v in kw.items()}}
    return market, args


def _refused(m, what, kw, message):
    """MarketConfig's refusal (node/config.py words it without numbers: a
    board's flash) as a ConfigError at the line of the first argument it
    names that the file gives, with the value of each argument it names:
    as given, or MarketConfig's default (`slot_ms 8000, steps_per_slot 12
    (the default)`)."""
    import inspect

    from ground import firmware

    defaults = {k: p.default for k, p in inspect.signature(firmware.config.MarketConfig).parameters.items()}
    named = [k for k in re.findall(r"[a-z_]+", message) if k in defaults and k not in ("roster", "gens")]
    named = list(dict.fromkeys(named))
    shown = []
    for k in named:
        if k in kw:
            v = list(kw[k]) if isinstance(kw[k], (tuple, list)) else kw[k]
            if isinstance(v, list) and len(v) > 8:  # a value per roster node (cluster_of): its start
                v = "[%s, ... (%d in all)]" % (", ".join(map(str, v[:8])), len(v))
            shown.append("%s %s" % (k, v))
        elif defaults[k] is inspect.Parameter.empty:
            continue  # required, so always given: not here only when MarketConfig was called without it
        elif defaults[k] is not None:
            shown.append("%s %r (the default)" % (k, defaults[k]))
        else:
            shown.append("%s derived from the others (not given)" % k)
    at = next((k for k in named if k in m), None)
    text = "%s: %s" % (what, message) if what != "market" else message
    return m.error(at, text + (" (%s)" % ", ".join(shown) if shown else ""))


def _sever(m):
    v = m.get("sever", "")
    if v not in ("", "unreplaced"):
        raise m.error("sever", "sever: 'unreplaced' (the ground severs the region when its accused coordinator is not"
                      " replaced within one cycle), got %r" % (v,))
    if v and "auditors" not in m:
        raise m.error("sever", "sever: unreplaced needs auditors (only an auditor's accusation starts the judgement)")
    return v


AUDITORS_PER_CLEARING = 2  # auditors: auto: whoever coordinates, this many electors of the other clearing watch it


def clearing_counts(lineages):
    """How many of these lineages run each clearing: [A (even), B (odd)]."""
    counts = [0] * CLEARING_IMPLS
    for lineage in lineages:
        counts[lineage % CLEARING_IMPLS] += 1
    return counts


def derive_auditors(m, sc):
    """`auditors: auto`: whoever coordinates, two electors of the other
    clearing (lineage % 2) watch it, so two of each clearing, spread over
    clusters first, then the lowest ids. Electors that all run one clearing
    have nobody to audit them: an error at m's file:line."""
    electors = m["electors"] if isinstance(m["electors"], list) else []
    by_impl = {}
    for e in sorted(electors):
        by_impl.setdefault(sc.nodes[e].lineage % CLEARING_IMPLS, []).append(e)
    counts = clearing_counts(sc.nodes[e].lineage for e in electors)
    short = [impl for impl, n in enumerate(counts) if n < AUDITORS_PER_CLEARING]
    if short:
        raise m.error("auditors", "market.auditors auto: electors %s have %d of clearing %s; a coordinator of the"
                      " other clearing needs %d auditors of it (add electors of %s lineage, or name the auditors)"
                      % (sorted(electors), counts[short[0]], "AB"[short[0]], AUDITORS_PER_CLEARING,
                         ("an even", "an odd")[short[0]]))
    out = []
    for impl in range(CLEARING_IMPLS):
        es = by_impl[impl]
        spread, clusters = [], set()
        for e in es:  # one per cluster first: a partitioned cluster does not take both auditors away
            if sc.nodes[e].cluster not in clusters:
                clusters.add(sc.nodes[e].cluster)
                spread.append(e)
        out += (spread + [e for e in es if e not in spread])[:AUDITORS_PER_CLEARING]
    return sorted(out)


def _check_auditors(m, sc, aud):
    if not isinstance(aud, list) or not all(isinstance(a, int) and not isinstance(a, bool) for a in aud):
        raise m.error("auditors", "market.auditors: a list of node ids")
    electors = m["electors"] if isinstance(m["electors"], list) else []
    for a in aud:
        if a not in electors:
            raise m.error("auditors", "market.auditors: node %d is not an elector (an auditor re-runs rounds from"
                          " its replica of the ledger)" % a)
    d = m.get("defect_lineage", -1)
    if not isinstance(d, int) or isinstance(d, bool) or not -1 <= d <= 255:
        raise m.error("defect_lineage", "market.defect_lineage: a lineage 0..255, or -1 (none)")


def _enforce_lineages(m, sc, aud):
    """Placement rules (docs/CONTAINMENT.md): every cluster of 5 or more
    mixes at least 3 lineages; the electors run both clearings; whoever
    coordinates, at least 2 auditors run the other clearing."""
    by_cluster = {}
    for n in sc.nodes.values():
        by_cluster.setdefault(n.cluster, []).append(n)
    for cid, members in sorted(by_cluster.items()):
        lins = {n.lineage for n in members}
        if len(members) >= ENFORCE_CLUSTER_SIZE and len(lins) < MIN_LINEAGES:
            raise m.error("lineages", "market.lineages enforce: cluster %d has %d nodes of %d lineage(s) %s; a"
                          " cluster of %d or more mixes at least %d (clusters[].lineages)"
                          % (cid, len(members), len(lins), sorted(lins), ENFORCE_CLUSTER_SIZE, MIN_LINEAGES))
    electors = m["electors"] if isinstance(m["electors"], list) else []
    impl = {e: sc.nodes[e].lineage % CLEARING_IMPLS for e in electors}
    if len(set(impl.values())) < min(CLEARING_IMPLS, len(electors)):
        raise m.error("electors", "market.lineages enforce: electors %s all run clearing %s; spread them across"
                      " lineages" % (electors, "AB"[next(iter(impl.values()))]))
    for e in electors:
        others = [a for a in aud if a != e and sc.nodes[a].lineage % CLEARING_IMPLS != impl[e]]
        if len(others) < 2:
            raise m.error("auditors", "market.lineages enforce: elector %d (lineage %d) would be audited by %d"
                          " auditor(s) of another clearing %s; it needs 2" % (e, sc.nodes[e].lineage, len(others),
                                                                              others))


def _check_autonomy(m):
    """autonomy_after_ms >= cutoff_ms, said with both values and where each came from."""
    slot_ms = m.get("slot_ms", 6 * 3600 * 1000)
    lead_ms = m.get("lead_ms", slot_ms // 8)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (slot_ms, lead_ms)):
        return  # MarketConfig says what is wrong with them
    vals = {
        "cutoff_ms": (m.get("cutoff_ms"), 2 * slot_ms + lead_ms, "the default 2 slot_ms + lead_ms"),
        "autonomy_after_ms": (m.get("autonomy_after_ms"), 4 * slot_ms, "the default 4 slot_ms"),
    }
    said = {}
    for k, (given, default, why) in vals.items():
        if given is None:
            said[k] = (default, "%s = %d (%s, slot_ms %d%s)" % (k, default, why, slot_ms,
                                                               ", lead_ms %d" % lead_ms if "lead" in why else ""))
        elif isinstance(given, int) and not isinstance(given, bool):
            said[k] = (given, "%s = %d (%s)" % (k, given, m.where(k)))
        else:
            return
    if said["autonomy_after_ms"][0] < said["cutoff_ms"][0]:
        raise m.error("autonomy_after_ms" if "autonomy_after_ms" in m else "cutoff_ms" if "cutoff_ms" in m else None,
                      "market: %s must be >= %s: a node would go autonomous before it may stop bidding; set"
                      " autonomy_after_ms to at least %d" % (said["autonomy_after_ms"][1], said["cutoff_ms"][1],
                                                            said["cutoff_ms"][0]))
