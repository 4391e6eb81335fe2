"""Containment, measured (issue #13 item 6, docs/CONTAINMENT.md): the blast
radius of a fault that strikes every node of one lineage at once, in the same
fleet as a monoculture (scenarios/containment-monoculture.yaml) and with three
lineages mixed in every cluster (scenarios/containment-mixed.yaml), for each
lineage_fault kind, side by side.

Each cell is one in-process run (virtual time) of that scenario with its
fault's kind replaced; "production lost" compares the units made after the
fault (300 s) with the same fleet's run without the fault (same seed). "leases held
twice" counts the history checker's lease_exclusive violations.

Not a test: it asserts nothing. `python -m bench.bench_containment [--quick]
[KIND ...]` (--quick: crash and clearing_defect only; KINDs: only those).
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
    ("production lost after 300 s", lambda flat, fails, base: (
        1 - flat["produced_after_300"] / base["produced_after_300"]), "%.1f%%"),
    ("accusers", "accusers", "%d"),
    ("market rounds complete", "market_rounds_complete", "%d"),
)


def variant(path, kind):
    """The scenario's text with its lineage_fault's kind replaced (None: no fault)."""
    text = open(os.path.join(ROOT, path), encoding="utf-8").read()
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


def produced_after(trace_path, t0_s):
    """Units (milli-units) the fleet produced after t0_s, from the trace's
    MARKET_TEL (a reboot restarts a node's count: carried over)."""
    total, at_t0, last = {}, {}, {}
    for e in trace.read(trace_path)[1]:
        if e.get("kind") != "frame" or e.get("fate") != "sent" or e.get("type") != "market_tel":
            continue
        nid, p = e["src"], e["msg"]["produced"]
        total[nid] = total.get(nid, 0) + (p - last.get(nid, 0) if p >= last.get(nid, 0) else p)
        last[nid] = p
        if e["mission_ns"] <= t0_s * 1e9:
            at_t0[nid] = total[nid]
    return sum(total[n] - at_t0.get(n, 0) for n in total)


def one(path, kind, folder):
    sc = scenario.load_text(variant(path, kind), path=os.path.join(ROOT, path))
    res = run.run(sc, folder, plot=False)
    flat = dict(res.metrics["flat"], produced_after_300=produced_after(os.path.join(folder, "trace.jsonl"), 300))
    return flat, res.failures


def cell(row, flat, fails, base):
    _, key, fmt = row
    v = key(flat, fails, base) if callable(key) else flat.get(key)
    if v is None:
        return "-" if key != "blast_detect_s" and key != "blast_restored_s" else "never"
    return fmt % (v * 100 if fmt.endswith("%%") else v)


def main(argv):
    kinds = [k for k in KINDS if k in argv] or (KINDS[::3] if "--quick" in argv else KINDS)
    print("containment, measured: a lineage_fault on lineage 0 (%s)" % describe())
    t0 = time.time()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for fleet, path in FLEETS:
            base = one(path, None, os.path.join(tmp, fleet + "-none"))[0]
            for kind in kinds:
                flat, fails = one(path, kind, os.path.join(tmp, "%s-%s" % (fleet, kind)))
                results[(fleet, kind)] = (flat, fails, base)
                print("  ran %s / %s (%.0f s wall so far)" % (fleet, kind, time.time() - t0), file=sys.stderr)
    for kind in kinds:
        print()
        print("kind %s%s" % (kind, " (latent from boot)" if kind == "clearing_defect" else
                             " at 300 s for 120 s of a 900 s mission"))
        width = max(len(r[0]) for r in ROWS)
        print("  %-*s  %14s  %14s" % (width, "", "monoculture", "mixed (3/cluster)"))
        for row in ROWS:
            cells = [cell(row, *results[(fleet, kind)]) for fleet, _ in FLEETS]
            print("  %-*s  %14s  %14s" % (width, row[0], cells[0], cells[1]))
    print()
    print("%d runs, %.0f s wall" % (len(results) + len(FLEETS), time.time() - t0))


if __name__ == "__main__":
    main(sys.argv[1:])
