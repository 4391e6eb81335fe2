"""The blast-radius family (docs/CONTAINMENT.md "Containment, measured"):
what one lineage_fault (a fault that strikes every node of one software
lineage at once, ground/lineagefault.py) cost the fleet, measured from the
fault's own `fault` event on.

A node is *healthy* for its cluster when it is live (has spoken since it
went down) and not inside the fault's byzantine / corruption window; healthy
for the market when also not carrying a clearing_defect (a struck node of
that kind never is). From the fault on:

  - coordinators struck: clusters whose coordinator (open claim) at the
    fault was a struck node; the region's market coordinator (the sender of
    the last complete PRICES before the fault) likewise;
  - headless: cluster seconds without a coordinator claim by a live node;
  - detected: the first ACCUSE, quarantine report, or (pre)vote request by
    a healthy node (not for a clearing_defect: elections do not see it):
    the fleet noticed;
  - quarantined: the first quarantine of a struck node an elector reports;
  - restored: the first moment every cluster has a coordinator claim by a
    healthy node and (with a market) a complete round was announced by a
    node healthy for the market; rounds struck: complete rounds a struck, unhealthy node
    announced (for a clearing defect: rounds cleared by the defect);
  - production after: units (milli-units, MARKET_TEL `produced`) the fleet
    made after the fault, reboots carried; leases stranded: leases the nodes
    the fault stopped held at the fault (MARKET_TEL `leases`).

Only the first lineage_fault of a run is measured (later ones are listed).
State: per node and per cluster, never per frame.
"""

from ground.metrics.common import rnd, s
from ground.regions import announces_to_region

DOWN_KINDS = ("crash", "power_cut", "reset")
WINDOW_KINDS = ("byzantine", "corruption_burst")
_DETECT_TYPES = ("prevote_request", "vote_request")
# Prometheus gauges of a run with a lineage_fault (ground/report.py): (name, flat key, help)
BLAST_GAUGES = tuple((k[:-2] + "_seconds" if k.endswith("_s") else k, k,
                      "Lineage fault blast radius: " + v[1]) for k, v in (
    ("blast_nodes_struck", ("count", "nodes struck")),
    ("blast_coordinators_struck", ("count", "clusters whose coordinator was struck")),
    ("blast_headless_s", ("s", "cluster seconds without a live coordinator after the fault")),
    ("blast_detect_s", ("s", "fault to first detection")),
    ("blast_quarantine_s", ("s", "fault to first quarantine of a struck node")),
    ("blast_restored_s", ("s", "fault to coordination restored by healthy nodes")),
    ("blast_rounds_struck", ("count", "complete rounds announced by an unhealthy struck node")),
))


