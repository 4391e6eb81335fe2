"""The lean path's rollout orchestrator (docs/FLEET_RUN.md "Rollouts on the
lean path"): the --sim path's own Orchestrator (ground/rollout_run.py), one
for the fleet, in the driver (ground/fleetrun.py), deciding at window ends.

    ro = LeanRollout(sc, seed, part_path)     # when sc has a `rollout:` plan
    orders = ro.window(until_ns, records)     # at each window end

The Orchestrator is given, in the places of a Run's clock and router:

- a clock whose calls (a step's start, each analysis, the update senders'
  PUMP_S rounds, a deploy timeout, a rollback repeat) run when the window
  that holds them ends, at that window end's mission time: a decision lands
  at most one window (window_s in fleet.json, at most SYNC_S = 1 s) after
  --sim would take it. Window ends depend on the scenario alone, so the
  decisions fall at the same mission times with 1 or N shards;
- what the ground heard in the window: the shards' records
  (ground/shard_rollout.py), in the exchange's order, each fed at its own
  mission time as the --sim path's trace event it stands for;
- a router whose frames to nodes (offers, chunks, installs, aborts,
  rollbacks) become orders in the next window's inboxes: every shard sends
  each (shard_faults.GroundSender) to its own recipients as that window
  opens, so the ground's frame count and auth counter move alike in each;
  and whose `rollout` events go to the driver's part of the trace, where the
  metrics (ground/metrics/rollout.py) read them as on --sim.

A scenario step `rollout: pause` / `resume` is carried out here too (the
shards ignore it), at the window end at or after its time.

It also keeps what rollout.png (ground/report_rollout.py) draws, for the
whole fleet whatever the traced clusters: each node's version as its HELLOs
and UPD_ACKs said it (the records), and the rollout's decisions.

    ro.draw(path, end_ns, title)              # after the run
"""

import heapq

from ground.report_rollout import plot_rollout, rollout_series
from ground.rollout_run import Orchestrator
from ground.shard_contain import ORDER
from ground.shard_trace import TracePart

S = 1_000_000_000


class _Clock:
    """The orchestrator's clock: calls run at the end of the window holding them."""

    real = False

    def __init__(self):
        self.now = 0
        self._heap = []
        self._seq = 0

    def now_ns(self):
        return self.now

    def call_at(self, t, fn, *args):
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, fn, args))

    def run_until(self, until_ns):
        """Every call due at or before until_ns (and those they make), at until_ns."""
        heap = self._heap
        while heap and heap[0][0] <= until_ns:
            _, _, fn, args = heapq.heappop(heap)
            self.now = until_ns
            fn(*args)
        self.now = until_ns


class _Ground:
    """The orchestrator's router: frames to nodes kept as orders, events traced."""

    def __init__(self, clock, trace):
        self.clock = clock
        self.trace = trace
        self.orders = []  # (dst, type, payload) in the order sent
        self.decisions = []  # its `rollout` events, as rollout.png reads them

    def to_node(self, dst, typ, payload):
        self.orders.append((dst, typ, bytes(payload)))

    def _event(self, kind, **fields):
        if kind == "rollout":
            self.decisions.append({"kind": kind, "event": fields.get("event"), "image": fields.get("image"),
                                   "mission_ns": self.clock.now})
        self.trace(kind, self.clock.now, **fields)


class LeanRollout:
    """Scenario sc's rollout, driven from the window exchange; its events
    into the trace part at part_path."""

    update_image = None  # in-process nodes only: every node gets the small image (ground/flim.py)
    boards = {}

    def __init__(self, sc, seed, part_path):
        self.sc = sc
        self.seed = seed
        self.clock = _Clock()
        self.router = _Ground(self.clock, TracePart(part_path, sc.time_scale))
        self.listeners = []  # the Orchestrator's on_event
        self.orchestrator = Orchestrator(self)
        self._said = {nid: str(spec.firmware) for nid, spec in sc.nodes.items()}  # node -> the version it said last
        self.changes = []  # HELLOs and UPD_ACKs saying another version than the node's last, for rollout.png
        for f in sc.faults:
            if f.action == "rollout":
                self.clock.call_at(int(f.at_s * S), self._command, f)

    def _command(self, f):
        self.router._event("fault", fault="rollout", detail={"where": f.where, "command": f.target})
        self.orchestrator.command(f.target)

    def window(self, until_ns, records):
        """The window ending at until_ns is over: feed its records (outbox
        entries, sorted), run the calls due, and return the ground's frames
        as orders for the next window's inboxes."""
        clock = self.clock
        for r in records:
            clock.now = r[0]
            e = r[6]
            for fn in self.listeners:
                fn(e)
            if e.get("type") in ("hello", "upd_ack") and e.get("fate") == "sent":
                self._heard(r[0], e)
        clock.run_until(until_ns)
        self.router.trace.flush()
        orders, self.router.orders = self.router.orders, []
        ids = self.sc.wire_ids  # addressing: region: the node by its region's id, its recipient named (ground/wireids.py)
        out = []
        for dst, typ, payload in orders:
            data = (dst, payload) if ids is None else (ids.node(dst), payload, (dst,))
            out.append((until_ns, 0, data, ORDER, 0, typ, data, until_ns))
        return out

    def _heard(self, t, e):
        m = e.get("msg") or {}
        if "fw_major" not in m:
            return
        v = "%d.%d" % (m["fw_major"], m["fw_minor"])  # as rollout_series labels it: only a change moves it
        if self._said.get(e["src"], v) != v:
            self._said[e["src"]] = v
            self.changes.append({"kind": "frame", "fate": "sent", "type": e["type"], "src": e["src"],
                                 "msg": {"fw_major": m["fw_major"], "fw_minor": m["fw_minor"]}, "mission_ns": t})

    def series(self, end_ns):
        """rollout.png's data (report_rollout.rollout_series) over every node, up to mission end_ns."""
        sc = self.sc
        header = {"mission_ns": 0, "nodes": {str(n): {"cluster": spec.cluster, "firmware": spec.firmware}
                                             for n, spec in sorted(sc.nodes.items())}}
        events = sorted(self.changes + self.router.decisions, key=lambda e: e["mission_ns"])
        return rollout_series(header, events + [{"kind": "end", "mission_ns": end_ns}])

    def draw(self, path, end_ns, title):
        """rollout.png at path: clusters by firmware version, as on --sim (ground/report.py)."""
        plot_rollout(self.series(end_ns), path, title=title)

    def close(self):
        self.router.trace.close()
