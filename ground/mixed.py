"""Boards inside a simulated fleet: a scenario's `boards: {cluster: N}` puts
the boards of `ground run --emulated [K]` / `--rig RIG.yaml` in as the nodes
of cluster N; every other node of the fleet runs in-process, in the same
real-time run (one router, one trace, one clock at the scenario's
time_scale). This module's one job is to prepare such a run: read the key,
refuse what cannot run, and give the board layer the scenario as the boards
see it (only cluster N's nodes; their board.json still names the whole
cluster, region and market). ground/cli.py calls it; ground/run.py runs the
mix as any run with boards for some nodes (docs/FLEET.md "Boards inside a
simulated fleet").

    spec = parse(data, clusters)       # at load: {"cluster": N, "where": "file:line", ...}
    check(sc)                          # ConfigError: an elector seat of a region above ELECTOR_BOARD_MAX_NODES
    cal = calibrate(sc, seed)          # the in-process fleet for a few mission s in virtual time
    refuse_scale(sc, cal)              # InputError: a time scale this machine cannot keep
    board_sc = board_view(sc)          # for backends.start(...)

The scale check is a calibration before any board boots: the whole fleet
runs in-process in virtual time for CALIBRATE_S mission seconds (or the
mission, if shorter), as the real run will (trace, metrics, history), and
its wall time gives the mission seconds per wall second this host manages
now (its CPU and what the host's other work leaves of it); HEADROOM of
that is what a real-time run may ask for (the rest is the boards' frames,
the real-time scheduler's polite spin, up to a quarter of the wall time,
and the load changing). A scale above it is refused naming the largest that
works. The run then reports how late its timers actually ran
(ground/lateness.py): the calibration is a guard, the lateness is the
measurement.
"""

import math
import shutil
import tempfile
import time
from dataclasses import replace

from ground.exitcodes import InputError
from ground.yamlfile import ConfigError, Located, check_keys

CALIBRATE_S = 10.0  # mission seconds the calibration runs
HEADROOM = 0.5  # the share of the calibrated pace a real-time run may ask for
# The largest region an elector board runs in a mixed fleet: docs/HEAP.md
# "An elector board inside a simulated fleet" (emulated Picos, 192K, ROMFS,
# three electors, 12 s slots, the board journaling: a 46-node region ran with
# the board as its coordinator; at 60 and 100 nodes the board that became
# coordinator ran out of heap within 10 mission s and fell silent).
ELECTOR_BOARD_MAX_NODES = 46


def parse(data, clusters):
    """`boards: {cluster: N}` -> {"cluster": N, "where": "file:line"}; a
    ConfigError naming the line for anything else."""
    b = data["boards"]
    if not isinstance(b, Located):
        raise data.error("boards", "boards: a mapping {cluster: N}: the cluster whose nodes are the boards of"
                         " --emulated / --rig, got %r" % (b,))
    check_keys(b, {"cluster"}, "boards", required=("cluster",))
    c = b["cluster"]
    if isinstance(c, bool) or not isinstance(c, int) or c not in clusters:
        raise b.error("cluster", "boards.cluster: %r is not one of the scenario's clusters (%d..%d)"
                      % (c, min(clusters), max(clusters)))
    scale = data.where("time_scale") if "time_scale" in data else "%s:1" % data.path
    return {"cluster": c, "where": b.where("cluster"), "time_scale_where": scale}


def nodes(sc):
    """The nodes the boards are (cluster N's), or None without `boards:`."""
    return None if sc.boards is None else list(sc.clusters[sc.boards["cluster"]])


