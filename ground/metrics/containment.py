"""The fault-containment family (docs/CONTAINMENT.md): accusations auditors
sent, accusations the electors refused, and quarantines, read from the frames
the nodes send the ground (ACCUSE, and the electors' LOG lines
"quarantine node N <state>: <cause>" / "refused accusation from ...").

Severing (ground/sever.py): each `sever` fault event (a region cut off by
the ground), the cycles from its trigger (the accusation, or the order) to
the sever point, and the frames of a severed region sent after that point and
delivered outside it anyway (should be none: the router drops them).

State: one row per accusation, per quarantine change and per severed region;
the ids of frames a severed region sent after its sever point, until their
fates (the only per-frame state).
"""

import re

from ground.metrics.common import s

_Q = re.compile(r"^quarantine node (\d+) (\w+): (.*)$")
_REFUSED = re.compile(r"^refused accusation from (\d+) against (\d+) round (\d+)$")
_REASONS = ((1, "digest"), (2, "prices"), (4, "awards"))  # ACCUSE reason bits (firmware msgs.ACCUSE_*)


class ContainmentMetrics:
    VIEWS = ("fault", "fate", "sent")  # the view kinds its feed() reads (the composer hands it only those)
    FATES = ("delivered",)  # the fates among its fate views it reads

    FLAT = {
        "accusations": ("count", "ACCUSE frames auditors sent the ground"),
        "accusers": ("count", "different auditors that sent one"),
        "accusations_refused": ("count", "accusations an elector refused (not from an auditor, or no evidence)"),
        "quarantined_nodes": ("count", "different nodes some elector quarantined"),
        "quarantine_events": ("count", "quarantine state changes electors reported (any state)"),
        "regions_severed": ("count", "regions the ground severed (sever events)"),
        "sever_cycles_max": ("cycles", "trigger (accusation or order) to sever point, in the region's slot_ms"),
        "severed_frames_honoured": ("count", "frames a severed region sent after its sever point delivered outside it"),
    }

    def __init__(self, fleet):
        self.accusations = []  # {"at_s", "auditor", "accused", "round", "reason", ...}
        self.refused = []
        self.changes = []  # {"at_s", "reporter", "node", "state", "cause"}
        self.severs = []  # {"at_s", "region", "cause", "cycles"}
        self.severed = {}  # node -> its severed region's node set
        self.after_sever = {}  # frame id -> its sender's region's node set (sent after the sever point)
        self.honoured = []  # {"at_s", "frame_id", "src", "to"}

    def feed(self, v):
        if v.kind == "fault":
            if v.name == "sever":
                self._sever(v)
            elif v.name == "reinstate_region":
                self._reinstate(v)
            return
        if v.kind == "fate":
            self._fate(v)
            return
        if v.kind == "sent" and v.nid in self.severed:
            self.after_sever[v.fid] = self.severed[v.nid]
        if v.kind != "sent" or v.msg is None:
            return
        if v.type == "accuse" and v.dst == 0:
            m = v.msg
            self.accusations.append({
                "at_s": s(v.t), "auditor": v.nid, "accused": m["accused"], "round": m["round"], "term": m["term"],
                "reason": [name for bit, name in _REASONS if m["reason"] & bit],
                "claimed_digest": m["claimed_digest"], "own_digest": m["own_digest"], "frame_id": v.fid})
        elif v.type == "log":
            text = v.msg.get("text", "")
            q = _Q.match(text)
            if q:
                self.changes.append({"at_s": s(v.t), "reporter": v.nid, "node": int(q.group(1)),
                                     "state": q.group(2), "cause": q.group(3)})
                return
            r = _REFUSED.match(text)
            if r:
                self.refused.append({"at_s": s(v.t), "reporter": v.nid, "from": int(r.group(1)),
                                     "against": int(r.group(2)), "round": int(r.group(3)), "frame_id": v.fid})

    def _sever(self, v):
        d = v.detail or {}
        nodes = {n for n in v.targets if isinstance(n, int)}
        trigger, slot_ms = d.get("trigger_ns"), d.get("slot_ms")
        cycles = (v.t - trigger) / (slot_ms * 1e6) if isinstance(trigger, int) and slot_ms else None
        self.severs.append({"at_s": s(v.t), "region": d.get("region"), "cause": d.get("cause"),
                            "cycles": None if cycles is None else round(cycles, 4), "nodes": sorted(nodes)})
        for n in nodes:
            self.severed[n] = nodes

    def _reinstate(self, v):
        """The ground lifted a region's severance: its later frames count no more."""
        nodes = {n for n in v.targets if isinstance(n, int)}
        for n in nodes:
            self.severed.pop(n, None)
        for row in self.severs:
            if row["nodes"] == sorted(nodes) and "reinstated_at_s" not in row:
                row["reinstated_at_s"] = s(v.t)

    def _fate(self, v):
        inside = self.after_sever.get(v.fid)
        if inside is None:
            return
        if v.fate == "delivered" and v.to not in inside:
            self.honoured.append({"at_s": s(v.t), "frame_id": v.fid, "to": v.to})

    def quarantined(self):
        """Nodes some elector quarantined, with when (first time)."""
        out = {}
        for c in self.changes:
            if c["state"] == "quarantined" and c["node"] not in out:
                out[c["node"]] = c["at_s"]
        return out

    def result(self, span):
        q = self.quarantined()
        section = None
        if self.accusations or self.refused or self.changes or self.severs:
            section = {"accusations": self.accusations, "refused": self.refused, "changes": self.changes,
                       "quarantined": {str(k): v for k, v in sorted(q.items())}, "severed": self.severs,
                       "severed_honoured": self.honoured[:20]}
        flat = {"accusations": len(self.accusations),
                "accusers": len({a["auditor"] for a in self.accusations}),
                "accusations_refused": len(self.refused), "quarantined_nodes": len(q),
                "quarantine_events": len(self.changes), "regions_severed": len(self.severs),
                "sever_cycles_max": max((x["cycles"] for x in self.severs if x["cycles"] is not None), default=None),
                "severed_frames_honoured": len(self.honoured) if self.severs else None}
        return {"containment": section, "flat": flat} if section is not None else {"flat": flat}
