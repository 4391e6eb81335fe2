# Why market input was refused: one counter per reason, on every node.
#
# Bad input is expected input (STYLE.md). A frame that does not decode is a
# wire error (Node.errors); a frame that decodes but must not change anything
# (a bid from a stranger, a replayed release, a price of 0, an award from a
# deposed coordinator, a ground "intent" aimed at one node) is refused here,
# counted by reason, and never reaches the ledger or the node's leases.

from micropython import const

MALFORMED = const(1)  # payload of the wrong size for its type
UNKNOWN_NODE = const(2)  # sender not in the region's roster (or not an elector where one is needed)
REPLAY = const(3)  # sequence number not above the last one accepted from that node
ROUND = const(4)  # bid for a round long closed, or one not open yet
CLASS = const(5)  # class mask empty, mixed kinds, beyond the bidder's hardware, or a hw_gen the roster contradicts
RESOURCE = const(6)  # resource id not in the catalogue, or not of the classes asked for
PRICE = const(7)  # price 0 or above auction.MAX_PRICE
SHAPE = const(8)  # span, period or count that make no lease; an award whose end_s is not the holder's
HORIZON = const(9)  # slots already past or beyond the ledger's horizon
BLOCKED = const(10)  # logistics inside a manoeuvre campaign the ground declared
FULL = const(11)  # the bid book or the ledger is full
NOT_COORDINATOR = const(12)  # market request sent to a node that is not the regional coordinator
NOT_HOLDER = const(13)  # release of slots the sender does not hold
STALE_TERM = const(14)  # from a regional term older than one already seen
UNICAST = const(15)  # ground intent addressed to one node: intent is never a per-node command
REGION = const(16)  # another region's traffic
UNEXPECTED = const(17)  # an ack, replica or reconcile answer nobody asked for
FORGED = const(18)  # an accusation from a node that is not one of the region's auditors
EVIDENCE = const(19)  # an accusation whose fields show no difference for the reason it gives
QUARANTINE_CAP = const(20)  # a quarantine that would exceed the cluster's cap or take its last standby
QUARANTINED = const(21)  # a bid or claim from a quarantined node
SEVERED = const(22)  # a frame naming a region the ground severed (node/severing.py)
N_REASONS = const(23)

NAMES = (
    "",
    "malformed",
    "unknown_node",
    "replay",
    "round",
    "class",
    "resource",
    "price",
    "shape",
    "horizon",
    "blocked",
    "full",
    "not_coordinator",
    "not_holder",
    "stale_term",
    "unicast",
    "region",
    "unexpected",
    "forged",
    "evidence",
    "quarantine_cap",
    "quarantined",
    "severed",
)
