"""Fleet descriptions: a `fleet:` section that describes a fleet by numbers,
expanded deterministically from the seed into the explicit scenario the
loader reads (docs/FLEET.md).

    data = fleetdesc.expand(located)      # the explicit scenario, as Located data
    text = fleetdesc.explicit_yaml(path)  # what `ground expand FLEET.yaml` writes

The description is checked first (cluster sizes 5-20 unless
`allow_cluster_sizes`, region sizes 20-50 unless `allow_region_sizes`, at
most 3 firmware majors, electors <= clusters per region), each refusal naming
the fleet file's line and the numbers. The expansion is then parsed by
ground/scenario.py like any scenario, with every generated value located at
the line of the fleet key it came from, so its load guards (timeouts against
the light round trip, the fault schedule) speak of the fleet file too.

One random.Random(seed), drawn in a fixed order (docs/FLEET.md "Draw
order"): cluster sizes, region sizes, lineages per cluster, hardware
generations, firmware versions, ages, electors, cluster places, faults.
"""

import math
import random

from ground import wireids
from ground.regions import AUDITORS_PER_CLEARING, REGION_CLUSTERS, clearing_counts
from ground.yamlfile import ConfigError, Located, LocatedList, check_keys, number

C_KM_PER_MS = 299.792458  # light: km per ms
DAY_S = 86400.0
CLUSTER_SIZES = (5, 20)  # the design's cluster sizes
REGION_SIZES = (20, 50)  # clusters per region (federation)
MAX_MAJORS = 3
MAX_FAULTS = 2_000_000  # drawn fault entries a description may expect: 50,000 nodes x 40 mission days at a crash a day
MAX_CLUSTERS = REGION_CLUSTERS - 1  # cluster ids 1..3583: from REGION_CLUSTERS on, cluster addresses are regions'

_FLEET = {
    "nodes", "cluster_sizes", "allow_cluster_sizes", "regions", "allow_region_sizes", "lineages", "hw_gen",
    "age_slots", "firmware", "market", "geometry", "links", "faults", "radio_bps", "steps",
}
_REGIONS = {"clusters", "count", "electors"}
_GEOMETRY = {"ring_radius_km", "region_radius_km"}
_TIERS = {"intra_cluster", "intra_region", "inter_region", "ground"}
_FAULTS = {
    "crash_mtbf_s", "crash_down_s", "power_cut_mtbf_s", "power_cut_down_s", "partitions_per_region_per_day",
    "partition_s", "region_blackouts_per_day", "blackout_s", "autonomy_windows_per_region_per_day",
    "autonomy_window_s",
}
_GENERATED = ("clusters", "nodes", "links", "faults", "market", "regions", "contact_plan")


# ---- located data --------------------------------------------------------

def _loc(d, path, line, key_lines=None):
    """A Located mapping at path:line (each key at key_lines.get(key, line))."""
    out = Located(d)
    out.path, out.line = path, line
    out.key_lines = {k: (key_lines or {}).get(k, line) for k in d}
    return out


def _loc_list(items, path, line):
    out = LocatedList(items)
    out.path, out.line = path, line
    out.item_lines = tuple(line for _ in items)
    return out


def _section(m, key, what):
    """m[key] as a mapping (an empty one at m's line when absent); file:line otherwise."""
    if key not in m:
        return _loc({}, m.path, m.line)
    v = m[key]
    if not isinstance(v, Located):
        raise m.error(key, "fleet.%s: a mapping (%s), got %r" % (key, what, v))
    return v


def _line(m, key):
    return m.key_lines.get(key, m.line)


def plain(v):
    """Located data as plain dicts and lists (for yaml.safe_dump)."""
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [plain(x) for x in v]
    return v


def radio_bps(f, default=None):
    """fleet.radio_bps: each node's radio rate in bit/s (the link budget
    `ground sweep` shares out), or default when absent."""
    return number(f, "radio_bps", "fleet", lo=1, default=default) if "radio_bps" in f or default is not None else None


# ---- draws -----------------------------------------------------------------

def _pick(rng, weighted):
    """One value of [(value, weight)] by weight: one draw."""
    total = sum(w for _, w in weighted)
    u = rng.random() * total
    for value, w in weighted:
        u -= w
        if u < 0:
            return value
    return weighted[-1][0]


