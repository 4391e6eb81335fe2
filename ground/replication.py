"""Replication in a run: a parent's completed daughter becomes a new node.

A scenario's `replication:` section (ground/scenario.py) gives every cluster
a disjoint block of spare node ids for its daughters, and a disjoint block of
`splits` cluster numbers its splits take (docs/PROTOCOL.md "Joining and
splitting"): a split takes its block's first number, each side half of the
rest, so a side made by a split splits again while its block holds a number.

    replication: {spares: 16, max_cluster: 20, min_cluster: 5, splits: 3}

`Replication` watches the run's events (a Run listener). When a parent's
DAUGHTER frame reaches the ground it allocates the next spare id of the
parent's cluster (in order: never one handed out before, in any cluster),
records a `node` event `node_added` (parent, id, lineage, hw generation,
cluster), and asks the run to boot the daughter (`Run.add_node`): an
in-process node of the parent's lineage and firmware, a hardware generation
from its parent's fab, that JOINs its parent's cluster. When a coordinator's
SPLIT goes out it follows the split (`cluster_split`: who went where), so the
router delivers each cluster's frames to its new members; a JOIN_REFUSED a
node sends becomes a `join_refused` node event naming the node, the frame and
why. A node a split passed by (off while it happened) is told by a CATCHUP
(node/catchup.py): its HELLO in the cluster named becomes `caught_up`. The core decides every join and split (node/join.py); this module only
does what the ground does for real: fab, flash, boot, and keep its map.
"""

import time
from dataclasses import dataclass

from ground import protocol
from ground.regions import REGION_CLUSTERS
from ground.scenario import NodeSpec

DAUGHTER = "daughter"
ROSTER = "roster"
SPLIT = "split"
JOIN_REFUSED = "join_refused"
CATCHUP = "catchup"
HELLO = "hello"


@dataclass
class Plan:
    """The scenario's replication settings (scenario `replication:`)."""

    spares: int = 16  # spare ids per cluster
    max_cluster: int = 20
    min_cluster: int = 5
    splits: int = 3  # cluster numbers per scenario cluster for its splits (and its sides' splits)
    where: str = ""  # file:line of the scenario's `replication:`


