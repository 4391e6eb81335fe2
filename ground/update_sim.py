"""An in-process node's side of a software update: the board shell's update
work (firmware/runtime/updboot.py, slots.py, bootslot.py) for a node that
runs in the ground's process (docs/UPDATES.md "In-process nodes").

The node runs the same agent (firmware/node/update.py) over the same UPD_*
frames; this carries out its actions on a flash kept in memory, which
survives the node's restarts and power cuts:

    sim = SimUpdates(node_id, root_version, lineage, key, confirm_after_ms)
    version = sim.boot()          # at each boot: the boot pointer decides the image
    sim.attach(node)              # after the node is built: the agent resumed, defects on
    what = sim.after_poll(node, now_ms)    # the agent's actions: None, RESET (restart now) or CRASH

The image is checked as a board checks it (ground/flim.py: tag, sizes,
sha256 of every file, defects only in a test build); installing writes the
boot pointer as `trial` and restarts the node, which then runs the new
version (its HELLO and records say so). A trial reset before it confirms
boots the previous image. A test build's declared defects are the board's
(firmware/runtime/defects.py, the same class): crash_after_h,
crash_on_coordinator, mute_as_coordinator, bid_nonsense and
wrong_ledger_digest act in-process; leak_heap does
not (an in-process node has no 192K heap), which `unmodelled` says.

A crash (DefectCrash) is the node's: SimLink stops it (`crashed` says why)
and the run restarts it after WATCHDOG_MS, as the board's watchdog would.
"""

import hashlib

from ground import firmware  # noqa: F401  (puts firmware/ on sys.path for the two below)
from ground import flim
from node import update as U
from runtime.defects import DefectCrash, Defects

RESET, CRASH = "reset", "crash"  # what after_poll() asks of the link
ROOT = ""  # the factory image's slot name, as firmware/bootinfo.py
SLOTS = ("a", "b")
_STATES = {"trial": U.TRIAL, "reverted": U.REVERTED, "confirmed": U.CONFIRMED}
_REASONS = (("tag", U.R_TAG), ("truncated", U.R_TRUNCATED), ("not an update image", U.R_TRUNCATED),
            ("defects", U.R_DEFECT), ("sha256", U.R_DIGEST), ("digest", U.R_DIGEST), ("JSON", U.R_TRUNCATED))


class _Shell:
    """What runtime/defects.py's check() reads of a board shell: the node."""

    def __init__(self, node):
        self.node = node


