"""The rollout orchestrator: carries a scenario's `rollout:` plan
(ground/rollout.py) out during a run, from the ground (docs/UPDATES.md
"Rollouts").

    ro = Orchestrator(run)      # after the run's links exist (Run.execute does it)
    ro.command("pause")         # a scenario step `rollout: pause` / `resume`

For each image in turn: canary clusters first, then steps of step_percent
of the clusters. Every node of a step gets the image over its ground link
(one ground/update_sender.UpdateSender each: offer, chunks, install once
verified); the step is deployed when each node confirmed, reverted or
refused it, or deploy_timeout_s passed (a node that was away gets it when it
next says HELLO: a node that joins mid-rollout gets its cluster's version).
During the validation window (from the step's start: crashes while it
deploys count), every window_s / ANALYSES mission s, the clusters that run the image are compared with those that do not yet, per
cluster, on the plan's checks; a check fails when the updated figure is
above baseline * max_ratio + slack. max_failed_checks failures abort the
image: every node that runs it or is installing it is ordered to roll back
to its last confirmed image, and its clusters are set back. A window that
passes (and a deployed step) moves to the next step; the last step
completes the image.

Each decision is a trace event of kind `rollout` (ground/metrics/rollout.py
reads them). The orchestrator reads what the ground hears: UPD_ACKs
delivered to the ground, HELLOs, COORDINATOR claims, MARKET_TEL and
TELEMETRY, and the run's node events.
"""

import hashlib
import random

from ground import firmware
from ground import flim
from ground import protocol as P
from ground import rollout as plan_mod
from node import auction  # (on sys.path through ground.firmware) the market's own bid rules
from ground.update_sender import CMD_ABORT, CMD_ROLLBACK, FLAG_DEFECTS, FLAG_TEST_BUILD, UpdateSender

wire = firmware.wire
msgs = firmware.msgs
S = 1_000_000_000
PUMP_S = 1.0  # mission s between two rounds of update frames
FRAMES_PER_PUMP = 8  # frames per node per round (chunks; the link's pipeline paces them further)
LINE_BYTES = 260  # a chunk frame on the line, about (218 bytes of chunk, header, tag, COBS, delimiter)
ANALYSES = 7  # analyses per validation window (daily, for the default 7 days)
ROLLBACK_EVERY_S = 10.0  # a rollback order is repeated until the node runs its previous version
ROUND_SETTLE_S = 30.0  # a market round prepared less than this ago is not judged yet (its acks may be on the way)


def _v(version):
    return "%d.%d" % tuple(version)


def _frames_per_pump(spec):
    """Update frames a node is sent per PUMP_S: FRAMES_PER_PUMP, or as many as
    its ground link's rate_bps carries in PUMP_S if that is more (a board's
    full image is ~120 KB: the link's rate, not the pump, should pace it)."""
    rate = spec.get("rate_bps")
    if not rate:
        return FRAMES_PER_PUMP
    return max(FRAMES_PER_PUMP, int(rate * PUMP_S / spec.get("bits_per_byte", 8) / LINE_BYTES))


class _Counts:
    """Per-cluster figures since a step started."""

    def __init__(self, clusters):
        self.by = {c: dict.fromkeys(plan_mod.CHECKS, 0.0) for c in clusters}
        self.heap = {}  # cluster -> lowest heap_min seen (bytes)
        self.lost0 = {}  # node -> its MARKET_TEL `lost` when the count started
        self.lost = {}  # node -> `lost` growth since then, as counted
        self.rounds = {}  # (coordinator, term, round) -> [PREPARE digest, {electors asked}, {elector: ACK digest},
        #                   mission ns of its last PREPARE]