def _apportion(n, weighted):
    """n split by weight, largest remainders first (ties: listed order): [(value, count)]."""
    total = sum(w for _, w in weighted)
    exact = [(v, n * w / total) for v, w in weighted]
    counts = {v: int(math.floor(x)) for v, x in exact}
    rest = n - sum(counts.values())
    for v, x in sorted(exact, key=lambda e: -(e[1] - math.floor(e[1])))[:rest]:
        counts[v] += 1
    return [(v, counts[v]) for v, _ in weighted]


def _arrivals(rng, rate_per_s, duration_s):
    """Poisson arrival times in [0, duration_s): one draw each, one more to end."""
    out, t = [], 0.0
    if rate_per_s <= 0:
        return out
    while True:
        t += -math.log(1.0 - rng.random()) / rate_per_s
        if t >= duration_s:
            return out
        out.append(t)


def _split(rng, total, lo, hi, draw, what, where, hint=""):
    """`total` items in parts of lo..hi: the part count fixed by the mean of
    `draw`, one draw per part, then nudged one at a time (a random part not
    at its bound, one draw each) until they add up to `total`."""
    fewest, most = -(-total // hi), total // lo
    if fewest > most:
        raise ConfigError("%s: %d %s cannot be split into parts of %d-%d%s" % (where, total, what, lo, hi, hint))
    mean = draw("mean")
    parts = min(max(int(round(total / mean)), fewest), most)
    sizes = [draw(rng) for _ in range(parts)]
    while sum(sizes) != total:
        grow = sum(sizes) < total
        movable = [i for i, s in enumerate(sizes) if (s < hi if grow else s > lo)]
        i = movable[rng.randrange(len(movable))]
        sizes[i] += 1 if grow else -1
    return sizes


def _sizes_spec(m, key, default, allowed, allow_key, what):
    """A size distribution: {min, max} (uniform) or {size: weight}; its draw function and bounds."""
    spec = m.get(key, {"min": default[0], "max": default[1]})
    if not isinstance(spec, dict) or not spec:
        raise m.error(key, "fleet.%s: {min: n, max: n} or {size: weight, ...}" % key)
    if set(spec) <= {"min", "max"}:
        lo, hi = spec.get("min", default[0]), spec.get("max", default[1])
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (lo, hi)) or not 1 <= lo <= hi:
            raise m.error(key, "fleet.%s: min and max are integers, 1 <= min <= max; got %r" % (key, dict(spec)))
        weighted = None
    else:
        weighted = []
        for size, w in spec.items():
            if isinstance(size, bool) or not isinstance(size, int) or size < 1 or not _weight(w):
                raise m.error(key, "fleet.%s: {size: weight}, sizes >= 1 and weights > 0; got %r: %r" % (key, size, w))
            weighted.append((size, w))
        weighted.sort()
        lo, hi = weighted[0][0], weighted[-1][0]
    if not allowed and (lo < default[0] or hi > default[1]):
        raise m.error(key, "fleet%s.%s: %s %d-%d are outside the design's %d-%d; set %s: true to run them anyway"
                      % ("" if key == "cluster_sizes" else ".regions", key, what, lo, hi, default[0], default[1],
                         allow_key))

    def draw(rng):
        if rng == "mean":
            return (lo + hi) / 2.0 if weighted is None else sum(s * w for s, w in weighted) / sum(w for _, w in weighted)
        return lo + rng.randrange(hi - lo + 1) if weighted is None else _pick(rng, weighted)

    return draw, lo, hi


def _weight(w):
    return isinstance(w, (int, float)) and not isinstance(w, bool) and 0 < w < math.inf


def _shares(m, key, default, what, check=None):
    """{value: share} -> [(value, share)] in the file's order; errors at its line."""
    spec = m.get(key, default)
    if isinstance(spec, int) and not isinstance(spec, bool) and key == "lineages":
        if not 1 <= spec <= 256:
            raise m.error(key, "fleet.lineages: a count in 1..256 or {lineage: share}, got %r" % spec)
        return [(i, 1) for i in range(spec)]
    if not isinstance(spec, dict) or not spec:
        raise m.error(key, "fleet.%s: {%s: share, ...}" % (key, what))
    out = []
    for v, w in spec.items():
        if not _weight(w):
            raise m.error(key, "fleet.%s.%s: a share > 0, got %r" % (key, v, w))
        if check is not None:
            check(v)
        out.append((v, w))
    return out


