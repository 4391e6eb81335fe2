"""The fault-containment family (docs/CONTAINMENT.md): accusations auditors
sent, accusations the electors refused, and quarantines, read from the frames
the nodes send the ground (ACCUSE, and the electors' LOG lines
"quarantine node N <state>: <cause>" / "refused accusation from ...").

State: one row per accusation and per quarantine change: it grows with those,
never with frames.
"""

import re

from ground.metrics.common import s

_Q = re.compile(r"^quarantine node (\d+) (\w+): (.*)$")
_REFUSED = re.compile(r"^refused accusation from (\d+) against (\d+) round (\d+)$")
_REASONS = ((1, "digest"), (2, "prices"), (4, "awards"))  # ACCUSE reason bits (firmware msgs.ACCUSE_*)


class ContainmentMetrics:
    FLAT = {
        "accusations": ("count", "ACCUSE frames auditors sent the ground"),
        "accusers": ("count", "different auditors that sent one"),
        "accusations_refused": ("count", "accusations an elector refused (not from an auditor, or no evidence)"),
        "quarantined_nodes": ("count", "different nodes some elector quarantined"),
        "quarantine_events": ("count", "quarantine state changes electors reported (any state)"),
    }

    def __init__(self, fleet):
        self.accusations = []  # {"at_s", "auditor", "accused", "round", "reason", ...}
        self.refused = []
        self.changes = []  # {"at_s", "reporter", "node", "state", "cause"}

    def feed(self, v):
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
        if self.accusations or self.refused or self.changes:
            section = {"accusations": self.accusations, "refused": self.refused, "changes": self.changes,
                       "quarantined": {str(k): v for k, v in sorted(q.items())}}
        flat = {"accusations": len(self.accusations),
                "accusers": len({a["auditor"] for a in self.accusations}),
                "accusations_refused": len(self.refused), "quarantined_nodes": len(q),
                "quarantine_events": len(self.changes)}
        return {"containment": section, "flat": flat} if section is not None else {"flat": flat}
