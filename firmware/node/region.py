# A node's market tier: its trader, and for an elector its market and the
# seat it holds in the region's election. The host Node creates one when its
# config has a MarketConfig, hands it every market frame, polls it, and sends
# what it sends (one sequence counter, one auth counter for both tiers).
#
# Who is regional coordinator comes from `seat`, a second Node instance: the
# region's electors form a second-level cluster on the address
# cluster_addr(0xE00 | region) and run the Tier-1 election unchanged
# (pre-vote, sticky voters, persisted votes, a hot standby of another
# lineage). Its heartbeats carry each elector's cluster records digest, so the
# regional coordinator's records table is the region's cluster digests. Or,
# in-process at scale, `fixed` names the roles and no election runs.
#
# Frames to this node itself go through a local queue, so the coordinator's
# own trader bids, is awarded and hears prices exactly as any other node.

from micropython import const

from node import election as el
from node import msgs, refusal, wire
from node import msgs_tiers  # noqa: F401 (the layouts of its messages load with this code, not mid-run: docs/HEAP.md)
from node.trader import Trader

_ROLE_COORDINATOR = const(2)  # msgs.ROLE_COORDINATOR
_ROLE_STANDBY = const(3)
_IDLE = const(0)  # market.IDLE
_AUDIT_MISS = const(0x97)  # msgs_tiers.AUDIT_MISS
_BID_RECEIPT = const(0x98)  # msgs_tiers.BID_RECEIPT

# Only an elector loads the market, its recovery and its replicas (node/
# market.py, recovery.py, replica.py; audit.py where containment is
# configured): a trader's heap never holds them (docs/HEAP.md). They are
# imported where an elector's frame needs them (after the first time, a
# lookup in sys.modules).


def preload(config, node_id):
    """Import every module node `node_id`'s market tier will run, now. A
    board calls it before it builds the Node (runtime/start.py), so the
    code is laid down on a young heap in one go and the tables built after
    it find whole blocks: code loaded between tables shreds a 192K heap."""
    from node import durable, stocks, trader  # noqa: F401

    mcfg = config.market
    if mcfg.auditors:
        from node import bidcopy  # noqa: F401 (every trader copies its bids to the auditors)
    if node_id in mcfg.electors:
        from node import market, recovery, replica  # noqa: F401

        market.clearing(config.lineage)
        if mcfg.auditors or mcfg.defect_lineage == config.lineage:
            from node import audit  # noqa: F401


def _recovery():
    from node import recovery

    return recovery


def _replica():
    from node import replica

    return replica


