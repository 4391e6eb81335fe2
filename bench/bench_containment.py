"""Containment, measured (issue #13 item 6, docs/CONTAINMENT.md): the blast
radius of a fault that strikes every node of one lineage at once, in the same
fleet as a monoculture (scenarios/containment-monoculture.yaml) and with three
lineages mixed in every cluster (scenarios/containment-mixed.yaml), for each
lineage_fault kind, side by side.

Each cell is one in-process run (virtual time) of that scenario with its
fault's kind replaced; "production lost" compares the units made after the
fault (300 s) with the same fleet's run without the fault (same seed), over
the fault's 120 s and to the end of the mission. "leases held
twice" counts the history checker's lease_exclusive violations.

Noise is measured, not guessed: `--seeds N` runs every cell (and its
baseline) with the scenario's seed, seed+1, ... and prints each row's
range over the seeds (one figure when they agree) and production lost as
mean (min..max). `--units N` gives every resource class N units (the
scenarios' 8 scarce resources become 8 x N: with 18, every node can hold
every lease it needs, so production is bound by live nodes, not by who wins
a scarce resource); `--duration-s S` shortens the mission (the fault stays at
300 s for 120 s).

Not a test: it asserts nothing. `python -m bench.bench_containment [--quick]
[--seeds N] [--units N] [--duration-s S] [KIND ...]` (--quick: crash and
clearing_defect only; KINDs: only those).
"""

import os
import re
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.machine_info import describe  # noqa: E402
from ground import run, scenario, trace  # noqa: E402

FLEETS = (("monoculture", "scenarios/containment-monoculture.yaml"), ("mixed", "scenarios/containment-mixed.yaml"))
KINDS = ("crash", "power_cut", "byzantine", "clearing_defect")
_FAULT = re.compile(r"^  - \{at_s: \d+, lineage_fault: \{lineage: (\d+), kind: \w+\}(, duration_s: \d+)?\}$", re.M)

# (label, flat key or callable over (flat, failures, baseline flat), format)
ROWS = (
    ("nodes struck", "blast_nodes_struck", "%d"),
    ("clusters that lost their coordinator", "blast_coordinators_struck", "%d"),
    ("market coordinator struck", "blast_market_coordinator_struck", "%d"),
    ("rounds cleared by a struck node", "blast_rounds_struck", "%d"),
    ("headless cluster-seconds", "blast_headless_s", "%.1f"),
    ("time to detect (s)", "blast_detect_s", "%.1f"),
    ("time to quarantine (s)", "blast_quarantine_s", "%.1f"),
    ("time to restore (s)", "blast_restored_s", "%.1f"),
    ("leases stranded", "blast_leases_stranded", "%d"),
    ("leases held twice", lambda flat, fails, base: sum("lease_exclusive" in f for f in fails), "%d"),
    ("production lost 300-420 s (the fault)", lambda flat, fails, base: (
        1 - flat["produced_300_420"] / base["produced_300_420"]), "%.1f%%"),
    ("production lost after 300 s", lambda flat, fails, base: (
        1 - flat["produced_after_300"] / base["produced_after_300"]), "%.1f%%"),
    ("accusers", "accusers", "%d"),
    ("market rounds complete", "market_rounds_complete", "%d"),
)


def variant(path, kind, seed_add=0, units=None, duration_s=None):
    """The scenario's text with its lineage_fault's kind replaced (None: no
    fault), its seed moved on by seed_add, every class given `units` units and
    the mission cut to duration_s (None: as written)."""
    text = open(os.path.join(ROOT, path), encoding="utf-8").read()
    text = _override(path, text, r"^seed: (\d+)$", lambda m: "seed: %d" % (int(m.group(1)) + seed_add))
    if units is not None:
        text = _override(path, text, r"^  units: \[[\d, ]+\]$", lambda m: "  units: [%s]" % ", ".join([str(units)] * 8))
    if duration_s is not None:
        text = _override(path, text, r"^duration_s: \d+$", lambda m: "duration_s: %d" % duration_s)
    m = _FAULT.search(text)
    if m is None:
        raise SystemExit("%s: no one-line lineage_fault to vary" % path)
    if kind is None:
        line = ""
    elif kind == "clearing_defect":  # latent from boot
        line = "  - {at_s: 0, lineage_fault: {lineage: %s, kind: clearing_defect}}" % m.group(1)
    else:
        line = "  - {at_s: 300, lineage_fault: {lineage: %s, kind: %s}, duration_s: 120}" % (m.group(1), kind)
    text = text[:m.start()] + line + text[m.end():]
    if kind is None:
        text = text.replace("faults:\n\n", "faults: []\n")
    text = re.sub(r"\ngates:\n(  .*\n)+", "\n", text)  # the bench measures, it does not gate
    return text


