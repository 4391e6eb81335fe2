# Tier 3: the ground's intent and constraints, as one node holds them.
#
# The ground never commands a node. It broadcasts INTENT to the fleet (or a
# cluster): a fleet growth target (the share of output that goes to
# replication), a phase, the share of each need to pre-allocate for autonomy
# windows, which discretionary actions are pre-approved for conservative
# mode, and a manoeuvre campaign, a window of mission time in which no
# logistics slot may be used. Nodes shape their bids around it; the regional
# coordinator refuses bids that ignore it. An INTENT addressed to a single
# node is refused (refusal.UNICAST): there is no per-node command channel.
# Intents are numbered; only a higher number replaces the one held, so a
# replayed or reordered older intent changes nothing.

from micropython import const

from node import refusal

PHASE_GROWTH = const(0)  # replicate: growth_permille of output builds daughters
PHASE_CONSOLIDATE = const(1)  # no new daughters: all output to production
N_PHASES = const(2)
PHASE_NAMES = ("growth", "consolidate")

ACT_LAUNCH = const(1)  # launching a daughter node (discretionary)
ACT_ALL = const(1)

MAX_CAMPAIGN_S = const(60 * 86400)  # a campaign longer than 60 days is absurd
MIN_COVER = const(500)  # pre-allocating under half of a need is no autonomy plan


class Intent:
    def __init__(self):
        self.seq = 0
        self.phase = PHASE_GROWTH
        self.growth_permille = 300  # the source's replication allocation
        self.cover_permille = 1000
        self.preapproved = 0
        self.campaign_start_s = 0
        self.campaign_end_s = 0  # empty campaign: start == end

    def check(self, seq, campaign_start_s, campaign_end_s, growth_permille, cover_permille, phase, preapproved):
        """refusal.* reason, or 0 if this intent may replace the one held."""
        if seq <= self.seq:
            return refusal.REPLAY
        if phase >= N_PHASES or preapproved & ~ACT_ALL or growth_permille > 1000:
            return refusal.SHAPE
        if not MIN_COVER <= cover_permille <= 1000:
            return refusal.SHAPE
        if campaign_end_s < campaign_start_s or campaign_end_s - campaign_start_s > MAX_CAMPAIGN_S:
            return refusal.HORIZON
        return 0

    def apply(self, seq, campaign_start_s, campaign_end_s, growth_permille, cover_permille, phase, preapproved):
        why = self.check(seq, campaign_start_s, campaign_end_s, growth_permille, cover_permille, phase, preapproved)
        if why:
            return why
        self.seq = seq
        self.campaign_start_s = campaign_start_s
        self.campaign_end_s = campaign_end_s
        self.growth_permille = growth_permille
        self.cover_permille = cover_permille
        self.phase = phase
        self.preapproved = preapproved
        return 0

    def replication_permille(self):
        return self.growth_permille if self.phase == PHASE_GROWTH else 0

    def blocks(self, start_s, end_s):
        """True if [start_s, end_s) overlaps the manoeuvre campaign."""
        return self.campaign_start_s < end_s and start_s < self.campaign_end_s

    def blocks_slots(self, first, span, period, count, slot_ms):
        """True if any occurrence of a lease shape overlaps the campaign."""
        if self.campaign_end_s <= self.campaign_start_s:
            return False
        for k in range(count):
            s = first + k * period
            if self.blocks(s * slot_ms // 1000, (s + span) * slot_ms // 1000):
                return True
        return False
