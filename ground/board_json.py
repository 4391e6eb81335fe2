"""The board.json a scenario gives each node's board: its identity, cluster,
timers, seed and time scale (docs/BOARD_SHELL.md).

The engine decides it (the replay tools rebuild a board's core from it); the
board layer (hil/) writes it into a board's flash before a run.
"""


def board_config(sc, nid, replication=None):
    """board.json for node `nid` of scenario `sc`, as a dict. A scenario with
    `replication:` gives every board its cluster's spare ids and split
    settings, and its region's market roster widened by the spares (as an
    in-process run does: ground/replication.py); `replication`, a run's own
    ground.replication.Replication (its `sc` the run's copy, already
    widened), for a daughter booted mid-run: its parent and spares as they
    are now."""
    rep = replication
    if sc.replication is not None and rep is None:
        from ground.replication import Replication, scenario_copy, widen_markets

        sc = scenario_copy(sc)
        rep = Replication(sc, sc.replication)
        widen_markets(sc, rep)
    spec = sc.nodes[nid]
    members = sc.clusters[spec.cluster]
    if nid not in members:  # a daughter not yet admitted: the roster and itself (as ground/run.py)
        members = sorted(list(members) + [nid])
    cfg = {
        "node_id": nid,
        "cluster": spec.cluster,
        "members": list(members),
        "election_timeout_ms": sc.election_timeout_ms,
        "lineage": spec.lineage,
        "hw_gen": spec.hw_gen,
        "seed": (sc.seed * 100_003 + nid * 7) & 0xFFFFFFFF,
        "time_scale_milli": int(sc.time_scale * 1000),
        "watchdog_ms": 0,
        "journal": sc.board_journal,
    }
    if sc.telemetry_ms:
        cfg["telemetry_ms"] = sc.telemetry_ms
    if sc.market_args_for(nid) is not None:
        cfg["market"] = sc.market_args_for(nid)  # its region's market (scenario regions:)
    if getattr(sc, "rollout", None) is not None:  # a trial confirms after the plan's time (docs/UPDATES.md)
        cfg["confirm_after_ms"] = sc.rollout.confirm_after_ms
    if rep is not None:
        args = rep.config_args(spec.cluster)
        cfg["replication"] = dict(args, spares=list(args["spares"]), parent=rep.parent_of.get(nid, 0))
    if sc.auth_key:
        cfg["auth_key"] = sc.auth_key.hex()
        cfg["require_auth"] = True
    return cfg
