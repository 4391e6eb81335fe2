# A node's configuration: plain data, validated once here at the edge.
#
# Times are mission milliseconds. The election timeout T is the unit the
# failover benchmark reports in; the other timers derive from it unless given.
# `market` (a MarketConfig) adds the regional market tier; without it a node
# is exactly the Tier-1 node it always was.

from array import array

_REGION_CLUSTERS = 0xE00  # a region's electors share cluster number 0xE00 | region

# Which protocol versions a firmware speaks: (from firmware major, oldest,
# newest), newest firmware first. The one place it is said: a board (its
# Config is built from version.json), an in-process node and the ground's
# router all read it from here. A node sends at its newest and refuses frames
# above it; the ground down-converts for it (ground/downconvert.py). The
# newest here is at most wire.VERSION (tests/core/test_node.py checks).
PROTOCOLS = (
    (4, 1, 4),  # 4.x: BID carries the bidder's hw_gen, AWARD the lease's end (mission s)
    (3, 1, 3),  # 3.x: TELEMETRY carries u32 refusal counters and the heap
    (2, 1, 2),  # 2.x: HEARTBEAT carries `alive`
    (0, 1, 1),
)


def protocols(fw_version):
    """(proto_min, proto_max) of a firmware version (major, minor)."""
    major = fw_version[0]
    for first, lo, hi in PROTOCOLS:
        if major >= first:
            return lo, hi
    raise ValueError("config: firmware major %d speaks no protocol" % major)


class Config:
    # Replication (node/join.py): (spares first, count, max_members,
    # min_members, split_cluster, parent), or None (the class default: a
    # node of a fleet that never replicates carries no instance attribute).
    replication = None

    def __init__(
        self,
        cluster=1,
        members=(),
        election_timeout_ms=1000,
        heartbeat_ms=None,
        telemetry_ms=None,
        state_ms=None,
        suspect_ms=None,
        dead_ms=None,
        hw_gen=1,
        fw_version=(1, 0),
        lineage=0,
        auth_key=None,
        require_auth=False,
        market=None,
        age_slots=0,
        spares=(0, 0),
        max_members=20,
        min_members=5,
        split_cluster=0,
        parent=0,
    ):
        if not members:
            raise ValueError("config: members must list the cluster's node ids")
        if election_timeout_ms < 4:
            raise ValueError("config: election_timeout_ms must be >= 4")
        self.cluster = cluster
        self.members = tuple(sorted(members))
        t = election_timeout_ms
        self.election_timeout_ms = t
        self.heartbeat_ms = heartbeat_ms or t // 4
        self.telemetry_ms = telemetry_ms or t
        self.state_ms = state_ms or t
        self.suspect_ms = suspect_ms or 3 * self.heartbeat_ms
        self.dead_ms = dead_ms or 2 * t
        # The coordinator steps down when it has not heard a majority for this
        # long: 3 heartbeat intervals, so one lost heartbeat is not a reason,
        # yet under T so it yields before the standby can win (no overlap).
        self.quorum_ms = 3 * t // 4
        # A voter refuses to help unseat a coordinator it heard this recently.
        self.sticky_ms = t // 2
        self.hw_gen = hw_gen
        self.fw_version = tuple(fw_version)
        self.proto_min, self.proto_max = protocols(self.fw_version)
        self.lineage = lineage
        self.auth_key = auth_key
        self.require_auth = require_auth
        if self.heartbeat_ms * 2 > t:
            raise ValueError("config: heartbeat_ms must be at most half the election timeout")
        if age_slots < 0:
            raise ValueError("config: age_slots must be >= 0")
        self.market = market
        self.age_slots = age_slots  # the node's age in market slots: its degradation
        # Replication (node/join.py, docs/PROTOCOL.md "Joining and splitting"):
        # spares = (first id, count), the ids reserved for this cluster's
        # daughters, fixed at boot (they are sources from boot: a JOIN is
        # never refused for want of a replay slot); a cluster of more than
        # max_members splits in two, cluster split_cluster taking the upper
        # half (0: it may not split: a join past max_members is refused),
        # never leaving a side under min_members; parent: a daughter's
        # parent (it JOINs at boot), 0 for a node the fleet began with.
        if spares[1] or parent or split_cluster or max_members != 20 or min_members != 5:
            from node.join import settings  # checked there: a fleet that never replicates never loads it

            self.replication = settings(self, spares, max_members, min_members, split_cluster, parent)


