"""The history checker's fault-containment invariants (docs/CONTAINMENT.md),
fed by ground/history.py's checker with every frame a node sent:

  quarantine_witnessed  every quarantine an elector reports ("quarantine node
                        N quarantined: accused by A and B", its LOG line)
                        names two different auditors, and each of them had
                        sent the ground an ACCUSE against N before: one auditor
                        alone, lying or defective, never quarantines a node.
                        One "witnessed by W" names an elector W that had sent
                        the ground a WITNESS against N before.
  quarantine_respected  while a majority of the electors hold node N
                        quarantined, N does not announce itself regional
                        coordinator (COORDINATOR on the region's address); and
                        a coordinator that holds N quarantined awards it no
                        lease of a round closed after it quarantined N (a
                        resend after a takeover re-announces an earlier
                        coordinator's award: not judged; each
                        elector's table is its own: a coordinator whose table
                        missed an accusation, or was emptied by a reboot,
                        still awards N, as the core's rule says). An elector
                        holds what its latest LOG line said; across a reboot
                        (a crash or power cut, the fault event; its boot
                        HELLO to the ground) it keeps whom it held out
                        (quarantined, on probation: its table is on flash)
                        and forgets a suspect.
                        Nor is N coordinator of its own cluster (a
                        COORDINATOR, or a heartbeat in the coordinator role,
                        on its cluster's address) once a majority of the
                        electors have held it quarantined for three HELD
                        resend periods (3 lead_ms, lead_ms = slot_ms / 8: the
                        electors tell its cluster in HELD frames, its members
                        refuse it their votes and it resigns,
                        node/heldview.py).
  accusation_grounded   every ACCUSE an auditor sends the ground names what
                        the accused coordinator really prepared: it sent a
                        PREPARE (PRICES, status prepare) for that term and
                        round, and the accusation's claimed side (the ledger
                        digest, the award count, the price of the class it
                        names) is what that PREPARE said, for each reason it
                        gives. An auditor that misquotes the coordinator is
                        caught here; its own side by audit_rerun.
  sever_respected       once the ground severs a region (a `sever` fault
                        event, ground/sever.py), no frame a node of that
                        region sends afterwards is delivered outside it, the
                        ground included: none of its leases, prices or claims
                        is honoured after the sever point (until a
                        `reinstate_region` event lifts it).
  audit_rerun           every round re-run from the trace with the firmware's
                        own clearings (ground/audit_rerun.py): the
                        coordinator's PREPARE and AWARDs are what its clearing
                        gives on the bid rows it sent the auditors, and each
                        auditor accuses exactly when its clearing disagrees.

A pure function of the trace like the rest of the checker, message names and
LOG texts as the trace carries them; audit_rerun alone imports the firmware's
clearings (and only for a trace whose header has an `audit` record).
"""

import re

from ground.history_held import HeldKnowledge, default_cap_permille

_Q = re.compile(r"^quarantine node (\d+) (\w+): (.*)$")
_ACCUSED_BY = re.compile(r"accused by (\d+) and (\d+)")
_WITNESSED_BY = re.compile(r"^witnessed by (\d+):")
INVARIANTS = ("quarantine_witnessed", "quarantine_respected", "accusation_grounded", "sever_respected", "audit_rerun")
_PREPARE = 3  # msgs.ROUND_PREPARE (PRICES status)


