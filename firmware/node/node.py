# One fleet node's coordination core: sans-IO, like h11's Connection.
#
#     node = Node(node_id=3, config=cfg, seed=7, saved=blob_or_None)
#     node.receive(line, now_ms)     # one line frame without its 0x00
#     out = node.poll(now_ms)        # [(dst, line_with_delimiter), ...]
#     blob = node.take_persist()     # persist BEFORE writing `out`, if not None
#     node.next_deadline_ms()        # when poll() is due again
#
# No I/O, no clock reads, randomness only from the seeded Rng: the same inputs
# give the same outputs, under CPython and MicroPython alike (iteration is in
# sorted order, arithmetic is integer). Bad frames are counted by reason in
# `errors` and dropped; the node carries on.
#
# With a MarketConfig (config.market) the node also runs the regional market
# tier (node/region.py): market frames go to it, and an elector holds a seat
# in the region's election, which is this same class run a second time over
# the electors (uplink=: it sends through its host, to the region address).
# Without one the node is exactly the Tier-1 node, frame for frame.
#
# The election machine (timers, pre-vote and vote, standby, the coordinator's
# tick, the election frames) is node/elect.py, run over this node's state.
#
# Protocol versions (docs/PROTOCOL.md "Versions"): the config says which the
# node speaks (from its firmware version); it sends at its newest, refuses
# frames above it, and reads every payload in the newest layout, fields an
# older frame lacks at their defaults (msgs.unpack_as).

import binascii
import struct
from array import array

from micropython import const

from node import elect, msgs, wire
from node import election as el
from node.membership import ALIVE, SUSPECT, Membership
from node.records import Records
from node.rng import Rng

_SAVED = "<IHI"  # term, voted_for, auth counter reserved up to
_SAVED_LEN = 10
_COUNTER_BLOCK = wire.BLOCK  # auth counters reserved per flash write, block-aligned
_U32 = const(0xFFFFFFFF)
_MAX_TERM = 0xFFFFFF00  # terms above this are refused (term + 1 must fit u32)
_CATCHUP = const(0xA5)  # node/catchup.py's CATCHUP
_TERMED = (msgs.HEARTBEAT, msgs.PREVOTE_REQUEST, msgs.PREVOTE, msgs.VOTE_REQUEST, msgs.VOTE, msgs.COORDINATOR,
           msgs.STANDBY, msgs.STATE)