class MarketConfig:
    """The regional market tier, shared by every node of one region.

    roster: the region's node ids; gens: their hardware generations (bytes,
    same order), which the coordinator checks bids against; electors: the
    nodes that elect the regional coordinator among themselves (a second-level
    cluster, docs/MARKET.md); units: resources per class (catalog.py). Times
    in mission ms: a slot is one auction cycle (4-8 h in the design); bids
    close lead_ms before the slot they sell begins.
    """

    def __init__(
        self,
        roster,
        electors,
        units,
        gens=None,
        region=1,
        slot_ms=6 * 3600 * 1000,
        lead_ms=None,
        horizon_slots=128,
        window_slots=120,
        steps_per_slot=12,
        cutoff_ms=None,
        autonomy_after_ms=None,
        region_timeout_ms=1000,
        ack_timeout_ms=None,
        telemetry_ms=None,
        max_bids=None,
        leases_per_node=None,
        max_span=8,
        stale_rounds=2,
        auditors=(),
        cluster_of=None,
        clusters=None,
        quarantine_cap_permille=340,
        probation_ms=0,
        defect_lineage=-1,
        defect_kind=0,
    ):
        ascending = True
        prev = 0
        for n in roster:  # checked before array("H") would truncate on MicroPython
            if not 1 <= n <= 0xEFFF:
                raise ValueError("market: roster must list node ids in 1..0xEFFF")
            if n <= prev:
                ascending = False
            prev = n
        # A sorted roster (the usual case, and a board's) is copied straight
        # into the array: no list of a thousand ints at boot.
        ids = array("H", roster if ascending else sorted(roster))
        if not ids:
            raise ValueError("market: roster must list node ids in 1..0xEFFF")
        for i in range(1, len(ids)):
            if ids[i] == ids[i - 1]:
                raise ValueError("market: node %d twice in the roster" % ids[i])
        self.roster = ids
        if gens is not None and len(gens) != len(ids):
            raise ValueError("market: gens must give one generation per roster node")
        self.gens = bytes(gens) if gens is not None else None
        self.electors = tuple(sorted(electors))
        if not self.electors:
            raise ValueError("market: at least one elector")
        for e in self.electors:
            if self.index(e) < 0:
                raise ValueError("market: elector %d is not in the roster" % e)
        if len(units) != 8 or min(units) < 0 or sum(units) > 8192:  # node/ledger.py MAX_RESOURCES
            raise ValueError("market: units must give 8 resource counts, at most 8192 in all")
        self.units = tuple(units)
        if not 0 <= region <= 0x1FE:
            raise ValueError("market: region must be in 0..0x1FE")
        self.region = region
        self.region_cluster = _REGION_CLUSTERS | region
        if steps_per_slot < 1 or slot_ms % steps_per_slot:
            raise ValueError("market: slot_ms must be a multiple of steps_per_slot")
        self.slot_ms = slot_ms
        self.steps_per_slot = steps_per_slot
        self.lead_ms = lead_ms if lead_ms is not None else slot_ms // 8
        if not 0 < self.lead_ms < slot_ms:
            raise ValueError("market: lead_ms must be inside a slot")
        if horizon_slots % 8 or not 8 <= horizon_slots <= 1024:
            raise ValueError("market: horizon_slots must be a multiple of 8 in 8..1024")
        if not 1 <= window_slots <= horizon_slots - 8:
            raise ValueError("market: window_slots must leave 8 slots of the horizon")
        self.horizon_slots = horizon_slots
        self.window_slots = window_slots
        self.cutoff_ms = cutoff_ms if cutoff_ms is not None else 2 * slot_ms + self.lead_ms
        self.autonomy_after_ms = autonomy_after_ms if autonomy_after_ms is not None else 4 * slot_ms
        if self.autonomy_after_ms < self.cutoff_ms:
            raise ValueError("market: autonomy_after_ms must be >= cutoff_ms")
        self.region_timeout_ms = region_timeout_ms
        self.ack_timeout_ms = ack_timeout_ms if ack_timeout_ms is not None else self.lead_ms // 4
        self.telemetry_ms = telemetry_ms if telemetry_ms is not None else slot_ms // 4
        n = len(ids)
        # The market's capacity (docs/MARKET.md "Capacity"): the bid book's
        # rows (a round's bids) and the ledger's record slots per node. Up to
        # 700 nodes (every region the scenario library has), a row per node
        # and 16 (at least 64) and 6 records a node (a spot lease beside
        # pre-allocations); above 700, the compact market a board can hold as
        # the region's elector (docs/HEAP.md): 256 rows and 1 record a node.
        # A bid beyond the book is refused (FULL) and bid again next round;
        # an award its holder's records cannot hold is not made (the ledger's
        # no_room counts it). Literals, not names: config.py is on every board.
        compact = n > 700
        self.max_bids = max_bids if max_bids is not None else 256 if compact else max(64, n + 16)
        self.leases_per_node = leases_per_node if leases_per_node is not None else 1 if compact else 6
        if not 0 < self.max_bids <= 4095 or not 0 < self.leases_per_node <= 64:
            raise ValueError("market: max_bids in 1..4095, leases_per_node in 1..64")
        self.max_span = max_span
        self.stale_rounds = stale_rounds
        # Fault containment (docs/CONTAINMENT.md): auditors (electors: they
        # audit from their replica ledger), each roster node's cluster (None:
        # the region is one cluster for the cap), a planted clearing defect
        # in the nodes of defect_lineage (-1: none; containment runs only),
        # of defect_kind (0: the clearing's; 1: a coordinator that drops a bid).
        self.auditors = tuple(sorted(auditors))
        if [a for a in self.auditors if a not in self.electors] or not 0 < quarantine_cap_permille <= 1000 or (
                cluster_of is not None and len(cluster_of) != len(ids)):
            raise ValueError("market: auditors must be electors, quarantine_cap_permille in 1..1000, cluster_of"
                             " one cluster id per roster node")
        self.cluster_of = cluster_of
        # The region's cluster numbers (a fleet of several regions): the
        # regional coordinator announces a round (PRICES complete, void,
        # resync) to each of them, one frame a cluster, instead of to the
        # whole fleet (None: one ADDR_BROADCAST, a fleet of one region). The
        # ground's scenario loader checked the numbers (ground/regions.py).
        self.clusters = clusters
        self.quarantine_cap_permille = quarantine_cap_permille
        self.probation_ms = probation_ms
        self.defect_lineage = defect_lineage
        self.defect_kind = defect_kind  # 0: its clearing forgets the last bid; 1: its coordinator drops a bid (audit.py)

    def index(self, node):
        """Roster index of a node id, or -1 (binary search: roster is sorted)."""
        r = self.roster
        lo, hi = 0, len(r)
        while lo < hi:
            mid = (lo + hi) // 2
            if r[mid] < node:
                lo = mid + 1
            else:
                hi = mid
        return lo if lo < len(r) and r[lo] == node else -1

    def gen_of(self, index):
        return self.gens[index] if self.gens is not None else 0
