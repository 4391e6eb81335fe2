"""The rollout timeline picture (rollout.png, docs/UPDATES.md "Rollouts"):
each cluster's firmware version over mission time, as its nodes said it
(their HELLOs and UPD_ACKs, not the orchestrator's word), the count of
clusters per version above it, and the rollout's decisions (image start,
abort, rolled back, complete) as labelled vertical lines.

    series = rollout_series(header, events)   # the data, a dict (tests assert on it)
    plot_rollout(series, "run/rollout.png", title="rollout (seed 3)")

A cluster whose nodes run different versions at once is drawn as the mix
("1.1+1.2"), hatched in its newest version's colour. matplotlib (Agg, through Figure: no pyplot) is imported only
when the picture is drawn.
"""

S = 1e9
_MAX_ROWS = 48  # clusters drawn one per row; the counts panel covers any fleet
_MARKS = {"start": "#2ca02c", "abort": "#d62728", "rolled_back": "#8c564b", "complete": "#1f77b4"}
_PALETTE = ("#9ecae1", "#2ca02c", "#d62728", "#9467bd", "#ff7f0e", "#17becf", "#bcbd22", "#e377c2", "#7f7f7f")


def _label(versions):
    return "+".join(sorted(versions, key=_vkey))


def _vkey(v):
    try:
        return tuple(int(x) for x in v.split("."))
    except ValueError:
        return (1 << 30, v)


def rollout_series(header, events):
    """{"start_s", "end_s", "clusters": {c: [[start_s, end_s, label], ...]},
    "counts": [[t_s, {label: clusters}], ...] (at each change), "versions":
    [labels, oldest first], "marks": [[t_s, event, image], ...]}. A node's
    version is its scenario firmware until it says otherwise."""
    nodes = header.get("nodes") or {}
    node_v = {}
    members = {}
    for nid, spec in nodes.items():
        node_v[int(nid)] = str(spec.get("firmware") or "?")
        members.setdefault(spec.get("cluster"), []).append(int(nid))
    cluster_of = {int(n): spec.get("cluster") for n, spec in nodes.items()}
    start_s = header.get("mission_ns", 0) / S
    now = {c: _label({node_v[n] for n in ids}) for c, ids in members.items()}
    since = dict.fromkeys(members, start_s)
    segs = {c: [] for c in members}
    marks = []
    counts = [[start_s, _count(now)]]
    end_s = start_s
    for e in events:
        t = e.get("mission_ns")
        if t is None:
            continue
        t_s = t / S
        end_s = max(end_s, t_s)
        kind = e.get("kind")
        if kind == "rollout" and e.get("event") in _MARKS:
            marks.append([t_s, e["event"], e.get("image")])
            continue
        if kind != "frame" or e.get("fate") != "sent" or e.get("type") not in ("hello", "upd_ack"):
            continue
        m = e.get("msg") or {}
        src = e.get("src")
        if "fw_major" not in m or src not in cluster_of:
            continue
        node_v[src] = "%d.%d" % (m["fw_major"], m["fw_minor"])
        c = cluster_of[src]
        label = _label({node_v[n] for n in members[c]})
        if label != now[c]:
            if t_s > since[c]:
                segs[c].append([since[c], t_s, now[c]])
            now[c], since[c] = label, t_s
            counts.append([t_s, _count(now)])
    for c in members:
        segs[c].append([since[c], max(end_s, since[c]), now[c]])
    versions = sorted({s[2] for ss in segs.values() for s in ss}, key=_vkey)
    return {"start_s": start_s, "end_s": end_s, "clusters": segs, "counts": counts, "versions": versions,
            "marks": marks}


def _count(now):
    out = {}
    for label in now.values():
        out[label] = out.get(label, 0) + 1
    return out


def _colours(versions):
    """A colour per version; a mix takes its newest version's (drawn hatched)."""
    plain = sorted({p for v in versions for p in v.split("+")}, key=_vkey)
    out = {v: _PALETTE[i % len(_PALETTE)] for i, v in enumerate(plain)}
    for v in versions:
        out.setdefault(v, out[v.split("+")[-1]])
    return out


def plot_rollout(series, path, title="run"):
    """Draw series (rollout_series()) into a PNG at path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    start, end = series["start_s"], max(series["end_s"], series["start_s"] + 1.0)
    span = end - start
    scale, unit = (1.0, "s")
    if span > 2 * 86400:
        scale, unit = (86400.0, "days")
    elif span > 2 * 3600:
        scale, unit = (3600.0, "h")
    elif span > 300:
        scale, unit = (60.0, "min")
    ids = sorted(series["clusters"], key=lambda c: (str(type(c)), c))
    hidden = max(0, len(ids) - _MAX_ROWS)
    ids = ids[:_MAX_ROWS]
    colours = _colours(series["versions"])
    width_in, height_in = 12, 3.6 + 0.3 * max(len(ids), 1)
    fig = Figure(figsize=(width_in, height_in), dpi=100)
    FigureCanvasAgg(fig)
    top_in = 1.9
    ax_n = fig.add_axes([0.09, 1 - (top_in + 0.1) / height_in, 0.78, (top_in - 0.55) / height_in])
    ax = fig.add_axes([0.09, 0.55 / height_in, 0.78, (height_in - top_in - 1.0) / height_in], sharex=ax_n)

    # Clusters per version, stepped at each change.
    xs = [(t - start) / scale for t, _ in series["counts"]] + [span / scale]
    for v in series["versions"]:
        ys = [cnt.get(v, 0) for _, cnt in series["counts"]]
        ax_n.step(xs, ys + ys[-1:], where="post", color=colours[v], linewidth=1.8, label=v)
    ax_n.set_ylabel("clusters")
    ax_n.grid(color="#dddddd", linewidth=0.5)
    ax_n.set_title("%s: clusters by firmware version%s" % (title, "  (first %d of %d clusters below)"
                                                            % (len(ids), len(ids) + hidden) if hidden else ""),
                   fontsize=11)

    for row, c in enumerate(ids):
        by = {}
        for a, b, label in series["clusters"][c]:
            by.setdefault(label, []).append(((a - start) / scale, (b - a) / scale))
        for label, bars in by.items():
            ax.broken_barh(bars, (row - 0.38, 0.76), facecolors=colours[label],
                           hatch="//" if "+" in label else None, edgecolor="#888888", linewidth=0.3)
    ax.set_yticks(range(len(ids)))
    ax.set_yticklabels(["cluster %s" % c for c in ids], fontsize=8)
    ax.set_ylim(len(ids) - 0.5, -0.5)
    ax.set_xlim(0, span / scale)
    ax.set_xlabel("mission time (%s)" % unit)
    for t, ev, image in series["marks"]:
        x = (t - start) / scale
        for a in (ax_n, ax):
            a.axvline(x, color=_MARKS[ev], linestyle="--", linewidth=1.0)
        ax_n.text(x, 1.0, " %s %s" % (ev.replace("_", " "), image or ""), transform=ax_n.get_xaxis_transform(),
                  fontsize=7, color=_MARKS[ev], rotation=90, va="top", ha="left", clip_on=True)
    handles = [Patch(facecolor=colours[v], edgecolor="#888888", hatch="//" if "+" in v else None, label=v)
               for v in series["versions"]]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8, frameon=False)
    fig.savefig(path, format="png", pil_kwargs={"compress_level": 1})
