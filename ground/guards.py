"""Load-time guards: refuse a scenario that cannot work before it runs.

A run that cannot work must not print PASS after an hour of mission time, so
`ground.scenario` asks these once the scenario is parsed:

- timeouts against light: an election timeout (a cluster's, or the market
  region's among its electors) shorter than the longest light round trip it
  covers, jitter included, can never be met: refused. Below 3 round trips it
  works badly (every heartbeat, vote and ack is late): a warning. Both name
  file:line, the numbers and a value that works.
- the fault schedule: a fault at or after `duration_s` never fires; a
  `restart` or `power_on` aimed at a node that is running would silently
  reboot it from flash. Both refused.
- the market's rounds: a mission that ends before as many auction rounds
  can close as `market_rounds_complete` asks (a round closes at
  (r + 1) slot_ms - lead_ms, docs/MARKET.md) fails that gate whatever
  happens: a warning, not a refusal, since `ground chaos` and short looks at
  a market judge other things.

Everything here reads the scenario; nothing is changed but `sc.warnings`.
"""

import math

from ground.yamlfile import ConfigError

WARN_ROUND_TRIPS = 3  # a timeout below this many light round trips gets a warning
JITTER_SIGMAS = 3  # normal / pareto jitter: the one-way delay counted up to delay + 3 jitter_ms


def one_way_ms(spec):
    """The longest one-way light time a link model gives a frame (ms), up to
    its jitter bound: uniform +jitter_ms, normal and pareto +3 jitter_ms."""
    d = spec.get("delay_ms", 0) or 0
    j = spec.get("jitter_ms", 0) or 0
    shape = spec.get("jitter", "uniform" if j else "none")
    if shape == "none" or not j:
        return d
    return d + (j if shape == "uniform" else JITTER_SIGMAS * j)


def _representatives(sc, ids):
    """Without per-pair models (links.pairs, a contact plan) a link's model
    depends only on the two clusters: two nodes of each cluster stand for it."""
    if sc.links.get("pairs") or sc.contact_plan is not None:
        return ids
    seen = {}
    for n in ids:
        kept = seen.setdefault(sc.nodes[n].cluster, [])
        if len(kept) < 2:
            kept.append(n)
    return [n for kept in seen.values() for n in kept]


def worst_round_trip(sc, ids):
    """(round trip ms, a, b): the longest light round trip between two of `ids`."""
    best = (0, None, None)
    ids = sorted(_representatives(sc, sorted(ids)))
    one_way = {}
    for i, a in enumerate(ids):
        for b in ids[i + 1:]:
            for s, d in ((a, b), (b, a)):
                if (s, d) not in one_way:
                    one_way[(s, d)] = one_way_ms(sc.link_spec(s, d))
            rtt = one_way[(a, b)] + one_way[(b, a)]
            if rtt > best[0]:
                best = (rtt, a, b)
    return best


def _works(rtt_ms):
    """A timeout that clears WARN_ROUND_TRIPS round trips, rounded up to 100 ms."""
    return int(math.ceil(WARN_ROUND_TRIPS * rtt_ms / 100.0)) * 100


def check_timeout(sc, what, timeout_ms, ids, where, origin, key):
    """Refuse `timeout_ms` below the worst round trip among `ids`; warn below 3."""
    rtt, a, b = worst_round_trip(sc, ids)
    if not rtt:
        return
    if timeout_ms < rtt:
        raise ConfigError(
            "%s: %s %s = %g ms%s is shorter than the light round trip between nodes %d and %d (%g ms with jitter):"
            " it can never be met; set %s to at least %d (3 round trips)"
            % (where, what, key, timeout_ms, origin, a, b, rtt, key, _works(rtt)))
    if timeout_ms < WARN_ROUND_TRIPS * rtt:
        sc.warnings.append(
            "%s: %s %s = %g ms%s is under %d light round trips between nodes %d and %d (%g ms each, with jitter):"
            " expect late votes and lost rounds; %d would work"
            % (where, what, key, timeout_ms, origin, WARN_ROUND_TRIPS, a, b, rtt, _works(rtt)))


def check_timeouts(sc, data):
    """Every cluster's election timeout and each market region's region timeout."""
    t_where = data.where("election_timeout_ms")
    t_origin = "" if "election_timeout_ms" in data else " (the default)"
    for cid, ids in sorted(sc.clusters.items()):
        check_timeout(sc, "cluster %d:" % cid, sc.election_timeout_ms, ids, t_where, t_origin, "election_timeout_ms")
    for r in sc.regions:  # market: gives one region, regions: several (ground/scenario.py)
        m, mdata = r.market, r.source
        what = "market" if len(sc.regions) == 1 and "market" in data else "region %d" % r.region
        origin = "" if "region_timeout_ms" in mdata else " (the default)"
        check_timeout(sc, "%s electors %s:" % (what, list(r.electors)), m.region_timeout_ms, r.electors,
                      mdata.where("region_timeout_ms" if "region_timeout_ms" in mdata else None), origin,
                      "market.region_timeout_ms" if what == "market" else "regions[].region_timeout_ms")


