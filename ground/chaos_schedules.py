"""Random fault schedules over a scenario, as scenario data: `ground chaos`'s generator.

    base = load_base("scenarios/bench.yaml")           # plain data + the parsed Scenario
    data = schedule(base, seed=1234, rates_per_h=DEFAULT_RATES_PER_H, mission_s=None)
    text = to_yaml(data, comment="...")                # `ground run` runs it as it is

A schedule is the base scenario with `seed:` set to the schedule's seed and
faults inserted after the base's own: every fault kind the scenario format
has (ground/scenario.py _FAULT_ACTIONS), each arriving as a Poisson process
at its rate per mission hour over the mission length. The schedule for a seed
depends only on the base scenario, the seed, the rates and the mission length
(random.Random seeded from a string: the same in every process and Python
run), so `--seed S --schedules 1` rebuilds schedule S of any larger chaos run.

Each generated fault is a valid scenario entry; the shapes (partition kinds,
coordinator targets, durations, follow-up restarts, power-ons and heals) are
drawn too, so one seed exercises several at once. Relative file paths in the
base (contact plans, mahimahi and replay traces) are made absolute, so the
written schedule runs from wherever it is saved.
"""

import math
import os
import random

import yaml

from ground import scenario as scenario_mod
from ground.yamlfile import ConfigError

# Every fault kind of the scenario format, and its default rate per mission
# hour: a 240 s mission then gets about one of each, a 20 s one a fault or two.
KINDS = (
    "crash", "restart", "reset", "power_cut", "power_on", "partition", "heal", "blackout", "skew",
    "byzantine", "corruption_burst", "intent", "lineage_fault", "sever", "reinstate",
)
LINEAGE_KINDS = ("crash", "power_cut", "reset", "byzantine", "corruption_burst")  # not clearing_defect: from boot only
DEFAULT_RATE_PER_H = 15.0
DEFAULT_RATES_PER_H = {k: DEFAULT_RATE_PER_H for k in KINDS}
PARTITION_SHAPES = ("groups", "isolate", "majority_minority", "bridge", "ring")


class Base:
    """A base scenario: its plain data (paths made absolute), its parsed form
    (node ids, clusters, T) and where it came from."""

    def __init__(self, path, data, sc):
        self.path = path
        self.data = data
        self.sc = sc


def load_base(path):
    """Read and validate a scenario file (ConfigError names file:line)."""
    sc = scenario_mod.load(path)
    data = _plain(yaml.safe_load(sc.text))
    _absolute_paths(data, os.path.dirname(os.path.abspath(path)))
    return Base(path, data, sc)


def parse_rates(items, default=None):
    """['crash=60', 'all=10', ...] -> {kind: rate per mission hour}; 'all' sets
    every kind, later items win. ValueError names the bad item."""
    rates = dict(DEFAULT_RATES_PER_H if default is None else default)
    for item in items or ():
        kind, sep, value = item.partition("=")
        kind = kind.strip()
        if not sep or (kind not in KINDS and kind != "all"):
            raise ValueError("--rate %r: KIND=PER_HOUR with KIND one of all, %s" % (item, ", ".join(KINDS)))
        try:
            rate = float(value)
        except ValueError:
            raise ValueError("--rate %r: %r is not a number of faults per mission hour" % (item, value)) from None
        if not rate >= 0 or math.isinf(rate):
            raise ValueError("--rate %r: the rate must be a finite number >= 0" % item)
        for k in (KINDS if kind == "all" else (kind,)):
            rates[k] = rate
    return rates


