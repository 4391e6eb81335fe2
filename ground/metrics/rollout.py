"""Metrics family of software rollouts (RolloutMetrics): what the rollout
orchestrator (ground/rollout_run.py) decided, read back from its `rollout`
trace events (docs/UPDATES.md "Rollouts").

Per image: when it started, completed or was aborted, when its rollback
finished, the nodes seen running it (`ran` events) and its canaries. The flat
figures a gate may use: images completed and aborted, the time to full
rollout, the time to detect a bad build (start to abort), the nodes that ran
an aborted build and their share of the fleet, and the rollback completion
time. State grows with images and nodes, not with frames.
"""

from ground.metrics.common import rnd

S = 1e9


class RolloutMetrics:
    VIEWS = ("rollout",)  # the view kinds its feed() reads (the composer hands it only those)

    FLAT = {
        "rollout_completed": ("count", "rollout images that reached every cluster"),
        "rollout_aborted": ("count", "rollout images aborted by the analysis (and rolled back)"),
        "rollout_full_s": ("s", "longest time from an image's start to its completion; None: none completed"),
        "rollout_detect_s": ("s", "longest time from an aborted image's start to its abort; None: none aborted"),
        "rollout_bad_nodes": ("count", "nodes that ran an aborted image"),
        "rollout_bad_share": ("ratio", "rollout_bad_nodes over the fleet's nodes; None: none aborted"),
        "rollout_canary_share": ("ratio", "canary nodes of the aborted images over the fleet's nodes; None: none"),
        "rollout_rollback_s": ("s", "longest time from an abort to its last node back on its previous image"),
        "rollout_joins": ("count", "nodes given their cluster's version when they said HELLO mid-rollout"),
    }

    def __init__(self, fleet):
        self.fleet = fleet
        self.images = []  # [{version, start, end, abort, rolled_back, ran, canary_nodes, nodes}]
        self.joins = 0

    def feed(self, v):
        if v.kind != "rollout":
            return
        e = v.msg
        ev = e.get("event")
        if ev == "start":
            self.images.append({"image": e.get("image"), "start_s": v.t / S, "complete_s": None, "abort_s": None,
                                "rolled_back_s": None, "ran": set(), "canaries": e.get("canaries"),
                                "canary_nodes": e.get("canary_nodes"), "nodes": e.get("nodes"),
                                "reason": None, "steps": e.get("steps")})
            return
        if not self.images:
            return
        img = self.images[-1]
        if ev == "ran":
            img["ran"].add(e.get("node"))
        elif ev == "complete":
            img["complete_s"] = v.t / S
        elif ev == "abort":
            img["abort_s"] = v.t / S
            img["reason"] = e.get("reason")
        elif ev == "rolled_back":
            img["rolled_back_s"] = v.t / S
        elif ev == "join":
            self.joins += 1

    def result(self, span):
        flat = dict.fromkeys(self.FLAT)
        done = [i for i in self.images if i["complete_s"] is not None]
        bad = [i for i in self.images if i["abort_s"] is not None]
        flat["rollout_completed"] = len(done)
        flat["rollout_aborted"] = len(bad)
        flat["rollout_joins"] = self.joins
        if done:
            flat["rollout_full_s"] = rnd(max(i["complete_s"] - i["start_s"] for i in done))
        nodes = len(self.fleet.nodes) if getattr(self.fleet, "nodes", None) else None
        lean = (getattr(self.fleet, "header", None) or {}).get("lean")
        if isinstance(lean, dict) and lean.get("fleet_nodes"):  # a lean trace's header holds its traced nodes only
            nodes = lean["fleet_nodes"]
        if bad:
            flat["rollout_detect_s"] = rnd(max(i["abort_s"] - i["start_s"] for i in bad))
            ran = set().union(*(i["ran"] for i in bad))
            flat["rollout_bad_nodes"] = len(ran)
            if nodes:
                flat["rollout_bad_share"] = rnd(len(ran) / nodes)
                flat["rollout_canary_share"] = rnd(max(i["canary_nodes"] or 0 for i in bad) / nodes)
            back = [i["rolled_back_s"] - i["abort_s"] for i in bad if i["rolled_back_s"] is not None]
            flat["rollout_rollback_s"] = rnd(max(back)) if back else None
        else:
            flat["rollout_bad_nodes"] = 0
        out = {"flat": flat}
        if self.images:
            out["rollout"] = [dict(i, ran=len(i["ran"]), start_s=rnd(i["start_s"])) for i in self.images]
        return out


def prometheus(x, metrics):
    """The rollout figures into report.to_prometheus's exposition `x`."""
    fl = metrics.get("flat", {})
    for name, key, type_, help_ in (
        ("rollout_completed_total", "rollout_completed", "counter", "Rollout images that reached every cluster"),
        ("rollout_aborted_total", "rollout_aborted", "counter", "Rollout images aborted by the analysis"),
        ("rollout_full_seconds", "rollout_full_s", "gauge", "Longest start-to-completion of a rollout image, mission s"),
        ("rollout_detect_seconds", "rollout_detect_s", "gauge", "Longest start-to-abort of a bad image, mission s"),
        ("rollout_rollback_seconds", "rollout_rollback_s", "gauge", "Longest abort-to-rolled-back time, mission s"),
        ("rollout_bad_nodes", "rollout_bad_nodes", "gauge", "Nodes that ran an aborted image"),
        ("rollout_bad_ratio", "rollout_bad_share", "gauge", "Nodes that ran an aborted image over the fleet"),
    ):
        f = x.family(name, type_, help_)
        x.sample(f, fl.get(key))
    images = metrics.get("rollout") or []
    if images:
        f = x.family("rollout_image_nodes_ran", "gauge", "Nodes seen running a rollout image")
        for i in images:
            x.sample(f, i["ran"], image=i["image"])