class Replication:
    def __init__(self, sc, plan):
        self.plan = plan
        self.spares = {}  # cluster -> [first, next, end]: its spare ids first..end-1, next the next to hand out
        self.joined = {}  # cluster -> spare ids a ROSTER admitted (node/join.py computes a split's spares from them)
        self.pending = set()  # daughters booted, no ROSTER seen naming them yet
        self.split_to = {}  # cluster -> [first, count]: its split block, first the number its next split takes
        self.parent_of = {}  # daughter id -> parent
        self.handed = set()  # every id handed out: never again
        self.catching = {}  # node id -> the CATCHUP sent it last (its event), until its HELLO in that cluster
        base = max(sc.nodes) + 1
        free_cluster = max(sc.clusters) + 1
        for k, c in enumerate(sorted(sc.clusters)):
            first = base + k * plan.spares
            self.spares[c] = [first, first, first + plan.spares]
            first = free_cluster + k * plan.splits
            self.split_to[c] = [first, plan.splits] if first + plan.splits <= REGION_CLUSTERS else [0, 0]
        self.last_id = base + len(sc.clusters) * plan.spares - 1
        if self.last_id > 0xEFFF:
            raise ValueError("%s: replication: %d spare ids per cluster run past node id 0xEFFF"
                             % (sc.path, plan.spares))

    def config_args(self, cluster):
        """The Config arguments a node of `cluster` boots with (node/config.py)."""
        first, _, end = self.spares[cluster]
        return {"spares": (first, end - first), "max_members": self.plan.max_cluster,
                "min_members": self.plan.min_cluster, "split_cluster": list(self.split_to.get(cluster, (0, 0)))}

    # ---- events -----------------------------------------------------------

    def listener(self, run):
        def on_event(e):
            if e.get("kind") != "frame" or e.get("fate") != "sent" or "bad" in e:
                return
            t = e.get("type")
            if t == DAUGHTER and e.get("dst") == 0:
                run.clock.call_at(run.clock.now_ns(), self._daughter, run, e)
            elif t == ROSTER:
                self._roster(run, e)
            elif t == SPLIT:
                run.clock.call_at(run.clock.now_ns(), self._split, run, e)
            elif t == JOIN_REFUSED and e.get("dst") == 0:
                run.clock.call_at(run.clock.now_ns(), self._refused, run, e)
            elif t == CATCHUP:
                self.catching[e.get("dst")] = e
            elif t == HELLO and e.get("src") in self.catching:
                if e.get("dst") == 0:  # a boot (its HELLO to the ground comes first): not the CATCHUP's doing
                    del self.catching[e["src"]]
                else:
                    self._caught_up(run, e)
        return on_event

    def _daughter(self, run, e):
        parent = e["src"]
        spec = run.sc.nodes.get(parent)
        msg = e.get("msg") or {}
        if spec is None:
            return
        block = self.spares.get(spec.cluster)
        if block is None or block[1] >= block[2]:
            run.router._event("node", node=parent, event="daughter_lost", detail=(
                "node %d completed daughter %s (frame %d) but cluster %d has no spare id left"
                % (parent, msg.get("daughters"), e["id"], spec.cluster)))
            return
        nid = block[1]
        block[1] += 1
        assert nid not in self.handed and nid not in run.sc.nodes  # disjoint blocks, handed in order
        self.handed.add(nid)
        self.parent_of[nid] = parent
        self.pending.add(nid)
        hw_gen = msg.get("hw_gen", spec.hw_gen)
        board = None
        if run.boards:  # a run on boards: a spare board takes it, or it is not placed (no node_added)
            board = place_on_board(run, nid, parent, NodeSpec(nid, spec.cluster, spec.firmware, hw_gen,
                                                              msg.get("lineage", spec.lineage)), e["id"])
            if board is None:
                self.pending.discard(nid)
                del self.parent_of[nid]
                return
        run.router._event("node", node=nid, event="node_added", parent=parent, cluster=spec.cluster,
                          lineage=msg.get("lineage", spec.lineage), hw_gen=hw_gen, firmware=spec.firmware,
                          frame=e["id"], detail="node %d: daughter %s of node %d (frame %d), cluster %d"
                          % (nid, msg.get("daughters"), parent, e["id"], spec.cluster))
        add_node(run, nid, parent, spec.cluster, msg.get("lineage", spec.lineage), hw_gen, spec.firmware, board)

    def _roster(self, run, e):
        """A coordinator admitted a daughter: it is in the cluster's roster
        now (the one a node booting in that cluster gets)."""
        msg = e.get("msg") or {}
        spec = run.sc.nodes.get(e["src"])
        nid = msg.get("node")
        if spec is None or e.get("dst") != 0xF000 | spec.cluster or nid not in self.parent_of:
            return
        c = spec.cluster
        self.pending.discard(nid)
        if nid not in run.sc.clusters[c]:
            run.sc.clusters[c].append(nid)
            run.sc.clusters[c].sort()
        first, _, end = self.spares[c]
        if first <= nid < end:
            self.joined.setdefault(c, set()).add(nid)

    def _split(self, run, e):
        msg = e.get("msg") or {}
        src = e["src"]
        spec = run.sc.nodes.get(src)
        if spec is None or e.get("dst") != 0xF000 | spec.cluster:
            return
        c, new, pivot = spec.cluster, msg.get("new_cluster"), msg.get("pivot")
        members = sorted(run.sc.clusters.get(c, ()))
        low = [n for n in members if n < pivot]
        high = [n for n in members if n >= pivot]
        if len(low) != msg.get("low") or len(high) != msg.get("high") or new in run.router.members:
            run.router._event("node", node=src, event="split_unfollowed", detail=(
                "node %d split cluster %d at %d (frame %d): the ground's roster %s does not match (%s/%s)"
                % (src, c, pivot, e["id"], members, msg.get("low"), msg.get("high"))))
            return
        first, handed, end = self.spares[c]
        joined = [n for n in self.joined.get(c, ()) if n >= first]
        nxt = max(joined) + 1 if joined else first  # as node/join.py: above every spare that joined
        mid = nxt + (end - nxt) // 2
        self.spares[c] = [first, min(handed, mid), mid]  # as node/join.py: from its first (one may still join below nxt)
        self.spares[new] = [mid, max(mid, handed), end]
        f, n = self.split_to.get(c, (0, 0))  # as node/join.py: the number is spent, each side half the rest
        half = (n - 1) // 2
        self.split_to[c], self.split_to[new] = ([f + 1, half], [f + 1 + half, n - 1 - half]) if n and f == new else (
            [0, 0], [0, 0])
        # A daughter booted but not yet admitted goes where its spare id now belongs (as node/join.py).
        waiting = sorted(n for n in self.pending if run.sc.nodes[n].cluster == c)
        going = [n for n in waiting if n >= mid]
        split_cluster(run, c, new, low, high, [n for n in waiting if n < mid], going)
        # `high`: every node that moves, a daughter still joining included (the checker's and metrics' maps follow it)
        run.router._event("node", node=src, event="cluster_split", cluster=c, new_cluster=new, pivot=pivot,
                          low=low, high=sorted(high + going), frame=e["id"],
                          detail="cluster %d split by node %d (frame %d): %d stay, %d form cluster %d"
                          % (c, src, e["id"], len(low), len(high), new))

    def _caught_up(self, run, e):
        """A node a CATCHUP was sent to says HELLO in the cluster it named:
        it took it (node/catchup.py). A `caught_up` node event naming the
        node, the cluster, who told it and both frames; `ground_cluster`
        when the ground's map (which follows every split, off nodes too)
        says otherwise."""
        nid = e["src"]
        c = self.catching[nid]
        cluster = (c.get("msg") or {}).get("cluster")
        if cluster is None or e.get("dst") != 0xF000 | cluster:
            return
        del self.catching[nid]
        spec = run.sc.nodes.get(nid)
        extra = {} if spec is None or spec.cluster == cluster else {"ground_cluster": spec.cluster}
        run.router._event("node", node=nid, event="caught_up", cluster=cluster, by=c["src"], frame=c["id"],
                          hello=e["id"], **extra, detail="node %d caught up with cluster %d: CATCHUP from node %d"
                          " (frame %d), its HELLO there (frame %d)%s" % (nid, cluster, c["src"], c["id"], e["id"],
                                                                          "; the ground's map says cluster %d"
                                                                          % spec.cluster if extra else ""))

    def _refused(self, run, e):
        msg = e.get("msg") or {}
        reason = msg.get("reason", -1)
        names = protocol.JOIN_REFUSAL_NAMES
        why = names[reason] if 0 <= reason < len(names) else "reason %d" % reason
        what = protocol.MESSAGES.get(msg.get("type"), ("type 0x%02x" % (msg.get("type") or 0),))[0]
        run.router._event("node", node=e["src"], event="join_refused", reason=why, frame=e["id"],
                          detail="node %d refused a %s from %s naming %s: %s (frame %d, its %s refusal)"
                          % (e["src"], what, msg.get("src"), msg.get("subject"), why, e["id"], msg.get("count")))


