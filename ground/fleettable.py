"""The terminal table at fleet scale: above AGGREGATE_ABOVE clusters,
ground/report.py's format_table prints these aggregates instead of one row
per cluster (metrics.json keeps every cluster).

    figure          p50     p90     max     worst clusters
    failovers       0       1       3       c17 3, c4 2, c9 2, c1 1, c33 1

One row per figure the per-cluster table shows: its percentiles over the
clusters (nearest rank) and the five worst clusters (largest values, ties by
cluster id; only clusters where it is above zero). With regions (the trace
header's `regions`), the same figures per region: one row per region up to
AGGREGATE_ABOVE regions, else their percentiles and the five worst regions.
Above AGGREGATE_ABOVE regions the market's per-region figures (metrics
market.regions and market.auction) are aggregated the same way
(market_lines).
"""

AGGREGATE_ABOVE = 12  # clusters (or regions) above which rows become aggregates
WORST = 5

# (label, value of one cluster's metrics, format, how a region combines its clusters' values)
FIGURES = (
    ("failovers", lambda c: c["failover"]["count"], "%d", "sum"),
    ("failover T p99", lambda c: c["failover"].get("T_p99"), "%.2f", "max"),
    ("split-brain", lambda c: c["split_brain"]["count"], "%d", "sum"),
    ("overlap s", lambda c: c["overlap"]["s"], "%.2f", "sum"),
    ("changes/h", lambda c: c["leader"]["changes_per_hour"], "%.1f", "max"),
    ("detect s max", lambda c: c["detection"].get("s_max"), "%.2f", "max"),
    ("decide s max", lambda c: c["decision"].get("s_max"), "%.2f", "max"),
    ("no coord share", lambda c: c["no_coordinator_share"], "pct", "max"),
    ("coord bytes share", lambda c: c["coordination_bytes_share"], "pct", "max"),
)


def percentile(values, p):
    """Nearest-rank percentile of a non-empty list."""
    v = sorted(values)
    k = max(0, min(len(v) - 1, int(-(-p * len(v) // 100)) - 1))
    return v[k]


def _fmt(v, spec):
    if v is None:
        return "-"
    if spec == "pct":
        return "%.1f %%" % (100.0 * v)
    return spec % v


def _worst(values, spec, prefix):
    """The WORST largest values above zero, as `c17 3, c4 2`."""
    ranked = sorted(((v, k) for k, v in values.items() if v), key=lambda x: (-x[0], _key(x[1])))[:WORST]
    return ", ".join("%s%s %s" % (prefix, k, _fmt(v, spec)) for v, k in ranked) or "-"


def _key(k):
    try:
        return (0, int(k))
    except (TypeError, ValueError):
        return (1, str(k))


def _rows(per_item, prefix, what):
    """[figure, p50, p90, max, worst] rows over items {id: {label: value}}."""
    rows = [["figure", "p50", "p90", "max", "worst %s" % what]]
    for label, _, spec, _ in FIGURES:
        vals = {k: f[label] for k, f in per_item.items() if f[label] is not None}
        if not vals:
            rows.append([label, "-", "-", "-", "-"])
            continue
        xs = list(vals.values())
        rows.append([label, _fmt(percentile(xs, 50), spec), _fmt(percentile(xs, 90), spec), _fmt(max(xs), spec),
                     _worst(vals, spec, prefix)])
    return rows


def per_cluster(clusters):
    """{cluster id: {label: value}} from metrics["clusters"]."""
    return {cid: {label: get(c) for label, get, _, _ in FIGURES} for cid, c in clusters.items()}


def per_region(figures, regions):
    """{region: {label: value}}: each region's clusters combined (sum or max)."""
    out = {}
    for r in regions:
        rows = [figures[str(c)] for c in r.get("clusters", ()) if str(c) in figures]
        agg = {}
        for label, _, _, how in FIGURES:
            vals = [f[label] for f in rows if f[label] is not None]
            agg[label] = (sum(vals) if how == "sum" else max(vals)) if vals else None
        out[str(r.get("region"))] = agg
    return out


def lines(metrics, regions, table):
    """The aggregated part of the terminal table (lines), `table` laying out rows."""
    clusters = metrics.get("clusters", {})
    figures = per_cluster(clusters)
    nodes = sum(len(c["members"]) for c in clusters.values())
    out = ["%d clusters, %d nodes: aggregates over clusters (more than %d; every cluster is in metrics.json)"
           % (len(clusters), nodes, AGGREGATE_ABOVE), ""]
    out += table(_rows(figures, "c", "clusters"))
    if regions:
        reg = per_region(figures, regions)
        out.append("")
        if len(reg) > AGGREGATE_ABOVE:
            out.append("%d regions: aggregates over regions (a region: its clusters summed or at their max)" % len(reg))
            out += table(_rows(reg, "r", "regions"))
        else:
            head = ["region", "clusters"] + [label for label, _, _, _ in FIGURES]
            rows = [head]
            for r in regions:
                f = reg[str(r.get("region"))]
                rows.append([str(r.get("region")), str(len(r.get("clusters", ())))]
                            + [_fmt(f[label], spec) for label, _, spec, _ in FIGURES])
            out += table(rows)
    return out


# (label, value of one region's market figures {"alloc": market.regions[r], "auction": market.auction[r]}, format)
MARKET_FIGURES = (
    ("lost share", lambda g: g["alloc"].get("lost_share"), "%.3f"),
    ("rounds void", lambda g: g["alloc"].get("rounds_void"), "%d"),
    ("bids refused", lambda g: g["alloc"].get("refused"), "%d"),
    ("bids lost", lambda g: g["auction"]["outcomes"].get("lost"), "%d"),
    ("decision s p50", lambda g: g["auction"]["decision"].get("s_p50"), "%.2f"),
    ("decision s p99", lambda g: g["auction"]["decision"].get("s_p99"), "%.2f"),
)


def market_lines(mk, table):
    """The market per region, aggregated over many regions: each figure's
    p50, p90, max and the five worst regions; and the fewest rounds completed."""
    auction, alloc = mk.get("auction") or {}, mk.get("regions") or {}
    per = {r: {"alloc": alloc.get(r, {}), "auction": a} for r, a in auction.items()}
    rows = [["market figure", "p50", "p90", "max", "worst regions"]]
    for label, get, spec in MARKET_FIGURES:
        vals = {r: get(g) for r, g in per.items() if get(g) is not None}
        if not vals:
            rows.append([label, "-", "-", "-", "-"])
            continue
        xs = list(vals.values())
        rows.append([label, _fmt(percentile(xs, 50), spec), _fmt(percentile(xs, 90), spec), _fmt(max(xs), spec),
                     _worst(vals, spec, "r")])
    out = ["%d regions' markets: aggregates over regions (every region is in metrics.json market.regions and"
           " market.auction)" % len(per), ""]
    out += table(rows)
    done = {r: g.get("rounds_complete") for r, g in alloc.items() if g.get("rounds_complete") is not None}
    if done:
        fewest = sorted(done.items(), key=lambda kv: (kv[1], _key(kv[0])))[:WORST]
        out.append("fewest rounds complete: %s" % ", ".join("r%s %d" % kv for kv in fewest))
    return out
