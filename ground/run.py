"""One run of a scenario: build the links, drive the clock, apply faults on
schedule, record the trace, then measure and gate.

    result = run(scenario, out_dir, mode="sim")            # in-process, virtual time
    result = run(scenario, out_dir, mode="emulated")       # emulated Picos on ptys, real time
    result = run(scenario, out_dir, boards={3: "/dev/ttyACM0", ...})  # a rig

Whatever happens (a board that dies, Ctrl-C, a bug), the trace written so far
is closed with an `end` line and the metrics of what was recorded are
written: nothing recorded is lost.
"""

import os
import time
from dataclasses import replace

from ground import firmware
from ground import audit_rerun, gcpolicy, history
from ground import lineagefault
from ground import sever
from ground import metrics as metrics_mod
from ground import report
from ground.clock import RealClock, VirtualClock
from ground.links import LinkError, SerialLink, SimLink
from ground.router import MS, Router, ground_counter_base
from ground.scenario import Fault
from ground.trace import TraceWriter
from ground import update_sim, wireids

msgs = firmware.msgs
wire = firmware.wire
S = 1_000_000_000
WATCHDOG_MS = 5000  # a crashed in-process node restarts after this (a board's default watchdog_ms)
SILENT_T = 3  # election timeouts without a frame before a board counts as silent

# The finest delay a real-time run can inject on a host link, in wall ms: the
# scheduler's lateness (bench_links: p99 well under 0.5 ms) plus a frame's
# transfer over a pty or USB CDC. Below this, scaled delays would be noise.
REALTIME_RESOLUTION_MS = 2.0


class RunResult:
    def __init__(self, out_dir, metrics, failures, status, history=None):
        self.out_dir = out_dir
        self.metrics = metrics
        self.failures = failures
        self.status = status
        self.history = history  # the history checker's Report (ground/history.py), when the run checked it

    @property
    def ok(self):
        return self.status == "ok" and not self.failures


def node_config(sc, node_id, version=None, **replication):
    """A node's Config from the scenario; `version` (major, minor): the image
    it runs, if not the scenario's; `replication`: node/join.py's arguments
    (spares, max_members, ..., parent) in a run that adds nodes."""
    spec = sc.nodes[node_id]
    # addressing: region: the core knows its region's wire ids only (ground/wireids.py)
    return firmware.config.Config(
        cluster=wireids.wire_cluster(sc, spec.cluster),
        members=[wireids.wire_node(sc, n) for n in sc.clusters[spec.cluster]],
        election_timeout_ms=sc.election_timeout_ms,
        telemetry_ms=sc.telemetry_ms,
        hw_gen=spec.hw_gen,
        fw_version=tuple(version) if version is not None else spec.fw_version,
        lineage=spec.lineage,
        auth_key=sc.auth_key,
        require_auth=sc.auth_key is not None,
        market=sc.market_for(node_id),  # its region's market (scenario regions:), or None
        age_slots=spec.age_slots,
        **replication,
    )


def regions_header(sc):
    """A scenario of several regions (regions:): every region in `regions`,
    and the first as `market` (the metrics' market family reads one region)."""
    rows = [{"region": r.region, "electors": list(r.electors), "slot_ms": r.market.slot_ms,
             "clusters": list(r.clusters)} for r in sc.regions]
    first = {k: rows[0][k] for k in ("region", "electors", "slot_ms")}
    return {"market": first, "regions": rows}


def _link_text(board):
    """How the trace header names a board's link: where its frames come from
    (a board on UDP: its address, learnt from its HELLO; else its device)."""
    link = getattr(board, "open_link", None)
    if link:
        return str(link[0].url)
    return str(getattr(board, "device", board))