class SimUpdates:
    def __init__(self, node_id, root_version, lineage=0, key=None, confirm_after_ms=30000):
        self.node_id = node_id
        self.lineage = lineage
        self.key = key or b""
        self.confirm_after_ms = confirm_after_ms
        # flash: survives restarts and power cuts
        self.manifests = {ROOT: {"version": list(root_version), "label": "%d.%d" % tuple(root_version)}}
        self.pointer = None  # {"slot", "state", "prev"}, as state/boot.ptr; None: the root image
        self.record = None  # the agent's record (bytes)
        self.stage = bytearray()
        self.unpacked = None
        # this boot
        self.slot = ROOT
        self.boot_state = "confirmed"
        self.defects = None
        self.last_error = None  # one line: why the last check refused
        self.crash = None  # one line: how the build last crashed
        self.notes = []  # what the shell would note (LOG lines), taken by the run

    # ---- boot ---------------------------------------------------------------

    def _ok(self, slot):
        return slot is not None and slot in self.manifests

    def boot(self):
        """Choose this boot's image as bootslot.select() does; its version."""
        p = self.pointer
        slot, state = ROOT, "confirmed"
        if p is not None:
            if p["state"] == "trial" and self._ok(p["slot"]):
                self.pointer = dict(p, state="trial_booted")  # marked before the trial runs
                slot, state = p["slot"], "trial"
            elif p["state"] == "trial_booted":  # the trial was reset before it confirmed
                prev = p["prev"] if self._ok(p["prev"]) else ROOT
                self.pointer = {"slot": prev, "state": "reverted", "prev": prev}
                slot, state = prev, "reverted"
            elif self._ok(p["slot"]):
                slot, state = p["slot"], p["state"]
            elif self._ok(p.get("prev")):
                slot = p["prev"]
        self.slot, self.boot_state = slot, state
        return tuple(self.manifests[slot]["version"])

    def previous(self):
        p = self.pointer
        prev = p.get("prev") if p else None
        return prev if self._ok(prev) and prev != self.slot else None

    def attach(self, node):
        """After the node is built: resume the agent if an update is under way
        or this boot reports one, and switch a test build's defects on."""
        self.defects = None
        m = self.manifests[self.slot]
        if m.get("defects"):
            self.defects = Defects.of(m, self.lineage)
            if self.defects is not None:
                self.notes.append("test build: defects %s" % ",".join(sorted(m["defects"])))
        if self.slot == ROOT and self.boot_state == "confirmed" and self.record is None:
            return  # nothing to report or resume: the agent stays unloaded, as on a board
        agent = U.agent(node)
        agent.confirm_after_ms = self.confirm_after_ms
        if self.record is not None:
            try:
                agent.restore(self.record)
            except ValueError as e:
                self.notes.append("update record: %s" % e)
        agent.boot(_STATES.get(self.boot_state, U.CONFIRMED), self.previous() is not None)

    @property
    def version(self):
        return tuple(self.manifests[self.slot]["version"])

    # ---- each poll ------------------------------------------------------------

    def after_poll(self, node, now_ms):
        """The agent's actions, in order, and the defects' check: None, RESET
        (install, rollback: restart the node now) or CRASH (the build crashed:
        `crash` says how)."""
        agent = node.update
        if agent is not None and agent._actions:
            agent.confirm_after_ms = self.confirm_after_ms
            if self._do(agent):
                return RESET
        if self.defects is not None:
            self.defects._leaked = []  # leak_heap: not modelled in-process
            try:
                self.defects.check(_Shell(node), now_ms)
            except DefectCrash as e:
                self.crash = str(e)
                return CRASH
        return None

    def _do(self, agent):
        reset = False
        acts = agent.take_actions()
        while acts:
            kind, arg = acts.pop(0)
            if kind == U.ACT_BEGIN:
                self.stage = bytearray(agent.size)
            elif kind == U.ACT_WRITE:
                off = arg[0] * agent.chunk_size
                self.stage[off:off + len(arg[1])] = bytes(arg[1])
            elif kind == U.ACT_PERSIST:
                self.record = bytes(arg)
            elif kind == U.ACT_VERIFY:
                reason = self._verify(agent)
                if reason:
                    self.notes.append(self.last_error)
                agent.verified(reason)
            elif kind == U.ACT_INSTALL:
                if self.unpacked is not None and self._ok(self.unpacked):
                    self.pointer = {"slot": self.unpacked, "state": "trial", "prev": self.slot}
                    self.notes.append("update: installing %d.%d, trial boot" % agent.version)
                    reset = True
                else:
                    agent.verified(U.R_TRUNCATED)
            elif kind == U.ACT_CONFIRM:
                p = dict(self.pointer or {"prev": None})
                p.update(slot=self.slot, state="confirmed")
                self.pointer = p
                self.notes.append("update: %d.%d confirmed" % agent.version)
            elif kind == U.ACT_ROLLBACK:
                prev = self.previous()
                if prev is None:
                    agent._refuse(U.R_NO_PREVIOUS)
                else:
                    self.pointer = {"slot": prev, "state": "confirmed", "prev": self.slot}
                    self.notes.append("update: rolling back")
                    reset = True
            acts += agent.take_actions()
        return reset

    def _refuse(self, reason, text):
        self.last_error = "update: %s: %s" % (U.REASON_NAMES[reason], text)
        return reason

    def _verify(self, agent):
        """The staged image against the agent's offer and its manifest; into
        the free slot if good. U.R_NONE, or the refusal."""
        blob = bytes(self.stage)
        if len(blob) != agent.size:
            return self._refuse(U.R_TRUNCATED, "%d bytes staged, the offer says %d" % (len(blob), agent.size))
        if hashlib.sha256(blob).digest() != bytes(agent.digest):
            return self._refuse(U.R_DIGEST, "image sha256 is not the offer's")
        try:
            m = flim.read(blob, self.key, name="node %d's staged image" % self.node_id)
        except flim.ImageError as e:
            text = str(e)
            for word, reason in _REASONS:
                if word in text:
                    return self._refuse(reason, text)
            return self._refuse(U.R_TRUNCATED, text)
        if tuple(m["version"]) != tuple(agent.version):
            return self._refuse(U.R_OFFER, "manifest version %s is not the offer's" % (m["version"],))
        target = [s for s in SLOTS if s != self.slot and s != (self.pointer or {}).get("slot")]
        slot = target[0] if target else SLOTS[0]
        self.manifests.pop(slot, None)  # its `ok` goes first
        m.pop("files", None)
        self.manifests[slot] = m
        self.unpacked = slot
        return U.R_NONE


# ---- what a poll said, for the run that polls it ------------------------------


def poll_events(link, boots):
    """What an in-process node's update work said at its last poll (a
    SimLink with updates; `boots`: its boot count before that poll), as node
    events [(event, detail)]: its notes, a restart into another image, a
    crash of a test build; and True when the build has just crashed (the run
    restarts it after WATCHDOG_MS with watchdog_reset, as a board's watchdog
    would). The --sim run (ground/run.py) and the lean shards
    (ground/shard_rollout.py) both use it."""
    u, nid = link.updates, link.node_id
    out = [("update", "node %d: %s" % (nid, text)) for text in u.notes]
    u.notes = []
    if link.boots != boots:
        out.append(("rebooted", "node %d: runs %d.%d (%s)" % ((nid,) + u.version + (u.boot_state,))))
    crashed = link.crashed is not None and not link.up and not getattr(link, "crash_noted", False)
    if crashed:
        link.crash_noted = True
        out.append(("crashed", "node %d: %s" % (nid, link.crashed)))
    return out, crashed


def watchdog_reset(link):
    """The watchdog's restart of a crashed in-process node: its node event
    (event, detail), or None when a fault brought it back meanwhile."""
    link.crash_noted = False
    if link.up or link.crashed is None:
        return None
    link.restart()
    return "rebooted", "node %d: watchdog reset; runs %d.%d (%s)" % ((link.node_id,) + link.updates.version
                                                                     + (link.updates.boot_state,))