def schedule(base, seed, rates_per_h=None, mission_s=None):
    """The scenario data of schedule `seed`: the base with faults inserted."""
    rates = DEFAULT_RATES_PER_H if rates_per_h is None else rates_per_h
    sc = base.sc
    duration_s = float(mission_s if mission_s is not None else sc.duration_s)
    rng = random.Random("fleetloop chaos %d" % seed)
    gen = _Gen(rng, sc, duration_s)
    added = []
    for kind in KINDS:  # a fixed order: the draws for one kind never shift another's
        rate_per_s = rates.get(kind, 0.0) / 3600.0
        t = 0.0
        while rate_per_s > 0:
            t += rng.expovariate(rate_per_s)
            if t >= duration_s:
                break
            added += getattr(gen, kind)(t)
    added = [f for f in added if f["at_s"] < duration_s]
    added.sort(key=lambda f: f["at_s"])
    base_faults = list(base.data.get("faults") or [])
    if mission_s is not None:  # a shorter run: the base's own steps past its end would never fire
        base_faults = [f for f in base_faults if float(f.get("at_s", 0)) < duration_s]
    added = _only_meaningful(base_faults, added)
    data = dict(base.data)
    data["name"] = "%s-chaos-%d" % (sc.name, seed)
    data["seed"] = seed
    data["duration_s"] = _num(duration_s)
    data["faults"] = base_faults + added
    data["description"] = ("chaos schedule %d over %s (%s): %d faults inserted"
                           % (seed, sc.name, os.path.basename(base.path), len(added)))
    return data


def kinds_in(data):
    """{fault kind: count} over a schedule's faults (base faults included)."""
    out = {}
    for f in data.get("faults") or ():
        for k in KINDS:
            if k in f:
                out[k] = out.get(k, 0) + 1
    return out


def to_yaml(data, comment=""):
    """Scenario text for `data`: top-level keys in the usual order, one fault
    per line in flow style, `comment` lines first."""
    head = "".join("# %s\n" % line if line else "#\n" for line in comment.splitlines())
    body = {k: v for k, v in data.items() if k != "faults"}
    text = yaml.safe_dump(body, sort_keys=False, default_flow_style=None, width=1000, allow_unicode=True)
    faults = data.get("faults") or []
    if faults:
        text += "faults:\n" + "".join(
            "  - %s\n" % yaml.safe_dump(f, default_flow_style=True, sort_keys=False, width=1000).strip()
            for f in faults)
    return head + text


def check_text(text, where):
    """Parse a generated schedule as `ground run` will; a ConfigError here is
    the generator's bug, said so."""
    try:
        return scenario_mod.load_text(text, where)
    except ConfigError as e:
        raise AssertionError("chaos generated a scenario the loader refuses (a bug in ground/chaos_schedules.py): %s"
                             % e) from None


# ---- the fault generators: one method per kind, each -> [fault entries] -----


