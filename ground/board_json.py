"""The board.json a scenario gives each node's board: its identity, cluster,
timers, seed and time scale (docs/BOARD_SHELL.md).

The engine decides it (the replay tools rebuild a board's core from it); the
board layer (hil/) writes it into a board's flash before a run.
"""


def board_config(sc, nid):
    """board.json for node `nid` of scenario `sc`, as a dict."""
    spec = sc.nodes[nid]
    cfg = {
        "node_id": nid,
        "cluster": spec.cluster,
        "members": sc.clusters[spec.cluster],
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
    if sc.auth_key:
        cfg["auth_key"] = sc.auth_key.hex()
        cfg["require_auth"] = True
    return cfg
