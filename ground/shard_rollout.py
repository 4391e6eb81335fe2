"""A lean shard's side of a rollout (docs/FLEET_RUN.md "Rollouts on the lean
path"): its in-process nodes' update slots and boot pointer
(ground/update_sim.py, as the --sim run gives them), their restarts into
another image and a crashed test build's watchdog reset, and what the
ground hears that the driver's orchestrator (ground/fleet_rollout.py) reads,
as records in the window exchange.

A record is an outbox entry (mission ns, src, src's frame count, RECORD,
src's record count, 0, event, mission ns): the event is the dict the --sim
path's trace has for it (a frame `sent` with its decoded `msg`, an UPD_ACK
`delivered` to the ground with its bytes, a node's `crashed` event), so the
orchestrator reads the same fields either way. ground/fleetrun.py takes the
records out of the exchange, sorted by (mission ns, src, ...): the order is
the same with any number of shards, as a node's records all come from the
shard that holds it. A HELLO that says a new protocol range (a restart into
an image of another major) also goes to ground/shard_skew.py, which tells
every shard's version table.
"""

from ground import firmware
from ground import run as run_mod
from ground import update_sim
from ground.router import _decode_fields

wire = firmware.wire
msgs = firmware.msgs
MS = 1_000_000
RECORD = -2  # an exchanged entry's dst for a record the driver's orchestrator reads
# frames whose `sent` records the orchestrator reads (ground/rollout_run.py on_event): versions, update progress,
# the coordinator (stagger, failovers), and what each check counts (every check's figure is in its analyses)
READS = frozenset((msgs.HELLO, msgs.UPD_ACK, msgs.COORDINATOR, msgs.MARKET_TEL, msgs.TELEMETRY, msgs.BID, msgs.PRICES,
                   msgs.ROUND_ACK))


class ShardUpdates:
    """One shard's update work and its records (shard.rollout)."""

    def __init__(self, shard):
        self.shard = shard
        self.types = READS
        self._count = {}  # node -> records it made so far (their order, within the node)

    def slots(self, nid):
        """Node nid's update slots (as ground/run.py's Run._sim_updates)."""
        sc = self.shard.sc
        spec = sc.nodes[nid]
        return update_sim.SimUpdates(nid, spec.fw_version, spec.lineage, sc.auth_key, sc.rollout.confirm_after_ms)

    def _record(self, src, e):
        sh = self.shard
        k = self._count.get(src, 0) + 1
        self._count[src] = k
        sh.outbox.append((sh.now, src, sh._nseq.get(src, 0), RECORD, k, 0, e, sh.now))

    def sent(self, src, nseq, typ, line):
        """Node src sent frame `line` (its nseq-th) of a type the orchestrator reads."""
        try:
            frame = wire.decode(line, None)
        except wire.ProtocolError:
            return
        e = {"kind": "frame", "fate": "sent", "id": self.shard._fid(src, nseq), "src": src, "dst": frame.dst,
             "type": msgs.name(typ), "msg": _decode_fields(frame)}
        ids = self.shard.sc.wire_ids
        if ids is not None:  # the orchestrator reads the scenario's ids (ground/wireids.py)
            e["dst"], e["msg"] = ids.scenario_addr(src, frame.dst), ids.scenario_fields(src, e["msg"])
        if typ == msgs.UPD_ACK:
            e["hex"] = line.hex()
        elif typ == msgs.HELLO and self.shard.skew is not None and self.shard.skew.moving:
            self.shard.skew.hello(src, nseq, e["msg"].get("proto_max"))  # its new range, to every shard
        self._record(src, e)

    def at_ground(self, src, nseq, typ, data):
        """Node src's frame (its nseq-th) reached the ground with bytes `data`."""
        if typ == msgs.UPD_ACK:
            self._record(src, {"kind": "frame", "fate": "delivered", "to": 0, "id": self.shard._fid(src, nseq),
                               "hex": data.hex()})

    def after_poll(self, nid, link, boots):
        """What node nid's update work said at the poll that just ran (boots:
        its boot count before it): node events (traced for a traced node), a
        restart (the ground's counter moves past its floor, as on its HELLO),
        a crash (a record; restarted after run.WATCHDOG_MS)."""
        if not (link.updates.notes or link.boots != boots or link.crashed is not None):
            return
        sh = self.shard
        events, crashed = update_sim.poll_events(link, boots)
        self._events(nid, events)
        if link.boots != boots:
            sh.ground.booted(nid)
        if crashed:
            self._record(nid, {"kind": "node", "node": nid, "event": "crashed"})
            sh._call(sh.now + run_mod.WATCHDOG_MS * MS, self._watchdog, nid)

    def _events(self, nid, events):
        sh = self.shard
        if sh.trace is not None and nid in sh.traced:
            for event, detail in events:
                sh.trace("node", sh.now, node=nid, event=event, detail=detail)

    def _watchdog(self, nid):
        sh = self.shard
        link = sh.links[nid]
        back = update_sim.watchdog_reset(link)
        if back is None:
            return  # a fault brought it back meanwhile
        self._events(nid, [back])
        sh.ground.booted(nid)
        sh.wake_at[nid] = None
        sh._poll(nid)
