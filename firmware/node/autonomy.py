# Autonomy windows: a node's market mode, every transition in one table.
#
#   NORMAL        in contact with the regional coordinator: bids, awards,
#                 prices as they come.
#   CUTOFF        nothing heard for cutoff_ms: keeps acting on its last-known
#                 prices and the leases it holds, keeps bidding (the bids may
#                 be lost), never assumes a lease it was not awarded.
#   CONSERVATIVE  nothing heard for autonomy_after_ms: the autonomy window.
#                 Uses only the leases it holds (pre-allocated for the window),
#                 runs only pre-approved actions, defers discretionary ones
#                 (bids, daughter launches unless the intent pre-approves them).
#   RECONCILING   heard the coordinator again after a window: has reported what
#                 it consumed and released what it will not use, and waits for
#                 the acknowledgement before bidding again, so nothing it
#                 does while reconnecting can conflict with the ledger.
# A short outage (CUTOFF) needs no reconciling: the node consumed nothing but
# its leases and deferred nothing.

from micropython import const

NORMAL = const(0)
CUTOFF = const(1)
CONSERVATIVE = const(2)
RECONCILING = const(3)
MODE_NAMES = ("normal", "cutoff", "conservative", "reconciling")

EV_CONTACT = const(0)  # a valid frame from the current regional coordinator
EV_SILENCE = const(1)  # nothing from it for cutoff_ms
EV_WINDOW = const(2)  # nothing from it for autonomy_after_ms
EV_RECONCILED = const(3)  # the coordinator acknowledged our reconcile report
EVENT_NAMES = ("contact", "silence", "window", "reconciled")

# (mode, event) -> next mode. Anything missing is a bug in the caller.
_TABLE = {
    (NORMAL, EV_CONTACT): NORMAL,
    (NORMAL, EV_SILENCE): CUTOFF,
    (CUTOFF, EV_CONTACT): NORMAL,
    (CUTOFF, EV_WINDOW): CONSERVATIVE,
    (CONSERVATIVE, EV_CONTACT): RECONCILING,
    (RECONCILING, EV_CONTACT): RECONCILING,  # still waiting for the ack
    (RECONCILING, EV_RECONCILED): NORMAL,
    (RECONCILING, EV_SILENCE): CONSERVATIVE,  # lost again before the report got through
    # (NORMAL, EV_RECONCILED) and the like are absent: an ack nobody waits
    # for is refused by the caller as refusal.UNEXPECTED, not a transition.
}


class AutonomyError(Exception):
    """Local bug: an event with no transition from the current mode."""


def next_mode(mode, event):
    try:
        return _TABLE[(mode, event)]
    except KeyError:
        raise AutonomyError("no transition from %s on %s" % (MODE_NAMES[mode], EVENT_NAMES[event]))


class Autonomy:
    def __init__(self, cutoff_ms, autonomy_after_ms, now_ms=0):
        self.cutoff_ms = cutoff_ms
        self.after_ms = autonomy_after_ms
        self.mode = NORMAL
        self.contact_ms = now_ms  # last contact; boot counts as contact
        self.since_ms = now_ms  # when the current mode began
        self.mode_ms = [0, 0, 0, 0]  # time spent in each mode, up to since_ms
        self.windows = 0  # autonomy windows entered
        self.changes = 0

    def _go(self, event, now_ms):
        mode = next_mode(self.mode, event)
        if mode != self.mode:
            self.mode_ms[self.mode] += now_ms - self.since_ms
            self.since_ms = now_ms
            self.mode = mode
            self.changes += 1
            if mode == CONSERVATIVE:
                self.windows += 1
        return mode

    def contact(self, now_ms):
        self.contact_ms = now_ms
        return self._go(EV_CONTACT, now_ms)

    def reconciled(self, now_ms):
        return self._go(EV_RECONCILED, now_ms)

    def tick(self, now_ms):
        """Fire the silence events that time alone causes; returns the mode."""
        quiet = now_ms - self.contact_ms
        if self.mode in (NORMAL, RECONCILING) and quiet >= self.cutoff_ms:
            self._go(EV_SILENCE, now_ms)
        if self.mode == CUTOFF and quiet >= self.after_ms:
            self._go(EV_WINDOW, now_ms)
        return self.mode

    def next_deadline_ms(self):
        if self.mode in (NORMAL, RECONCILING):
            return self.contact_ms + self.cutoff_ms
        if self.mode == CUTOFF:
            return self.contact_ms + self.after_ms
        return None

    def may_bid(self):
        """Bidding is discretionary: deferred in a window and until reconciled."""
        return self.mode == NORMAL or self.mode == CUTOFF

    def may(self, action, intent):
        """May a discretionary action (strategy.ACT_*) run now? Outside a
        window, yes; inside, only if the ground's intent pre-approved it."""
        if self.mode == NORMAL or self.mode == CUTOFF:
            return True
        return bool(intent.preapproved & action)

    def time_in(self, mode, now_ms):
        t = self.mode_ms[mode]
        if mode == self.mode:
            t += now_ms - self.since_ms
        return t