class ContainmentChecker:
    def __init__(self, electors, violate, header=None, members_of=None):
        self.electors = set(electors)
        self.majority = len(self.electors) // 2 + 1
        market = (header or {}).get("market")
        slot_ms = market.get("slot_ms") if isinstance(market, dict) else None
        # A cluster learns a quarantine from the electors' HELD frames, resent every lead_ms (slot_ms / 8 by
        # default); its members' views keep one for 3 lead_ms (node/heldview.py)
        self.cluster_grace_ns = 3 * (slot_ms if isinstance(slot_ms, int) else 60000) * 1000000 // 8
        self.now_ns = 0  # the event being fed (ground/history_checker.py sets it)
        self.violate = violate  # fn(invariant, message, frame_ids, lines)
        self.accused = {}  # node -> {auditor: (fid, line)} of ACCUSE frames to the ground
        self.witnessed = {}  # node -> {elector} that sent the ground a WITNESS against it
        self.prepared = {}  # (coordinator, term, round) -> {(digest, awards, prices)} its PREPAREs said
        self.held = {}  # node -> {elector: state} (each elector's latest report)
        cap = market.get("quarantine_cap_permille") if isinstance(market, dict) else None
        # What each node knows from the HELD frames it got (ground/history_held.py): a cluster claim is judged by it
        self.knows = HeldKnowledge(self.electors, cap if isinstance(cap, int) else default_cap_permille(),
                                   members_of or (lambda node: ()), self.held)
        self.since_round = {}  # (node, elector) -> the latest round when that elector quarantined it
        self.round = -1  # latest round a PRICES frame named
        self.reports = 0
        self.severed = {}  # node -> (its severed region's nodes, region, line of the sever event, of its reinstatement)
        self.audit = None  # audit_rerun (ground/audit_rerun.py): where the header has an `audit` record
        if header is not None and header.get("audit"):
            from ground.audit_rerun import AuditRerun

            self.audit = AuditRerun(header, violate)

    def sever(self, e, line):
        """A `sever` fault event, or a `reinstate_region` that lifts one."""
        nodes = {n for n in e.get("nodes") or () if isinstance(n, int)}
        region = (e.get("detail") or {}).get("region")
        if e.get("fault") == "reinstate_region":
            for n in nodes:
                got = self.severed.get(n)
                if got is not None and got[3] is None:
                    self.severed[n] = got[:3] + (line,)
            return
        for n in nodes:
            got = self.severed.get(n)
            if got is None or got[3] is not None:  # (severed again after a reinstatement: the new cut)
                self.severed[n] = (nodes, region, line, None)

    def delivered(self, src, type_, fid, sent_line, to, line):
        """A delivered fate of frame fid, which node src sent at sent_line."""
        if type_ == "held":
            self.knows.delivered(fid, to, self.now_ns)
        got = self.severed.get(src)
        if got is None or sent_line < got[2] or to in got[0] or (got[3] is not None and sent_line > got[3]):
            return
        what = "a lease" if type_ == "award" else "prices" if type_ == "prices" else "a %s frame" % type_
        self.violate("sever_respected", "line %d: %s from node %d of region %s (frame %d, sent line %d) delivered to"
                     " %s after the region was severed (line %d)" % (line, what, src, got[1], fid, sent_line,
                                                                     "the ground" if to == 0 else "node %s" % to,
                                                                     got[2]), [fid], [sent_line, line])

    def _quarantined_by_majority(self, node):
        states = self.held.get(node, {})
        return sum(1 for s in states.values() if s == "quarantined") >= self.majority

    def sent(self, src, dst, type_, msg, fid, line, region_addr):
        if self.audit is not None:
            self.audit.sent(src, dst, type_, msg, fid, line)
        if type_ == "held":
            self.knows.sent(fid, src, msg)
        elif type_ == "hello" and dst == 0:
            self.knows.forget(src)  # a boot: its view is gone with its RAM
        if type_ == "prices" and isinstance(msg.get("round"), int):
            self.round = max(self.round, msg["round"])
            if msg.get("status") == _PREPARE:
                said = (msg.get("digest"), msg.get("awards"), tuple(msg.get("p%d" % c) for c in range(8)))
                self.prepared.setdefault((src, msg.get("term"), msg["round"]), set()).add(said)
        elif type_ == "accuse" and dst == 0 and isinstance(msg.get("accused"), int):
            self.accused.setdefault(msg["accused"], {}).setdefault(src, (fid, line))
            self._grounded(src, msg, fid, line)
        elif type_ == "witness" and dst == 0 and isinstance(msg.get("node"), int):
            self.witnessed.setdefault(msg["node"], set()).add(src)
        elif type_ == "log":
            self._log(src, msg.get("text"), fid, line)
        elif type_ == "hello" and dst == 0 and src in self.electors:
            self._booted(src)
        elif type_ == "coordinator" and dst == region_addr and self._quarantined_by_majority(src):
            self.violate("quarantine_respected", "line %d: node %d announces itself regional coordinator (term %s)"
                         " while a majority of electors hold it quarantined" % (line, src, msg.get("term")),
                         [fid], [line])
        elif type_ == "award":
            holder = msg.get("holder")
            rnd = msg.get("round")
            flags = msg.get("flags") or 0
            since = self.since_round.get((holder, src))
            if (since is not None and not flags & 0x17 and isinstance(rnd, int)  # (a resend: an earlier award)
                    and self.held.get(holder, {}).get(src) == "quarantined" and rnd > since + 1):
                self.violate("quarantine_respected", "line %d: node %d awarded a lease of round %d (frame %d) by"
                             " coordinator %d, which holds it quarantined (since round %d)"
                             % (line, holder, rnd, fid, src, since), [fid], [line])

    def cluster_claim(self, src, type_, msg, fid, line):
        """Node src claims coordinator of its own cluster (a COORDINATOR, or
        a heartbeat in the coordinator role)."""
        since = self.knows.out_since_ns.get(src)
        if since is None or self.now_ns - since < self.cluster_grace_ns:
            return  # (a node the HELD frames have not reached, a partition's, does not know: not judged)
        self.violate("quarantine_respected", "line %d: node %d claims coordinator of its cluster (%s, term %s) while"
                     " the HELD frames it got from a majority of electors have held it out for %.1f s"
                     % (line, src, type_, msg.get("term"), (self.now_ns - since) / 1e9), [fid], [line])

    def down(self, node):
        """A crash or power cut: an elector down says nothing and comes back
        with the table it kept on flash (a restart is a boot)."""
        if node in self.electors:
            self._booted(node)
        self.knows.forget(node)

    def _booted(self, elector):
        """An elector's boot HELLO (or a crash or power cut): it boots with
        the table it kept on flash (node/quarantine.py pack(), written
        before any frame that says a change leaves it), which holds the
        nodes it held out (quarantined, on probation) and forgets a suspect."""
        for states in self.held.values():
            if states.get(elector) not in ("quarantined", "probation"):
                states.pop(elector, None)

    def _grounded(self, src, msg, fid, line):
        key = (msg["accused"], msg.get("term"), msg.get("round"))
        said = self.prepared.get(key)
        what = "auditor %d accuses node %d of term %s round %s" % (src, key[0], key[1], key[2])
        if not said:
            self.violate("accusation_grounded", "line %d: %s, which sent no PREPARE for it" % (line, what),
                         [fid], [line])
            return
        reason, c = msg.get("reason") or 0, msg.get("price_class")
        for digest, awards, prices in said:
            if reason & 1 and msg.get("claimed_digest") != digest:
                continue
            if reason & 4 and msg.get("claimed_awards") != awards:
                continue
            if reason & 2 and not (isinstance(c, int) and 0 <= c < 8 and msg.get("claimed_price") == prices[c]):
                continue
            return
        self.violate("accusation_grounded", "line %d: %s, quoting digest %s, %s awards, class %s price %s: not what"
                     " its PREPARE said (%s)" % (line, what, msg.get("claimed_digest"), msg.get("claimed_awards"), c,
                                                 msg.get("claimed_price"),
                                                 "; ".join("digest %s, %s awards, prices %s" % s for s in sorted(said))),
                     [fid], [line])

    def _log(self, src, text, fid, line):
        if not isinstance(text, str) or src not in self.electors:
            return
        m = _Q.match(text)
        if not m:
            return
        node, state, cause = int(m.group(1)), m.group(2), m.group(3)
        self.reports += 1
        states = self.held.setdefault(node, {})
        if state == "quarantined" and states.get(src) != "quarantined":
            self.since_round[(node, src)] = self.round
        states[src] = state
        self.knows.update(src, self.now_ns)  # an elector's own table counts in its own view
        if state == "quarantined" and cause.startswith("witnessed by"):
            w = _WITNESSED_BY.match(cause)
            if w is None or int(w.group(1)) not in self.witnessed.get(node, ()):
                self.violate("quarantine_witnessed", "line %d: elector %d quarantined node %d on %r: that elector"
                             " sent the ground no WITNESS against it" % (line, src, node, cause), [fid], [line])
            return
        if state != "quarantined" or not cause.startswith("accused by"):
            return  # byzantine behaviour seen first hand, or a release
        w = _ACCUSED_BY.search(cause)
        if w is None or w.group(1) == w.group(2):
            self.violate("quarantine_witnessed", "line %d: elector %d quarantined node %d on %r: not two different"
                         " auditors" % (line, src, node, cause), [fid], [line])
            return
        had = self.accused.get(node, {})
        for a in (int(w.group(1)), int(w.group(2))):
            if a != src and a not in had:
                self.violate("quarantine_witnessed", "line %d: elector %d quarantined node %d on an accusation by"
                             " %d, which sent the ground no ACCUSE against it" % (line, src, node, a), [fid], [line])
