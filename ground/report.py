"""Reports of one run, from ground.metrics' dict: JSON, Prometheus text, a
terminal table and a PNG timeline.

    paths = write_reports(run_dir, header, metrics, events)
    # {"json": .../metrics.json, "prom": .../metrics.prom,
    #  "table": .../metrics.txt, "png": .../timeline.png}
    print(format_table(metrics))

Each format is also a pure function of its input (to_json, to_prometheus,
format_table) so it can be tested without files; only write_reports and
plot_timeline (ground/report_plot.py) touch the disk. The PNG needs
matplotlib, imported only when a timeline is drawn; it is written last, so a missing matplotlib
costs the picture and nothing else. `ground run --no-plot` skips it (drawing
is most of a short --sim run's wall time: about 0.25 s plus matplotlib's
import on the first picture).

Prometheus text exposition format (version 0.0.4), as written here: one
`# HELP` and one `# TYPE` line per family, then its samples as one
uninterrupted group; names `fleetloop_[a-z_]*`, counters end in `_total`;
label values escape backslash, double quote and newline; values are Go-style
floats (`NaN`, `+Inf`); no timestamps (the figures describe a finished run).
A figure with no value (no samples, no T) is written as NaN.
"""

import json
import math
import os

from ground import metrics as M
from ground.metrics import rollout as rollout_metrics
from ground.metrics.blast import BLAST_GAUGES
from ground.report_plot import plot_timeline
from ground.report_rollout import plot_rollout, rollout_series


def write_reports(run_dir, header, metrics, events, plot=True, timeline=None, run_id=None):
    """Write metrics.json, metrics.prom, metrics.txt and timeline.png into
    run_dir; return their paths by format. `events` is read once, for the
    timeline only, unless the timeline is given (ground.metrics.Metrics.timeline()).
    plot=False (ground run --no-plot): no timeline.png, and one left from an
    earlier write to this folder is removed (it would show another run).
    run_id: the run's name for the Prometheus labels (default: run_dir's
    name; `ground metrics --out` passes the folder of the trace it read)."""
    os.makedirs(run_dir, exist_ok=True)
    paths = {
        "json": os.path.join(run_dir, "metrics.json"),
        "prom": os.path.join(run_dir, "metrics.prom"),
        "table": os.path.join(run_dir, "metrics.txt"),
        "png": os.path.join(run_dir, "timeline.png"),
    }
    _write_text(paths["json"], to_json(metrics))
    # One run's file says which run it is: scenario and run_id (the run
    # folder's name, wherever the reports are written) on every sample, so files from many runs can be merged.
    # (Not `run`: hil's session merge adds its own `run`, the index in a test.)
    run_labels = {"scenario": header.get("scenario") or "", "run_id": run_id or os.path.basename(os.path.normpath(run_dir))}
    _write_text(paths["prom"], to_prometheus(metrics, labels=run_labels))
    _write_text(paths["table"], format_table(metrics, header.get("regions")))
    rollout_png = os.path.join(run_dir, "rollout.png")
    if not plot:
        for p in (paths["png"], rollout_png):
            if os.path.exists(p):
                os.remove(p)
        del paths["png"]
        return paths
    title = "%s (seed %s)" % (header.get("scenario") or "run", header.get("seed"))
    plot_timeline(timeline if timeline is not None else M.timeline(header, events), paths["png"], title=title)
    if metrics.get("rollout") and events is not None:  # a run with a rollout: clusters by version (rollout.png)
        plot_rollout(rollout_series(header, events), rollout_png, title=title)
        paths["rollout_png"] = rollout_png
    elif os.path.exists(rollout_png):
        os.remove(rollout_png)  # from an earlier write to this folder: another run's
    return paths