# ---- the description ----------------------------------------------------

def expand(data):
    """The explicit scenario (Located data, lines in the fleet file) for a
    scenario mapping with a `fleet:` section."""
    path = data.path
    f = data["fleet"]
    if not isinstance(f, Located):
        raise data.error("fleet", "fleet: a mapping describing the fleet by numbers (docs/FLEET.md)")
    check_keys(f, _FLEET, "fleet", required=("nodes", "market"))
    for key in _GENERATED:
        if key in data:
            raise data.error(key, "scenario: %s: is generated from fleet: (docs/FLEET.md); give one or the other" % key)
    mode = wireids.parse_mode(data) if "addressing" in data else None
    n_nodes = number(f, "nodes", "fleet", lo=1, hi=0xEFFF if mode == "fleet" else wireids.MAX_ID, integer=True)
    radio_bps(f)  # checked here; read by `ground sweep` (ground/sweep.py), not part of the expansion
    seed = number(data, "seed", "scenario", lo=0, default=1, integer=True)
    duration_s = number(data, "duration_s", "scenario", lo=0.001)
    rng = random.Random(seed)

    # 1. cluster sizes
    for key in ("allow_cluster_sizes", "allow_region_sizes"):
        if not isinstance(f.get(key, False), bool):
            raise f.error(key, "fleet.%s: true or false, got %r" % (key, f[key]))
    allow_r = f.get("allow_region_sizes", False)
    draw_c, c_lo, c_hi = _sizes_spec(f, "cluster_sizes", CLUSTER_SIZES, f.get("allow_cluster_sizes", False),
                                     "allow_cluster_sizes", "cluster sizes")
    sizes = _split(rng, n_nodes, c_lo, c_hi, draw_c, "nodes", f.where("cluster_sizes"))
    # more nodes or clusters than one wire address space numbers: each region numbers its own (ground/wireids.py)
    wide = mode == "region" or (mode is None and (n_nodes > 0xEFFF or len(sizes) > MAX_CLUSTERS))
    if len(sizes) > MAX_CLUSTERS and not wide:
        raise f.error("cluster_sizes", "fleet: %d nodes make %d clusters; cluster numbers go up to %d (the wire's"
                      " cluster addresses from 0x%X on are regions'): make the clusters larger, the fleet smaller,"
                      " or give addressing: region" % (n_nodes, len(sizes), MAX_CLUSTERS, REGION_CLUSTERS))
    # 2. region sizes (clusters per region)
    reg = _section(f, "regions", "{clusters: {min, max} or count: n, electors: n}")
    check_keys(reg, _REGIONS, "fleet.regions")
    if "count" in reg and "clusters" in reg:
        raise reg.error("count", "fleet.regions: give count (regions of equal size) or clusters (their sizes), not both")
    if "count" in reg:
        k = number(reg, "count", "fleet.regions", lo=1, hi=0x1FE, integer=True)
        if k > len(sizes):
            raise reg.error("count", "fleet.regions.count: %d regions but only %d clusters" % (k, len(sizes)))
        r_sizes = [len(sizes) // k + (1 if i < len(sizes) % k else 0) for i in range(k)]
        if not allow_r and not REGION_SIZES[0] <= min(r_sizes) <= max(r_sizes) <= REGION_SIZES[1]:
            raise reg.error("count", "fleet.regions.count: %d regions of %d clusters make regions of %d-%d clusters,"
                            " outside the design's %d-%d; set allow_region_sizes: true to run them anyway"
                            % (k, len(sizes), min(r_sizes), max(r_sizes), REGION_SIZES[0], REGION_SIZES[1]))
    else:
        src = reg if "clusters" in reg else _loc({}, path, reg.line)
        draw_r, r_lo, r_hi = _sizes_spec(src, "clusters", REGION_SIZES, allow_r, "allow_region_sizes", "regions of")
        r_sizes = _split(rng, len(sizes), r_lo, r_hi, draw_r, "clusters", reg.where("clusters"),
                         " (fleet.regions: {count: n} with allow_region_sizes: true sets the number of regions)")
    if len(r_sizes) > 0x1FE:
        raise f.error("regions", "fleet: %d regions; region numbers go up to %d" % (len(r_sizes), 0x1FE))
    n_electors = number(reg, "electors", "fleet.regions", lo=1, default=3, integer=True)
    if n_electors > min(r_sizes):
        raise reg.error("electors", "fleet.regions.electors: %d electors per region, but the smallest region has %d"
                        " clusters (one elector per cluster at most)" % (n_electors, min(r_sizes)))

    # node ids 1.. and cluster ids 1.. in order; regions 1.. take clusters in order
    clusters, nid = [], 1
    for s in sizes:
        clusters.append(list(range(nid, nid + s)))
        nid += s
    regions, ci = [], 0
    for s in r_sizes:
        regions.append(list(range(ci + 1, ci + s + 1)))  # cluster ids
        ci += s

    # 3. lineages, mixed within each cluster
    lin = _shares(f, "lineages", 3, "lineage", _lineage_check(f))
    lineage = {}
    for ids in clusters:
        distinct = min(3, len(lin), len(ids))
        left = list(lin)
        for i, n in enumerate(ids):
            if i < distinct:  # the first members take distinct lineages
                v = _pick(rng, left)
                left = [x for x in left if x[0] != v]
            else:
                v = _pick(rng, lin)
            lineage[n] = int(v)
    # 4. hardware generations and 5. firmware versions by share, exactly apportioned, shuffled over the nodes
    from node import catalog

    def gen_ok(v):
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= catalog.MAX_GEN:
            raise f.error("hw_gen", "fleet.hw_gen: generation %r is not defined (firmware/node/catalog.py defines"
                          " 1..%d)" % (v, catalog.MAX_GEN))

    hw = _spread(rng, n_nodes, _shares(f, "hw_gen", {1: 1}, "generation", gen_ok))
    fws = _shares(f, "firmware", {"1.0": 1}, "'major.minor'", _firmware_check(f))
    majors = sorted({int(str(v).partition(".")[0]) for v, _ in fws})
    if len(majors) > MAX_MAJORS:
        raise f.error("firmware", "fleet.firmware: %d major versions %s; at most %d may run at once"
                      % (len(majors), majors, MAX_MAJORS))
    fw = _spread(rng, n_nodes, [(str(v), w) for v, w in fws])
    # 6. ages
    age = f.get("age_slots", {"min": 0, "max": 0})
    if not isinstance(age, dict) or set(age) - {"min", "max"} or not all(
            isinstance(age.get(k, 0), int) and age.get(k, 0) >= 0 for k in ("min", "max")) \
            or age.get("min", 0) > age.get("max", 0):
        raise f.error("age_slots", "fleet.age_slots: {min: n, max: n}, 0 <= min <= max")
    a_lo, a_hi = age.get("min", 0), age.get("max", 0)
    ages = [a_lo + rng.randrange(a_hi - a_lo + 1) for _ in range(n_nodes)]

    # 7. electors per region: distinct clusters, lineages spread
    electors = []
    for cids in regions:
        order = list(cids)
        rng.shuffle(order)
        chosen, used = [], set()
        for c in order[:n_electors]:
            ids = clusters[c - 1]
            fresh = [n for n in ids if lineage[n] not in used] or ids
            e = fresh[rng.randrange(len(fresh))]
            chosen.append(e)
            used.add(lineage[e])
        electors.append(sorted(chosen))
    _check_auto_auditors(f, electors, lineage)

    # 8. places: regions on a ring, clusters in a disc around their region's centre
    geo = _section(f, "geometry", "ring_radius_km, region_radius_km")
    check_keys(geo, _GEOMETRY, "fleet.geometry")
    ring_km = number(geo, "ring_radius_km", "fleet.geometry", lo=0, default=0)
    disc_km = number(geo, "region_radius_km", "fleet.geometry", lo=0, default=0)
    positions = {}
    for r, cids in enumerate(regions):
        angle = 2 * math.pi * r / len(regions)
        cx, cy = ring_km * math.cos(angle), ring_km * math.sin(angle)
        for c in cids:
            rad, theta = disc_km * math.sqrt(rng.random()), 2 * math.pi * rng.random()
            positions[c] = [round((cx + rad * math.cos(theta)) / C_KM_PER_MS, 3),
                            round((cy + rad * math.sin(theta)) / C_KM_PER_MS, 3)]

    # 9. faults from rates
    fl = _section(f, "faults", "rates: crash_mtbf_s, partitions_per_region_per_day, ...")
    check_keys(fl, _FAULTS, "fleet.faults")
    faults = _faults(rng, fl, duration_s, clusters, regions, electors, path)
    steps = _steps(f)
    if steps:  # by time among the drawn faults (a stable sort: the drawn order stays)
        faults = sorted(faults + steps, key=lambda d: d["at_s"])

    top = _explicit(data, f, reg, fl, clusters, regions, electors, lineage, hw, fw, ages, positions, faults)
    if wide and mode is None:  # more than one wire address space holds (ground/wireids.py)
        top["addressing"] = "region"
        top.key_lines["addressing"] = _line(f, "nodes")
    return top


def _steps(f):
    """fleet.steps: scenario steps as they are (docs/SCENARIOS.md "Faults":
    a lineage_fault, a sever of region 2, ...), placed among the drawn
    faults; regions and clusters are numbered in order (docs/FLEET.md)."""
    if "steps" not in f:
        return []
    steps = f["steps"]
    if not isinstance(steps, LocatedList) or not all(isinstance(x, Located) for x in steps):
        raise f.error("steps", "fleet.steps: a list of scenario steps, e.g. [{at_s: 60, sever: 2}] (docs/SCENARIOS.md"
                      " \"Faults\"), got %r" % (steps,))
    for x in steps:
        number(x, "at_s", "fleet.steps[]", lo=0)
    return list(steps)


def _lineage_check(f):
    def ok(v):
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 255:
            raise f.error("lineages", "fleet.lineages: lineage %r is not in 0..255" % (v,))
    return ok


def _firmware_check(f):
    def ok(v):
        major, _, minor = str(v).partition(".")
        if not isinstance(v, str) or not major.isdigit() or not minor.isdigit():
            raise f.error("firmware", "fleet.firmware: %r is not 'major.minor' (quote it: \"1.0\")" % (v,))
    return ok


def _spread(rng, n, weighted):
    """n values apportioned by share, shuffled over the nodes (one shuffle)."""
    values = [v for v, k in _apportion(n, weighted) for _ in range(k)]
    rng.shuffle(values)
    return values


def _check_auto_auditors(f, electors, lineage):
    """`market: {auditors: auto}` over a description: every region's electors
    need AUDITORS_PER_CLEARING of each clearing (ground/regions.py
    derive_auditors' rule, through the same clearing_counts), said here in
    the description's own terms, since its electors are drawn, not named
    (3 electors hold at most 1 of one clearing)."""
    m = f.get("market")
    if not isinstance(m, Located) or m.get("auditors") != "auto":
        return
    for r, es in enumerate(electors, 1):
        a, b = clearing_counts(lineage[e] for e in es)
        if min(a, b) < AUDITORS_PER_CLEARING:
            raise m.error("auditors", "fleet.market.auditors auto: region %d's %d electors %s run lineages %s:"
                          " %d of clearing A (even lineages) and %d of clearing B (odd); a coordinator of either"
                          " clearing needs %d auditors of the other, so every region needs %d electors of each:"
                          " set fleet.regions.electors to 4 or more and fleet.lineages to 4 (the expansion gives"
                          " each elector a lineage no earlier elector has, where its cluster holds one)"
                          % (r, len(es), es, [lineage[e] for e in es], a, b, AUDITORS_PER_CLEARING,
                             AUDITORS_PER_CLEARING))


def _faults(rng, fl, duration_s, clusters, regions, electors, path):
    """The fault schedule drawn from the rates, as [(at_s, order, fault dict, fleet key)]."""
    def rate(key_mtbf):
        v = number(fl, key_mtbf, "fleet.faults", lo=1e-3, default=0)
        return 1.0 / v if v else 0.0

    def dur(key, default):
        return number(fl, key, "fleet.faults", lo=0.001, default=default)

    out = []
    # per node: crashes and power cuts, one process (a node fails again only once back)
    r_crash, r_cut = rate("crash_mtbf_s"), rate("power_cut_mtbf_s")
    d_crash, d_cut = dur("crash_down_s", 30), dur("power_cut_down_s", 120)
    per_day = {k: number(fl, k, "fleet.faults", lo=0, default=0) / DAY_S
               for k in ("partitions_per_region_per_day", "region_blackouts_per_day", "autonomy_windows_per_region_per_day")}
    _check_fault_count(fl, duration_s, sum(map(len, clusters)), len(regions),
                       {"crash_mtbf_s": r_crash, "power_cut_mtbf_s": r_cut}, per_day)
    if r_crash + r_cut > 0:
        for ids in clusters:
            for n in ids:
                t = 0.0
                while True:
                    t += -math.log(1.0 - rng.random()) / (r_crash + r_cut)
                    if round(t, 3) >= duration_s:
                        break
                    crash = rng.random() < r_crash / (r_crash + r_cut)
                    kind, down = ("crash", d_crash) if crash else ("power_cut", d_cut)
                    out.append((round(t, 3), {"at_s": round(t, 3), kind: n, "duration_s": down},
                                "crash_mtbf_s" if crash else "power_cut_mtbf_s"))
                    t += down
    # per region: partitions (a cluster cut off), blackouts, autonomy windows (its electors cut off)
    d_part, d_black, d_auto = dur("partition_s", 300), dur("blackout_s", 120), dur("autonomy_window_s", 3600)
    cuts = []  # (at_s, end_s, cut-off ids, the rest of their region, key): one partition holds at a time
    for r, cids in enumerate(regions):
        region_ids = [n for c in cids for n in clusters[c - 1]]
        for t in _arrivals(rng, per_day["partitions_per_region_per_day"], duration_s):
            c = cids[rng.randrange(len(cids))]
            cuts.append((round(t, 3), round(t + d_part, 3), clusters[c - 1], region_ids, "partitions_per_region_per_day"))
        free_at = 0.0
        for t in _arrivals(rng, per_day["region_blackouts_per_day"], duration_s):
            if round(t, 3) < free_at:
                continue  # the region is already dark
            ids = [n for c in cids for n in clusters[c - 1]]
            out.append((round(t, 3), {"at_s": round(t, 3), "blackout": ids, "duration_s": d_black},
                        "region_blackouts_per_day"))
            free_at = round(t, 3) + d_black
        for t in _arrivals(rng, per_day["autonomy_windows_per_region_per_day"], duration_s):
            cuts.append((round(t, 3), round(t + d_auto, 3), electors[r], region_ids, "autonomy_windows_per_region_per_day"))
    free_at = 0.0
    for at, end, ids, region_ids, key in sorted(cuts, key=lambda x: (x[0], x[1], x[2])):
        if at < free_at:
            continue  # the router holds one partition at a time: a cut that would overlap one is dropped
        # Cut from the rest of their region (links to other regions stay: a cut is the region's pairs only)
        rest = [n for n in region_ids if n not in set(ids)]
        out.append((at, {"at_s": at, "partition": [list(ids), rest]}, key))
        if end < duration_s:
            out.append((end, {"at_s": end, "heal": True}, key))
        free_at = end
    out.sort(key=lambda x: x[0])
    return [_loc(d, path, _line(fl, key), {}) for _, d, key in out]


def _check_fault_count(fl, duration_s, n_nodes, n_regions, per_node, per_region):
    """Refuse rates that would draw more than MAX_FAULTS faults over the
    mission (expected counts, down times ignored), naming the rate that
    draws the most, before any is drawn: the schedule is held in memory."""
    expected = {k: r * duration_s * n_nodes for k, r in per_node.items()}
    expected.update({k: r * duration_s * n_regions for k, r in per_region.items()})
    total = sum(expected.values())
    if total > MAX_FAULTS:
        key = max(expected, key=expected.get)
        raise fl.error(key, "fleet.faults: these rates draw about %.3g faults over duration_s %g (%s); at most %s fit "
                            "a scenario's schedule: lower the rates or the mission length"
                       % (total, duration_s, ", ".join("%s %.3g" % (k, v) for k, v in expected.items() if v),
                          format(MAX_FAULTS, ",")))


def _explicit(data, f, reg, fl, clusters, regions, electors, lineage, hw, fw, ages, positions, faults):
    """The explicit scenario as Located data: each value at its fleet key's line."""
    path = data.path
    top = Located({k: v for k, v in data.items() if k != "fleet"})
    top.path, top.line = path, data.line
    top.key_lines = {k: _line(data, k) for k in top}
    c_line = _line(f, "cluster_sizes")
    cl = []
    for i, ids in enumerate(clusters):
        cl.append(_loc({"id": i + 1, "nodes": list(ids), "lineages": [lineage[n] for n in ids]}, path, c_line))
    top["clusters"] = _loc_list(cl, path, c_line)
    top.key_lines["clusters"] = c_line
    node_over = {}
    for n in range(1, len(hw) + 1):
        node_over[n] = _loc({"hw_gen": hw[n - 1], "firmware": fw[n - 1], "age_slots": ages[n - 1]}, path,
                            _line(f, "hw_gen"), {"firmware": _line(f, "firmware"), "age_slots": _line(f, "age_slots")})
    top["nodes"] = _loc(node_over, path, _line(f, "hw_gen"))
    top.key_lines["nodes"] = _line(f, "hw_gen")
    links_in = _section(f, "links", "tier -> link model: %s" % ", ".join(sorted(_TIERS)))
    check_keys(links_in, _TIERS, "fleet.links")
    links = _loc({k: v for k, v in links_in.items()}, path, links_in.line, links_in.key_lines)
    if positions and any(p != [0.0, 0.0] for p in positions.values()):
        links["positions"] = _loc(positions, path, _line(f, "geometry"))
        links.key_lines["positions"] = _line(f, "geometry")
    top["links"] = links
    top.key_lines["links"] = _line(f, "links")
    top["faults"] = _loc_list(faults, path, _line(f, "faults"))
    top.key_lines["faults"] = _line(f, "faults")
    m = _section(f, "market", "each region's market settings: MarketConfig's arguments, no electors")
    if "electors" in m or "region" in m or "clusters" in m:
        raise m.error(None, "fleet.market: electors, region and clusters are drawn per region (fleet.regions)")
    rl = []
    for r, cids in enumerate(regions):
        entry = {"region": r + 1, "clusters": list(cids), "electors": electors[r], **dict(m)}
        lines = dict(m.key_lines, region=_line(f, "regions"), clusters=_line(f, "regions"),
                     electors=_line(reg, "electors") if "electors" in reg else _line(f, "regions"))
        rl.append(_loc(entry, path, m.line, lines))
    top["regions"] = _loc_list(rl, path, _line(f, "market"))
    top.key_lines["regions"] = _line(f, "market")
    return top


def explicit_yaml(path):
    """`ground expand`: the explicit scenario for the fleet file at `path`, as
    YAML text that loads back to the same scenario."""
    import yaml

    from ground import scenario
    from ground.yamlfile import load

    data, text = load(path)
    if not isinstance(data, Located) or "fleet" not in data:
        raise ConfigError("%s:1: not a fleet description (no fleet: section; docs/FLEET.md)" % path)
    scenario.parse(data, text, path)  # refuse what cannot load, with the fleet file's lines
    out = plain(expand(data))
    head = ("# Expanded from %s by `ground expand` (docs/FLEET.md): %d nodes, %d clusters, %d regions, %d faults.\n"
            "# Edit the description, not this file: the same description and seed give this file again.\n"
            % (path, len(out["nodes"]), len(out["clusters"]), len(out["regions"]), len(out["faults"])))
    order = ["name", "description", "seed", "duration_s", "time_scale", "election_timeout_ms", "telemetry_ms",
             "auth_key", "board_journal", "downconvert", "gates", "links", "regions", "clusters", "nodes", "faults"]
    ordered = {key: out[key] for key in order + [k for k in out if k not in order] if key in out}
    return head + yaml.safe_dump(ordered, default_flow_style=None, sort_keys=False, width=120)
