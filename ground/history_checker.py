"""The history checker's driver: _Checker is fed a trace's events one at a
time (`feed`) and read at the end (`report`). It reads the header (nodes,
clusters, regions, electors), keeps every sent frame until its fates are in
(frame_fates), checks the trace's own shape (trace) and hands each frame a
node sent to the election rules (history_election.py), the lease rules
(history_leases.py) and the containment rules (history_containment.py)."""

from ground import claims
from ground.claims import BROADCAST, CLUSTER_BASE, GROUND, ROLE_COORDINATOR  # noqa: F401 (history.py re-exports)
from ground.history_containment import INVARIANTS as containment_invariants
from ground.history_containment import ContainmentChecker
from ground.history_replication import INVARIANTS as replication_invariants
from ground.history_replication import ReplicationChecker
from ground.history_election import ElectionRules, _major
from ground.history_fates import FrameFates
from ground.history_leases import LeaseRules, _firmware_msgs, classify, firmware_type_names
from ground.history_verdict import Report, Violation
from ground.metrics.common import get_int
from ground.regions import REGION_CLUSTERS, announces_to_region, region_cluster

_LISTED = 20  # frames listed in one violation before "and N more"
ROUND_COMPLETE = 1  # msgs.ROUND_COMPLETE (PRICES status)

INVARIANTS = (
    "trace", "one_coordinator", "lease_exclusive", "lease_awarded", "major_versions", "firmware_declared",
    "frame_fates",
) + containment_invariants + replication_invariants


