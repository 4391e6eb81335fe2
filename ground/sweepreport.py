"""What `ground sweep` (ground/sweep.py) prints and writes: a line per size
as it finishes, the sizes beside the design's overhead table, the figures
by tier, and sweep.json, sweep.txt and sweep.png (overhead against fleet
size, log x) in the sweep's folder.

The design's table (DESIGN) gives one coordination overhead range per band
of fleet sizes; a size falls in the band whose lower bound it reaches
(500 nodes: the 500-2,000 band). Each resource's overhead (link budget,
CPU, production, docs/METRICS.md) is set beside that range: below, within
or above it.
"""

import json
import os

DESIGN = [
    {"nodes": [100, 500], "overhead_pct": [0, 2], "text": "< 2 %"},
    {"nodes": [500, 2000], "overhead_pct": [3, 8], "text": "3-8 %"},
    {"nodes": [2000, 10000], "overhead_pct": [5, 12], "text": "5-12 %"},
    {"nodes": [10000, 50000], "overhead_pct": [8, 15], "text": "8-15 %"},
    {"nodes": [50000, None], "overhead_pct": [10, 20], "text": "10-20 %"},
]
SHORT = {"intra_cluster": "cluster", "intra_region": "region", "inter_region": "inter-reg", "ground": "ground"}

HEADER = ("  nodes clust reg |  msg/node/h   B/node/h | link%  (p99) |  cpu%  (p99) | lost% | failover p50/p99 s (n)"
          " | auction p50/p99 s (n) | wall s")


def design_band(nodes):
    """The design's band for a fleet of `nodes` (None below 100)."""
    for b in DESIGN:
        lo, hi = b["nodes"]
        if nodes >= lo and (hi is None or nodes < hi):
            return b
    return None


def verdict(share, band):
    """below / within / above the band's range, for a share 0..1 (or '-')."""
    if share is None or band is None:
        return "-"
    pct = 100.0 * share
    lo, hi = band["overhead_pct"]
    return "below" if pct < lo else "above" if pct > hi else "within"


def _p(share, width=5):
    return "-".rjust(width) if share is None else ("%.*f" % (2 if share < 0.1 else 1, 100.0 * share)).rjust(width)


def _s(v):
    return "-" if v is None else "%.2f" % v


def _big(v):
    for unit, div in (("M", 1e6), ("k", 1e3)):
        if v >= div:
            return "%.1f%s" % (v / div, unit)
    return "%.0f" % v


def row_line(r):
    """One size, as it finishes."""
    fo, au = r["failover_s"], r["auction_decision_s"]
    return ("%7d %5d %3d | %11s %10s | %5s (%5s) | %5s (%5s) | %5s | %9s/%-6s (%d) | %9s/%-6s (%d) | %6.1f%s" % (
        r["nodes"], r["clusters"], r["regions"], _big(r["messages_per_node_hour"]), _big(r["bytes_per_node_hour"]),
        _p(r["link_share"]["mean"]), _p(r["link_share"]["p99"]), _p(r["cpu_share"]["mean"]),
        _p(r["cpu_share"]["p99"]), _p(r["production_lost_share"]), _s(fo["p50"]), _s(fo["p99"]), fo["count"] or 0,
        _s(au["p50"]), _s(au["p99"]), au["count"] or 0, r["wall_s"], ("  [%s]" % r["note"]) if r.get("note") else ""))


def beside_design(data):
    """Each size's overhead per resource beside the design's range."""
    lines = ["Coordination overhead beside the design's table (%s, %g mission s per size, seed %s):"
             % (data["scenario"], data["duration_s"], data["seed"]),
             "  nodes  design   | link budget (mean)  | CPU (mean, MicroPython unix port) | production lost"]
    for r in data["sizes"]:
        band = r["design"]
        lines.append("%7d  %-8s | %6s%% %-11s | %6s%% %-25s | %5s%% %s" % (
            r["nodes"], band["text"] if band else "(none)", _p(r["link_share"]["mean"]),
            verdict(r["link_share"]["mean"], band), _p(r["cpu_share"]["mean"]), verdict(r["cpu_share"]["mean"], band),
            _p(r["production_lost_share"]), verdict(r["production_lost_share"], band)))
    lines.append("  CPU costs: %s, measured %s on %s" % (data["costs"].get("micropython"), data["costs"].get("measured"),
                                                         data["costs"].get("machine")))
    return "\n".join(lines)


def by_tier(data):
    """Messages and bytes per node per mission hour, by tier."""
    head = "  nodes | messages/node/h: " + " ".join("%9s" % SHORT[t] for t in SHORT) + \
           " | bytes/node/h: " + " ".join("%9s" % SHORT[t] for t in SHORT)
    lines = [head]
    for r in data["sizes"]:
        t = r["tiers"]
        lines.append("%7d | %17s" % (r["nodes"], "") + " ".join("%9s" % _big(t[k]["messages_per_node_hour"]) for k in SHORT)
                     + " | %13s" % "" + " ".join("%9s" % _big(t[k]["bytes_per_node_hour"]) for k in SHORT))
    return "\n".join(lines)


def table(data):
    return "\n".join([HEADER] + [row_line(r) for r in data["sizes"]] + ["", by_tier(data), "", beside_design(data)])


def write(out_dir, data, plot=True):
    """sweep.json, sweep.txt and (plot) sweep.png in out_dir: the paths written."""
    paths = [os.path.join(out_dir, "sweep.json"), os.path.join(out_dir, "sweep.txt")]
    with open(paths[0], "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.write("\n")
    with open(paths[1], "w", encoding="utf-8") as f:
        f.write(table(data) + "\n")
    if plot:
        try:
            paths.append(draw(data, os.path.join(out_dir, "sweep.png")))
        except ImportError as e:  # matplotlib is optional for the report: the figures are in the JSON
            print("ground sweep: note: no sweep.png (%s)" % e)
    return paths


def draw(data, path):
    """Overhead (link budget, CPU, production lost, in %) against fleet size
    on a log axis, with the design's ranges as shaded bands."""
    from matplotlib.figure import Figure

    rows = data["sizes"]
    xs = [r["nodes"] for r in rows]
    fig = Figure(figsize=(8, 4.5), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    top = max(xs) * 2
    left = min(xs) / 1.5
    for b in DESIGN:
        lo, hi = b["nodes"]
        ylo, yhi = b["overhead_pct"]
        ax.fill_between([lo, hi or max(top, lo * 2)], [ylo, ylo], [yhi, yhi], color="0.85", zorder=0)
        if left <= lo * 1.05 < top:
            ax.text(lo * 1.05, yhi, "design " + b["text"], fontsize=7, va="bottom", color="0.4")
    series = (("link budget (mean)", lambda r: r["link_share"]["mean"], "o-"),
              ("CPU, MicroPython unix port (mean)", lambda r: r["cpu_share"]["mean"], "s-"),
              ("production lost", lambda r: r["production_lost_share"], "^-"))
    for label, get, style in series:
        pts = [(r["nodes"], 100.0 * get(r)) for r in rows if get(r) is not None]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=label)
    ax.set_xscale("log")
    ax.set_xlabel("fleet size (nodes)")
    ax.set_ylabel("coordination overhead (%)")
    ax.set_title("Coordination overhead by fleet size (%s, %g mission s)" % (os.path.basename(data["scenario"]),
                                                                           data["duration_s"]), fontsize=9)
    ax.set_xlim(left, top)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    return path