class Region:
    def __init__(self, node_id, config, rng, send, now_ms=0):
        mcfg = config.market
        elector = node_id in mcfg.electors
        if elector:  # its code first, while the heap is whole (before the trader's tables)
            from node import market, replica  # noqa: F401
        self.id = node_id
        self.cfg = mcfg
        self._send = send
        self.proto = config.proto_max  # the version its market frames go out in (send)
        self.dst = wire.cluster_addr(mcfg.region_cluster)
        self.trader = Trader(node_id, config.hw_gen, config.age_slots, mcfg, rng, self.send, now_ms)
        self.trader.kin = (config.lineage, config.hw_gen, config.fw_version[0], config.fw_version[1])
        self.market = None  # an elector's Market
        if elector:
            self.market = market.Market(node_id, mcfg, self.trader.intent, self.send, config.lineage)
        self.seat = None  # a Node: this elector's seat in the regional election
        self.quarantine = None  # fault containment (node/audit.py, docs/CONTAINMENT.md): an elector's table
        self.auditor = None  # and an auditor's re-run
        if self.market is not None and mcfg.auditors:
            from node import audit  # only where containment is configured: a small heap keeps 9 KB

            audit.setup(self, config, now_ms)
        self.fixed = None  # or (coordinator, term, standby), with no election
        self.severed = ()  # regions the ground severed (node/severing.py)
        self._local = []
        self.refused = [0] * refusal.N_REASONS
        self.frames_in = 0
        self._next_tel_ms = now_ms

    # ---- frames ----------------------------------------------------------

    def send(self, dst, type, payload):
        # Built in the newest layout (what _drain reads); sent in the one
        # this node speaks (an older firmware line leaves BID's hw_gen out).
        if dst == self.id:
            self._local.append((dst, type, payload))
            return
        self._send(dst, type, payload if self.proto == wire.VERSION else msgs.to_version(type, payload, self.proto))
        if dst == wire.ADDR_BROADCAST:
            self._local.append((dst, type, payload))

    def attach(self, seat):
        """This elector's seat (a quarantined node neither runs nor gets votes)."""
        self.seat = seat
        if self.quarantine is not None:
            from node import audit

            audit.attach(self, seat)

    def receive(self, src, dst, type, payload, now_ms, version=1):
        """One market frame of protocol `version`, read in the newest layout
        (fields an older sender did not carry at their defaults); raises
        wire.ProtocolError if it does not parse."""
        fields = msgs.unpack_as(type, payload, version)
        self.frames_in += 1
        self._dispatch(src, dst, type, fields, now_ms)
        self._drain(now_ms)

    def _drain(self, now_ms):
        while self._local:
            dst, type, payload = self._local.pop(0)
            self._dispatch(self.id, dst, type, msgs.unpack(type, payload, wire.VERSION), now_ms)

    def _followed(self):
        """(coordinator, term) this elector takes replicas from."""
        if self.fixed is not None:
            return self.fixed[0], self.fixed[1]
        if self.seat is not None:
            return self.seat.coordinator, self.seat.term
        return msgs.NO_NODE, 0

    def _from_coordinator(self, src, term):
        c, t = self._followed()
        return c == src and t == term and src != self.id

    def _dispatch(self, src, dst, t, f, now_ms):
        market = self.market
        trader = self.trader
        if t == msgs.SEVER or self.severed:
            from node import severing

            if t == msgs.SEVER:
                severing.order(self, src, f)
                return
            if severing.refuses(self, t, f):
                return
        if t == msgs.INTENT:
            if src != wire.ADDR_GROUND:
                self.refused[refusal.UNKNOWN_NODE] += 1
            else:
                trader.on_intent(dst <= wire.MAX_NODE_ID, f, now_ms)
        elif t == msgs.AWARD:
            flags = f[10]
            if flags & msgs.AWARD_SYNC and market is not None and _recovery().fetching(market, src, f[0], f[1]):
                _recovery().on_copy(market, src, f, now_ms)  # the ledger we asked an elector for
            elif flags & (msgs.AWARD_REPLICA | msgs.AWARD_SYNC):
                if market is not None and self._from_coordinator(src, f[0]):
                    _replica().on_replica(market, src, f, now_ms)
                else:
                    self.refused[refusal.UNEXPECTED] += 1
            elif flags & msgs.AWARD_CLAIM:
                if market is not None:
                    market.on_claim(src, f, now_ms)
                else:
                    self.refused[refusal.NOT_COORDINATOR] += 1
            else:
                trader.on_award(src, f, now_ms)
        elif t == msgs.PRICES:
            st = f[6]
            if st == msgs.ROUND_PREPARE or st == msgs.ROUND_QUERY or st == msgs.ROUND_FETCH:
                if market is not None and self._from_coordinator(src, f[0]):
                    if st == msgs.ROUND_PREPARE:
                        _replica().on_prepare(market, src, f, now_ms)
                        if self.auditor is not None:
                            from node import audit

                            audit.on_prepare(self, src, f, now_ms)
                    elif st == msgs.ROUND_QUERY:
                        _recovery().on_query(market, src, f, now_ms)
                    else:
                        _recovery().on_fetch(market, src, f, now_ms)
                else:
                    self.refused[refusal.UNEXPECTED] += 1
            elif st == msgs.ROUND_SYNC:
                if market is not None and _recovery().fetching(market, src, f[0], f[1]):
                    _recovery().on_copy_end(market, src, f, now_ms)
                else:
                    self.refused[refusal.UNEXPECTED] += 1
            else:
                trader.on_prices(src, f, now_ms)
        elif t == msgs.RECONCILE_ACK:
            trader.on_reconcile_ack(src, f, now_ms)
        elif t == _BID_RECEIPT:
            if trader.held is None:
                self.refused[refusal.UNEXPECTED] += 1  # we hold no bid for a receipt (no auditors: bidcopy not loaded)
            else:
                from node import bidcopy

                bidcopy.on_receipt(trader, src, f)
        elif msgs.ACCUSE <= t <= msgs.BID_SEEN or t == _AUDIT_MISS:  # ACCUSE ... BID_SEEN, AUDIT_MISS
            if self.quarantine is None:
                self.refused[refusal.UNEXPECTED] += 1  # only an elector of a region with auditors judges
            else:
                from node import audit

                audit.on_frame(self, src, t, f, now_ms)
        elif market is None:
            self.refused[refusal.NOT_COORDINATOR] += 1  # BID, RELEASE, RECONCILE, ROUND_ACK
        elif t == msgs.BID:
            if self.cfg.auditors:  # every bid taken is receipted (node/bidcopy.py)
                from node import bidcopy

                bidcopy.on_bid(market, src, f, now_ms)
            else:
                market.on_bid(src, f, now_ms)
        elif t == msgs.RELEASE:
            if market.state == _IDLE and self._from_coordinator(src, self._followed()[1]):
                _replica().on_release_replica(market, src, f, now_ms)
            else:
                market.on_release(src, f, now_ms)
        elif t == msgs.RECONCILE:
            market.on_reconcile(src, f, now_ms)
        else:  # ROUND_ACK
            market.on_ack(src, f, now_ms)

    # ---- roles and timers ------------------------------------------------

    def roles(self):
        """(region role as msgs.ROLE_*, term, coordinator, standby)."""
        if self.fixed is not None:
            c, term, sb = self.fixed
            role = _ROLE_COORDINATOR if c == self.id else (_ROLE_STANDBY if sb == self.id else msgs.ROLE_FOLLOWER)
            return role, term, c, sb
        s = self.seat
        if s is None:
            return msgs.ROLE_FOLLOWER, self.trader.term, self.trader.coord, msgs.NO_NODE
        role = _ROLE_COORDINATOR if s.role == el.COORDINATOR else s.wire_role()
        return role, s.term, s.coordinator, s.standby

    def _drive_market(self, m, now_ms):
        role, term, coord, standby = self.roles()
        if role == _ROLE_COORDINATOR:
            if m.state != _IDLE and m.term != term:
                m.step_down()
            if m.state == _IDLE:
                m.lead(term, standby, now_ms, self.trader.prices)
            else:
                m.set_standby(standby, now_ms)
        else:
            if m.state != _IDLE:
                m.step_down()
            c, t = self._followed()
            if m.led_round < 0 and c != msgs.NO_NODE and c != self.id:
                _recovery().ask_copy(m, c, t)

    def poll(self, now_ms):
        if self.quarantine is not None:
            from node import audit

            audit.tick(self, now_ms)
        if self.market is not None:
            self._drive_market(self.market, now_ms)
            self._drain(now_ms)
            self.market.poll(now_ms)
            self._drain(now_ms)
        self.trader.poll(now_ms)
        self._drain(now_ms)
        if now_ms >= self._next_tel_ms:
            self._telemetry(now_ms)

    def next_deadline_ms(self):
        t = self.trader.next_deadline_ms()
        if self._next_tel_ms < t:
            t = self._next_tel_ms
        if self.market is not None:
            m = self.market.next_deadline_ms()
            if m is not None and m < t:
                t = m
        return t

    def refused_total(self):
        n = 0
        for r in (self.refused, self.trader.refused, self.market.refused if self.market else ()):
            for k in r:
                n += k
        return n

    def _telemetry(self, now_ms):
        tr = self.trader
        p = tr.prod
        role = self.roles()[0]
        pr = tr.price_round if tr.price_round >= 0 else 0
        self._send(wire.ADDR_GROUND, msgs.MARKET_TEL, msgs.pack(
            msgs.MARKET_TEL, tr.term, pr & 0xFFFFFFFF, tr.price_age_ms(now_ms) // 1000, p.produced // 1000,
            p.lost() // 1000, p.paused_ms[1] // 1000, p.paused_ms[2] // 1000, p.paused_ms[3] // 1000,
            min(len(tr.leases), 0xFFFF), tr.bids & 0xFFFF, tr.awards & 0xFFFF, min(self.refused_total(), 0xFFFF),
            tr.auto.mode, role))
        self._next_tel_ms = now_ms + self.cfg.telemetry_ms