def check_resolution(sc, real):
    """Refuse a real-time scenario whose scaled delays the link cannot resolve."""
    if not real:
        return
    d = sc.min_delay_ms()
    if d is None:
        return
    wall_ms = d / sc.time_scale
    if wall_ms < REALTIME_RESOLUTION_MS:
        raise ValueError(
            "%s: the smallest link delay, %g mission ms, becomes %.3f wall ms at time_scale %g; a real-time link"
            " resolves about %.1f ms, so that delay would be distorted. Lower time_scale to at most %g, or run"
            " in-process with --sim (virtual time is exact)."
            % (sc.path, d, wall_ms, sc.time_scale, REALTIME_RESOLUTION_MS, d / REALTIME_RESOLUTION_MS)
        )


class Run:
    """One run. execute() runs it to the end and returns its RunResult.
    Public hooks for watchers (ground/live.py): `listeners`, `on_start`,
    `header()`, `apply_fault(f)`."""

    def __init__(self, sc, out_dir, mode="sim", seed=None, boards=None, progress=None, plot=True, precise_time=False,
                 update_image=None, spare_board=None):
        if sc.wire_ids is not None:
            raise ValueError("%s: addressing: region runs on the lean fleet path only (ground run --lean, --workers N):"
                             " the full path's router and boards name nodes by one fleet-wide id" % sc.path)
        self.sc = sc
        self.out_dir = out_dir
        self.mode = mode
        self.seed = sc.seed if seed is None else seed
        self.boards = boards or {}  # node id -> device path / URL, or a board object with .device
        self.update_image = update_image  # spec -> bytes or None: the back-end's images (BoardSet.update_image)
        self.spare_board = spare_board  # a daughter's board, powered on (BoardSet.spare_board), or None
        self.progress = progress
        self.plot = plot  # draw timeline.png (ground run --no-plot: not)
        real = mode != "sim" or bool(self.boards)
        check_resolution(sc, real)
        if real:
            from ground.realtime import POLITE_SPIN_SHARE, PRECISE_SPIN_SHARE, Scheduler

            share = PRECISE_SPIN_SHARE if precise_time else POLITE_SPIN_SHARE  # ground run --precise-time
            self.clock = RealClock(sc.time_scale, Scheduler(spin_share=share))
        else:
            self.clock = VirtualClock()
        os.makedirs(out_dir, exist_ok=True)
        self.trace_path = os.path.join(out_dir, "trace.jsonl")
        self.events = []
        self._writer = None
        self.router = None
        self.rollout = None  # ground.rollout_run.Orchestrator when the scenario has rollout:
        self.listeners = []  # fn(event), after each event is recorded (ground/live.py's fleet view)
        self.on_start = []  # fn(run), once the links are wired and the faults scheduled, before the clock runs
        self.replication = None
        if sc.replication is not None:  # daughters become nodes: this run's own copy of the map it changes
            from ground.replication import Replication, scenario_copy, widen_markets

            self.sc = sc = scenario_copy(sc)
            self.replication = Replication(sc, sc.replication)
            widen_markets(sc, self.replication)  # the regions' rosters hold their spares from boot
            self.listeners.append(self.replication.listener(self))

    # ---- recording: trace file + in-memory copy for metrics ------------

    def _record(self, event):
        self._writer(event)
        self.events.append(event)
        self._metrics.feed(event)  # the metrics as events happen (ground/metrics/)
        self._history.feed(event)  # and the history checker (ground/history.py)
        for fn in self.listeners:
            fn(event)

    def header(self):
        """The trace's header line (scenario, seed, mode, nodes and their links), as a dict."""
        return self._header()

    def _header(self):
        sc = self.sc
        nodes = {}
        for nid, spec in sorted(sc.nodes.items()):
            b = self.boards.get(nid)
            nodes[str(nid)] = {
                "cluster": spec.cluster, "firmware": spec.firmware, "hw_gen": spec.hw_gen,
                "lineage": spec.lineage, "link": "sim" if b is None else _link_text(b),
            }
        return {
            "kind": "header", "scenario": sc.name, "scenario_path": sc.path, "scenario_text": sc.text,
            "seed": self.seed, "time_scale": sc.time_scale, "mode": self.mode,
            "election_timeout_ms": sc.election_timeout_ms, "duration_s": sc.duration_s,
            **({"market": {"region": sc.market.region, "electors": list(sc.market.electors),
                           "slot_ms": sc.market.slot_ms}} if sc.market else {}),
            **(regions_header(sc) if len(sc.regions) > 1 else {}), **audit_rerun.header(sc),
            **({"replication": vars(sc.replication)} if sc.replication is not None else {}),
            "nodes": nodes, "links": {k: (list(v) if isinstance(v, list) else dict(v)) for k, v in sc.links.items()},
            # Virtual-time runs record no host time anywhere, so the same
            # scenario and seed give the same trace, byte for byte.
            "mission_ns": 0, "wall_ns": time.time_ns() if self.clock.real else 0,
        }

    # ---- building -------------------------------------------------------

    def _make_node_factory(self, nid, parent=0):
        replicating = getattr(self, "replication", None) is not None  # (ground/replay.py's Driver borrows this)
        configs = {}

        def make(saved, boots, version=None):
            v = None if version is None else tuple(version)  # an installed update: that version from this boot on
            if replicating:  # its cluster as it was at its first boot, kept as a board keeps its board.json
                c = configs.get(v) or configs.setdefault(v, self._replicating_config(nid, parent, v))
            else:
                c = configs.get(v)
                if c is None:
                    c = configs[v] = node_config(self.sc, nid, v)
            return firmware.core.Node(wireids.wire_node(self.sc, nid), c, self.seed * 100_003 + nid * 7 + boots, saved)

        return make

    def _replicating_config(self, nid, parent, version=None):
        """At a node's first boot: the cluster's roster and spares as they are then."""
        spec = self.sc.nodes[nid]
        sc = self.sc
        if nid not in sc.clusters[spec.cluster]:  # a daughter not yet admitted: the roster and itself
            sc = replace(sc, clusters=dict(sc.clusters))
            sc.clusters[spec.cluster] = sorted(self.sc.clusters[spec.cluster] + [nid])
        return node_config(sc, nid, version, parent=parent, **self.replication.config_args(spec.cluster))

    def _sim_updates(self, nid):
        """The node's update slots and boot pointer (ground/update_sim.py)."""
        spec = self.sc.nodes[nid]
        ro = getattr(self.sc, "rollout", None)
        confirm_ms = ro.confirm_after_ms if ro is not None else 30000
        return update_sim.SimUpdates(nid, spec.fw_version, spec.lineage, self.sc.auth_key, confirm_ms)

    def _build(self):
        r = self.router
        boot_lines = []
        sources = []
        for nid in sorted(self.sc.nodes):
            b = self.boards.get(nid)
            if b is None:
                link = SimLink(nid, self._make_node_factory(nid), updates=self._sim_updates(nid))
                link.wake_at = None
                r.add(link)
                self.clock.call_at(0, self._wake, link, 0)
            else:
                boot_lines.append((nid, self._board_link(nid, b, sources)))
        # Lines read while the boards booted (their HELLOs) are routed at
        # mission 0, once every link exists, so each has all its recipients.
        for nid, seen in boot_lines:
            for line in seen:
                r.from_node(nid, line)
        r.after_delivery = self._after_delivery

    def _board_link(self, nid, b, sources=None):
        """Node nid's link to board `b` (its port open, or a device path),
        added to the router and read by the clock; the lines it read while
        it booted (to route once every link exists)."""
        r = self.router
        url = getattr(b, "device", b)
        opened = getattr(b, "open_port", None)
        if getattr(b, "open_link", None) is not None:  # a link of its own kind (ground.udplink)
            link, seen = b.open_link
        elif opened is not None:
            port, splitter, seen = opened
            link = SerialLink(nid, url, port=port, splitter=splitter)
        else:
            link, seen = SerialLink(nid, url), []
        link.board = b if not isinstance(b, str) else None
        r.add(link)
        source = getattr(link, "source", None)  # one descriptor for several links (a UDP hub)
        if source is None:
            self.clock.add_reader(link.fileno(), lambda link=link: self._readable(link))
        elif sources is None or source not in sources:
            if sources is not None:
                sources.append(source)
            self.clock.add_reader(source.fileno(), lambda source=source: self._readable_shared(source))
        return seen

    def add_board(self, nid, b):
        """A board powered on mid-run (a daughter on a spare board,
        ground/replication.py): its link, its boot lines routed now, and the
        run's time scale sent to it."""
        for line in self._board_link(nid, b):
            self.router.from_node(nid, line)
        payload = msgs.pack(msgs.CONFIG, int(self.sc.time_scale * 1000), 0)
        self.router.to_node(nid, msgs.CONFIG, payload)

    # ---- in-process nodes ---------------------------------------------

    def _wake(self, link, at_ns):
        if link.wake_at is not None and link.wake_at != at_ns:
            return  # a stale wake-up: the node was rescheduled since
        link.wake_at = None
        self._poll(link)

    def _poll(self, link):
        now = self.clock.now_ns()
        boots = link.boots
        for line in link.poll(now // MS):
            self.router.from_node(link.node_id, line[:-1])
        if link.updates is not None and (link.updates.notes or link.boots != boots or link.crashed is not None):
            self._update_events(link, now, boots)  # (only when there is something to say: every poll asks)
        d = link.next_deadline_ms()
        if d is not None:
            # A node is polled at most once per mission ms for its timers: a
            # deadline already past (or now) means the next ms, never a loop.
            at = max(d * MS, (now // MS + 1) * MS)
            if link.wake_at is None or at < link.wake_at:
                link.wake_at = at
                self.clock.call_at(at, self._wake, link, at)

    def _update_events(self, link, now, boots):
        """What an in-process node's update work said (ground/update_sim.py
        poll_events): its node events; a crashed test build is restarted
        after WATCHDOG_MS, as a board's watchdog would."""
        events, crashed = update_sim.poll_events(link, boots)
        for event, detail in events:
            self.router._event("node", node=link.node_id, event=event, detail=detail)
        if crashed:
            self.clock.call_at(now + WATCHDOG_MS * MS, self._watchdog_reset, link)

    def _watchdog_reset(self, link):
        back = update_sim.watchdog_reset(link)
        if back is None:
            return  # a fault brought it back meanwhile
        self.router._event("node", node=link.node_id, event=back[0], detail=back[1])
        link.wake_at = None
        self._poll(link)

    def _after_delivery(self, link):
        if link.kind == "sim":
            self._poll(link)

    # ---- boards ----------------------------------------------------------

    def _readable_shared(self, source):
        """Frames from a descriptor several boards share (ground.udplink.UdpHub);
        what it refused becomes a `refused` node event naming the sender."""
        for link, lines in source.read():
            self._heard(link, lines)
        for nid, text in source.take_problems():
            self.router._event("node", node=nid, event="refused", detail=text)
        r = self.router
        for what, nid, seq, text in source.take_network():
            if what == "reordered":
                r._event("node", node=nid, event="reordered", detail=text)
                continue
            fid = r.next_id  # a frame the network lost: sent (as far as its seq says) and dropped
            r.next_id += 1
            r.frames += 1
            r._event("frame", fate="sent", id=fid, src=nid, dst=None, type="?", seq=seq, len=0, hex="", msg={},
                     lost=text)
            r._event("frame", fate="dropped", id=fid, to=None, reason="net_lost")

    def _readable(self, link):
        lines, eof = link.read_lines()
        self._heard(link, lines)
        if eof and link.up:
            link.up = False
            self.clock.remove_reader(link.fileno())
            text = link.text_tail()
            self.router._event("node", node=link.node_id, event="unreachable",
                               detail="node %d: link %s closed%s" % (link.node_id, link.url,
                                                                     "; it last printed: " + text if text else ""))

    def _heard(self, link, lines):
        for line in lines:
            self.router.from_node(link.node_id, line)
        if lines:
            link.heard_ns = self.clock.now_ns()
            if link.silent:
                link.silent = False
                self.router._event("node", node=link.node_id, event="answering",
                                   detail="node %d: frames on %s again" % (link.node_id, link.url))

    def _check_silence(self):
        """A board the harness believes up that has sent no frame for
        SILENT_T election timeouts (it heartbeats every T/4) has stopped
        answering: one `silent` node event naming the node, its port and the
        text it printed after its last frame (a traceback, the REPL prompt);
        `answering` when frames come again. The run goes on either way."""
        now = self.clock.now_ns()
        limit = SILENT_T * self.sc.election_timeout_ms * MS
        for nid, link in sorted(self.router.links.items()):
            if link.kind == "sim" or not link.up or link.silent:
                continue
            heard = link.heard_ns
            if heard is None:
                link.heard_ns = heard = now
            if now - heard >= limit:
                link.silent = True
                text = link.text_tail()
                self.router._event("node", node=nid, event="silent", detail=(
                    "node %d on %s: no frame for %.1f mission s (%d election timeouts); %s"
                    % (nid, link.url, (now - heard) / S, SILENT_T,
                       "it last printed: " + text if text else "it printed nothing else")))
        self.clock.call_at(now + self.sc.election_timeout_ms * MS, self._check_silence)

    def _configure_boards(self):
        """Tell every board the run's time scale (it learns it at boot)."""
        for nid, link in sorted(self.router.links.items()):
            if link.kind != "sim":  # a board: serial or udp
                payload = msgs.pack(msgs.CONFIG, int(self.sc.time_scale * 1000), 0)
                self.router.to_node(nid, msgs.CONFIG, payload)

    # ---- faults ------------------------------------------------------------

    def apply_fault(self, f):
        """Apply a scenario fault (ground.scenario's Fault) now, whatever its
        at_s: recorded as a `fault` event. Call it in the run's thread (from a
        clock callback), as ground/live.py does for a step."""
        self._fault(f)

    def _schedule_faults(self):
        for f in self.sc.faults:
            self.clock.call_at(int(f.at_s * S), self._fault, f)

    def _target(self, f):
        if f.target == "coordinator":
            held = self.router.coordinator.get(f.cluster)
            return held[0] if held else None
        return f.target

    def _fault(self, f):
        r = self.router
        a = f.action
        detail = {"where": f.where}
        if a in ("crash", "restart", "reset", "power_cut", "power_on", "skew", "byzantine", "corruption_burst"):
            nid = self._target(f)
            if nid is None:
                r._event("fault", fault=a, node=None, detail=dict(detail, error="no coordinator known in cluster %s" % f.cluster))
                return
            link = r.links[nid]
            r._event("fault", fault=a, node=nid, detail=dict(detail, **f.params))
            self._node_fault(a, nid, link, f)
        elif a == "lineage_fault":  # every node of one lineage at once (ground/lineagefault.py)
            r._event("fault", fault=a, nodes=list(f.target), detail=dict(detail, duration_s=f.duration_s, **f.params))
            for kind, nid, params in lineagefault.struck(f):
                r._event("fault", fault=kind, node=nid, detail=dict(detail, lineage_fault=f.params["lineage"], **params))
                self._node_fault(kind, nid, r.links[nid], Fault(f.at_s, kind, nid, None, f.duration_s, params, f.where))
        elif a == "reinstate":  # the ground's intent: a node out of quarantine (docs/CONTAINMENT.md)
            region, dst, payload = sever.reinstate_frame(self.sc, f)
            r._event("fault", fault=a, node=f.target, detail=dict(detail, region=region))
            r.to_node(dst, msgs.REINSTATE, payload)
        elif a in ("sever", "reinstate_region"):  # the ground severs a region, or lifts it (ground/sever.py)
            self.router.severing.step(a, f)
        elif a == "partition":
            p = f.target
            shape = {"groups": p["groups"]} if p["kind"] == "groups" else {"detail": dict(detail, kind=p["kind"], arg=p["arg"])}
            r._event("fault", fault=a, **dict({"detail": detail}, **shape))
            r.partition(p["cut"])
        elif a == "heal":
            r._event("fault", fault=a, detail=detail)
            r.heal()
        elif a == "intent":  # Tier 3: the ground's intent, over the ground link (ground/intent.py)
            dst = wire.ADDR_BROADCAST if f.cluster is None else wire.cluster_addr(f.cluster)
            r._event("fault", fault=a, detail=dict(detail, to="fleet" if f.cluster is None else "cluster %d" % f.cluster))
            r.to_node(dst, msgs.INTENT, msgs.pack(msgs.INTENT, *f.target))
        elif a == "rollout":  # pause / resume the rollout (ground/rollout_run.py)
            r._event("fault", fault=a, detail=dict(detail, command=f.target))
            if self.rollout is not None:
                self.rollout.command(f.target)
        elif a == "blackout":
            nodes = [0] if f.target == "all" else list(f.target)
            r._event("fault", fault="blackout_start", nodes=nodes, detail=dict(detail, duration_s=f.duration_s))
            r.blackout.update(nodes)
            self.clock.call_at(self.clock.now_ns() + int(f.duration_s * S), self._blackout_end, nodes)

    def _blackout_end(self, nodes):
        self.router.blackout.difference_update(nodes)
        self.router._event("fault", fault="blackout_end", nodes=nodes, detail={})

    def _node_fault(self, a, nid, link, f):
        now = self.clock.now_ns()
        board = getattr(link, "board", None)
        if a == "crash":
            link.crash() if link.kind == "sim" else setattr(link, "up", False)
        elif a in ("restart", "power_on", "reset"):
            if link.kind == "sim":
                if a == "reset":
                    link.power_cut()
                link.restart()
                link.wake_at = None
                self._poll(link)
            else:
                if board is not None and a in ("reset", "restart"):
                    board.reset()  # a crashed (hung) board comes back through a reset
                elif board is not None and a == "power_on":
                    board.power_on()
                link.up = True
                link.heard_ns = now  # it has its boot to say HELLO again
        elif a == "power_cut":
            if link.kind == "sim":
                link.power_cut()
            else:
                if board is not None:
                    board.power_cut()
                link.up = False
        elif a == "skew":
            factor = f.params["factor"]
            if link.kind == "sim":
                link.skew = factor
            else:
                payload = msgs.pack(msgs.CONFIG, int(self.sc.time_scale * 1000 * factor), 0)
                self.router.to_node(nid, msgs.CONFIG, payload)
        elif a == "byzantine":
            self.router.byzantine[nid] = f.params.get("rewrite", "stale_term")
            if f.duration_s:
                self.clock.call_at(now + int(f.duration_s * S), self.router.byzantine.pop, nid, None)
        elif a == "corruption_burst":
            until = now + int((f.duration_s or 1.0) * S)
            self.router.corrupting[nid] = (until, float(f.params.get("bitflip", 0.01)))
        if f.duration_s and a in ("crash", "power_cut"):
            back = "restart" if a == "crash" else "power_on"
            self.clock.call_at(now + int(f.duration_s * S), self._fault_back, back, nid, f)

    def _fault_back(self, action, nid, f):
        link = self.router.links[nid]
        self.router._event("fault", fault=action, node=nid, detail={"after": f.action})
        if link.kind == "sim":
            link.restart()
            link.wake_at = None
            self._poll(link)
        else:
            board = getattr(link, "board", None)
            if board is not None:
                (board.power_on if action == "power_on" else board.reset)()
            link.up = True
            link.heard_ns = self.clock.now_ns()

    # ---- the run -------------------------------------------------------------

    def execute(self):
        status, reason = "ok", ""
        header = self._header()
        self._writer = TraceWriter(self.trace_path, header)
        self._metrics = metrics_mod.Metrics(header, keep_timeline=True)
        self._history = history.Checker(header, self.trace_path)
        self.router = Router(self.sc, self.clock, self._record, self.seed)
        if len(self.sc.regions) > 1:
            self.router.severing = sever.Severing(self.sc, self.router, self.clock)
            self.router.severed = self.router.severing.severed
        if self.mode != "sim" or self.boards:  # boards keep the ground's replay floor across runs
            self.router.ground_counter = ground_counter_base()
        try:
            self._build()
            self._configure_boards()
            if any(link.kind != "sim" for link in self.router.links.values()):
                self._check_silence()
            self._schedule_faults()
            if self.sc.rollout is not None:  # the ground's rollout orchestrator (ground/rollout_run.py)
                from ground.rollout_run import Orchestrator

                self.rollout = Orchestrator(self)
            for fn in self.on_start:
                fn(self)
            with gcpolicy.during_run():  # the cyclic GC less often while the clock runs (ground/gcpolicy.py)
                self.clock.run_until(int(self.sc.duration_s * S), progress=self._progress if self.progress else None)
        except KeyboardInterrupt:
            status, reason = "interrupted", "interrupted by the user"
        except LinkError as e:
            status, reason = "failed", str(e)
        except Exception as e:  # record what killed the run, keep what was recorded
            status, reason = "failed", "%s: %s" % (type(e).__name__, e)
            raise
        finally:
            self._finish(status, reason)
        return self.result

    def _finish(self, status, reason):
        r = self.router
        if r is not None:
            r.flush_inflight()
            for link in r.links.values():
                link.close()
        if self._writer is not None:
            # The end event joins the in-memory events and the metrics too: the
            # run's metrics and `ground metrics trace.jsonl` then see the same
            # events and end at the same mission time (the clock's end, not the last frame).
            end = self._writer.close({"frames": r.frames if r else 0, "status": status, "reason": reason,
                                      "mission_ns": self.clock.now_ns(), "wall_ns": self.clock.wall_ns(self.sc.time_scale),
                                      **({"realtime": self.clock.realtime()} if self.clock.real else {})})
            self.events.append(end)
            self._metrics.feed(end)
            self._history.feed(end)
        if self.progress is not None and hasattr(self.progress, "phase"):
            self.progress.phase("computing metrics and reports", self)
        header = self._header()
        m = self._metrics.result()
        failures = metrics_mod.evaluate(m, self.sc.gates)
        if r is not None and r.version_violation:
            failures.append("version skew: " + r.version_violation)
        if status != "ok":
            failures.append("run %s: %s" % (status, reason))
        hist = self._history.result()  # fed as the run recorded: the verdict check() gives over the file
        failures += ["history: %s" % v for v in hist.violations]
        report.write_reports(self.out_dir, header, m, self.events, plot=self.plot, timeline=self._metrics.timeline())
        self.result = RunResult(self.out_dir, m, failures, status, hist)

    def _progress(self, mission_ns):
        self.progress(mission_ns, self)


def history_failures(trace_path):
    """The history checker (ground/history.py) over a finished trace file,
    read as a stream: each broken invariant is a failure, like a gate, so a
    PASS line never hides one. (A run checks its history as it records:
    Run._finish.)"""
    return ["history: %s" % v for v in history.check(trace_path).violations]


def run(sc, out_dir, mode="sim", seed=None, boards=None, progress=None, plot=True, precise_time=False,
        update_image=None, spare_board=None):
    return Run(sc, out_dir, mode=mode, seed=seed, boards=boards, progress=progress, plot=plot,
               precise_time=precise_time, update_image=update_image, spare_board=spare_board).execute()