def _override(path, text, pattern, repl):
    text, n = re.subn(pattern, repl, text, count=1, flags=re.M)
    if n != 1:
        raise SystemExit("%s: no line matching %s to override" % (path, pattern))
    return text


def produced_between(trace_path, t0_s, t1_s=None):
    """Units the fleet produced from t0_s (MARKET_TEL at or before it) to
    t1_s (the last MARKET_TEL before it; None: the end), from the trace (a
    reboot restarts a node's count: carried over)."""
    total, at_t0, at_t1, last = {}, {}, {}, {}
    for e in trace.read(trace_path)[1]:
        if e.get("kind") != "frame" or e.get("fate") != "sent" or e.get("type") != "market_tel":
            continue
        nid, p = e["src"], e["msg"]["produced"]
        total[nid] = total.get(nid, 0) + (p - last.get(nid, 0) if p >= last.get(nid, 0) else p)
        last[nid] = p
        if e["mission_ns"] <= t0_s * 1e9:
            at_t0[nid] = total[nid]
        if t1_s is None or e["mission_ns"] < t1_s * 1e9:
            at_t1[nid] = total[nid]
    return sum(at_t1.get(n, 0) - at_t0.get(n, 0) for n in total)


def one(path, kind, folder, **over):
    sc = scenario.load_text(variant(path, kind, **over), path=os.path.join(ROOT, path))
    res = run.run(sc, folder, plot=False)
    path = os.path.join(folder, "trace.jsonl")
    flat = dict(res.metrics["flat"], produced_after_300=produced_between(path, 300),
                produced_300_420=produced_between(path, 300, 420))
    return flat, res.failures


def value(row, flat, fails, base):
    key = row[1]
    return key(flat, fails, base) if callable(key) else flat.get(key)


def show(row, v):
    fmt = row[2]
    return fmt % (v * 100 if fmt.endswith("%%") else v)


def cell(row, runs):
    """One row's figure over the seeds' runs [(flat, fails, base)]: the one
    value when they agree, else min-max; production lost as mean (min..max)."""
    vals = [value(row, *r) for r in runs]
    got = [v for v in vals if v is not None]
    never = len(vals) - len(got)
    if not got:
        return "-" if row[1] not in ("blast_detect_s", "blast_restored_s") else "never"
    lo, hi = min(got), max(got)
    if row[2].endswith("%%") and len(got) > 1:
        text = "%s (%s..%s)" % (show(row, sum(got) / len(got)), show(row, lo), show(row, hi))
    else:
        text = show(row, lo) if show(row, lo) == show(row, hi) else "%s-%s" % (show(row, lo), show(row, hi))
    return text + (" +never x%d" % never if never else "")


def _arg(argv, name, default):
    if name not in argv:
        return default
    i = argv.index(name)
    try:
        return int(argv[i + 1])
    except (IndexError, ValueError):
        raise SystemExit("bench_containment: %s wants a whole number" % name)


def main(argv):
    kinds = [k for k in KINDS if k in argv] or (KINDS[::3] if "--quick" in argv else KINDS)
    seeds = _arg(argv, "--seeds", 1)
    over = {"units": _arg(argv, "--units", None), "duration_s": _arg(argv, "--duration-s", None)}
    print("containment, measured: a lineage_fault on lineage 0 (%s)" % describe())
    print("seeds: %d; units per class: %s; mission: %s s" % (
        seeds, over["units"] or "as written (1)", over["duration_s"] or "as written (900)"))
    t0, c0 = time.time(), time.process_time()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for fleet, path in FLEETS:
            for k in range(seeds):
                base = one(path, None, os.path.join(tmp, "%s-none-%d" % (fleet, k)), seed_add=k, **over)[0]
                for kind in kinds:
                    flat, fails = one(path, kind, os.path.join(tmp, "%s-%s-%d" % (fleet, kind, k)), seed_add=k, **over)
                    results.setdefault((fleet, kind), []).append((flat, fails, base))
                    print("  ran %s / %s / seed+%d (%.0f s wall so far)" % (fleet, kind, k, time.time() - t0),
                          file=sys.stderr)
    for kind in kinds:
        print()
        print("kind %s%s" % (kind, " (latent from boot)" if kind == "clearing_defect" else
                             " at 300 s for 120 s of a %d s mission" % (over["duration_s"] or 900)))
        width = max(len(r[0]) for r in ROWS)
        print("  %-*s  %22s  %22s" % (width, "", "monoculture", "mixed (3/cluster)"))
        for row in ROWS:
            cells = [cell(row, results[(fleet, kind)]) for fleet, _ in FLEETS]
            print("  %-*s  %22s  %22s" % (width, row[0], cells[0], cells[1]))
    print()
    print("%d runs, %.0f s wall, %.0f s CPU" % (
        seeds * len(FLEETS) * (len(kinds) + 1), time.time() - t0, time.process_time() - c0))


if __name__ == "__main__":
    main(sys.argv[1:])
