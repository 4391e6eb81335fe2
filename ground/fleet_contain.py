"""Time to detect and time to quarantine, per region, on the lean path
(`fleet.json` "containment", docs/CONTAINMENT.md "At fleet scale"): what
every node of a region sends the ground, traced or not, as each shard sends
it (a region is never split across shards, so each region's figures come
from one shard and do not depend on the shards).

Per region with auditors: the ACCUSE frames its auditors sent the ground
(how many, from how many auditors, the first one's mission time, accused
node and round), the first "quarantine node N quarantined" LOG line of one
of its electors, and when a majority of its electors had said so of the
same node (out of the region's election from then). Times in mission s and
in the region's auction cycles (slot_ms): a clearing defect planted from
boot (lineage_fault clearing_defect, at 0 s) counts from the mission's start.
"""

from ground.router import _decode_fields
from ground.shard_faults import msgs, wire

S = 1_000_000_000
_QUARANTINED = "quarantine node "


class Times:
    """One shard's per-region containment times: seen() each frame a node
    sends the ground; state() as plain data; merge() and to_json() on the
    driver."""

    def __init__(self, sc, auth=None):
        self.auth = auth
        self.ids = sc.wire_ids  # addressing: region: the ids in a frame are its sender's region's (ground/wireids.py)
        self.region_of = {}  # node -> region number, for the regions with auditors
        self.electors = set()
        self.majority = {}  # region -> electors that make a majority
        for r in getattr(sc, "regions", None) or ():
            if r.market is not None and r.market.auditors:
                for n in r.nodes:
                    self.region_of[n] = r.region
                self.electors.update(r.electors)
                self.majority[r.region] = len(r.electors) // 2 + 1
        self.rows = {}  # region -> {"accusations", "accusers", "accuse_ns", "accused", "round", "quarantine_ns",
        #                             "held": {node: [electors]}, "majority_ns", "majority_node"}

    def seen(self, src, typ, line, now_ns):
        """A frame node src sent the ground at now_ns (only ACCUSE and an
        elector's LOG are read)."""
        r = self.region_of.get(src)
        if r is None or not (typ == msgs.ACCUSE or (typ == msgs.LOG and src in self.electors)):
            return
        try:
            fields = _decode_fields(wire.decode(line, self.auth))
        except wire.ProtocolError:
            return
        if self.ids is not None:
            fields = self.ids.scenario_fields(src, fields)
        row = self.rows.setdefault(r, {"accusations": 0, "accusers": [], "accuse_ns": None, "accused": None,
                                       "round": None, "quarantine_ns": None, "held": {}, "majority_ns": None,
                                       "majority_node": None})
        if typ == msgs.ACCUSE:
            row["accusations"] += 1
            if src not in row["accusers"]:
                row["accusers"].append(src)
            if row["accuse_ns"] is None:
                row["accuse_ns"], row["accused"], row["round"] = now_ns, fields.get("accused"), fields.get("round")
            return
        text = fields.get("text")
        if not isinstance(text, str) or not text.startswith(_QUARANTINED):
            return
        words = text.split(" ", 4)  # quarantine node N state: cause
        if len(words) < 4 or words[3] != "quarantined:" or not words[2].isdigit():
            return
        if self.ids is not None:  # the elector names the node by its region's wire id
            words[2] = str(self.ids.node_from(src, int(words[2])) or words[2])
        if row["quarantine_ns"] is None:
            row["quarantine_ns"] = now_ns
        held = row["held"].setdefault(words[2], [])
        if src not in held:
            held.append(src)
        if row["majority_ns"] is None and len(held) >= self.majority[r]:
            row["majority_ns"], row["majority_node"] = now_ns, int(words[2])

    def state(self):
        return self.rows


def to_json(states, sc):
    """fleet.json's "containment": per region with auditors (every one,
    also those where nothing was accused: null times)."""
    rows = {}
    for st in states:
        for r, row in (st or {}).items():
            rows.setdefault(int(r), row)  # a region is in one shard only
    out = {}
    for r in sorted(getattr(sc, "regions", None) or (), key=lambda x: x.region):
        if r.market is None or not r.market.auditors:
            continue
        row = rows.get(r.region) or {}
        slot_ns = r.market.slot_ms * 1_000_000

        def at(key):
            t = row.get(key)
            return (None, None) if t is None else (t / S, round(t / slot_ns, 3))

        accuse_s, accuse_c = at("accuse_ns")
        q_s, q_c = at("quarantine_ns")
        m_s, m_c = at("majority_ns")
        out[str(r.region)] = {
            "slot_s": r.market.slot_ms / 1000, "accusations": row.get("accusations", 0),
            "accusers": len(row.get("accusers", ())), "detect_s": accuse_s, "detect_cycles": accuse_c,
            "accused": row.get("accused"), "accused_round": row.get("round"),
            "accused_lineage": sc.nodes[row["accused"]].lineage if row.get("accused") in sc.nodes else None,
            "quarantine_s": q_s, "quarantine_cycles": q_c,
            "majority_quarantine_s": m_s, "majority_quarantine_cycles": m_c,
            "quarantined": sorted(int(n) for n in row.get("held", {})),
        }
    return out
