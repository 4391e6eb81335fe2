# The production model of one node: stocks in, output out, pauses counted.
#
# A node makes output at its generation's rate (catalog.rate_mu, degrading
# with age) and needs three things, each a stock that production draws on and
# a lease refills:
#   feedstock  reserve of feed; a feedstock lease delivers FEED_YIELD_SLOTS
#              slots' worth at the start of its slot (yield varies +-20 %)
#   logistics  room in the output buffer; a logistics lease drains the buffer
#              in each slot it covers
#   parts      one stock per component class the node does not make itself;
#              a component lease delivers one lot at the start of its slot
# Of each unit produced, `growth_permille` (30 % by default, set by the ground's
# intent) goes to replication (building daughter nodes, no logistics needed);
# the rest goes to the output buffer.
#
# Time advances in steps of slot_ms / steps_per_slot. A step runs only if
# every need is met; otherwise the whole step pauses and its time is charged
# to the first missing need (feed, then parts, then logistics). `ideal` is
# what the node would have made with no pause at all (the uncoordinated
# ideal); `ideal - produced` is the production lost, which the harness calls
# coordination overhead. Everything is in integers (milli-units, ms), so the
# same steps give the same counters under CPython and MicroPython.

from micropython import const

from node import catalog as cat

# Stocks in slots of consumption at the node's rate.
FEED_YIELD_SLOTS = const(4)  # one feedstock lease feeds 4 slots
FEED_CAP_SLOTS = const(8)
FEED_INIT_SLOTS = const(4)
BUF_CAP_SLOTS = const(16)  # output buffer: 16 slots of output between transfers
# Parts: milli-parts per milli-unit of output, in permille, per component
# class (A, B, Earth); a lot is what one component lease delivers.
PART_PERMILLE = (1000, 1000, 167)  # Earth parts: 1 in 6 units, ~8 % of all parts
LOT_MP = (48000, 48000, 8000)
LOT_CAP = const(2)  # stock holds at most 2 lots
DAUGHTER_MU = const(100000)  # a daughter node takes 100 units of replication output

# Pause reasons (index into paused_ms), in the order a step checks them.
P_NONE = const(0)
P_FEED = const(1)
P_PARTS = const(2)
P_LOGISTICS = const(3)
REASON_NAMES = ("", "feed", "parts", "logistics")


class Production:
    def __init__(self, gen, age_slots, steps_per_slot, slot_ms):
        row = cat.gen_row(gen)
        self.gen = gen
        self.feed_mask = row[0]
        self.make_mask = row[1]
        self.age0 = age_slots
        self.steps = steps_per_slot
        self.step_ms = slot_ms // steps_per_slot
        self.rate = cat.rate_mu(gen, age_slots)
        self.feed = FEED_INIT_SLOTS * self.rate
        self.buf = 0
        self.parts = [LOT_MP[0], LOT_MP[1], LOT_MP[2]]
        self.repl = 0  # replication output not yet turned into a daughter
        self.produced = 0  # milli-units
        self.ideal = 0
        self.paused_ms = [0, 0, 0, 0]  # by P_* reason
        self.reason = P_NONE  # why the last step paused
        self.wasted = 0  # deliveries that found the stock full (milli-units)

    def needs_mask(self):
        """Component classes this node must get from the market."""
        return cat.PART_MASK & ~self.make_mask

    def start_slot(self, slot):
        """A new slot began: the degradation curve moves on."""
        self.rate = cat.rate_mu(self.gen, self.age0 + slot)

    def use_per_slot(self, kind, part=0, growth_permille=300):
        """How much of a stock one slot of production draws."""
        if kind == cat.KIND_FEED:
            return self.rate
        if kind == cat.KIND_LOGISTICS:
            return self.rate * (1000 - growth_permille) // 1000
        return self.rate * PART_PERMILLE[part] // 1000

    def level(self, kind, part=0):
        """What is left of a stock (for logistics: room in the buffer)."""
        if kind == cat.KIND_FEED:
            return self.feed
        if kind == cat.KIND_LOGISTICS:
            return self.buf_cap() - self.buf
        return self.parts[part]

    def cap(self, kind, part=0):
        if kind == cat.KIND_FEED:
            return FEED_CAP_SLOTS * self.rate
        if kind == cat.KIND_LOGISTICS:
            return self.buf_cap()
        return LOT_CAP * LOT_MP[part]

    def buf_cap(self):
        return BUF_CAP_SLOTS * self.rate

    def delivery(self, kind, part=0):
        """Nominal amount one lease occurrence adds to a stock."""
        if kind == cat.KIND_FEED:
            return FEED_YIELD_SLOTS * self.rate
        if kind == cat.KIND_LOGISTICS:
            return self.buf_cap()
        return LOT_MP[part]

    def deliver(self, kind, amount, part=0):
        """A lease delivered `amount`; returns how much the stock absorbed."""
        if kind == cat.KIND_LOGISTICS:
            took = self.buf
            self.buf = 0
            return took
        room = self.cap(kind, part) - self.level(kind, part)
        took = amount if amount < room else room
        if took < 0:
            took = 0
        if kind == cat.KIND_FEED:
            self.feed += took
        else:
            self.parts[part] += took
        self.wasted += amount - took
        return took

    def step(self, k, growth_permille):
        """Run step k (0..steps-1) of the current slot. Returns P_* (0: ran)."""
        rate = self.rate
        u = rate * (k + 1) // self.steps - rate * k // self.steps
        self.ideal += u
        out = u * (1000 - growth_permille) // 1000
        need = self.needs_mask()
        reason = P_NONE
        if self.feed < u:
            reason = P_FEED
        else:
            for i in range(3):
                if need & (1 << (cat.PART_A + i)) and self.parts[i] < u * PART_PERMILLE[i] // 1000:
                    reason = P_PARTS
                    break
        if reason == P_NONE and self.buf + out > self.buf_cap():
            reason = P_LOGISTICS
        self.reason = reason
        if reason != P_NONE:
            self.paused_ms[reason] += self.step_ms
            return reason
        self.feed -= u
        for i in range(3):
            if need & (1 << (cat.PART_A + i)):
                self.parts[i] -= u * PART_PERMILLE[i] // 1000
        self.buf += out
        self.repl += u - out
        self.produced += u
        return P_NONE

    def daughter_ready(self):
        return self.repl >= DAUGHTER_MU

    def launch_daughter(self):
        """Turn replication output into one daughter node (a discretionary
        action: the caller decides whether it may)."""
        self.repl -= DAUGHTER_MU

    def lost(self):
        return self.ideal - self.produced

    def paused_total_ms(self):
        return self.paused_ms[1] + self.paused_ms[2] + self.paused_ms[3]
