"""Metrics families of a node going down: coordinator failover time and
failure-detection time (FailoverMetrics), and decision latency and time with
no agreed coordinator (AgreementMetrics).

Fed the shared views (ground/metrics/fleet.py). State: per cluster the
failovers, detections and decisions still open (one per fault, closed by a
later frame) and those complete (one record each: the percentiles need every
sample); per node its latest telemetry counts and latest heartbeat. Nothing
grows with the number of frames.
"""

from ground.metrics.common import public, rnd, s, stats

CRASH_FAULTS = ("crash", "power_cut")  # failure detection is measured for these
GROUND = 0


def _gather(per_cluster, key):
    """Every cluster's records of one kind, in cluster order, as the result shows them."""
    return {c: [public(p) for p in per_cluster[c][key]] for c in sorted(per_cluster, key=int)}


def _flat(prefix, records, t_s, names):
    st = stats([p["s"] for p in records], t_s)
    return {"%s_%s" % (prefix, k): v for k, v in st.items() if "%s_%s" % (prefix, k) in names}


class FailoverMetrics:
    VIEWS = ("down", "sent")  # the view kinds its feed() reads (the composer hands it only those)

    FLAT = {
        "failover_count": ("count", "completed coordinator failovers"),
        "failover_incomplete": ("count", "coordinator crashes with no successor claim by the end"),
        "failover_s_p50": ("s", "failover time, median"),
        "failover_s_p99": ("s", "failover time, 99th percentile"),
        "failover_s_max": ("s", "failover time, maximum"),
        "failover_T_p50": ("T", "failover time in election timeouts, median"),
        "failover_T_p99": ("T", "failover time in election timeouts, 99th percentile"),
        "failover_T_max": ("T", "failover time in election timeouts, maximum"),
        "detection_count": ("count", "node crashes a live peer's telemetry showed"),
        "detection_missed": ("count", "node crashes no peer telemetry showed by the end"),
        "detection_s_p50": ("s", "failure-detection time, median"),
        "detection_s_max": ("s", "failure-detection time, maximum"),
        "detection_T_p50": ("T", "failure-detection time in election timeouts, median"),
        "detection_T_max": ("T", "failure-detection time in election timeouts, maximum"),
    }

    def __init__(self, fleet):
        self.fleet = fleet
        self.c = {c: {"failovers": [], "failover_pending": [], "detections": [], "detection_pending": []}
                  for c in fleet.members}
        self.last_tel = {}  # node -> (alive, suspect) of its latest telemetry since it came up

    def add_cluster(self, c):
        """A cluster a split made during the run (ground/replication.py)."""
        self.c[c] = {"failovers": [], "failover_pending": [], "detections": [], "detection_pending": []}

    def feed(self, v):
        if v.kind == "down":
            self.last_tel.pop(v.nid, None)  # a rebooted node's counts start over
            c = self.c[v.cluster]
            if v.claim_term is not None:
                c["failover_pending"].append({"node": v.nid, "fault": v.fault, "at_s": s(v.t), "term": v.claim_term,
                                              "_t": v.t})
            if v.fault in CRASH_FAULTS and v.was_live:
                c["detection_pending"].append({"node": v.nid, "fault": v.fault, "at_s": s(v.t), "_t": v.t})
        elif v.kind == "sent":
            if v.claim_term is not None:
                self._claimed(v)
            if v.tel is not None:
                prev = self.last_tel.get(v.nid)
                _, alive, suspect = v.tel
                self.last_tel[v.nid] = (alive, suspect)
                if prev is not None and (suspect > prev[1] or alive < prev[0]):
                    self._detected(v)

    def _claimed(self, v):
        c = self.c[v.cluster]
        still = []
        for p in c["failover_pending"]:
            if p["node"] != v.nid and v.claim_term > p["term"] and v.t >= p["_t"]:
                d = v.t - p["_t"]
                p.update(new_coordinator=v.nid, new_term=v.claim_term, frame_id=v.fid, s=s(d))
                p["T"] = s(d) * 1000.0 / self.fleet.t_ms if self.fleet.t_ms else None
                c["failovers"].append(p)
            else:
                still.append(p)
        c["failover_pending"] = still

    def _detected(self, v):
        c = self.c[v.cluster]
        still = []
        for p in c["detection_pending"]:
            if p["node"] != v.nid and v.t >= p["_t"]:
                d = v.t - p["_t"]
                p.update(by=v.nid, frame_id=v.fid, s=s(d))
                p["T"] = s(d) * 1000.0 / self.fleet.t_ms if self.fleet.t_ms else None
                c["detections"].append(p)
            else:
                still.append(p)
        c["detection_pending"] = still

    def result(self, span):
        fo, fo_inc = _gather(self.c, "failovers"), _gather(self.c, "failover_pending")
        det, det_miss = _gather(self.c, "detections"), _gather(self.c, "detection_pending")
        clusters = {}
        for c in fo:
            clusters[c] = {
                "failover": dict(stats([p["s"] for p in fo[c]], span.t_s), events=fo[c], incomplete=fo_inc[c]),
                "detection": dict(stats([p["s"] for p in det[c]], span.t_s), events=det[c], missed=det_miss[c]),
            }
        all_fo = [p for c in fo for p in fo[c]]
        all_det = [p for c in det for p in det[c]]
        flat = {"failover_count": len(all_fo), "failover_incomplete": sum(len(x) for x in fo_inc.values()),
                "detection_count": len(all_det), "detection_missed": sum(len(x) for x in det_miss.values())}
        flat.update(_flat("failover", all_fo, span.t_s, self.FLAT))
        flat.update(_flat("detection", all_det, span.t_s, self.FLAT))
        return {"clusters": clusters, "flat": flat}