class Orchestrator:
    def __init__(self, run):
        self.run = run
        self.sc = sc = run.sc
        self.plan = sc.rollout
        self.clock = run.clock
        self.router = run.router
        self.rng = random.Random(run.seed * 7919 + 17)
        self.cluster_of = {nid: spec.cluster for nid, spec in sc.nodes.items()}
        self.version = {nid: spec.fw_version for nid, spec in sc.nodes.items()}  # as last heard
        self.desired = {c: sc.nodes[ids[0]].fw_version for c, ids in sc.clusters.items()}
        self.prev_version = {}  # node -> the version it ran before this image
        self.blobs = {}  # version -> (image bytes, Image, bytes for boards or None)
        self.board_nodes = set(run.boards) if run.update_image is not None else set()  # get the back-end's images
        self.frames_per_pump = {nid: _frames_per_pump(sc.link_spec(nid, 0)) for nid in sc.nodes}
        self.senders = {}  # node -> UpdateSender of the current image, while active
        self.rolling_back = {}  # node -> version it must return to
        self.upd_id = 0
        self.image = None  # the plan's Image being rolled
        self.index = -1
        self.steps = []
        self.step = -1
        self.updated = set()  # clusters the current image was rolled to
        self.ran = set()  # nodes seen running the current image
        self.paused = False
        self.waiting = False  # a passed window waits for resume
        self.failed = 0
        self.state = "idle"  # idle, deploying, validating, aborting, done
        self.counts = _Counts(sc.clusters)
        self.baseline = None  # the last analysis' per-cluster baseline figures
        self.coordinator = {}  # cluster -> (node, term) of the last claim heard
        self._acks = {}  # frame id -> line of an UPD_ACK on its way to the ground
        self._rb_sent = {}  # node -> mission s its last rollback order left
        self._step_ns = 0
        self._analyses = 0
        self._pumping = False
        run.listeners.append(self.on_event)
        self.clock.call_at(int(self.plan.start_s * S), self._next_image)

    # ---- trace -------------------------------------------------------------------

    def _event(self, event, **fields):
        img = self.image
        self.router._event("rollout", event=event, image=_v(img.version) if img else None, step=self.step, **fields)

    # ---- images and steps ------------------------------------------------------------

    def _next_image(self):
        self.index += 1
        if self.index >= len(self.plan.images):
            self.state = "done"
            return
        img = self.image = self.plan.images[self.index]
        blob = flim.pack([], img.version, self.sc.auth_key, img.label, img.lineage, img.test_build, img.defects)
        full = None
        if self.board_nodes:  # boards: the compiled firmware with this manifest, built by the board layer
            full = self.run.update_image({"version": tuple(img.version), "label": img.label, "lineage": img.lineage,
                                          "test_build": img.test_build, "defects": dict(img.defects),
                                          "key": self.sc.auth_key})
        self.blobs[img.version] = (blob, img, full)
        canaries = plan_mod.choose_canaries(self.plan, self.sc, self.rng)
        self.steps = plan_mod.steps(self.plan, self.sc, canaries, self.rng)
        self.step = -1
        self.updated = set()
        self.ran = set()
        self.failed = 0
        self.baseline = None
        self.prev_version = {}
        self._event("start", canaries=canaries, canary_nodes=sum(len(self.sc.clusters[c]) for c in canaries),
                    nodes=len(self.sc.nodes), clusters=len(self.sc.clusters), steps=len(self.steps),
                    test_build=img.test_build, defects=img.defects, image_bytes=len(blob),
                    **({"board_image_bytes": len(full), "board_image_sha256": hashlib.sha256(full).hexdigest()}
                       if full is not None else {}))
        self._start_step()

    def _start_step(self):
        self.step += 1
        clusters = self.steps[self.step]
        self.state = "deploying"
        self._step_ns = self.clock.now_ns()
        self._analyses = 0
        self.counts = _Counts(self.sc.clusters)
        nodes = []
        for c in clusters:
            self.updated.add(c)
            self.desired[c] = self.image.version
            for nid in self.sc.clusters[c]:
                if self._offer(nid):
                    nodes.append(nid)
        self._event("step", clusters=clusters, nodes=len(nodes))
        self._schedule_analysis()  # from the step's start: crashes while it deploys count too
        self._pump()

    def _offer(self, nid, version=None):
        """Start sending an image (the current one by default) to a node; False if it runs it already."""
        blob, img, full = self.blobs[version or self.image.version]
        if full is not None and nid in self.board_nodes:
            blob = full
        if self.version.get(nid) == img.version or nid in self.senders:
            return False
        if img is self.image:
            self.prev_version.setdefault(nid, self.version.get(nid))
        self.upd_id += 1
        flags = (FLAG_TEST_BUILD if img.test_build else 0) | (FLAG_DEFECTS if img.defects else 0)
        s = UpdateSender(blob, nid, self.upd_id, img.version, img.lineage, flags)
        s.install_sent = False
        s.started_ns = self.clock.now_ns()
        self.senders[nid] = s
        return True

    # ---- the pump: update frames out, progress in --------------------------------------

    def _pump(self):
        if self._pumping:
            return
        self._pumping = True
        self.clock.call_at(self.clock.now_ns(), self._pump_tick)

    def _pump_tick(self):
        now = self.clock.now_ns()
        now_s = now / S
        for nid in sorted(self.senders):
            s = self.senders[nid]
            if s.error is not None:
                self._event("refused", node=nid, detail=s.error)
                del self.senders[nid]
                continue
            if s.state == "verified" and not s.install_sent and self._may_install(nid):
                s.install()
                s.install_sent = True
            if s.state in ("confirmed", "reverted"):
                if s.state == "reverted":
                    self.counts.by[self.cluster_of[nid]]["reverted"] += 1
                self._event("node_" + s.state, node=nid, after_s=round((now - s.started_ns) / S, 3))
                del self.senders[nid]
                continue
            for type, payload in s.due(now_s, self.frames_per_pump[nid]):
                self.router.to_node(nid, type, payload)
        for nid in sorted(self.rolling_back):
            if self.version.get(nid) == self.rolling_back[nid]:
                del self.rolling_back[nid]
            elif now_s - self._rb_sent.get(nid, -1e18) >= ROLLBACK_EVERY_S:
                self._rb_sent[nid] = now_s
                self.router.to_node(nid, P.UPD_CMD, P.build_message(P.UPD_CMD, {"upd_id": 0, "action": CMD_ROLLBACK}))
        self._progress(now)
        if self.senders or self.rolling_back:
            self.clock.call_at(now + int(PUMP_S * S), self._pump_tick)
        else:
            self._pumping = False

    def _may_install(self, nid):
        """Staggered (the plan's `stagger`, default): one node of a cluster
        installs at a time, the next once it confirmed, reverted or failed,
        and the cluster's coordinator (as last heard) after every other node
        that is getting the image and answers, so the cluster keeps a quorum and changes
        coordinator at most once. Not staggered: each as soon as it verified."""
        if not self.plan.stagger:
            return True
        c = self.cluster_of[nid]
        mates = [n for n in self.sc.clusters[c] if n != nid and n in self.senders]
        if any(self.senders[n].install_sent for n in mates):
            return False
        # the coordinator waits for the mates that answer (a node that is away gets it at its next HELLO)
        return not (self.coordinator.get(c, (None,))[0] == nid and any(self.senders[n].state for n in mates))

    def _progress(self, now):
        if self.state == "deploying":
            mine = [n for c in self.steps[self.step] for n in self.sc.clusters[c] if n in self.senders]
            late = now - self._step_ns >= int(self.plan.deploy_timeout_s * S)
            if not mine or late:
                if late:  # left to update when they next say HELLO
                    self._event("deploy_timeout", nodes=sorted(mine))
                    for nid in mine:
                        del self.senders[nid]
                self.state = "validating"
                self._event("deployed", clusters=sorted(self.updated), ran=len(self.ran))
                if self._analyses >= ANALYSES:  # the window passed while it deployed
                    self._window_passed()
        elif self.state == "aborting" and not self.rolling_back:
            self._event("rolled_back", nodes=len(self.prev_version))
            self.state = "idle"
            self._next_image()

    # ---- analysis ---------------------------------------------------------------------

    def _schedule_analysis(self):
        at = self._step_ns + int(self.plan.window_s * S * (self._analyses + 1) / ANALYSES)
        self.clock.call_at(at, self._analyse, self.index, self.step)

    def _figures(self, clusters):
        if not clusters:
            return None
        for c, n in self._mismatches().items():
            self.counts.by[c]["ledger_mismatch"] = n
        out = {}
        for name in plan_mod.CHECKS:
            if name == "heap":
                lows = [self.counts.heap[c] for c in clusters if c in self.counts.heap]
                out[name] = min(lows) if lows else None
            else:
                out[name] = sum(self.counts.by[c][name] for c in clusters) / len(clusters)
        return out

    def _analyse(self, index, step):
        if index != self.index or step != self.step or self.state not in ("deploying", "validating"):
            return  # an analysis of a step that was aborted or moved on
        self._analyses += 1
        updated = sorted(self.updated)
        base = [c for c in self.sc.clusters if c not in self.updated]
        mine, theirs = self._figures(updated), self._figures(base)
        if theirs is None:
            theirs = self.baseline  # the last step: against the last baseline measured
        else:
            self.baseline = theirs
        failures = []
        if len(updated) >= self.plan.min_clusters and theirs is not None:
            for ch in self.plan.checks:
                a, b = mine[ch.name], theirs.get(ch.name)
                if ch.name == "heap":
                    if a is not None and b is not None and a < b - ch.slack:
                        failures.append("heap: lowest %d bytes free < baseline %d - %d" % (a, b, ch.slack))
                elif a > b * ch.max_ratio + ch.slack:
                    failures.append("%s: %.3f per cluster > baseline %.3f x %g + %g" % (ch.name, a, b, ch.max_ratio,
                                                                                          ch.slack))
        self.failed += len(failures)
        self._event("analysis", n=self._analyses, updated=mine, baseline=theirs, failures=failures,
                    failed_checks=self.failed, clusters=len(updated))
        if self.failed >= self.plan.max_failed_checks:
            return self._abort("; ".join(failures))
        if self._analyses < ANALYSES:
            return self._schedule_analysis()
        if self.state == "validating":  # else: when it is deployed
            self._window_passed()

    def _window_passed(self):
        if self.paused:
            self.waiting = True
            return
        self._advance()

    def _advance(self):
        self.waiting = False
        if self.step + 1 < len(self.steps):
            return self._start_step()
        self.state = "idle"
        self._event("complete", nodes=len(self.ran), clusters=len(self.updated))
        self._next_image()

    # ---- abort and rollback -----------------------------------------------------------

    def _abort(self, why):
        self.state = "aborting"
        img = self.image
        back = {}
        for nid, s in sorted(self.senders.items()):
            if s.state in ("receiving", "verified", None):
                self.router.to_node(nid, P.UPD_CMD, P.build_message(P.UPD_CMD, {"upd_id": s.upd_id, "action": CMD_ABORT}))
            if s.state in ("install_pending", "trial"):
                back[nid] = self.prev_version.get(nid)
        self.senders = {}
        for nid, v in self.version.items():
            if v == img.version and self.prev_version.get(nid) is not None:
                back[nid] = self.prev_version[nid]
        for c in self.updated:
            self.desired[c] = self._before(c)
        self.rolling_back = {n: v for n, v in back.items() if v is not None}
        self._rb_sent = {}
        self._event("abort", reason=why, nodes=len(self.rolling_back), ran=len(self.ran))
        self._pump()
        self._progress(self.clock.now_ns())

    def _before(self, c):
        """The version cluster c ran before the current image (its nodes' previous one)."""
        for nid in self.sc.clusters[c]:
            if self.prev_version.get(nid) is not None:
                return self.prev_version[nid]
        return self.version[self.sc.clusters[c][0]]

    # ---- commands --------------------------------------------------------------------

    def command(self, what):
        """`pause` or `resume` (a scenario step): a paused rollout starts no
        new step; it still analyses, and still aborts."""
        self.paused = what == "pause"
        self._event(what)
        if not self.paused and self.waiting:
            self._advance()

    # ---- what the ground hears ----------------------------------------------------------

    def on_event(self, e):
        kind = e.get("kind")
        if kind == "frame":
            fate = e.get("fate")
            if fate == "sent":
                t = e.get("type")
                if t == "upd_ack":
                    self._acks[e["id"]] = (e["hex"], e["src"])  # its sender as the trace names it (the line: on the wire)
                elif t == "hello":
                    m = e.get("msg") or {}
                    if "fw_major" in m:
                        self._heard_version(e["src"], (m["fw_major"], m["fw_minor"]), hello=True)
                elif t == "coordinator":
                    self._claim(e["src"], (e.get("msg") or {}).get("term"))
                elif t == "market_tel":
                    self._lost(e["src"], (e.get("msg") or {}).get("lost"))
                elif t == "telemetry":
                    self._heap(e["src"], (e.get("msg") or {}).get("heap_min"))
                elif t == "bid":
                    self._bid(e["src"], e.get("msg") or {})
                elif t == "prices" or t == "round_ack":
                    self._digest(t, e["src"], e.get("msg") or {}, e.get("dst"))
            elif fate == "delivered" and e.get("to") == 0 and e.get("id") in self._acks:
                line, src = self._acks.pop(e["id"])
                self._ack(bytes.fromhex(e.get("hex", line)), src)
            elif fate == "dropped" and e.get("id") in self._acks:
                self._acks.pop(e["id"], None)
        elif kind == "node":
            c = self.cluster_of.get(e.get("node"))
            if c is None:
                return
            ev = e.get("event")
            if ev == "crashed":
                self.counts.by[c]["crashes"] += 1
            elif ev in ("bad_frame", "refused"):
                self.counts.by[c]["protocol_errors"] += 1

    def _ack(self, line, nid):
        try:
            f = P.parse_line(line, key=self.sc.auth_key)
        except P.FrameError:
            return
        self._heard_version(nid, (f.msg["fw_major"], f.msg["fw_minor"]))
        s = self.senders.get(nid)
        if s is not None:
            s.on_ack(f.msg)

    def _heard_version(self, nid, version, hello=False):
        if nid not in self.version:
            return
        self.version[nid] = version
        img = self.image
        if img is not None and version == img.version and nid not in self.ran:
            self.ran.add(nid)
            self._event("ran", node=nid)
        if not hello:
            return
        want = self.desired[self.cluster_of[nid]]
        if version == want or nid in self.senders or nid in self.rolling_back:
            return
        if want in self.blobs and self.state != "aborting":
            if self._offer(nid, want):  # joined mid-rollout (or after): its cluster's version
                self._event("join", node=nid, runs=_v(version), gets=_v(want))
                self._pump()
        elif img is not None and version == img.version:
            self.rolling_back[nid] = want  # back after an abort: roll it back too
            self._event("join", node=nid, runs=_v(version), gets=_v(want))
            self._pump()

    def _claim(self, nid, term):
        c = self.cluster_of.get(nid)
        if c is None or term is None:
            return
        last = self.coordinator.get(c)
        if last is not None:
            if last[0] != nid:
                self.counts.by[c]["failovers"] += 1
            if term > last[1]:
                self.counts.by[c]["leader_churn"] += 1
        self.coordinator[c] = (nid, term)

    def _lost(self, nid, lost):
        c = self.cluster_of.get(nid)
        if c is None or lost is None:
            return
        k = self.counts
        grown = max(0, lost - k.lost0.setdefault(nid, lost))
        k.by[c]["production_lost"] += grown - k.lost.get(nid, 0)
        k.lost[nid] = grown

    def _bid(self, nid, m):
        """A bid the market must refuse by its own rules, whatever its round:
        an absurd price or no lease at all (a test build's bid_nonsense)."""
        c = self.cluster_of.get(nid)
        if c is None or "price" not in m:
            return
        if not 0 < m["price"] <= auction.MAX_PRICE or not auction.shape_ok(m["span"], m["period"], m["count"], 255):
            self.counts.by[c]["refused_bids"] += 1

    def _digest(self, t, nid, m, dst):
        """Ledger digests of a market round: the coordinator's PREPAREs (to
        each elector) and the electors' ROUND_ACKs (judged per round in
        _mismatches)."""
        if t == "prices":
            if m.get("status") == msgs.ROUND_PREPARE and nid in self.cluster_of:
                r = self.counts.rounds.setdefault((nid, m["term"], m["round"]), [m["digest"], set(), {}, 0])
                r[0] = m["digest"]
                r[1].add(dst)
                r[3] = self.clock.now_ns()
        elif m.get("status") != msgs.ROUND_QUERY:
            r = self.counts.rounds.get((dst, m.get("term"), m.get("round")))
            if r is not None:
                r[2][nid] = m.get("digest")

    def _mismatches(self):
        """Per cluster, the market rounds of this step whose ledger digests
        disagree, blamed on the odd one out: when an elector acked the
        coordinator's PREPARE with the same digest, each elector that acked
        another digest or none; when none agreed but some answered, the
        coordinator. A round prepared in the last ROUND_SETTLE_S waits."""
        out = dict.fromkeys(self.sc.clusters, 0)
        settled = self.clock.now_ns() - int(ROUND_SETTLE_S * S)
        for (coord, _, _), (digest, asked, acks, at) in self.counts.rounds.items():
            if at > settled:
                continue
            agreed = [n for n, d in acks.items() if d == digest]
            if agreed:
                blamed = [n for n in asked if acks.get(n) != digest]
            else:
                blamed = [coord] if acks else []
            for n in blamed:
                if self.cluster_of.get(n) in out:
                    out[self.cluster_of[n]] += 1
        return out

    def _heap(self, nid, heap_min):
        c = self.cluster_of.get(nid)
        if c is None or not heap_min:
            return
        if heap_min < self.counts.heap.get(c, 1 << 62):
            self.counts.heap[c] = heap_min
