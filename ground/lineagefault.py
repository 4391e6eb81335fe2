"""A scenario fault aimed at one software lineage (docs/SCENARIOS.md
"Faults", docs/CONTAINMENT.md "Containment, measured"): a common-mode defect
that strikes every node of that lineage at once.

    faults:
      - {at_s: 120, lineage_fault: {lineage: 0, kind: crash}, duration_s: 60}

parse() checks one entry and returns the node ids it strikes and its
parameters; apply_defects() plants a `clearing_defect` (latent from boot) in
the market of every region that holds the lineage; struck() turns a
lineage_fault into the per-node faults the run applies. Errors name the
scenario file:line.
"""

from ground.yamlfile import ConfigError, Located, check_keys

# What strikes each node of the lineage: the node fault of the same name
# (ground/run.py), or clearing_defect: the market clearing of that lineage
# is defective from boot (MarketConfig.defect_lineage: it forgets the last
# bid of each book), so at_s must be 0.
KINDS = ("crash", "power_cut", "reset", "byzantine", "corruption_burst", "clearing_defect")
_KEYS = {"lineage", "kind", "rewrite", "bitflip"}


def parse(f, nodes):
    """One `lineage_fault:` entry of faults: -> (node ids struck, params)."""
    spec = f["lineage_fault"]
    if not isinstance(spec, Located):
        raise f.error("lineage_fault", "fault lineage_fault: a mapping {lineage: L, kind: %s}" % "|".join(KINDS))
    check_keys(spec, _KEYS, "lineage_fault", required=("lineage", "kind"))
    lin = spec["lineage"]
    if not isinstance(lin, int) or isinstance(lin, bool) or not 0 <= lin <= 255:
        raise spec.error("lineage", "lineage_fault.lineage: a lineage 0..255, got %r" % (lin,))
    kind = spec["kind"]
    if kind not in KINDS:
        raise spec.error("kind", "lineage_fault.kind: %r unknown (known: %s)" % (kind, ", ".join(KINDS)))
    struck = sorted(n for n, spec_n in nodes.items() if spec_n.lineage == lin)
    if not struck:
        present = sorted({n.lineage for n in nodes.values()})
        raise spec.error("lineage", "lineage_fault: no node is of lineage %d (lineages here: %s)" % (lin, present))
    if kind == "clearing_defect" and f.get("at_s") != 0:
        raise f.error("at_s", "lineage_fault clearing_defect: the defect is in the lineage's code from boot; at_s"
                      " must be 0 (got %r)" % (f.get("at_s"),))
    if kind == "byzantine" and spec.get("rewrite", "stale_term") != "stale_term":
        raise spec.error("rewrite", "lineage_fault byzantine: rewrite %r unknown (known: stale_term)" % spec["rewrite"])
    if "bitflip" in spec and kind != "corruption_burst":
        raise spec.error("bitflip", "lineage_fault: bitflip goes with kind corruption_burst only")
    if "rewrite" in spec and kind != "byzantine":
        raise spec.error("rewrite", "lineage_fault: rewrite goes with kind byzantine only")
    params = {"lineage": lin, "kind": kind}
    params.update({k: spec[k] for k in ("rewrite", "bitflip") if k in spec})
    if kind == "byzantine":
        params.setdefault("rewrite", "stale_term")
    return struck, params


def apply_defects(sc):
    """Plant each clearing_defect lineage_fault in the market of its regions
    (MarketConfig.defect_lineage and the board.json arguments). A region
    without a market, or one that already plants another lineage's defect,
    is refused."""
    for f in sc.faults:
        if f.action != "lineage_fault" or f.params["kind"] != "clearing_defect":
            continue
        lin = f.params["lineage"]
        if not sc.regions:
            raise ConfigError("%s: lineage_fault clearing_defect: the scenario has no market (market: or regions:),"
                              " so there is no clearing to make defective" % f.where)
        for r in sc.regions:
            if not set(r.nodes) & set(f.target):
                continue
            d = r.market.defect_lineage
            if d not in (-1, lin):
                raise ConfigError("%s: lineage_fault clearing_defect: region %d already plants a defect in lineage %d"
                                  " (market.defect_lineage); one defective lineage per region" % (f.where, r.region, d))
            r.market.defect_lineage = lin
            r.market_args["defect_lineage"] = lin


def struck(f):
    """The per-node faults (action, node, params) a lineage_fault applies now;
    none for clearing_defect (its defect is in the nodes' market from boot)."""
    kind = f.params["kind"]
    if kind == "clearing_defect":
        return []
    params = {k: v for k, v in f.params.items() if k in ("rewrite", "bitflip")}
    return [(kind, nid, params) for nid in f.target]
