"""A scenario's `rollout:` section, parsed and checked at load: the plan the
ground's rollout orchestrator (ground/rollout_run.py) follows (docs/UPDATES.md
"Rollouts", docs/SCENARIOS.md).

    rollout:
      start_s: 60                # mission s: the first image's canaries start
      window_s: 604800           # validation window per step, mission s (default 7 days)
      canary_percent: 5          # 1..5 % of clusters, chosen to cover every hw generation and lineage
      canaries: [3, 7]           # ... or named clusters instead
      step_percent: 10           # clusters per later step (default 10 %)
      confirm_after_s: 30        # a trial confirms itself after this long in its cluster
      deploy_timeout_s: 630      # a node not done by then gets it at its next HELLO (default: confirm_after_s
                                 # per node of the largest cluster + 4 election timeouts, at least + 600)
      stagger: true              # a cluster's nodes install one at a time, its coordinator last (default)
      min_clusters: 1            # analyse only once this many clusters run the image
      max_failed_checks: 1       # failed checks (over the image's steps) that abort it
      checks:                    # updated vs not-yet-updated clusters, per cluster over the window
        crashes: {max_ratio: 2, slack: 0}
        failovers: {max_ratio: 2, slack: 1}
      images:                    # rolled one after the other (the next once the last is done or aborted)
        - version: "1.1"
        - version: "1.2"
          test_build: true
          defects: {crash_on_coordinator: true, lineage: 1}

A plan that could put more than 3 firmware majors in the fleet at any step is
refused with file:line, as is a bad key or value.
"""

from __future__ import annotations  # `int | None` read by Python 3.9 too: PyPy shard processes (ground/shard_host.py)

import math
from dataclasses import dataclass, field

from ground.flim import DEFECTS
from ground.yamlfile import ConfigError, Located, LocatedList, check_keys, number

_KEYS = {"start_s", "window_s", "canary_percent", "canaries", "step_percent", "confirm_after_s", "deploy_timeout_s",
         "min_clusters", "max_failed_checks", "checks", "images", "stagger"}
_IMAGE = {"version", "label", "lineage", "test_build", "defects"}
_CHECK = {"max_ratio", "slack"}
# check -> (meaning, default max_ratio, default slack): the per-cluster figure
# of updated clusters fails when above baseline * max_ratio + slack.
CHECKS = {
    "crashes": ("node crashes and watchdog resets (node events `crashed`)", 1.0, 0.0),
    "reverted": ("trial images reset before they confirmed (ACK state reverted)", 1.0, 0.0),
    "failovers": ("coordinator changes (a COORDINATOR claim by another node)", 2.0, 1.0),
    "leader_churn": ("new terms claimed (COORDINATOR claims)", 2.0, 1.0),
    "production_lost": ("production lost (MARKET_TEL `lost`, growth over the window)", 1.5, 1.0),
    "protocol_errors": ("frames refused (node events bad_frame, refused)", 2.0, 1.0),
    "refused_bids": ("bids the market must refuse: price 0 or above auction.MAX_PRICE, or no lease (BID frames)",
                     1.0, 0.0),
    "ledger_mismatch": ("market rounds whose ledger digests disagree (PRICES prepare vs ROUND_ACK), blamed on"
                        " the odd one out", 2.0, 1.0),
    "heap": ("lowest free heap (TELEMETRY v3 heap_min), bytes below the baseline's", None, 4096.0),
}
DEFAULT_CHECKS = ("crashes", "reverted", "failovers", "leader_churn", "protocol_errors", "refused_bids",
                  "ledger_mismatch")
MAX_MAJORS = 3  # DESIGN.md: at most 3 concurrent major versions fleet-wide


@dataclass
class Check:
    name: str
    max_ratio: float | None
    slack: float


@dataclass
class Image:
    version: tuple
    label: str
    lineage: int
    test_build: bool
    defects: dict
    where: str