class AgreementMetrics:
    VIEWS = ("sent", "down", "close")  # the view kinds its feed() reads (the composer hands it only those)

    FLAT = {
        "decision_count": ("count", "coordinator crashes after which all live members named one new coordinator"),
        "decision_incomplete": ("count", "coordinator crashes with no such agreement by the end"),
        "decision_s_p50": ("s", "decision latency, median"),
        "decision_s_p99": ("s", "decision latency, 99th percentile"),
        "decision_s_max": ("s", "decision latency, maximum"),
        "decision_T_p50": ("T", "decision latency in election timeouts, median"),
        "decision_T_p99": ("T", "decision latency in election timeouts, 99th percentile"),
        "decision_T_max": ("T", "decision latency in election timeouts, maximum"),
        "no_coordinator_share_max": ("ratio", "worst cluster's share of mission time with no agreed coordinator"),
    }

    def __init__(self, fleet):
        self.fleet = fleet
        self.c = {c: {"decisions": [], "decision_pending": [], "agreed": None, "since_ns": fleet.start_ns,
                      "no_coord_ns": 0} for c in fleet.members}
        self.last_hb = {}  # node -> (coordinator, term) of its latest heartbeat since it came up

    def add_cluster(self, c, t_ns=0):
        """A cluster a split made during the run (ground/replication.py)."""
        self.c[c] = {"decisions": [], "decision_pending": [], "agreed": None, "since_ns": t_ns or self.fleet.state_ns,
                     "no_coord_ns": 0}

    def feed(self, v):
        if v.kind == "sent":
            if v.node is None:
                return
            if v.hb is not None:
                self.last_hb[v.nid] = (v.hb[2], v.hb[1])
                self._agreement(v.cluster, v.t)
            elif v.came_up and (v.bad or v.own):
                self._agreement(v.cluster, v.t)
        elif v.kind == "down":
            self.last_hb.pop(v.nid, None)
            if v.claim_term is not None:
                self.c[v.cluster]["decision_pending"].append(
                    {"node": v.nid, "fault": v.fault, "at_s": s(v.t), "term": v.claim_term, "_t": v.t})
            self._agreement(v.cluster, v.t)
        elif v.kind == "close":
            for c in self.c.values():
                if c["agreed"] is None:
                    c["no_coord_ns"] += max(0, v.t - c["since_ns"])
                c["since_ns"] = v.t

    def _agreed(self, cid, min_term=None):
        """The coordinator every live member's latest heartbeat names, or None."""
        fleet = self.fleet
        live = [m for m in fleet.members[cid] if fleet.live(m)]
        if not live:
            return None
        named = None
        for m in live:
            hb = self.last_hb.get(m)
            if hb is None or (min_term is not None and hb[1] <= min_term):
                return None
            if named is None:
                named = hb[0]
            elif hb[0] != named:
                return None
        if named == GROUND or named not in live:
            return None
        return named

    def _agreement(self, cid, t):
        c = self.c[cid]
        now = self._agreed(cid)
        if (now is None) != (c["agreed"] is None):
            if c["agreed"] is None:
                c["no_coord_ns"] += max(0, t - c["since_ns"])
            c["since_ns"] = t
        c["agreed"] = now
        if c["decision_pending"]:
            still = []
            for p in c["decision_pending"]:
                who = self._agreed(cid, min_term=p["term"]) if t >= p["_t"] else None
                if who is None:
                    still.append(p)
                    continue
                d = t - p["_t"]
                p.update(coordinator=who, s=s(d))
                p["T"] = s(d) * 1000.0 / self.fleet.t_ms if self.fleet.t_ms else None
                c["decisions"].append(p)
            c["decision_pending"] = still

    def result(self, span):
        dec, dec_inc = _gather(self.c, "decisions"), _gather(self.c, "decision_pending")
        clusters = {}
        worst = None
        for cid in dec:
            c = self.c[cid]
            share = rnd(c["no_coord_ns"] / span.mission_ns) if span.mission_ns else None
            if share is not None and (worst is None or share > worst):
                worst = share
            clusters[cid] = {
                "decision": dict(stats([p["s"] for p in dec[cid]], span.t_s), events=dec[cid], incomplete=dec_inc[cid]),
                "no_coordinator_s": rnd(s(c["no_coord_ns"])),
                "no_coordinator_share": share,
            }
        all_dec = [p for c in dec for p in dec[c]]
        flat = {"decision_count": len(all_dec), "decision_incomplete": sum(len(x) for x in dec_inc.values()),
                "no_coordinator_share_max": worst}
        flat.update(_flat("decision", all_dec, span.t_s, self.FLAT))
        return {"clusters": clusters, "flat": flat}
