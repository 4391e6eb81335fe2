# Who holds which (resource, slot), judged from the frames sent, as the
# history checker does (ground/history.py), not from any ledger: an AWARD
# sent to its holder (not a replica, copy or claim) is a lease from then on,
# lost on the way or not; a RELEASE by its holder frees the occurrences it
# names from `from_slot`. A second holder of a held (resource, slot) is a
# double lease, counted on the tally (faultsched.Result). One byte per
# (resource, slot): holder ids fit a byte in the core tests' regions, and a
# 192K MicroPython heap holds it. `sent` is Federation.on_sent, `frame`
# FedSim.on_frame. With `boots` (node -> mission ms of its last reboot,
# kept by the caller), a double lease whose first holder rebooted after its
# award (and so forgot the lease: leases live in RAM) is also counted in
# tally.forgotten: still a double lease, but one no two nodes can act on.
from array import array

from node import msgs, wire

_NOT_LEASE = msgs.AWARD_REPLICA | msgs.AWARD_SYNC | msgs.AWARD_CLAIM


class Tally:
    """What Leases counts (faultsched.Result has the same fields and more)."""

    double = forgotten = resyncs = voids = completes = 0
    first_double = None


class Leases:
    def __init__(self, tally, n_res, boots=None):
        self.r = tally
        self.n_res = n_res
        self.held = bytearray()  # [slot * n_res + res] -> holder, 0: free
        self.boots = boots
        self.since = array("I") if boots is not None else None  # [slot * n_res + res] -> when it was awarded

    def sent(self, t, src, dst, line):
        f = wire.decode(line)
        self.frame(t, src, dst, f.type, f.payload)

    def _slots(self, first, span, period, count, from_slot=0):
        p = period if count > 1 else span
        for k in range(count):
            s0 = first + k * p
            if s0 >= from_slot:
                for s in range(s0, s0 + span):
                    yield s

    def frame(self, t, src, dst, type, payload):
        if type == msgs.AWARD:
            term, rnd, seq, first, res, holder, price, span, period, count, flags = msgs.unpack(msgs.AWARD, payload)
            if flags & _NOT_LEASE or dst != holder:
                return
            for s in self._slots(first, span, period, count):
                i = s * self.n_res + res
                if i >= len(self.held):
                    grow = i + 64 - len(self.held)
                    self.held.extend(bytes(grow))
                    if self.since is not None:
                        self.since.extend(array("I", bytes(4 * grow)))
                other = self.held[i]
                if other and other != holder:
                    self.r.double += 1
                    if self.r.first_double is None:
                        self.r.first_double = (t, res, s, holder, other)
                    if self.boots is not None and self.boots.get(other, -1) > self.since[i]:
                        self.r.forgotten += 1
                self.held[i] = holder
                if self.since is not None:
                    self.since[i] = t
        elif type == msgs.RELEASE:
            seq, first, from_slot, res, holder, span, period, count = msgs.unpack(msgs.RELEASE, payload)
            if holder != src:
                return
            for s in self._slots(first, span, period, count, from_slot):
                i = s * self.n_res + res
                if i < len(self.held) and self.held[i] == holder:
                    self.held[i] = 0
        elif type == msgs.PRICES and dst == wire.ADDR_BROADCAST:
            st = msgs.unpack(msgs.PRICES, payload)[6]
            if st == msgs.ROUND_RESYNC:
                self.r.resyncs += 1
            elif st == msgs.ROUND_VOID:
                self.r.voids += 1
            elif st == msgs.ROUND_COMPLETE:
                self.r.completes += 1


def watched_region(seed, units, slot_ms):
    """A FedSim region of 6 nodes and 3 electors (500 ms light delay, 64-slot
    horizon) whose every frame the lease watch judges: (sim, tally). The
    region the takeover and fault tests lose coordinators in."""
    from fedsim import FedSim

    sim = FedSim(6, units, seed=seed, slot_ms=slot_ms, steps_per_slot=12, lead_ms=slot_ms // 8, delay_ms=500,
                 horizon_slots=64, window_slots=40, electors=(1, 2, 3))
    tally = Tally()
    sim.on_frame = Leases(tally, sum(units)).frame
    return sim, tally