class Node:
    # node/update.py's agent, set on the instance by update.agent() when
    # first needed: a class default, so a node that never updates has no slot for it
    # in its attribute table (at 20 nodes a bigger table each costs the heap).
    update = None
    # node/join.py's Joins, loaded with the first join frame (or at boot on a
    # daughter): a class default, so a node that never sees one carries no
    # instance attribute for it (heap: 20 nodes share a 192K test heap).
    joins = None
    held = None  # node/heldview.py's HeldView, made at the first HELD (a class default, as joins)
    # The election timing this node's lineage runs (docs/CONTAINMENT.md
    # "Election timing"): lineage A's lives in node/elect.py.
    timing = elect

    def __init__(self, node_id, config, seed, saved=None, uplink=None, seen=None):
        if not 0 < node_id <= wire.MAX_NODE_ID:
            raise ValueError("node id %d out of range" % node_id)
        if node_id not in config.members:
            raise ValueError("node %d is not in its cluster's members" % node_id)
        self.id = node_id
        self.cfg = config
        self.rng = Rng(seed)
        self.cluster_dst = wire.cluster_addr(config.cluster)
        self.members = Membership(node_id, config.members, config.suspect_ms, config.dead_ms)
        self.records = Records()
        self.auth = wire.Auth(config.auth_key) if config.auth_key else None
        # Every source this node takes frames from, fixed at boot: the ground,
        # its cluster's members, in a region who can send to it (known_sources).
        # A frame from any other source is refused (unknown_src) before
        # anything is kept for it, so no per-source table ever grows
        # (docs/PROTOCOL.md "Authentication and replay").
        self.sources = known_sources(config, node_id)
        self.replay = None
        if self.auth is not None:
            from node.replay import ReplayWindow

            self.replay = ReplayWindow(self.sources)
            if seen is not None:
                self.load_seen(seen)

        # Persistent: term, vote, auth counter reservation.
        self.term = 0
        self.voted_for = msgs.NO_NODE
        self._counter = 0
        self._reserved = 0
        if saved is not None:
            self.term, self.voted_for, self._counter = restore(saved[:_SAVED_LEN + 4])
            self._reserved = self._counter
        self._dirty = False
        # A seat in a regional election sends through its host node: one frame
        # sequence, one auth counter; everything to the electors' address.
        self._uplink = uplink

        self.role = el.FOLLOWER
        self.coordinator = msgs.NO_NODE
        self.standby = msgs.NO_NODE
        self._coord_heard_ms = None  # when we last heard our coordinator
        self._coord_since_ms = 0  # when we became coordinator
        self._grants = []  # nodes that granted our (pre)vote, self included
        self._deadline_ms = 0  # election deadline; set at boot (first poll)
        self._next_hb_ms = 0
        self._next_tel_ms = 0
        self._next_state_ms = 0
        self._booted = False
        self._early_logs = []  # log() before the first poll: sent after HELLO
        self._out = []
        self._seq = 0
        self.rec_version = 1
        self.rec_data = (config.hw_gen << 24) | (config.fw_version[0] << 16) | (config.fw_version[1] << 8) | config.lineage
        self.records.put(node_id, self.rec_version, self.rec_data)

        self.time_scale_milli = 1000
        self.fault_flags = 0
        self.errors = [0] * wire.N_ERRORS  # by wire.ERR_* code; never saturate
        self.heap_free = 0  # bytes, from the board shell (set_heap); 0: not known
        self.heap_min = 0  # the lowest heap_free since boot
        self.frames_in = 0
        self.frames_out = 0
        self.ignored = 0  # well-formed but not for us / not in our cluster
        self.conflicts = 0  # another coordinator claimed our own term
        # Quarantine hooks (node/quarantine.py, set on a regional seat): may
        # this node run for election, may it vote for `src`. None: always.
        self.may_lead = None
        self.may_elect = None
        self.role_changes = 0
        if config.lineage % 2:  # lineage B's election timing (docs/CONTAINMENT.md), imported only here
            from node import timing_b

            self.timing = timing_b  # type: ignore[misc]  # a module in place of elect: same functions

        r = config.replication  # a daughter (it has a parent) JOINs at boot; a kept roster (node/join.py) is restored
        if r is not None and (r[5] or saved and saved[-2:] == b"RS"):
            self._joins().restore(self, saved)
        self.region = None
        self.seat = None
        self._seat_digest = None
        self._keep = None  # with a market: what it keeps on flash (node/durable.py)
        if config.market is not None:
            self._start_region(config, seed, saved)

    def _start_region(self, config, seed, saved):
        from node.config import Config
        from node.region import Region

        m = config.market
        if m.index(self.id) < 0:
            raise ValueError("node %d is not in its region's roster" % self.id)
        from node.durable import Keeper, split  # with a market only: a node without one never loads it

        region = Region(self.id, config, Rng(seed * 31 + 7), self._send)
        self.region = region
        self._keep = keep = Keeper(region)
        terms, kept = split(saved) if saved is not None else (b"", None)
        if self.id in m.electors:
            seat_cfg = Config(cluster=m.region_cluster, members=m.electors, election_timeout_ms=m.region_timeout_ms,
                              hw_gen=config.hw_gen, fw_version=config.fw_version, lineage=config.lineage)
            seat_saved = terms[_SAVED_LEN + 4:] if len(terms) > _SAVED_LEN + 4 else None
            self.seat = Node(self.id, seat_cfg, seed ^ 0x5EA7, seat_saved, uplink=self._send)
            self.region.attach(self.seat)
        # Before the first poll, so before this elector answers any recovery
        # query: its ledger and round are as it last kept them.
        why = keep.load(kept) if kept is not None else None
        if why:  # damaged: it starts knowing nothing, and says so
            self.log(why)

    # ---- public API ----------------------------------------------------

    def receive(self, line, now_ms):
        """Handle one line frame (without its 0x00). Never raises on bad input."""
        try:
            frame = wire.decode(line, self.auth, self.cfg.require_auth, self.cfg.proto_max)
        except wire.ProtocolError as e:
            self.errors[e.code] += 1
            return None
        return self.receive_decoded(frame, now_ms)

    def decode_key(self):
        """What receive()'s decode depends on besides the line: (auth key,
        require_auth, proto_max). wire.decode(line, wire.Auth(key) or None,
        require_auth, proto_max) gives the same Frame on every node whose key
        is equal."""
        c = self.cfg
        return (c.auth_key, c.require_auth, c.proto_max)

    def receive_decoded(self, frame, now_ms):
        """receive() after its decode: `frame` is what wire.decode made of the
        line under this node's decode_key() (an in-process harness decodes a
        frame sent to many nodes once; the Frame is only read, never changed).
        The per-recipient part: source check, replay window, dispatch,
        counters. Never raises on bad input."""
        try:
            i = wire.index_of(self.sources, frame.src)
            if i < 0:
                raise wire.ProtocolError(wire.ERR_UNKNOWN_SRC)
            replay = self.replay
            if frame.counter is not None and replay is not None:
                self._check_replay(replay, frame, i)
                if frame.type == msgs.HELLO:
                    self._peer_booted()
            self._dispatch(frame, now_ms)
        except wire.ProtocolError as e:
            self.errors[e.code] += 1
            return None
        self.frames_in += 1
        return frame

    def _check_replay(self, replay, frame, i):
        if replay.accept(i, frame.counter):
            return
        if frame.src and replay.tell(i, frame.counter):
            # Below what we had accepted before a reboot, from a sender not
            # heard since: it may have missed our boot HELLO. Tell it once
            # (per source per boot); it moves to its next counter block.
            if self._booted:
                self._send(frame.src, msgs.HELLO, self._hello())
        raise wire.ProtocolError(wire.ERR_REPLAY)

    def _peer_booted(self):
        """A peer (re)booted and may refuse counters up to the end of our
        current block (its persisted ceiling): move to the next block, unless
        none of this one is used yet. At most one reservation per HELLO."""
        if self._counter % _COUNTER_BLOCK:
            self._counter = (self._counter // _COUNTER_BLOCK + 1) * _COUNTER_BLOCK

    def count_reject(self, code, n=1):
        """The board shell refused input before the core saw it (a line over
        MAX_LINE cut by its splitter, a frame dropped for lack of heap)."""
        self.errors[code] += n

    def set_heap(self, free, min_free):
        """Free heap and its low-water mark since boot, in bytes, as the board
        shell measures them (the core reads no clock and no heap itself)."""
        self.heap_free = free
        self.heap_min = min_free

    def poll(self, now_ms):
        """Run due timers; return the frames to send as [(dst, line)]."""
        if not self._booted:
            self._boot(now_ms)
        if self.role == el.COORDINATOR:
            elect.coordinator_tick(self, now_ms)
        elif now_ms >= self._deadline_ms:
            elect.election_timeout(self, now_ms)
        if now_ms >= self._next_hb_ms:
            self._send_heartbeat(now_ms)
            self._next_hb_ms = now_ms + self.cfg.heartbeat_ms
        if now_ms >= self._next_tel_ms:
            self._send_telemetry(now_ms)
        if self.joins is not None:
            self.joins.poll(self, now_ms)
        if self.seat is not None:
            self.seat.poll(now_ms)
            digest = self.records.digest()
            if digest != self._seat_digest:  # the region aggregates cluster digests
                self._seat_digest = digest
                self.seat.set_record(digest)
        if self.region is not None:
            self.region.poll(now_ms)
        if self.update is not None:
            self.update.poll(now_ms, self.coordinator != msgs.NO_NODE)
        out = self._out
        self._out = []
        return out

    def next_deadline_ms(self):
        """Mission ms at which poll() has work to do, at the latest."""
        if not self._booted:
            return 0
        # Compared, not min(): it runs after every frame a node takes.
        t = self._next_hb_ms
        u = self._next_state_ms if self.role == el.COORDINATOR else self._deadline_ms
        if u < t:
            t = u
        u = self._next_tel_ms
        if u < t:
            t = u
        if self.joins is not None:
            u = self.joins.next_deadline_ms()
            if u is not None and u < t:
                t = u
        if self.seat is not None:
            u = self.seat.next_deadline_ms()
            if u < t:
                t = u
        if self.region is not None:
            u = self.region.next_deadline_ms()
            if u < t:
                t = u
        if self.update is not None:
            t = self.update.next_deadline_ms(t)
        return t

    def load_seen(self, blob):
        """Replay floors from the ceilings an earlier boot stored (take_seen);
        ValueError if they are damaged (the caller decides: a board notes it).
        Without auth there is nothing to load."""
        if self.replay is not None:
            self.replay.load(blob)

    def take_seen(self):
        """The replay ceilings to store before sending poll()'s frames, or None
        if none moved: one write per source per counter block. A tuple of
        buffers to write one after the other, views of the live tables (store
        them at once). Joined, they are what Node(seen=) takes at the next
        boot, to refuse every counter this node accepted before it."""
        return self.replay.take() if self.replay is not None else None

    def take_persist(self):
        """Bytes to store atomically before sending poll()'s frames, or None.
        With a regional seat, the seat's term and vote follow the node's own;
        with a market, its section follows (node/durable.py: an elector's
        ledger, a holder's leases), rebuilt only when it changed."""
        seat = self.seat
        keep = self._keep
        market = keep is not None and keep.due()
        if not self._dirty and (seat is None or not seat._dirty) and not market:
            return None
        blob = save(self.term, self.voted_for, self._reserved)
        if seat is not None:
            blob += save(seat.term, seat.voted_for, 0)
        if keep is not None:
            blob += keep.take(market)
        if self.joins is not None:  # its roster section last (node/join.py), b"" until membership changed
            blob += self.joins.section(self)
        # Clean only once the blob is whole: a MemoryError above (the shell
        # survives it) leaves everything to persist at the next try.
        self._dirty = False
        if seat is not None:
            seat._dirty = False
        return blob

    def set_record(self, data):
        """Update this node's shared record (u32); peers converge to it."""
        self.rec_version = (self.rec_version + 1) & 0xFFFF
        self.rec_data = data & 0xFFFFFFFF
        self.records.put(self.id, self.rec_version, self.rec_data)

    def log(self, text):
        """Queue a LOG frame to the ground (sent by the next poll, after the
        boot HELLO: the ground learns who a node is before what it says)."""
        data = text.encode()[: wire.MAX_PAYLOAD]
        if self._booted:
            self._send(wire.ADDR_GROUND, msgs.LOG, data)
        else:
            self._early_logs.append(data)

    def wire_role(self):
        """Role as carried in heartbeats and telemetry (standby shown)."""
        if self.role == el.COORDINATOR:
            return msgs.ROLE_COORDINATOR
        if self.role != el.FOLLOWER:
            return msgs.ROLE_CANDIDATE
        return msgs.ROLE_STANDBY if self.standby == self.id else msgs.ROLE_FOLLOWER

    # ---- sending -------------------------------------------------------

    def _send(self, dst, type, payload):
        if self._uplink is not None:
            if dst != wire.ADDR_GROUND:  # a seat tells the ground nothing itself
                self._uplink(self.cluster_dst, type, payload)
            return
        counter = 0
        if self.auth is not None:
            if self._counter >= self._reserved:  # block-aligned: a peer's ceiling is a block end
                self._reserved = (self._counter // _COUNTER_BLOCK + 1) * _COUNTER_BLOCK
                self._dirty = True
            counter = self._counter
            self._counter += 1
        line = wire.encode(type, self.id, dst, payload, self._seq, self.auth, counter, self.cfg.proto_max)
        self._seq = (self._seq + 1) & 0xFF
        self.frames_out += 1
        self._out.append((dst, line))

    def _send_heartbeat(self, now_ms):
        # Built in the newest layout, sent in the one this node speaks (a
        # version-1 node leaves `alive` out).
        values = (
            self.term,
            self.coordinator,
            self.standby,
            self.wire_role(),
            self.cfg.lineage,
            self.rec_version,
            self.rec_data,
            self.records.digest(),
            self.members.count(ALIVE, now_ms),
        )
        p = msgs.pack_as(msgs.HEARTBEAT, values, self.cfg.proto_max)
        self._send(self.cluster_dst, msgs.HEARTBEAT, p)

    def _send_telemetry(self, now_ms):
        m = self.members
        e = self.errors
        bad = sum(e)
        values = (
            self.wire_role(),
            self.term,
            self.coordinator,
            self.standby,
            self.records.digest(),
            m.count(ALIVE, now_ms),
            m.count(SUSPECT, now_ms),
            min(bad, 0xFFFF),  # versions 1 and 2: saturates
            bad & _U32,  # version 3: wraps only after 2**32 refusals
            e[wire.ERR_UNKNOWN_SRC] & _U32,
            e[wire.ERR_TOO_LONG] & _U32,
            e[wire.ERR_REPLAY] & _U32,
            self.heap_free & _U32,
            self.heap_min & _U32,
        )
        self._send(wire.ADDR_GROUND, msgs.TELEMETRY, msgs.pack_as(msgs.TELEMETRY, values, self.cfg.proto_max))
        self._next_tel_ms = now_ms + self.cfg.telemetry_ms

    def _send_state(self, now_ms):
        entries = self.records.entries()
        total = len(entries)
        digest = self.records.digest()
        step = msgs.STATE_MAX_ENTRIES
        for first in range(0, max(total, 1), step):
            chunk = entries[first : first + step]
            self._send(self.cluster_dst, msgs.STATE, msgs.pack_state(self.term, digest, first, total, chunk))
        self._next_state_ms = now_ms + self.cfg.state_ms

    # ---- roles and timers ----------------------------------------------

    def _hello(self):
        c = self.cfg
        return msgs.pack(
            msgs.HELLO,
            c.hw_gen,
            c.fw_version[0],
            c.fw_version[1],
            c.lineage,
            c.proto_min,
            c.proto_max,
            self.cluster_dst & 0xFFF,  # after a split, the cluster it moved to
        )

    def _boot(self, now_ms):
        self._booted = True
        hello = self._hello()
        self._send(wire.ADDR_GROUND, msgs.HELLO, hello)
        self._send(self.cluster_dst, msgs.HELLO, hello)
        region = self.region
        if region is not None and self.seat is None and self._uplink is None:
            # The electors send to a trader too (prices, awards): they must
            # hear that it booted (an elector's seat says so itself).
            self._send(region.dst, msgs.HELLO, hello)
        for data in self._early_logs:
            self._send(wire.ADDR_GROUND, msgs.LOG, data)
        self._early_logs = []
        self._deadline_ms = now_ms + self._cold_timeout_ms()
        self._next_hb_ms = now_ms
        self._next_tel_ms = now_ms

    def _cold_timeout_ms(self):
        return self.timing.cold_ms(self.rng, self.cfg.election_timeout_ms)

    def _follower_timeout_ms(self):
        return self.timing.follower_ms(self.rng, self.cfg.election_timeout_ms, self.standby == self.id)

    def _become(self, event, now_ms):
        role = el.next_role(self.role, event)
        if role != self.role:
            self.role_changes += 1
            self._next_tel_ms = now_ms  # report role changes at once
        self.role = role
        return role

    # ---- receiving -----------------------------------------------------

    def _dispatch(self, f, now_ms):
        region = self.region
        if region is not None and f.dst == region.dst:
            if f.type == msgs.HELLO and region.quarantine is not None:  # a split moved it: the cap's cluster
                from node import audit

                audit.hello(region, f.src, f.payload, f.version)
            if msgs.ACCUSE <= f.type <= msgs.WITNESS:
                region.receive(f.src, f.dst, f.type, f.payload, now_ms, f.version)  # containment: the region's
            elif self.seat is None:
                self.ignored += 1
            else:
                self.seat._dispatch(f, now_ms)
            return
        if f.dst != self.id and f.dst != self.cluster_dst and f.dst != wire.ADDR_BROADCAST:
            self.ignored += 1
            return
        t = f.type
        if t in msgs.UPDATE_TYPES:  # the update agent's (node/update.py), imported now
            from node.update import on_frame

            return on_frame(self, f)
        if t == _CATCHUP:  # a split it missed (node/catchup.py): its own layout, read there
            return self._joins().catch_up(self, f, now_ms)
        if region is not None and t in msgs.MARKET_TYPES:
            region.receive(f.src, f.dst, t, f.payload, now_ms, f.version)
            return
        # Parse before acting on anything: a member sending malformed payloads
        # is a protocol error, not a sign of life.
        fields = f.values  # parsed once for all its recipients by an in-process harness, or None
        if fields is None:
            fields = msgs.payload_values(t, f.payload, f.version)
        if t in _TERMED and fields[0] > _MAX_TERM:
            # Terms near 2**32 would overflow term+1; no honest cluster gets there.
            raise wire.ProtocolError(wire.ERR_PAYLOAD, "term 0x%08x" % fields[0])
        if t == msgs.CONFIG:
            if f.src == wire.ADDR_GROUND:
                self.time_scale_milli, self.fault_flags = fields
            return
        if t == msgs.HELD and region is not None:  # the electors' quarantine, for the cluster election
            from node.heldview import on_held

            on_held(self, f.src, fields, now_ms)
            return
        if msgs.JOIN <= t <= msgs.SPLIT:  # JOIN, ROSTER, SPLIT; before the member check: a JOIN comes from a node not yet a member
            self._joins().receive(self, f.src, t, fields, now_ms)
            return
        if self.joins is not None and (t == msgs.HELLO or t == msgs.HEARTBEAT):  # one a split passed by? (node/catchup.py)
            self.joins.heard(self, f.src, t, now_ms)
        heard = self.members.last_ms  # heard now, if a member
        if f.src == self.id or f.src not in heard:
            self.ignored += 1
            return
        heard[f.src] = now_ms
        if t == msgs.STATE:
            term, digest, first, total, entries = fields
            if term == self.term and f.src == self.coordinator:
                for node, version, data in entries:
                    if self.members.is_member(node) and node != self.id:
                        self.records.put(node, version, data)
        elif t == msgs.HELLO:
            self.members.lineage[f.src] = fields[3]
        elif not elect.receive(self, f.src, t, fields, now_ms):  # the election's frames (node/elect.py)
            self.ignored += 1  # TELEMETRY, LOG: meant for the ground

    def _joins(self):
        if self.joins is None:
            from node.join import Joins  # lazily: a fleet that never replicates never loads it

            self.joins = Joins(self)
        return self.joins


def known_sources(config, node_id):
    """Sorted array('H') of the ids a node takes frames from: the ground (0),
    its cluster's members and, with a market, who in its region can send to
    it: an elector hears every roster node (bids, claims, reconciliations),
    any other node only the electors (the coordinator and its standby are
    electors; no market frame goes from one trader to another)."""
    a = config.members  # sorted tuple
    r = config.replication
    if r is not None and r[1]:
        first, count = r[0], r[1]  # the cluster's spare ids (node/join.py): a daughter's JOIN must pass the replay check
        a = tuple(sorted(set(a) | set(range(first, first + count))))
    b = ()  # sorted
    m = config.market
    if m is not None:
        b = m.roster if node_id in m.electors else m.electors
    out = array("H", (wire.ADDR_GROUND,))
    i = j = 0
    while i < len(a) or j < len(b):  # merge the two sorted lists, once each
        if j >= len(b) or (i < len(a) and a[i] < b[j]):
            out.append(a[i])
            i += 1
        else:
            if i < len(a) and a[i] == b[j]:
                i += 1
            out.append(b[j])
            j += 1
    return out


def save(term, voted_for, counter_reserved):
    blob = struct.pack(_SAVED, term, voted_for, counter_reserved)
    return blob + struct.pack("<I", binascii.crc32(blob))


def restore(blob):
    """(term, voted_for, counter) from save(); ValueError if torn or corrupt.
    (A node with a regional seat persists two such blobs back to back.)"""
    if len(blob) != _SAVED_LEN + 4:
        raise ValueError("saved state: %d bytes" % len(blob))
    (crc,) = struct.unpack_from("<I", blob, _SAVED_LEN)
    if binascii.crc32(blob[:_SAVED_LEN]) != crc:
        raise ValueError("saved state: bad crc")
    return struct.unpack_from(_SAVED, blob, 0)


def restore_all(blob):
    """[(term, voted_for, counter), ...]: the node's own, then its regional
    seat's when it has one; ValueError if any part is torn or corrupt. A
    market section after them (node/durable.py) is not part of this."""
    n = _SAVED_LEN + 4
    if len(blob) > 2 * n:
        from node import durable

        blob = durable.split(blob)[0]
    if not blob or len(blob) % n:
        raise ValueError("saved state: %d bytes" % len(blob))
    return [restore(blob[i:i + n]) for i in range(0, len(blob), n)]
