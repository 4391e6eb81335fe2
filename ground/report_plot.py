"""The run's timeline picture (timeline.png): roles per node over mission
time, quarantines as hatched bands over a node's row, faults as labelled
vertical lines. matplotlib (Agg, through
matplotlib.figure.Figure: no pyplot global state, no display) is imported
only when a timeline is drawn."""


ROLE_COLOURS = {
    "coordinator": "#d62728",
    "standby": "#1f77b4",
    "follower": "#9ecae1",
    "candidate": "#ffbf00",
    "down": "#222222",
    "unknown": "#ffffff",
}
_ROLE_ORDER = ("coordinator", "standby", "candidate", "follower", "down", "unknown")
QUARANTINE_COLOUR = "#6a3d9a"  # a node some elector holds quarantined (docs/CONTAINMENT.md)
_FAULT_COLOURS = {"crash": "#d62728", "power_cut": "#8c564b", "reset": "#ff7f0e"}
_MAX_ROWS = 64  # nodes drawn in the timeline; more would be unreadable
_MAX_FAULT_LABELS = 40
_LABEL_LINES = 3

def plot_timeline(tl, path, title="run"):
    """Roles per node over mission time, one row per node; quarantines as a
    hatched band over the row; faults as labelled vertical lines. tl is
    ground.metrics.timeline()'s result. Returns the series drawn, in axis
    units: {"roles": {node: {role: [(x, width)]}}, "quarantined": {node:
    [(x, width)]}, "unit": "s" | "min" | "h"}."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    ids = sorted(tl["nodes"], key=lambda k: (tl["nodes"][k]["cluster"], _int_key(k)))
    hidden = max(0, len(ids) - _MAX_ROWS)
    ids = ids[:_MAX_ROWS]
    start, end = tl["start_s"], max(tl["end_s"], tl["start_s"] + 1.0)  # an axis of 1 s at least
    span = end - start
    scale, unit = (1.0, "s")
    if span > 2 * 3600:
        scale, unit = (3600.0, "h")
    elif span > 300:
        scale, unit = (60.0, "min")

    width_in, height_in = 12, 1.9 + 0.38 * max(len(ids), 1)
    fig = Figure(figsize=(width_in, height_in), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    drawn = {"roles": {}, "quarantined": {}, "unit": unit}
    for row, nid in enumerate(ids):
        by_role = {}
        for a, b, role in tl["nodes"][nid]["segments"]:
            by_role.setdefault(role, []).append(((a - start) / scale, (b - a) / scale))
        for role, bars in by_role.items():
            colour = ROLE_COLOURS.get(role, "#cccccc")
            edge = "#bbbbbb" if role == "unknown" else "none"
            ax.broken_barh(bars, (row - 0.38, 0.76), facecolors=colour, edgecolor=edge, linewidth=0.5)
        drawn["roles"][nid] = by_role
        bands = [((a - start) / scale, (b - a) / scale) for a, b in tl["nodes"][nid].get("quarantined", ())]
        if bands:
            ax.broken_barh(bands, (row - 0.46, 0.92), facecolors="none", edgecolor=QUARANTINE_COLOUR, hatch="///",
                           linewidth=1.0)
            drawn["quarantined"][nid] = bands
    ax.set_yticks(range(len(ids)))
    ax.set_yticklabels(["node %s  (c%s)" % (nid, tl["nodes"][nid]["cluster"]) for nid in ids], fontsize=9)
    lines_used = min(_LABEL_LINES, len(tl["faults"])) if len(tl["faults"]) <= _MAX_FAULT_LABELS else 0
    ax.set_ylim(len(ids) - 0.5, -0.6 - 0.42 * lines_used)
    ax.set_xlim(0, span / scale)
    ax.set_xlabel("mission time (%s)" % unit)
    ax.grid(axis="x", color="#dddddd", linewidth=0.5)
    ax.set_axisbelow(True)

    # Fault labels above the rows, staggered over up to three lines so that
    # faults close in time stay readable; past _MAX_FAULT_LABELS, lines only.
    label_faults = len(tl["faults"]) <= _MAX_FAULT_LABELS
    char_w = (span / scale) / 150.0  # about 150 label characters across the axis
    free = [float("-inf")] * _LABEL_LINES  # where each label line is free again
    for fault in sorted(tl["faults"], key=lambda f: f["at_s"]):
        xpos = (fault["at_s"] - start) / scale
        colour = _FAULT_COLOURS.get(fault["fault"], "#555555")
        ax.axvline(xpos, color=colour, linestyle="--", linewidth=1.2)
        if not label_faults:
            continue
        who = ",".join("n%s" % n for n in fault["nodes"][:4]) + ("..." if len(fault["nodes"]) > 4 else "")
        if fault.get("groups"):
            who = " | ".join(",".join(str(n) for n in g) for g in fault["groups"])
            who = who if len(who) <= 30 else who[:27] + "..."
        text = " %s %s" % (fault["fault"], who)
        line = next((i for i in range(_LABEL_LINES) if free[i] <= xpos), None)
        if line is None:
            line = min(range(_LABEL_LINES), key=lambda i: free[i])
        free[line] = xpos + len(text) * char_w
        ax.text(xpos, -0.55 - 0.42 * line, text, fontsize=8, color=colour, va="bottom", ha="left", clip_on=True)

    present = set(r for nid in ids for _, _, r in tl["nodes"][nid]["segments"])
    handles = [Patch(facecolor=ROLE_COLOURS[r], edgecolor="#888888", label=r) for r in _ROLE_ORDER if r in present]
    if drawn["quarantined"]:
        handles.append(Patch(facecolor="none", edgecolor=QUARANTINE_COLOUR, hatch="///", label="quarantined"))
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=9, frameon=False)
    heading = "%s: roles per node" % title
    if hidden:
        heading += "  (first %d of %d nodes)" % (len(ids), len(ids) + hidden)
    ax.set_title(heading, fontsize=11)
    # Fixed margins in inches (the y labels, the legend, title and x label
    # have known sizes) instead of tight_layout(), which measures every text
    # (a third of the drawing time); PNG compression level 1 instead of 6:
    # a file ~15% larger, written in a fraction of the time.
    label_in = 0.2 + 0.068 * max((len(t.get_text()) for t in ax.get_yticklabels()), default=4)
    fig.subplots_adjust(left=min(0.4, label_in / width_in), right=1 - 1.45 / width_in,
                        top=1 - 0.4 / height_in, bottom=0.55 / height_in)
    fig.savefig(path, format="png", pil_kwargs={"compress_level": 1})
    return drawn


def _int_key(s):
    try:
        return (0, int(s), "")
    except ValueError:
        return (1, 0, str(s))