# What each action needs of its node: "down" (it must be down: restart,
# power_on), and what it leaves it ("up", "down" or None: unchanged).
_NEEDS = {"restart": "down", "power_on": "down"}
_LEAVES = {"crash": "down", "power_cut": "down", "restart": "up", "power_on": "up", "reset": "up"}


def check_schedule(sc):
    """Faults at or after the end; restart/power_on aimed at a running node."""
    for f in sc.faults:
        if f.at_s >= sc.duration_s:
            raise ConfigError("%s: fault %s at_s %g is at or after the end of the run (duration_s %g): it would"
                              " never fire; move it before %g s or lengthen duration_s"
                              % (f.where, f.action, f.at_s, sc.duration_s, sc.duration_s))
    for f in sc.faults:
        if f.action in _NEEDS and f.target == "coordinator":
            raise ConfigError("%s: fault %s: coordinator: the coordinator is a running node, and %s would silently"
                              " reboot it from flash; name the node, or give the crash or power_cut a duration_s"
                              % (f.where, f.action, f.action))
    # Replay the schedule over explicit node targets (whom another
    # `coordinator` fault hits is only known while the run goes).
    steps = []  # (at_s, order, action, node, where)
    for i, f in enumerate(sc.faults):
        if not isinstance(f.target, int) or isinstance(f.target, bool) or f.action not in _LEAVES:
            continue
        steps.append((f.at_s, 2 * i, f.action, f.target, f.where))
        if f.duration_s and f.action in ("crash", "power_cut"):
            back = "restart" if f.action == "crash" else "power_on"
            steps.append((f.at_s + f.duration_s, 2 * i + 1, back, f.target, "%s (after its duration_s)" % f.where))
    state = {}
    for at_s, _, action, nid, where in sorted(steps):
        now = state.get(nid, ("up", None))
        if _NEEDS.get(action) == "down" and now[0] == "up":
            since = "" if now[1] is None else " (brought back by %s)" % now[1]
            raise ConfigError("%s: fault %s: node %d is running at %g s%s; %s would silently reboot it from flash."
                              " Crash or power_cut it first, or use reset: %d to reboot a running node"
                              % (where, action, nid, at_s, since, action, nid))
        state[nid] = (_LEAVES[action], where if _LEAVES[action] == "up" else None)


def closes_before(market, duration_ms):
    """How many of `market`'s auction rounds close before duration_ms:
    round r closes at (r + 1) slot_ms - lead_ms (docs/MARKET.md "A round")."""
    return max(0, -(-(duration_ms + market.lead_ms) // market.slot_ms) - 1)


def check_rounds(sc, data):
    """Warn when the gate market_rounds_complete asks for more rounds than
    can close before the mission ends, in all the regions together."""
    gate = sc.gates.get("market_rounds_complete")
    if not sc.regions or not gate or gate.get("min") is None:
        return
    duration_ms = int(sc.duration_s * 1000)
    closes = sum(closes_before(r.market, duration_ms) for r in sc.regions)
    if closes >= gate["min"]:
        return
    need = int(math.ceil(gate["min"]))
    # the mission ms by which `need` rounds have closed in all regions together: the least T with
    # closes_before(T + 1) >= need (a bisection: a gate may ask for any number of rounds)
    lo, hi = 0, need * max(r.market.slot_ms for r in sc.regions)
    while lo < hi:
        mid = (lo + hi) // 2
        if sum(closes_before(r.market, mid + 1) for r in sc.regions) >= need:
            hi = mid
        else:
            lo = mid + 1
    first = min(sc.regions, key=lambda r: r.market.slot_ms - r.market.lead_ms)
    m = first.market
    origin = "its default for a market" if "market_rounds_complete" not in (data.get("gates") or {}) else "the gates"
    sc.warnings.append(
        "%s: duration_s %g ends before market_rounds_complete >= %g (%s) can be met: %d round(s) close before"
        " the end in all regions together, the first at %g s (region %d: slot_ms %d - lead_ms %d; round r"
        " closes at (r + 1) slot_ms - lead_ms); lengthen duration_s past %g s, shorten slot_ms, or turn the"
        " gate off (gates: {market_rounds_complete: off})"
        % (data.where("duration_s"), sc.duration_s, gate["min"], origin, closes, (m.slot_ms - m.lead_ms) / 1000.0,
           first.region, m.slot_ms, m.lead_ms, lo / 1000.0))