@dataclass
class Plan:
    start_s: float
    window_s: float
    canary_percent: float
    canaries: list | None
    step_percent: float
    confirm_after_ms: int
    deploy_timeout_s: float
    min_clusters: int
    max_failed_checks: int
    checks: list
    images: list = field(default_factory=list)
    where: str = ""
    stagger: bool = True  # one node of a cluster installs at a time, the coordinator last


def _version(m, key):
    text = str(m.get(key, ""))
    major, _, minor = text.partition(".")
    if not major.isdigit() or not minor.isdigit() or int(major) > 255 or int(minor) > 255:
        raise m.error(key, "rollout image: version %r is not 'major.minor' (each 0..255)" % (m.get(key),))
    return int(major), int(minor)


def _image(m, key):
    if not isinstance(m, Located):
        raise ConfigError("%s: rollout.images[]: a mapping with version:" % key)
    check_keys(m, _IMAGE, "rollout.images[]", required=("version",))
    version = _version(m, "version")
    test_build = m.get("test_build", False)
    if not isinstance(test_build, bool):
        raise m.error("test_build", "rollout image: test_build must be true or false")
    defects = m.get("defects", {}) or {}
    if not isinstance(defects, dict):
        raise m.error("defects", "rollout image: defects is a mapping (%s)" % ", ".join(DEFECTS))
    for k in defects:
        if k not in DEFECTS:
            raise m.error("defects", "rollout image: defect %r unknown (known: %s)" % (k, ", ".join(DEFECTS)))
    if defects and not test_build:
        raise m.error("defects", "rollout image %d.%d declares defects but is not a test build (test_build: true);"
                      " every node would refuse it" % version)
    lineage = number(m, "lineage", "rollout image", lo=0, hi=255, default=0, integer=True)
    return Image(version, str(m.get("label", "%d.%d" % version)), lineage, test_build, dict(defects),
                 m.where("version"))


def parse(data, sc):
    """The `rollout:` mapping of a scenario (Located) -> Plan; ConfigError naming file:line."""
    ro = data["rollout"]
    if not isinstance(ro, Located):
        raise data.error("rollout", "rollout: a mapping (docs/UPDATES.md \"Rollouts\")")
    check_keys(ro, _KEYS, "rollout", required=("images",))
    num = lambda key, lo, hi, default, integer=False: number(ro, key, "rollout", lo=lo, hi=hi, default=default,  # noqa: E731
                                                             integer=integer)
    start_s = num("start_s", 0, None, 0.0)
    window_s = num("window_s", 0.001, None, 7 * 86400.0)
    canary_percent = num("canary_percent", 1, 5, 5.0)
    step_percent = num("step_percent", 0.001, 100, 10.0)
    confirm_s = num("confirm_after_s", 0, 86400, 30.0)
    stagger = ro.get("stagger", True)
    if not isinstance(stagger, bool):
        raise ro.error("stagger", "rollout.stagger: true (a cluster's nodes install one at a time) or false (all"
                       " at once)")
    # a trial confirms once its cluster has a coordinator again: allow it an election or two (staggered: one
    # confirmation per node of the largest cluster, one after the other)
    serial = max(len(ids) for ids in sc.clusters.values()) if stagger else 1
    deploy_timeout_s = num("deploy_timeout_s", 1, None, confirm_s * serial + max(600.0, 4 * sc.election_timeout_ms
                                                                                   / 1000.0))
    if deploy_timeout_s <= confirm_s:
        raise ro.error("deploy_timeout_s", "rollout.deploy_timeout_s %g: no longer than confirm_after_s %g, so no"
                       " trial could confirm in time" % (deploy_timeout_s, confirm_s))
    min_clusters = num("min_clusters", 1, None, 1, integer=True)
    max_failed = num("max_failed_checks", 1, None, 1, integer=True)
    canaries = ro.get("canaries")
    if canaries is not None:
        if not isinstance(canaries, list) or not canaries or any(c not in sc.clusters for c in canaries):
            raise ro.error("canaries", "rollout.canaries: a list of the scenario's cluster ids (known: %s)"
                           % sorted(sc.clusters))
        canaries = list(dict.fromkeys(canaries))
    checks = _checks(ro)
    images = ro["images"]
    if not isinstance(images, LocatedList) or not images:
        raise ro.error("images", "rollout.images: a non-empty list of {version, ...}")
    plan = Plan(start_s, window_s, canary_percent, canaries, step_percent, int(confirm_s * 1000), deploy_timeout_s,
                min_clusters, max_failed, checks, [_image(m, images.where(i)) for i, m in enumerate(images)],
                data.where("rollout"), stagger)
    if start_s >= sc.duration_s:
        raise ro.error("start_s", "rollout.start_s %g: at or after the scenario's end (duration_s %g)"
                       % (start_s, sc.duration_s))
    check_majors(plan, sc)
    return plan