class BlastMetrics:
    VIEWS = ("fault", "down", "close", "sent")  # the view kinds its feed() reads (the composer hands it only those)

    FLAT = {
        "blast_nodes_struck": ("count", "nodes the run's first lineage_fault struck"),
        "blast_coordinators_struck": ("count", "clusters whose coordinator was a struck node at the fault"),
        "blast_market_coordinator_struck": ("count", "1 if the market's coordinator was a struck node"),
        "blast_headless_s": ("s", "cluster seconds after the fault without a live node's coordinator claim"),
        "blast_detect_s": ("s", "fault to the first accusation, quarantine or (pre)vote request by a healthy node"),
        "blast_quarantine_s": ("s", "fault to the first quarantine of a struck node"),
        "blast_restored_s": ("s", "fault to every cluster led and a round completed by healthy nodes"),
        "blast_rounds_struck": ("count", "complete rounds after the fault announced by an unhealthy struck node"),
        "blast_production_after": ("milli-units", "units the fleet produced after the fault"),
        "blast_leases_stranded": ("count", "leases held at the fault by nodes it stopped"),
    }

    def __init__(self, fleet):
        self.fleet = fleet
        self.fault = None  # {"t", "lineage", "kind", "struck", "duration_s"}
        self.later = []
        self.claimers = {c: set() for c in fleet.members}  # cluster -> nodes with an open claim
        self.headless_since = {}  # cluster -> ns it lost its last live claimant (after the fault)
        self.headless_ns = 0
        self.market_coord = None  # last complete PRICES sender
        self.announced = set()  # (sender, term, round) of the complete PRICES seen (one a cluster in a fleet of regions)
        self.tel = {}  # node -> {"produced": carried + last, "last": last produced, "leases": int}
        self.at_fault = {}  # node -> produced at the fault
        self.out = {}

    # ---- feeding -------------------------------------------------------------

    def feed(self, v):
        if v.kind == "fault" and v.name == "lineage_fault":
            self._struck(v)
        elif v.kind in ("down", "close"):
            self._ended(v.ended, v.t)
        elif v.kind == "sent" and v.msg is not None:
            self._ended(v.ended, v.t)
            if v.claim_term is not None and v.own:
                self.claimers.setdefault(v.cluster, set()).add(v.nid)
                if self.fault is not None:
                    self._led(v.cluster, v.t)
            self._sent(v)

    def _struck(self, v):
        d = v.detail or {}
        if self.fault is not None:
            self.later.append({"at_s": rnd(s(v.t)), "lineage": d.get("lineage"), "kind": d.get("kind")})
            return
        struck = {n for n in v.targets if isinstance(n, int)}
        self.fault = {"t": v.t, "lineage": d.get("lineage"), "kind": d.get("kind"), "struck": struck,
                      "until": v.t + int(d["duration_s"] * 1e9) if isinstance(d.get("duration_s"), (int, float)) else None}
        self.out["coordinators_struck"] = sorted(int(c) for c, who in self.claimers.items() if who & struck)
        self.out["market_coordinator"] = self.market_coord
        self.out["market_coordinator_struck"] = int(self.market_coord in struck)
        self.at_fault = {n: row["produced"] for n, row in self.tel.items()}
        if d.get("kind") in DOWN_KINDS:
            self.out["leases_stranded"] = sum(self.tel.get(n, {}).get("leases", 0) for n in struck)
        for c in self.claimers:
            if not self._live_claim(c):
                self.headless_since[c] = v.t

    def _ended(self, ended, t):
        for nid, cluster, _start, _last in ended or ():
            who = self.claimers.get(cluster)
            if who is None:
                continue
            who.discard(nid)
            if self.fault is not None and not self._live_claim(cluster) and cluster not in self.headless_since:
                self.headless_since[cluster] = t

    def _led(self, cluster, t):
        since = self.headless_since.pop(cluster, None)
        if since is not None:
            self.headless_ns += t - since
        self._check_restored(t)

    def _sent(self, v):
        f = self.fault
        if v.type == "market_tel":
            self._tel(v.nid, v.msg)
        elif v.type == "prices" and announces_to_region(v.dst) and v.msg.get("status") == 1:  # complete
            self.market_coord = v.nid
            key = (v.nid, v.msg.get("term"), v.msg.get("round"))
            if key in self.announced:
                return
            self.announced.add(key)
            if f is not None:
                if not self._healthy(v.nid, v.t, market=True):
                    self.out["rounds_struck"] = self.out.get("rounds_struck", 0) + 1
                else:
                    self.out.setdefault("market_restored_ns", v.t)
                    self._check_restored(v.t)
        if f is None:
            return
        elections = f["kind"] != "clearing_defect"  # a defect in the clearing is no election's business
        if "detect_ns" not in self.out and (v.type == "accuse" or (
                elections and v.type in _DETECT_TYPES and self._healthy(v.nid, v.t)) or (
                v.type == "log" and str(v.msg.get("text", "")).startswith("quarantine node "))):
            self.out["detect_ns"] = v.t
            self.out["detected_by"] = "%s from node %d" % (v.type, v.nid)
        if v.type == "log" and "quarantine_ns" not in self.out:
            words = str(v.msg.get("text", "")).split()
            if len(words) >= 4 and words[:2] == ["quarantine", "node"] and words[3] == "quarantined:" \
                    and words[2].isdigit() and int(words[2]) in f["struck"]:
                self.out["quarantine_ns"] = v.t

    def _tel(self, nid, msg):
        produced, leases = msg.get("produced"), msg.get("leases")
        if not isinstance(produced, int) or not isinstance(leases, int):
            return
        row = self.tel.setdefault(nid, {"produced": 0, "last": 0, "leases": 0})
        row["produced"] += produced - row["last"] if produced >= row["last"] else produced  # a reboot restarts it
        row["last"], row["leases"] = produced, leases

    # ---- health --------------------------------------------------------------

    def _healthy(self, nid, t, market=False):
        f = self.fault
        if f is None or nid not in f["struck"]:
            return True
        kind = f["kind"]
        if kind == "clearing_defect":
            return not market
        if kind in WINDOW_KINDS:
            return f["until"] is not None and t >= f["until"]
        n = self.fleet.nodes.get(nid)
        return n is not None and n.live()

    def _live_claim(self, cluster):
        return any(self._healthy(n, self.fleet.state_ns) and self.fleet.live(n) for n in self.claimers.get(cluster, ()))

    def _check_restored(self, t):
        if "restored_ns" in self.out:
            return
        if self.fleet.electors and "market_restored_ns" not in self.out:
            return  # a market: a round completed by a healthy node too
        if all(any(self._healthy(n, t) for n in who) for who in self.claimers.values()):
            self.out["restored_ns"] = t

    # ---- result --------------------------------------------------------------

    def result(self, span):
        f = self.fault
        flat = dict.fromkeys(self.FLAT)
        if f is None:
            return {"flat": flat}
        end = span.end_ns
        headless = self.headless_ns + sum(end - since for since in self.headless_since.values())
        after = sum(row["produced"] - self.at_fault.get(n, 0) for n, row in self.tel.items())

        def since(key):
            return rnd(s(self.out[key] - f["t"])) if key in self.out else None

        flat.update({
            "blast_nodes_struck": len(f["struck"]),
            "blast_coordinators_struck": len(self.out["coordinators_struck"]),
            "blast_market_coordinator_struck": self.out["market_coordinator_struck"],
            "blast_headless_s": rnd(s(headless)),
            "blast_detect_s": since("detect_ns"),
            "blast_quarantine_s": since("quarantine_ns"),
            "blast_restored_s": since("restored_ns"),
            "blast_rounds_struck": self.out.get("rounds_struck", 0),
            "blast_production_after": after,
            "blast_leases_stranded": self.out.get("leases_stranded", 0),
        })
        section = {"at_s": rnd(s(f["t"])), "lineage": f["lineage"], "kind": f["kind"], "struck": sorted(f["struck"]),
                   "coordinators_struck": self.out["coordinators_struck"],
                   "market_coordinator": self.out["market_coordinator"], "detected_by": self.out.get("detected_by"),
                   "later_lineage_faults": self.later}
        return {"flat": flat, "blast": section}