def _write_text(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    os.replace(tmp, path)


# ---- JSON -------------------------------------------------------------------


def to_json(metrics):
    return json.dumps(metrics, sort_keys=True, indent=2, allow_nan=False) + "\n"


# ---- Prometheus text exposition -----------------------------------------------


def _prom_value(v):
    if v is None:
        return "NaN"
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        return str(v)
    v = float(v)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(v)


def _prom_label(v):
    return str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _prom_help(text):
    return text.replace("\\", "\\\\").replace("\n", "\\n")


class _Exposition:
    """Families in the order first declared; each family's samples grouped."""

    def __init__(self, prefix="fleetloop_", labels=None):
        self.prefix = prefix
        self.labels = dict(labels or {})  # on every sample (a sample's own labels win)
        self.families = {}  # name -> [type, help, [(suffix, labels, value)]]

    def family(self, name, type_, help_):
        self.families.setdefault(self.prefix + name, [type_, help_, []])
        return self.prefix + name

    def sample(self, family, value, suffix="", **labels):
        self.families[family][2].append((suffix, dict(self.labels, **labels), value))

    def text(self):
        out = []
        for name, (type_, help_, samples) in self.families.items():
            if not samples:
                continue
            out.append("# HELP %s %s" % (name, _prom_help(help_)))
            out.append("# TYPE %s %s" % (name, type_))
            for suffix, labels, value in samples:
                lab = ",".join('%s="%s"' % (k, _prom_label(v)) for k, v in sorted(labels.items()))
                out.append("%s%s%s %s" % (name, suffix, "{%s}" % lab if lab else "", _prom_value(value)))
        return "\n".join(out) + "\n" if out else ""


def _summary(x, family_s, family_t, what, clusters, key, t_s):
    """A summary in seconds and one in election timeouts per cluster."""
    fs = x.family(family_s, "summary", "%s, mission seconds (quantiles over completed events)" % what)
    ft = x.family(family_t, "summary", "%s, in election timeouts T" % what)
    for cid in sorted(clusters, key=_int_key):
        st = clusters[cid][key]
        times = [e["s"] for e in st["events"]]
        for q, k in (("0.5", "p50"), ("0.99", "p99")):
            x.sample(fs, st["s_" + k], cluster=cid, quantile=q)
        x.sample(fs, round(sum(times), 9), "_sum", cluster=cid)
        x.sample(fs, len(times), "_count", cluster=cid)
        for q, k in (("0.5", "p50"), ("0.99", "p99")):
            x.sample(ft, st["T_" + k], cluster=cid, quantile=q)
        x.sample(ft, round(sum(times) / t_s, 9) if t_s else None, "_sum", cluster=cid)
        x.sample(ft, len(times), "_count", cluster=cid)
    fm = x.family(family_s.replace("_seconds", "_max_seconds"), "gauge", "%s, maximum, mission seconds" % what)
    for cid in sorted(clusters, key=_int_key):
        x.sample(fm, clusters[cid][key]["s_max"], cluster=cid)


# Per-cluster families past the summaries: name, type, help, value.
_PER_CLUSTER = (
    (
        "failovers_incomplete_total",
        "counter",
        "Coordinator crashes with no successor claim by the end of the run",
        lambda c: len(c["failover"]["incomplete"]),
    ),
    (
        "detections_missed_total",
        "counter",
        "Node crashes no live peer's telemetry showed by the end of the run",
        lambda c: len(c["detection"]["missed"]),
    ),
    (
        "decisions_incomplete_total",
        "counter",
        "Coordinator crashes after which live members never named one new coordinator",
        lambda c: len(c["decision"]["incomplete"]),
    ),
    (
        "split_brain_total",
        "counter",
        "Terms claimed by two or more nodes of one cluster",
        lambda c: c["split_brain"]["count"],
    ),
    (
        "claim_overlaps_total",
        "counter",
        "Intervals where two nodes of one cluster both claimed coordinator",
        lambda c: c["overlap"]["count"],
    ),
    (
        "claim_overlap_seconds",
        "gauge",
        "Total length of overlapping coordinator claims, mission seconds",
        lambda c: c["overlap"]["s"],
    ),
    (
        "leader_changes_total",
        "counter",
        "Coordinator changes (a higher term claimed by another node)",
        lambda c: c["leader"]["changes"],
    ),
    (
        "leader_changes_per_hour",
        "gauge",
        "Coordinator changes per mission hour",
        lambda c: c["leader"]["changes_per_hour"],
    ),
    (
        "no_coordinator_ratio",
        "gauge",
        "Share of mission time with no coordinator all live members agree on",
        lambda c: c["no_coordinator_share"],
    ),
    (
        "coordination_bytes_ratio",
        "gauge",
        "Coordination bytes (all but telemetry and log) over all bytes sent",
        lambda c: c["coordination_bytes_share"],
    ),
)


def to_prometheus(metrics, labels=None):
    """metrics.prom: the run's figures as Prometheus text (format 0.0.4);
    `labels` (e.g. scenario and run_id) go on every sample."""
    x = _Exposition(labels=labels)
    clusters = metrics.get("clusters", {})
    t_ms = metrics.get("election_timeout_ms")
    t_s = t_ms / 1000.0 if t_ms else None
    f = x.family("mission_seconds", "gauge", "Mission time covered by the trace")
    x.sample(f, metrics.get("mission_s"))
    f = x.family("election_timeout_seconds", "gauge", "Election timeout T of the run, mission seconds")
    x.sample(f, t_s)

    for key, what in (
        ("failover", "Coordinator failover time"),
        ("detection", "Failure-detection time"),
        ("decision", "Decision latency after a coordinator crash"),
    ):
        _summary(x, key + "_seconds", key + "_election_timeouts", what, clusters, key, t_s)
    for name, type_, help_, get in _PER_CLUSTER:
        f = x.family(name, type_, help_)
        for cid in sorted(clusters, key=_int_key):
            x.sample(f, get(clusters[cid]), cluster=cid)

    nodes = metrics.get("nodes", {})
    for name, key, type_, help_ in (
        ("node_messages_total", "messages", "counter", "Frames sent by a node, by message type"),
        ("node_bytes_total", "bytes", "counter", "Line bytes sent by a node, by message type"),
        ("node_messages_per_hour", "messages_per_hour", "gauge", "Frames sent by a node per mission hour, by type"),
        ("node_bytes_per_hour", "bytes_per_hour", "gauge", "Line bytes sent by a node per mission hour, by type"),
    ):
        f = x.family(name, type_, help_)
        for nid in sorted(nodes, key=_int_key):
            row = nodes[nid]
            for tname, t in sorted(row["types"].items()):
                x.sample(f, t[key], cluster=row["cluster"], node=nid, type=tname)

    fr = metrics.get("frames", {})
    for name, key, help_ in (
        ("frames_sent_total", "sent", "Frames the ground received from nodes"),
        ("frames_bad_total", "bad", "Sent frames the ground could not decode"),
        ("frames_delivered_total", "delivered", "Deliveries, duplicate copies included"),
        ("frames_duplicated_total", "duplicated", "Extra copies made by the link model"),
        ("frames_corrupted_total", "corrupted", "Copies altered by the link model"),
        ("frames_converted_total", "converted", "Frames down-converted to an older protocol version for a recipient"),
        ("frames_unfated_total", "unfated", "Sent frames with a recipient that got neither delivered nor dropped"),
    ):
        f = x.family(name, "counter", help_)
        x.sample(f, fr.get(key))
    f = x.family("frames_dropped_total", "counter", "Drops, by reason")
    for reason, n in sorted(fr.get("dropped", {}).items()):
        x.sample(f, n, reason=reason)
    f = x.family("faults_total", "counter", "Fault events, by fault")
    for fault, n in sorted(metrics.get("faults", {}).items()):
        x.sample(f, n, fault=fault)
    f = x.family("anomalies_total", "counter", "Trace events skipped as malformed or naming unknown nodes or frames")
    x.sample(f, metrics.get("anomalies", {}).get("count"))
    fl = metrics.get("flat", {})
    for name, key, help_ in (
        ("accusations_total", "accusations", "ACCUSE frames auditors sent the ground (docs/CONTAINMENT.md)"),
        ("accusations_refused_total", "accusations_refused", "Accusations an elector refused (forged, no evidence)"),
    ):
        f = x.family(name, "counter", help_)
        x.sample(f, fl.get(key))
    for name, key, help_ in (("quarantined_nodes", "quarantined_nodes", "Different nodes some elector quarantined"),
                             *(BLAST_GAUGES if metrics.get("blast") else ())):  # a lineage fault's blast radius
        x.sample(x.family(name, "gauge", help_), fl.get(key))
    air = (metrics.get("airtime") or {}).get("nodes", {})
    if air:
        f = x.family("node_airtime_seconds_total", "counter", "Time on air of a node's radio, by message type")
        for nid in sorted(air, key=_int_key):
            for tname, t in sorted(air[nid]["types"].items()):
                x.sample(f, t["airtime_s"], node=nid, type=tname)
        for name, key, help_ in (
            ("node_airtime_hour_duty_max", "hour_duty_max", "A node's most time on air in a sliding hour, over 1 h"),
            ("node_airtime_coordination_ratio", "coordination_share", "Coordination's share of a node's airtime"),
        ):
            f = x.family(name, "gauge", help_)
            for nid in sorted(air, key=_int_key):
                x.sample(f, air[nid][key], node=nid)
    mk = metrics.get("market")
    if mk:
        for name, key, help_ in (
            ("market_produced", "produced", "Units produced, by node (latest MARKET_TEL)"),
            ("market_lost", "lost", "Units short of the uncoordinated ideal, by node (latest MARKET_TEL)"),
            ("market_leases", "leases", "Leases a node holds (latest MARKET_TEL)"),
            ("market_refused", "refused", "Bids refused, by node (latest MARKET_TEL)"),
        ):
            f = x.family(name, "gauge", help_)
            for nid in sorted(mk["nodes"], key=_int_key):
                x.sample(f, mk["nodes"][nid][key], node=nid)
        f = x.family("market_mode_share", "gauge", "Share of a node's reported time in each autonomy mode")
        for nid in sorted(mk["nodes"], key=_int_key):
            for mode, share in sorted(mk["nodes"][nid]["mode_share"].items()):
                x.sample(f, share, node=nid, mode=mode)
        f = x.family("market_rounds_total", "counter", "Auction rounds the regional coordinator broadcast, by status")
        x.sample(f, mk["rounds_complete"], status="complete")
        x.sample(f, mk["rounds_void"], status="void")
        regions = mk.get("regions") or {}
        if regions:  # several regions: each one's own figures, labelled region=...
            f = x.family("market_region_rounds_total", "counter", "Auction rounds a region's coordinator broadcast,"
                         " by status")
            for r in sorted(regions, key=_int_key):
                x.sample(f, regions[r]["rounds_complete"], region=r, status="complete")
                x.sample(f, regions[r]["rounds_void"], region=r, status="void")
            for name, key, help_ in (
                ("market_region_produced", "produced", "Units a region's nodes produced (latest MARKET_TEL each)"),
                ("market_region_lost", "lost", "Units short of the uncoordinated ideal in a region"),
                ("market_region_lost_ratio", "lost_share", "A region's units lost / (produced + lost)"),
                ("market_region_leases", "leases", "Leases a region's nodes hold"),
                ("market_region_refused", "refused", "Bids refused in a region"),
            ):
                f = x.family(name, "gauge", help_)
                for r in sorted(regions, key=_int_key):
                    x.sample(f, regions[r][key], region=r)
        _auction_prometheus(x, mk.get("auction") or {})
    rt = metrics.get("realtime")
    if rt:
        f = x.family("realtime_lateness_seconds", "summary", "How late a real-time run's timers ran against their"
                     " wall schedule, wall seconds")
        la = rt["lateness"]
        for q, key in (("0.5", "p50_ms"), ("0.99", "p99_ms")):
            x.sample(f, None if la[key] is None else la[key] / 1000.0, quantile=q)
        x.sample(f, la["n"], suffix="_count")
        x.sample(x.family("realtime_time_scale", "gauge", "Mission seconds per wall second of a real-time run"),
                 rt["time_scale"])
    rollout_metrics.prometheus(x, metrics)
    return x.text()


def _auction_prometheus(x, regions):
    """Bid sent to award received per region, and bids by outcome (ground/metrics/market.py)."""
    fs = x.family("market_decision_seconds", "summary", "Auction decision latency, a bid sent to its award received,"
                  " mission seconds (quantiles over awarded bids)")
    fr = x.family("market_decision_rounds", "summary", "Auction decision latency in auction rounds (slot_ms)")
    fm = x.family("market_decision_max_seconds", "gauge", "Auction decision latency, maximum, mission seconds")
    fb = x.family("market_bids_total", "counter", "Bids by what became of them: awarded, not_awarded (refused or"
                  " outbid), void, lost (dropped on a link), unannounced, open (at the end)")
    for region in sorted(regions, key=_int_key):
        a = regions[region]
        d, round_s = a["decision"], a.get("round_s")
        for unit, f in (("s", fs), ("rounds", fr)):
            for q, k in (("0.5", "p50"), ("0.99", "p99")):
                x.sample(f, d["%s_%s" % (unit, k)], region=region, quantile=q)
        x.sample(fs, d["s_sum"], "_sum", region=region)
        x.sample(fs, d["count"], "_count", region=region)
        x.sample(fr, round(d["s_sum"] / round_s, 9) if round_s else None, "_sum", region=region)
        x.sample(fr, d["count"], "_count", region=region)
        x.sample(fm, d["s_max"], region=region)
        for outcome, n in a["outcomes"].items():
            x.sample(fb, n, region=region, outcome=outcome)


def _int_key(s):
    try:
        return (0, int(s), "")
    except ValueError:
        return (1, 0, str(s))


# ---- terminal table -------------------------------------------------------------


def _fmt(v, spec="%.2f"):
    if v is None:
        return "-"
    if isinstance(v, float):
        return spec % v
    return str(v)


def _pct(v):
    return "-" if v is None else "%.1f %%" % (100.0 * v)


def _pct3(v):
    return "-" if v is None else "%.3f %%" % (100.0 * v)


def _triple(st, unit, stats=("p50", "p99", "max")):
    return "/".join(_fmt(st["%s_%s" % (unit, k)]) for k in stats)


def _table(rows):
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for j, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def format_table(metrics, regions=None):
    """Plain-text summary of the key figures, columns aligned. Above
    fleettable.AGGREGATE_ABOVE clusters, aggregates (ground/fleettable.py)
    and the fleet's row instead of one row per cluster; `regions` (the trace
    header's) adds the figures per region."""
    from ground import fleettable

    fl = metrics["flat"]
    t_ms = metrics.get("election_timeout_ms")
    lines = [
        "fleetloop run: %s  seed %s  mode %s  mission %s s  T %s ms"
        % (
            metrics.get("scenario"),
            metrics.get("seed"),
            metrics.get("mode"),
            _fmt(metrics.get("mission_s"), "%.3f"),
            _fmt(t_ms, "%g"),
        ),
        "",
    ]
    rows = [
        [
            "cluster",
            "nodes",
            "failovers",
            "failover T p50/p99/max",
            "split-brain",
            "overlaps (s)",
            "changes",
            "changes/h",
            "detect s p50/max",
            "decide s p50/max",
            "no coord",
            "coord bytes",
        ]
    ]

    def row(name, n_nodes, fo, fo_inc, fo_st, split, ov_n, ov_s, ch, ch_h, det, dec, noc, cb):
        rows.append(
            [
                name,
                str(n_nodes),
                "%d (+%d open)" % (fo, fo_inc) if fo_inc else str(fo),
                _triple(fo_st, "T"),
                str(split),
                "%d (%s)" % (ov_n, _fmt(ov_s)),
                str(ch),
                _fmt(ch_h, "%.1f"),
                _triple(det, "s", ("p50", "max")),
                _triple(dec, "s", ("p50", "max")),
                _pct(noc),
                _pct(cb),
            ]
        )

    clusters = metrics.get("clusters", {})
    aggregate = len(clusters) > fleettable.AGGREGATE_ABOVE
    if aggregate:
        lines += fleettable.lines(metrics, regions, _table) + ["", "the fleet:"]
    for cid in sorted(clusters, key=_int_key) if not aggregate else ():
        c = clusters[cid]
        row(
            cid,
            len(c["members"]),
            c["failover"]["count"],
            len(c["failover"]["incomplete"]),
            c["failover"],
            c["split_brain"]["count"],
            c["overlap"]["count"],
            c["overlap"]["s"],
            c["leader"]["changes"],
            c["leader"]["changes_per_hour"],
            c["detection"],
            c["decision"],
            c["no_coordinator_share"],
            c["coordination_bytes_share"],
        )
    if len(clusters) != 1:
        st = {u + "_" + k: fl.get("%s_%s_%s" % ("failover", u, k)) for u in ("s", "T") for k in ("p50", "p99", "max")}
        det = {"s_" + k: fl.get("detection_s_" + k) for k in ("p50", "p99", "max")}
        dec = {"s_" + k: fl.get("decision_s_" + k) for k in ("p50", "p99", "max")}
        row(
            "all",
            sum(len(c["members"]) for c in clusters.values()),
            fl["failover_count"],
            fl["failover_incomplete"],
            st,
            fl["split_brain"],
            fl["overlap_count"],
            fl["overlap_s"],
            fl["leader_changes"],
            fl["leader_changes_per_hour"],
            det,
            dec,
            fl["no_coordinator_share_max"],
            fl["coordination_bytes_share"],
        )
    lines += _table(rows)
    fr = metrics.get("frames", {})
    drops = ", ".join("%s %d" % kv for kv in sorted(fr.get("dropped", {}).items()))
    lines += [
        "",
        "frames    sent %d  delivered %d  dropped %d%s  duplicated %d  corrupted %d  converted %d  bad %d  unfated %d"
        % (
            fr.get("sent", 0),
            fr.get("delivered", 0),
            fr.get("dropped_total", 0),
            " (%s)" % drops if drops else "",
            fr.get("duplicated", 0),
            fr.get("corrupted", 0),
            fr.get("converted", 0),
            fr.get("bad", 0),
            fr.get("unfated", 0),
        ),
        "traffic   busiest node %s msg/h, %s B/h"
        % (_fmt(fl.get("messages_per_node_hour_max"), "%.0f"), _fmt(fl.get("bytes_per_node_hour_max"), "%.0f")),
        "faults    %s" % (", ".join("%s %d" % kv for kv in sorted(metrics.get("faults", {}).items())) or "none"),
    ]
    mk = metrics.get("market")
    if mk:
        lines.append(
            "market    rounds %d complete, %d void  produced %d  lost %d (share %s)  leases %d  bids %d  refused %d"
            "  conservative share max %s"
            % (mk["rounds_complete"], mk["rounds_void"], mk["produced"], mk["lost"],
               _fmt(fl.get("market_lost_share"), "%.3f"), mk["leases"], mk["bids"], mk["refused"],
               _fmt(fl.get("market_conservative_share_max"), "%.3f")))
        from ground import fleettable

        auction = mk.get("auction") or {}
        if len(auction) > fleettable.AGGREGATE_ABOVE:  # many regions: aggregates over them (ground/fleettable.py)
            lines += [""] + fleettable.market_lines(mk, _table) + [""]
        else:
            for region, g in sorted((mk.get("regions") or {}).items(), key=lambda kv: _int_key(kv[0])):
                lines.append("market    region %s: rounds %d complete, %d void  produced %d  lost %d (share %s)"
                             "  leases %d  bids %d  refused %d  (%d nodes reporting)"
                             % (region, g["rounds_complete"], g["rounds_void"], g["produced"], g["lost"],
                                _fmt(g["lost_share"], "%.3f"), g["leases"], g["bids"], g["refused"], g["nodes"]))
            for region, a in sorted(auction.items(), key=lambda kv: _int_key(kv[0])):
                d = a["decision"]
                lines.append(
                    "auction   region %s: bid to award p50/p99/max %s s = %s rounds; bids %d: %s"
                    % (region, _triple(d, "s"), _triple(d, "rounds"), a["bids"],
                       ", ".join("%s %d" % (k.replace("_", " "), n) for k, n in a["outcomes"].items())))
    if metrics.get("airtime"):
        lines.append("airtime   busiest node %s s on air (%s of the run), busiest hour %s, coordination %s of"
                     " airtime, longest wait %s s, radio drops %d"
                     % (_fmt(fl.get("airtime_s_max"), "%.2f"), _pct3(fl.get("airtime_duty_max")),
                        _pct3(fl.get("airtime_hour_duty_max")), _pct(fl.get("airtime_coordination_share")),
                        _fmt(fl.get("airtime_wait_s_max"), "%.2f"), fl.get("radio_drops") or 0))
    rt = metrics.get("realtime")
    if rt:  # a real-time run: how late its timers ran against the wall schedule (ground/lateness.py)
        la = rt["lateness"]
        lines.append("real time scale %gx: timers late p50 %s ms, p99 %s ms, max %s ms (wall; %d timers)"
                     % (rt["time_scale"], _fmt(la["p50_ms"], "%.3f"), _fmt(la["p99_ms"], "%.3f"),
                        _fmt(la["max_ms"], "%.1f"), la["n"]))
    lines.append("anomalies %d" % metrics.get("anomalies", {}).get("count", 0))
    for ex in metrics.get("anomalies", {}).get("examples", [])[:5]:
        lines.append("          " + ex)
    return "\n".join(lines) + "\n"


# ---- PNG timeline ----------------------------------------------------------------