def _checks(ro):
    given = ro.get("checks")
    if given is None:
        return [Check(n, CHECKS[n][1], CHECKS[n][2]) for n in DEFAULT_CHECKS]
    if not isinstance(given, Located):
        raise ro.error("checks", "rollout.checks: a mapping of check -> {max_ratio, slack} (known: %s)"
                       % ", ".join(CHECKS))
    out = []
    for name, spec in given.items():
        if name not in CHECKS:
            raise given.error(name, "rollout.checks: %r unknown (known: %s)" % (name, ", ".join(CHECKS)))
        spec = spec if isinstance(spec, Located) else Located()
        check_keys(spec, _CHECK, "rollout.checks.%s" % name)
        ratio = number(spec, "max_ratio", "rollout.checks.%s" % name, lo=0, default=CHECKS[name][1])
        slack = number(spec, "slack", "rollout.checks.%s" % name, lo=0, default=CHECKS[name][2])
        out.append(Check(name, ratio, slack))
    return out


def check_majors(plan, sc):
    """Refuse a plan under which more than MAX_MAJORS majors could run at
    once: at any step of image k, nodes may still run any major the fleet
    started with or an earlier image brought (an abort leaves those), plus
    image k's."""
    running = {n.fw_version[0] for n in sc.nodes.values()}
    for img in plan.images:
        running.add(img.version[0])
        if len(running) > MAX_MAJORS:
            raise ConfigError("%s: rollout image %d.%d would let %d firmware majors run at once (%s); at most %d"
                              " may (the fleet's, and every earlier image's, may still run during its steps)"
                              % (img.where, img.version[0], img.version[1], len(running),
                                 ", ".join(str(m) for m in sorted(running)), MAX_MAJORS))


# ---- choosing clusters ---------------------------------------------------------


def choose_canaries(plan, sc, rng):
    """The canary clusters: the named ones, or canary_percent of the clusters
    (at least one), first chosen so that every (hw generation, lineage) the
    fleet has runs in one of them, then filled at random. More than the
    percentage when covering needs it (the trace says how many)."""
    if plan.canaries is not None:
        return list(plan.canaries)
    clusters = sorted(sc.clusters)
    want = max(1, math.floor(len(clusters) * plan.canary_percent / 100.0))
    kinds = {c: {(sc.nodes[n].hw_gen, sc.nodes[n].lineage) for n in sc.clusters[c]} for c in clusters}
    left = set().union(*kinds.values())
    order = clusters[:]
    rng.shuffle(order)
    chosen = []
    while left:
        best = max(order, key=lambda c: (len(kinds[c] & left), -order.index(c)))
        chosen.append(best)
        order.remove(best)
        left -= kinds[best]
    for c in order:
        if len(chosen) >= want:
            break
        chosen.append(c)
    return sorted(chosen)


def steps(plan, sc, canaries, rng):
    """[[cluster ids]]: the canaries, then step_percent of the clusters per step, in random order."""
    rest = [c for c in sorted(sc.clusters) if c not in canaries]
    rng.shuffle(rest)
    per = max(1, math.ceil(len(sc.clusters) * plan.step_percent / 100.0))
    return [list(canaries)] + [sorted(rest[i:i + per]) for i in range(0, len(rest), per)]
