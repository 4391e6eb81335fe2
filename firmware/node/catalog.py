# Resource classes and hardware generations: the static facts that both the
# market (what can be bid for, and by whom) and the production model (what a
# node needs, how fast it makes it) read. Integers only, no tables that grow.
#
# Eight resource classes, one bit each in a bid's class mask:
#   0..3  feedstock access at a shared body, by feedstock type (one berth for
#         one slot): metal-rich, silicate, volatile, carbonaceous
#   4     a logistics slot: one material-transfer window (LOGISTICS_SPAN slots)
#   5, 6  specialised components made in situ (a lot of parts per slot)
#   7     specialised components shipped from Earth (6-10 % of all parts)
# A region's resources are numbered by class: class c owns the ids
# [start(c), start(c) + units[c]) of MarketConfig.units, so a resource's class
# is arithmetic, not a per-resource table, and "unknown resource" is id >= R.
#
# Hardware generations differ in which feedstock they can process, which
# components they make themselves, their production rate and how fast they
# degrade (GENS below). Generation 0 is "unknown": it may bid for nothing.

from micropython import const

N_CLASSES = const(8)
FEED_0 = const(0)
FEED_3 = const(3)
LOGISTICS = const(4)
PART_A = const(5)
PART_B = const(6)
PART_EARTH = const(7)
FEED_MASK = const(0x0F)
LOGISTICS_MASK = const(0x10)
PART_MASK = const(0xE0)

KIND_FEED = const(0)
KIND_LOGISTICS = const(1)
KIND_PART = const(2)

LOGISTICS_SPAN = const(4)  # slots per logistics window: 24 h at 6 h slots (goal 24-48 h)

# hw_gen -> (feedstock mask, components made (class mask), rate in milli-units
# per slot when new, decay in permille of rate per 1000 slots of age, floor in
# permille: the rate never decays below it). Gen 1 is the oldest design.
GENS = (
    (0, 0, 0, 0, 0),
    (0x03, 1 << PART_A, 6000, 120, 500),
    (0x06, 1 << PART_B, 8000, 80, 600),
    (0x0F, (1 << PART_A) | (1 << PART_B), 10000, 40, 700),
)
MAX_GEN = const(3)


def kind(cls):
    if cls <= FEED_3:
        return KIND_FEED
    if cls == LOGISTICS:
        return KIND_LOGISTICS
    return KIND_PART


def kind_of_mask(mask):
    """The one kind every class in `mask` belongs to, or -1 (empty, mixed or
    bits beyond the eight classes)."""
    if mask & FEED_MASK == mask and mask:
        return KIND_FEED
    if mask == LOGISTICS_MASK:
        return KIND_LOGISTICS
    if mask & PART_MASK == mask and mask:
        return KIND_PART
    return -1


def gen_row(gen):
    return GENS[gen] if 0 < gen <= MAX_GEN else GENS[0]


def rate_mu(gen, age_slots):
    """Milli-units per slot of a generation at an age: the degradation curve."""
    row = gen_row(gen)
    keep = 1000 - row[3] * age_slots // 1000
    if keep < row[4]:
        keep = row[4]
    return row[2] * keep // 1000


def may_bid(gen, mask):
    """A bid's class mask reflects real capability: one kind only, and
    feedstock only of types this generation can process."""
    k = kind_of_mask(mask)
    if k < 0 or gen_row(gen)[2] == 0:
        return False
    if k == KIND_FEED:
        return mask & ~gen_row(gen)[0] == 0
    return True


def starts(units):
    """First resource id of each class, and R, from the units per class."""
    out = []
    s = 0
    for n in units:
        out.append(s)
        s += n
    out.append(s)
    return out


def class_of(first_ids, res):
    """Class of resource `res` (first_ids from starts()), or -1 if unknown."""
    if res < 0 or res >= first_ids[N_CLASSES]:
        return -1
    c = N_CLASSES - 1
    while first_ids[c] > res:
        c -= 1
    return c