class _Gen:
    def __init__(self, rng, sc, duration_s):
        self.rng = rng
        self.nodes = sorted(sc.nodes)
        self.clusters = {c: list(ids) for c, ids in sorted(sc.clusters.items())}
        self.t_s = sc.election_timeout_ms / 1000.0
        self.duration_s = duration_s
        self.market = sc.market_args
        self.lineages = sorted({n.lineage for n in sc.nodes.values()})
        self.regions = sorted(r.region for r in sc.regions)
        self.audited = sorted(n for r in sc.regions if r.market.auditors for n in r.nodes)

    # -- draws

    def _node(self):
        return self.rng.choice(self.nodes)

    def _target(self):
        """A node id, or the coordinator of a cluster (resolved when it fires)."""
        if self.rng.random() < 0.4:
            return {"target": "coordinator", "cluster": self.rng.choice(sorted(self.clusters))}
        return {"target": self._node()}

    def _for(self, t):
        """A fault duration: mostly a few election timeouts, sometimes long."""
        if self.rng.random() < 0.2:
            d = self.rng.uniform(self.t_s, max(self.t_s, self.duration_s / 3))
        else:
            d = self.rng.uniform(0.2 * self.t_s, 6 * self.t_s)
        return _num(max(0.001, d))

    def _some(self, k_min=1, k_max=None):
        k_max = min(len(self.nodes), k_max or len(self.nodes))
        k = self.rng.randint(min(k_min, k_max), k_max)
        return sorted(self.rng.sample(self.nodes, k))

    def _entry(self, t, action, target, **extra):
        e = {"at_s": _num(t), action: target.get("target") if isinstance(target, dict) else target}
        if isinstance(target, dict) and "cluster" in target:
            e["cluster"] = target["cluster"]
        e.update(extra)
        return e

    # -- kinds

    def crash(self, t):
        return self._down(t, "crash", "restart")

    def power_cut(self, t):
        return self._down(t, "power_cut", "power_on")

    def _down(self, t, action, back):
        """With duration_s (the engine brings it back), or without and a
        separate `back` entry later, or without at all (down for good)."""
        target = self._target()
        r = self.rng.random()
        if r < 0.6:
            return [self._entry(t, action, target, duration_s=self._for(t))]
        out = [self._entry(t, action, target)]
        if r < 0.9 and target["target"] != "coordinator":
            out.append(self._entry(t + self._for(t), back, target))
        return out

    def restart(self, t):
        # A restart brings a crashed node back (ground/guards.py refuses one
        # aimed at a running node): the crash it ends comes with it.
        node = {"target": self._node()}
        return [self._entry(t, "crash", node), self._entry(t + self._for(t), "restart", node)]

    def power_on(self, t):
        node = {"target": self._node()}
        return [self._entry(t, "power_cut", node), self._entry(t + self._for(t), "power_on", node)]

    def intent(self, t):
        """A Tier-3 intent step (ground/intent.py), in a scenario with a market."""
        if self.market is None:
            return []
        spec = {"phase": self.rng.choice(("growth", "consolidate")),
                "growth_permille": self.rng.randint(0, 1000), "cover_permille": self.rng.randint(500, 1000)}
        e = {"at_s": _num(t), "intent": spec}
        if self.rng.random() < 0.5:
            e["cluster"] = self.rng.choice(sorted(self.clusters))
        return [e]

    def reset(self, t):
        return [self._entry(t, "reset", self._target())]

    def partition(self, t):
        shape = self.rng.choice(PARTITION_SHAPES)
        arg = getattr(self, "_part_" + shape)()
        if arg is None:  # too few nodes for this shape: isolate one instead
            arg = {"isolate": self._node()}
        out = [{"at_s": _num(t), "partition": arg}]
        if self.rng.random() < 0.7:
            out.append({"at_s": _num(t + self._for(t)), "heal": True})
        return out

    def _part_groups(self):
        if len(self.nodes) < 2:
            return None
        ids = self._some(2)
        self.rng.shuffle(ids)
        k = self.rng.randint(2, min(3, len(ids)))
        cuts = sorted(self.rng.sample(range(1, len(ids)), k - 1))
        return [sorted(g) for g in (ids[a:b] for a, b in zip([0] + cuts, cuts + [len(ids)]))]

    def _part_isolate(self):
        ids = self._some(1, max(1, len(self.nodes) // 2))
        return {"isolate": ids[0] if len(ids) == 1 else ids}

    def _part_majority_minority(self):
        big = [c for c, ids in self.clusters.items() if len(ids) >= 3]
        return {"majority_minority": self.rng.choice(big)} if big else None

    def _part_bridge(self):
        if len(self.nodes) < 3:
            return None
        ids = self._some(3)
        self.rng.shuffle(ids)
        via, rest = ids[0], ids[1:]
        k = self.rng.randint(1, len(rest) - 1)
        return {"bridge": {"a": sorted(rest[:k]), "b": sorted(rest[k:]), "via": via}}

    def _part_ring(self):
        if len(self.nodes) < 4:
            return None
        ids = self._some(4)
        self.rng.shuffle(ids)
        return {"ring": ids}

    def heal(self, t):
        return [{"at_s": _num(t), "heal": True}]

    def blackout(self, t):
        target = "all" if self.rng.random() < 0.3 else self._some(1, max(1, len(self.nodes) // 2))
        return [{"at_s": _num(t), "blackout": target, "duration_s": self._for(t)}]

    def skew(self, t):
        r = self.rng.random()
        if r < 0.6:
            factor = self.rng.uniform(0.8, 1.25)
        elif r < 0.9:
            factor = math.exp(self.rng.uniform(math.log(0.5), math.log(2.0)))
        else:
            factor = math.exp(self.rng.uniform(math.log(0.05), math.log(20.0)))
        node = self._node()
        out = [{"at_s": _num(t), "skew": node, "factor": round(factor, 3)}]
        if self.rng.random() < 0.5:
            out.append({"at_s": _num(t + self._for(t)), "skew": node, "factor": 1.0})
        return out

    def byzantine(self, t):
        return [self._entry(t, "byzantine", self._target(), rewrite="stale_term", duration_s=self._for(t))]

    def lineage_fault(self, t):
        """Every node of one lineage at once (ground/lineagefault.py)."""
        kind = self.rng.choice(LINEAGE_KINDS)
        e = {"at_s": _num(t), "lineage_fault": {"lineage": self.rng.choice(self.lineages), "kind": kind}}
        if kind != "reset":
            e["duration_s"] = self._for(t)
        return [e]

    def sever(self, t):
        """The ground severs a region (ground/sever.py): with two regions or more."""
        if len(self.regions) < 2:
            return []
        return [{"at_s": _num(t), "sever": self.rng.choice(self.regions)}]

    def reinstate(self, t):
        """The ground reinstates a node: in a region with auditors."""
        if not self.audited:
            return []
        return [{"at_s": _num(t), "reinstate": self.rng.choice(self.audited)}]

    def corruption_burst(self, t):
        return [{"at_s": _num(t), "corruption_burst": self._node(),
                 "bitflip": round(self.rng.uniform(0.001, 0.05), 4), "duration_s": self._for(t)}]


# ---- helpers ------------------------------------------------------------------


_BACK = {"restart", "power_on"}  # bring a node back: only one that is down (ground/guards.py)
_DOWN = {"crash", "power_cut"}


def _only_meaningful(base_faults, added):
    """`added` without the faults that would make the loader refuse the
    schedule (ground/guards.py: a restart or power_on that hits a running
    node or the coordinator, including the implicit one at the end of a
    crash's or power cut's duration_s). Each added fault is kept only if the
    node states replayed over the base's faults and the faults kept so far
    stay consistent, as the guard replays them."""
    kept = []
    for f in added:
        if _consistent(list(base_faults) + kept + [f]):
            kept.append(f)
    return kept


def _consistent(faults):
    steps = []  # (at_s, order, action, node)
    for i, f in enumerate(faults):
        action = next((a for a in ("crash", "power_cut", "restart", "power_on", "reset") if a in f), None)
        if action is None:
            continue
        node = f[action]
        if action in _BACK and node == "coordinator":
            return False
        if not isinstance(node, int) or isinstance(node, bool):
            continue
        steps.append((float(f["at_s"]), 2 * i, action, node))
        if f.get("duration_s") and action in _DOWN:
            steps.append((float(f["at_s"]) + float(f["duration_s"]), 2 * i + 1,
                          "restart" if action == "crash" else "power_on", node))
    up = {}
    for _, _, action, node in sorted(steps, key=lambda x: (x[0], x[1])):
        if action in _BACK and up.get(node, True):
            return False
        up[node] = action not in _DOWN
    return True


def _num(x):
    """Mission seconds to the ms, as YAML writes and reads them back exactly."""
    x = round(float(x), 3)
    return int(x) if x == int(x) else x


def _plain(v):
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def _absolute_paths(data, base):
    """contact_plan.path and the links' mahimahi.path / replay.trace, relative
    to the scenario's folder, made absolute (scenario.py reads them so)."""
    cp = data.get("contact_plan")
    if isinstance(cp, dict) and isinstance(cp.get("path"), str) and not os.path.isabs(cp["path"]):
        cp["path"] = os.path.join(base, cp["path"])
    links = data.get("links") or {}
    specs = [links[k] for k in ("default", "intra_cluster", "inter_cluster", "ground") if isinstance(links.get(k), dict)]
    specs += [p for p in links.get("pairs") or () if isinstance(p, dict)]
    for spec in specs:
        for key, sub in (("mahimahi", "path"), ("replay", "trace")):
            m = spec.get(key)
            if isinstance(m, dict) and isinstance(m.get(sub), str) and not os.path.isabs(m[sub]):
                m[sub] = os.path.join(base, m[sub])