def check(sc):
    """Refuse a board cluster holding an elector seat of a region whose
    roster is larger than an elector board holds (ELECTOR_BOARD_MAX_NODES);
    an elector seat in a region up to that size runs on a board."""
    c = sc.boards["cluster"]
    members = set(sc.clusters[c])
    for r in sc.regions:
        seats = sorted(members & set(r.electors))
        if seats and len(r.nodes) > ELECTOR_BOARD_MAX_NODES:
            raise ConfigError(
                "%s: boards.cluster %d holds region %d's elector seat%s %s, and region %d has %d nodes: an elector"
                " board holds a region of at most %d nodes (its 192K heap, docs/HEAP.md); name a cluster without"
                " a seat in it, or make the region smaller"
                % (sc.boards["where"], c, r.region, "s" if len(seats) > 1 else "", ", ".join(map(str, seats)),
                   r.region, len(r.nodes), ELECTOR_BOARD_MAX_NODES))


def elector_seats(sc):
    """The board cluster's elector seats, {node: region}."""
    members = set(nodes(sc))
    return {n: r.region for r in sc.regions for n in r.electors if n in members}


def board_view(sc):
    """The scenario as the board layer sees it: cluster N's nodes only (one
    board each); clusters, regions, markets and links as they are."""
    keep = set(nodes(sc))
    return replace(sc, nodes={n: s for n, s in sc.nodes.items() if n in keep})


class Calibration:
    """What the calibration measured: mission s run, CPU s and wall s spent."""

    def __init__(self, mission_s, cpu_s, wall_s, n_nodes):
        self.mission_s = mission_s
        self.cpu_s = cpu_s
        self.wall_s = wall_s
        self.n_nodes = n_nodes

    @property
    def pace(self):
        """Mission seconds per wall second in-process, on this host as loaded now."""
        return self.mission_s / max(self.wall_s, 1e-6)

    @property
    def max_scale(self):
        """The largest time scale a real-time run may ask for."""
        return _round_down(self.pace * HEADROOM)

    def as_dict(self):
        return {"mission_s": self.mission_s, "cpu_s": round(self.cpu_s, 3), "wall_s": round(self.wall_s, 3),
                "nodes": self.n_nodes, "pace": round(self.pace, 2), "headroom": HEADROOM,
                "max_time_scale": self.max_scale}


def calibrate(sc, seed=None, mission_s=CALIBRATE_S):
    """Run the whole fleet in-process in virtual time for `mission_s` (or
    the mission, if shorter) and time it; a Calibration."""
    from ground import run as run_mod

    span = min(mission_s, sc.duration_s)
    short = replace(sc, duration_s=span, faults=[f for f in sc.faults if f.at_s < span], gates={})
    folder = tempfile.mkdtemp(prefix="fleetloop-calibrate-")
    marks = {}

    def started(run):
        run.clock.call_at(int(span * 1e9), lambda: marks.setdefault("end", (time.process_time(), time.perf_counter())))
        marks["start"] = (time.process_time(), time.perf_counter())

    try:
        r = run_mod.Run(short, folder, mode="sim", seed=seed, plot=False)
        r.on_start.append(started)
        r.execute()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    (c0, w0), (c1, w1) = marks["start"], marks.get("end") or (time.process_time(), time.perf_counter())
    return Calibration(span, c1 - c0, w1 - w0, len(sc.nodes))


def refuse_scale(sc, cal):
    """InputError (exit 2, one line) if sc.time_scale is more than this host keeps up with."""
    if sc.time_scale <= cal.max_scale:
        return
    raise InputError(
        "%s: time_scale %g is more than this machine keeps up with for %d in-process nodes: %g mission s took"
        " %.2f s wall (%.2f s CPU) in-process (%.1fx real time), and a real-time run may ask %d %% of that: the"
        " largest time scale that works here is %g"
        % (sc.boards["time_scale_where"], sc.time_scale, cal.n_nodes, cal.mission_s, cal.wall_s, cal.cpu_s, cal.pace,
           round(HEADROOM * 100), cal.max_scale))


def _round_down(x):
    """x rounded down to two significant figures (never up: the figure is a bound)."""
    if x <= 0:
        return 0.0
    step = 10.0 ** (math.floor(math.log10(x)) - 1)
    return round(math.floor(x / step + 1e-9) * step, 6)