def scenario_copy(sc):
    """The scenario with its own node, cluster and position maps: a run that
    adds nodes and splits clusters changes these, never the caller's."""
    from dataclasses import replace

    return replace(sc, nodes={k: replace(v) for k, v in sc.nodes.items()},
                   clusters={k: list(v) for k, v in sc.clusters.items()}, positions=dict(sc.positions),
                   cluster_region=dict(sc.cluster_region), regions=list(sc.regions), region_of=dict(sc.region_of))


def widen_markets(sc, rep):
    """Every region's market roster holds its clusters' spare ids from boot
    (MarketConfig's tables are fixed at boot, like the replay sources): a
    daughter then bids, claims and is heard by the electors like any node,
    and the region's roster grows as its spares come alive. Spares take
    their cluster's hardware generation (what its fabs build). Changes the
    run's scenario copy only."""
    from dataclasses import replace

    from ground import firmware

    regions = []
    for r in sc.regions:
        gen_of = {n: sc.nodes[n].hw_gen for n in r.nodes}
        cluster_of = {n: sc.nodes[n].cluster for n in r.nodes}
        for c in r.clusters:
            first, _, end = rep.spares[c]
            gen = sc.nodes[sc.clusters[c][0]].hw_gen
            for n in range(first, end):
                gen_of[n], cluster_of[n] = gen, c
        roster = sorted(gen_of)
        args = dict(r.market_args, roster=roster, gens=[gen_of[n] for n in roster])
        if "cluster_of" in args:
            args["cluster_of"] = [cluster_of[n] for n in roster]
        if args.get("clusters") is not None:  # its announcements reach the clusters its clusters' splits will make
            blocks = (rep.split_to.get(c, (0, 0)) for c in r.clusters)  # (first, count) each
            args["clusters"] = sorted(set(args["clusters"]).union(*(range(f, f + n) for f, n in blocks)))
        kw = {k: (tuple(v) if k == "units" else v) for k, v in args.items() if k not in ("roster", "gens")}
        market = firmware.config.MarketConfig(roster=roster, gens=bytes(args["gens"]), **kw)
        regions.append(replace(r, nodes=roster, market=market, market_args=args))
    sc.regions = regions
    sc.region_of = {n: r for r in regions for n in r.nodes if n in sc.nodes}
    if len(regions) == 1 and sc.market is not None:
        sc.market, sc.market_args = regions[0].market, regions[0].market_args