class _Checker(ElectionRules, LeaseRules):
    def __init__(self, path, header, scenario=None, type_names=None):
        self.r = Report(path)
        self.r.header = header
        msgs = _firmware_msgs()
        self.role_coordinator = getattr(msgs, "ROLE_COORDINATOR", ROLE_COORDINATOR)
        # the bit that marks an award-type frame as a holder's claim to a new
        # coordinator (msgs.AWARD_CLAIM), None where the firmware has none
        self.claim_flag = getattr(msgs, "AWARD_CLAIM", None)
        # the bits that mark an award-type frame as a copy (a replica for an
        # elector, part of a ledger copy), 0 where the firmware has none
        self.copy_flags = getattr(msgs, "AWARD_REPLICA", 0) | getattr(msgs, "AWARD_SYNC", 0)
        self.replica_flag = getattr(msgs, "AWARD_REPLICA", 0)
        self.complete = getattr(msgs, "ROUND_COMPLETE", ROUND_COMPLETE)
        self.own_pending = {}  # (coordinator, term, round) -> [_Lease]: its own awards, until COMPLETE
        self.seat_pending = {}  # (elector, round) -> [_Lease]: replicas of its own awards, until it completes the round
        self.releases_seen = {}  # (holder, release fields) -> True: the last releases judged (history_leases.py)
        self.nodes = {}  # node id -> cluster
        self.members = {}  # cluster -> set of node ids
        market = header.get("market") if isinstance(header.get("market"), dict) else {}
        self.electors = set(market.get("electors") or ())  # a market region's seats
        # Several regions (header `regions`, docs/TRACE.md): each region's address to its own electors.
        # Each region's market leases its own resources: leases are keyed by (region, resource) then.
        self.region_electors = {}
        self.cluster_region = {}
        for r in header.get("regions") or ():
            if isinstance(r, dict) and isinstance(r.get("region"), int):
                self.region_electors[region_cluster(r["region"])] = set(r.get("electors") or ())
                self.cluster_region.update(dict.fromkeys(r.get("clusters") or (), r["region"]))
        region = market.get("region", 1) if isinstance(market.get("region", 1), int) else 1
        self.region_addr = CLUSTER_BASE | region_cluster(region)
        self.containment = ContainmentChecker(self.electors, self._violate, header,
                                              lambda n: self.members.get(self.nodes.get(n), ()))  # quarantine_* (history_containment.py)
        self.majors = {}  # node id -> firmware major the header declares
        self.rolled_majors = set()  # majors of the images a rollout in this trace started (firmware_declared)
        for key, info in (header.get("nodes") or {}).items():
            try:
                nid = int(key)
                cluster = int(info.get("cluster"))
            except (TypeError, ValueError, AttributeError):
                self._violate("trace", "line 1: header node %r has no integer id and cluster" % (key,), lines=[1])
                continue
            self.nodes[nid] = cluster
            self.members.setdefault(cluster, set()).add(nid)
            major = _major(info.get("firmware"))
            if major is not None:
                self.majors[nid] = major
        # A lean trace of some clusters only (header `lean`, docs/FLEET_RUN.md): the header lists the
        # traced nodes; fates are traced at those and at the ground, so only those owe them (frame_fates).
        lean = header.get("lean") if isinstance(header.get("lean"), dict) else {}
        fleet_nodes = lean.get("fleet_nodes")
        self.partial = isinstance(fleet_nodes, int) and fleet_nodes > len(self.nodes)
        self.untraced_only = 0  # frames sent with recipients, none of them traced (partial traces)
        self.acts_unjudged = 0  # acts on leases whose awarders are not all traced (partial traces)
        self.replication = ReplicationChecker(self.nodes, self.members, self._violate,
                                              self.cluster_region)  # unique_ids
        if scenario is not None and header.get("scenario") != scenario:
            self._violate("trace", "%s line 1: the trace is of scenario %r, expected %r"
                          % (path, header.get("scenario"), scenario), lines=[1])
        names = list(type_names if type_names is not None else firmware_type_names())
        self.fw_lease_types = sorted(n for n in names if classify(n))
        self.kinds = {n: classify(n) for n in names if classify(n)}
        self.claims = {}  # (cluster, term) -> {node: (fid, line)}
        self.split_reported = {}
        self.leases = {}  # resource (with several regions: (region, resource)) -> [_Lease]
        self.lease_msgs = 0
        self.copies = 0
        self.acts = 0
        self.unreadable_leases = _Listed()
        self.fates = FrameFates(self._violate)  # frame_fates (history_fates.py)
        self._need = {}  # (src, dst) -> the recipients that must get a fate (_recipients)
        self.rewritten = 0
        self.running = {}  # node id -> (major, fid, line) from its latest HELLO
        self.major_counts = None  # firmware major -> how many nodes run it now (history_election.py)
        self.too_many_reported = set()
        self.end = None
        self.line = 1

    def _violate(self, invariant, message, frame_ids=(), lines=()):
        self.r.violations.append(Violation(invariant, message, frame_ids, lines))

    # ---- feeding --------------------------------------------------------

    def feed(self, e, line):
        self.line = line
        kind = e.get("kind")
        if kind == "frame":
            self._frame(e, line)
        elif kind == "end":
            if self.end is not None:
                self._violate("trace", "line %d: a second end event (the first at line %d)" % (line, self.end), lines=[self.end, line])
            self.end = line
        elif kind == "fault" and e.get("fault") in ("sever", "reinstate_region") and self.end is None:
            self.containment.sever(e, line)  # history_containment.py: sever_respected
        elif kind == "fault" and e.get("fault") in ("crash", "power_cut") and self.end is None:
            self.containment.down(e.get("node"))  # an elector down comes back with its table from flash
        elif kind == "rollout" and e.get("event") == "start":
            major = _major(e.get("image"))
            if major is not None:
                self.rolled_majors.add(major)  # a node may now say this major in its HELLO
        elif kind == "node" and self.end is None:
            if self.replication.node_event(e, line):
                self._need.clear()  # a cluster's members changed: its recipients with them
        elif self.end is not None and kind in ("fault", "link", "node"):
            self._violate("trace", "line %d: a %s event after the end event (line %d)" % (line, kind, self.end),
                          lines=[self.end, line])

    def _frame(self, e, line):
        # (once per trace line of a run: the common case reads few attributes)
        fate = e.get("fate")
        fid = e.get("id")
        if fid.__class__ is not int and (not isinstance(fid, int) or isinstance(fid, bool)):
            self._violate("trace", "line %d: frame event without an integer id" % line, lines=[line])
            return
        if fate == "sent":
            self._sent(e, fid, line)
            return
        if e.get("to") is not None and get_int(e, "to") is None:
            self._violate("trace", "line %d: frame %d: %s to %r, not a node id" % (line, fid, fate, e["to"]), lines=[line])
            return
        if fate == "delivered":
            containment = self.containment
            if containment.audit is not None:
                containment.audit.delivered(fid, e.get("to"))  # audit_rerun: what each auditor got
            if containment.severed or fid in containment.knows.frames:
                containment.now_ns = e.get("mission_ns") or 0
                s = self.fates.sent.get(fid) or self.fates.done.get(fid)
                if s is not None and e.get("to") is not None:
                    containment.delivered(s.src, s.type, fid, s.line, e.get("to"), line)
        self.fates.on_fate(e, fate, fid, line)

    def _sent(self, e, fid, line):
        src, dst = e.get("src"), e.get("dst")
        for key, v in (("src", src), ("dst", dst)):
            if v is not None and get_int(e, key) is None:
                self._violate("trace", "line %d: frame %d: sent with %s %r, not an address" % (line, fid, key, v),
                              lines=[line])
                return
        type_ = e.get("type")
        need = self._recipients(src, dst)
        if not self.fates.on_sent(fid, line, src, dst, type_, need):
            return
        if self.partial and not need and need is not None and dst != GROUND:
            self.untraced_only += 1
        if "bad" in e or not isinstance(src, int) or src not in self.nodes:
            return  # the ground's own frames, undecodable ones: no node said anything
        if not claims.said_by_sender(e):  # rewritten in flight: the fault's words, not the node's
            self.rewritten += 1
            return
        msg = e.get("msg") if isinstance(e.get("msg"), dict) else {}
        # What a claim is, shared with the split_brain metric (ground/claims.py).
        if type_ in claims.CLAIM_TYPES and isinstance(dst, int) and claims.on_own_cluster(dst, CLUSTER_BASE | self.nodes[src]):
            self._claim(src, type_, msg, fid, line)
        elif type_ == "hello":
            self._hello(src, msg, fid, line)
        if self.electors:
            self.containment.now_ns = e.get("mission_ns") or 0
            self.containment.sent(src, dst, type_, msg, fid, line, self.region_addr)
            if dst == CLUSTER_BASE | self.nodes[src] and (type_ == "coordinator" or type_ == "heartbeat" and
                                                           msg.get("role") == self.role_coordinator):
                self.containment.cluster_claim(src, type_, msg, fid, line)  # quarantine in the cluster election
        if type_ == "prices" and announces_to_region(dst) and msg.get("status") == self.complete:
            for x in self.own_pending.pop((src, msg.get("term"), msg.get("round")), ()):
                self._award(x.resource, x.holder, x.intervals, x.fid, x.line, src)  # its own award: committed
            for x in self.seat_pending.pop((src, msg.get("round")), ()):
                self._award(x.resource, x.holder, x.intervals, x.fid, x.line, src)  # its own award, from a takeover
        kind = self.kinds.get(type_)
        if kind is None and type_ is not None and classify(type_):
            kind = self.kinds[type_] = classify(type_)
        if kind is not None:
            self.lease_msgs += 1
            self._lease(kind, src, dst, type_, msg, fid, line)

    def _recipients(self, src, dst):
        # A group's recipients are the same set for every frame from src to
        # it until a cluster's members change (replication: feed clears
        # them): made once, shared, never written to. (A node's address: a set of one, not worth keeping.)
        if dst.__class__ is not int or (GROUND < dst < CLUSTER_BASE) or src.__class__ is not int:
            return self._recipients_of(src, dst)
        key = (src, dst)
        need = self._need.get(key, self)
        if need is self:
            need = self._need[key] = self._recipients_of(src, dst)
        return need

    def _recipients_of(self, src, dst):
        if dst is None or not isinstance(dst, int):
            return None  # not routed: one `dropped` with to null is its fate
        if dst == GROUND:
            return set()
        if dst == BROADCAST:
            return set(self.nodes) - {src}
        if dst >= CLUSTER_BASE:
            if (dst & 0x0FFF) >= REGION_CLUSTERS:  # a market region's electors
                if self.region_electors:
                    need = set(self.region_electors.get(dst & 0x0FFF, ())) - {src}
                else:
                    need = set(self.electors) - {src}
                # a partial trace: an untraced elector's fates are not traced
                return need & self.nodes.keys() if self.partial else need
            return set(self.members.get(dst & 0x0FFF, ())) - {src}
        if dst in self.nodes and dst != src:
            return {dst}
        # an untraced node of a partial trace owes no fate (one the fleet lacks cannot be told from it)
        return set() if self.partial and dst != src else None

    # ---- the end ------------------------------------------------------------

    def report(self, torn):
        r = self.r
        r.checked = [x for x in INVARIANTS if x not in ("lease_exclusive", "lease_awarded")]
        if torn:
            self._violate("trace", "%s:%d: the last line is torn: the run was cut off mid-write"
                          % (r.path, self.line + 1), lines=[self.line + 1])
        elif self.end is None:
            self._violate("trace", "%s:%d: no end event after this line: the run did not finish"
                          % (r.path, self.line), lines=[self.line])
        if self.end is None:
            r.checked.remove("frame_fates")
            r.notes.append("frame_fates: not checked, the trace has no end (frames still in flight have no fate yet)")
        else:
            self.fates.judge()
            if self.partial:
                r.notes.append("frame_fates: a partial (lean) trace of %d of %s nodes: fates required at the traced"
                               " nodes and the ground only; %d frame(s) went to untraced nodes only"
                               % (len(self.nodes), self.r.header["lean"]["fleet_nodes"], self.untraced_only))
        if self.containment.audit is not None:
            self.containment.audit.judge()
            r.notes.append(self.containment.audit.note())
        if self.kinds:
            r.checked += ["lease_exclusive", "lease_awarded"]
            r.notes.append("leases: %d lease message(s), %d act(s) on leases, %d replica copies; types: %s"
                           % (self.lease_msgs, self.acts, self.copies,
                              ", ".join("%s=%s" % (k, v) for k, v in sorted(self.kinds.items()))))
            if self.acts_unjudged:
                r.notes.append("lease_awarded: %d act(s) on leases not judged: their region's electors are not all"
                               " in the partial trace (an award from an untraced one is not in it)" % self.acts_unjudged)
        else:
            r.notes.append("lease_exclusive, lease_awarded: skipped: no award/lease message type in"
                           " firmware/node/msgs.py all_layouts() nor in the trace (market tier not built yet)")
        for text in self.unreadable_leases[:_LISTED]:
            r.notes.append("lease message not understood: " + text)
        if len(self.unreadable_leases) > _LISTED:
            r.notes.append("... and %d more lease messages not understood" % (len(self.unreadable_leases) - _LISTED))
        if self.rewritten:
            r.notes.append("one_coordinator: %d frame(s) rewritten in flight by a byzantine fault not counted as"
                           " their sender's claims" % self.rewritten)
        return r


class _Listed(list):
    """A list that keeps its first _LISTED items and counts the rest (what
    the report shows of a long list), so it stays small on a long run."""

    def __init__(self):
        super().__init__()
        self.more = 0

    def append(self, item):
        if list.__len__(self) < _LISTED:
            list.append(self, item)
        else:
            self.more += 1

    def __len__(self):
        return list.__len__(self) + self.more