def add_node(run, nid, parent, cluster, lineage, hw_gen, fw, board=None):
    """A daughter (Replication._daughter): a new node of `run` (ground.run.Run) that
    JOINs its parent's cluster, the router delivering that cluster's
    frames to it from now on: in-process, or on `board`, a spare board
    already booted (place_on_board)."""
    from ground import firmware
    from ground.links import SimLink

    run.sc.nodes[nid] = NodeSpec(nid, cluster, fw, hw_gen, lineage)
    region = run.sc.region_of.get(parent)
    if region is not None and nid in region.nodes:  # its spare id is in its region's roster: it trades
        run.sc.region_of[nid] = region
    r = run.router
    r.members.setdefault(cluster, []).append(nid)
    r.proto_max[nid] = firmware.config.protocols(run.sc.nodes[nid].fw_version)[1]
    if board is not None:
        boot_ms = getattr(run, "spare_boot_ms", None)
        r._event("node", node=nid, event="board_added", board=getattr(board, "name", None),
                 device=getattr(board, "device", None), boot_wall_ms=boot_ms,
                 detail="node %d: on spare board %s (%s), flashed and booted in %s wall ms"
                 % (nid, getattr(board, "name", "?"), getattr(board, "device", board), boot_ms))
        run.add_board(nid, board)
        return
    try:
        link = SimLink(nid, run._make_node_factory(nid, parent), updates=run._sim_updates(nid))
    except ValueError as e:  # its config refused (the firmware's word): reported, the run goes on
        r._event("node", node=nid, event="daughter_lost", detail="node %d: not booted: %s" % (nid, e))
        return
    link.wake_at = None
    r.add(link)
    run._poll(link)


def place_on_board(run, nid, parent, spec, frame):
    """A daughter in a run on boards: the back-end powers on a spare board,
    flashed with the daughter's board.json (id nid, its parent's lineage and
    firmware, its cluster's roster and spares; `spec` its NodeSpec) and
    booted; the board, or None when there is no spare left or it does not
    boot: then a `daughter_lost` event naming the parent, the id and why
    (reason no_spare_board / spare_not_booted), and the run goes on."""
    from ground import board_json

    r = run.router

    def lost(reason, why):
        r._event("node", node=parent, event="daughter_lost", daughter=nid, reason=reason, frame=frame,
                 detail="node %d completed a daughter (frame %d), not placed as node %d: %s" % (parent, frame, nid, why))

    if run.spare_board is None:
        lost("no_spare_board", "this run has no spare board (ground run --emulated N with N more than the"
             " scenario's nodes keeps the rest off as spares; a rig file names them: spare: true)")
        return None
    run.sc.nodes[nid] = spec  # for its board.json only: add_node adds it for good
    try:
        cfg = board_json.board_config(run.sc, nid, run.replication)
    finally:
        del run.sc.nodes[nid]
    t0 = time.monotonic()
    try:
        b = run.spare_board(nid, cfg, spec.fw_version, spec.firmware)
    except (OSError, RuntimeError, ValueError) as e:  # TimeoutError is an OSError: a board that did not boot
        lost("spare_not_booted", "its spare board did not boot: %s" % e)
        return None
    if b is None:
        lost("no_spare_board", "every spare board is in use")
        return None
    run.spare_boot_ms = int((time.monotonic() - t0) * 1000)  # the run's loop waited this long (board_added says)
    return b


def split_cluster(run, cluster, new, low, high, low_waiting=(), high_waiting=()):
    """A coordinator split `cluster`: `high` form cluster `new`; daughters
    still waiting to join go with their side (Replication._split)."""
    sc = run.sc
    sc.clusters[cluster] = list(low)
    sc.clusters[new] = list(high)
    for n in list(high) + list(high_waiting):
        sc.nodes[n].cluster = new
    if cluster in sc.positions:
        sc.positions[new] = sc.positions[cluster]
    if cluster in sc.cluster_region:
        sc.cluster_region[new] = sc.cluster_region[cluster]
    run.router.members[cluster] = sorted(list(low) + list(low_waiting))
    run.router.members[new] = sorted(list(high) + list(high_waiting))
