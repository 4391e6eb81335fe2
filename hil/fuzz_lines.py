"""Hostile lines for `hil fuzz`, each with the verdict the board owes it.

    gen = Hostile(target, rng)
    line, want = gen.make("bad_crc")   # line without its 0x00; want: Want
    ping, want = gen.ping()             # a valid signed PREVOTE_REQUEST the board must answer

Every structurally valid frame here is a PREVOTE_REQUEST addressed to the
board whose `term` is a unique id. A board that accepts one answers with a
PREVOTE carrying that term back (firmware/node/node.py), so an answer names
exactly which line was accepted: a legit ping answered once is liveness; an
answer to a forged, replayed, mutated or stranger's line, or a second answer
to one ping, is a hostile frame accepted.

The verdict a line is owed (`Want.reason`) comes from ground/protocol.py, the
ground's independent codec (the same reasons, in the firmware's order), then
from the rules the node adds: a signed frame whose (src, counter) was sent
before, or fell out of the window, is a `replay` for ever: across reboots and
power cuts too, which is what the replay model here (SpecWindow: one
sliding window per source, never reset) says. The generator signs as the
hardened firmware's senders do (docs/PROTOCOL.md "Across reboots and power
cuts"): when the board announces a boot with HELLO, `peer_booted()` moves
its counter to the start of its next 1024-counter block (wire.BLOCK), so its
next frames clear the floor the board restored from flash; what it sent
before stays below that floor, so the spec's "replay for ever" is exactly
what the board owes. A frame from a source outside
the board's rosters (the ground and its cluster's members, for a board
without a market seat) is `unknown_src` before any replay check. A line
longer than the board's line buffer (wire.MAX_LINE) is cut by its splitter
and counted as `too_long`. Reasons are wire.ERROR_NAMES, counted in the
board's TELEMETRY rejects.
"""

import hashlib
import hmac
import zlib

from ground import firmware
from ground import protocol as P

wire = firmware.wire

SIGNED_ONLY = ("bad_tag", "unsigned", "replay")  # meaningless for a fleet without a key: left out there
CATEGORIES = (
    "random",  # random bytes (no 0x00, no 0x03)
    "mutated",  # a valid frame with bytes replaced, inserted or deleted
    "truncated",  # a valid frame cut short
    "oversize",  # longer than the board's line buffer, or a body over MAX_BODY
    "bad_crc",  # a valid frame with a wrong crc
    "bad_tag",  # signed with the wrong key, or a tag bit flipped (crc right)
    "unsigned",  # a valid frame without auth, to a board that requires it
    "bad_fields",  # valid wire, wrong payload size, unknown type, bad version, bad src
    "replay",  # a ping the board answered before, sent again byte for byte
    "replay_own",  # a frame the board itself sent, sent back to it
    "stranger",  # a valid signed ping from a node not in the cluster
)
OVERFLOW = "overflow"  # not a wire reason: the splitter drops the line, uncounted
ACCEPT = ""  # no reject owed
_CORE_TYPES = (P.HELLO, P.HEARTBEAT, P.PREVOTE_REQUEST, P.PREVOTE, P.VOTE_REQUEST, P.VOTE, P.COORDINATOR,
               P.STANDBY, P.TELEMETRY)  # non-market types: a wrong payload is refused, not handed to the region
_MAX_ID = 0xFFFFFF00  # terms above are refused as payload (node._MAX_TERM)


class Target:
    """What the fuzzer knows of the board: its id, cluster, members, the fleet
    key (None: unsigned fleet), whether it refuses unsigned frames, the newest
    protocol it speaks, and a member id to sign pings as."""

    def __init__(self, node_id, cluster, members, key=None, require_auth=False, proto_max=P.VERSION, peer=None):
        self.node_id = node_id
        self.cluster = cluster
        self.members = list(members)
        self.key = key
        self.require_auth = require_auth and key is not None
        self.proto_max = proto_max
        others = [m for m in self.members if m != node_id]
        self.peer = peer if peer is not None else (others[0] if others else None)
        if self.peer is None or self.peer == node_id:
            raise ValueError("node %d: no other member to sign pings as (members %s); give --peer"
                             % (node_id, self.members))


class Want:
    """The verdict a line is owed: reason ('' accept, OVERFLOW, else a wire
    reason); `id` the PREVOTE_REQUEST term it carries (None: none);
    `answer` True when the board must answer it (a legit ping)."""

    __slots__ = ("category", "reason", "id", "answer")

    def __init__(self, category, reason, id=None, answer=False):
        self.category = category
        self.reason = reason
        self.id = id
        self.answer = answer


class SpecWindow:
    """The replay rule as the spec states it: per source, a counter accepted
    once is refused for ever, and one more than 64 below the highest accepted
    is refused too (RFC 4303's window). Never reset, so it is also what a
    board owes across its reboots and power cuts; and after a reboot
    (`reboot()`), every counter below the source's floor, the end of the
    block of the highest one accepted (docs/PROTOCOL.md), is refused too,
    seen or not: the board sent frames before its reboot that were never
    echoed to it, and they are refused once it has rebooted."""

    SIZE = 64

    def __init__(self):
        self._top = {}  # src -> highest counter accepted
        self._seen = {}  # src -> bitmask, bit k = (top - k) seen
        self._floor = {}  # src -> counters below it refused (set at a reboot)

    def reboot(self):
        for src, top in self._top.items():
            b = wire.GROUND_BLOCK if src == 0 else wire.BLOCK
            self._floor[src] = max(self._floor.get(src, 0), (top // b + 1) * b)

    def accept(self, src, counter):
        if counter < self._floor.get(src, 0):
            return False
        top = self._top.get(src)
        if top is None or counter > top:
            shift = 0 if top is None else counter - top
            mask = (self._seen[src] << shift) | 1 if top is not None and shift < self.SIZE else 1
            self._seen[src] = mask & ((1 << self.SIZE) - 1)
            self._top[src] = counter
            return True
        back = top - counter
        if back >= self.SIZE or (self._seen[src] >> back) & 1:
            return False
        self._seen[src] |= 1 << back
        return True


class Hostile:
    def __init__(self, target, rng, counter_base=1):
        self.t = target
        self.rng = rng
        self.counter = counter_base  # our fresh auth counters, one sequence for every src we sign as
        self.next_id = 1
        self.window = SpecWindow()  # the spec: replays refused for ever, reboots or not
        self.answered = []  # lines of legit pings the board answered (replay material)
        self.own = []  # lines the board sent (replay_own material)
        self.category_of = {}  # id -> category, for every id put on the wire
        self._no_version = (0,) + tuple(range(target.proto_max + 1, 16))  # versions the board does not speak

    # -- building blocks

    def _id(self, category):
        i = self.next_id
        self.next_id = i + 1 if i + 1 < _MAX_ID else 1
        self.category_of[i] = category
        return i

    def _frame(self, category, src=None, signed=True, key=None, version=None):
        """A valid PREVOTE_REQUEST to the board (line without 0x00) and its id."""
        t = self.t
        i = self._id(category)
        kw = {}
        if signed and t.key is not None:
            kw = dict(counter=self._fresh(), key=key or t.key)
        line = P.build_line(P.PREVOTE_REQUEST, t.peer if src is None else src, t.node_id, seq=i & 0xFF,
                            msg={"term": i}, version=version or 1, **kw)
        return line[:-1], i

    def peer_booted(self):
        """The board said HELLO (it booted, or it refused one of our counters
        below its restored floor): move to the start of our next counter
        block unless none of this one is used yet, as Node._peer_booted does."""
        if self.counter % wire.BLOCK:
            self.counter = (self.counter // wire.BLOCK + 1) * wire.BLOCK & 0xFFFFFFFF

    def _fresh(self):
        c = self.counter
        self.counter = (c + 1) & 0xFFFFFFFF
        return c

    def want(self, category, line, id=None, answer=False):
        """The verdict `line` is owed, from the ground codec and the replay rule."""
        if len(line) > wire.MAX_LINE:
            return Want(category, "too_long", id)  # the splitter cuts it; the core counts it
        try:
            f = P.parse_line(line, key=self.t.key, require_auth=self.t.require_auth, version_max=self.t.proto_max)
        except P.FrameError as e:
            return Want(category, e.reason, id)
        if f.src != 0 and f.src not in self.t.members:
            return Want(category, "unknown_src", id)
        if f.counter is not None and self.t.key is not None and not self.window.accept(f.src, f.counter):
            return Want(category, "replay", id)
        if f.dst != self.t.node_id:
            return Want(category, ACCEPT, id)  # not for it: ignored, never dispatched
        return Want(category, ACCEPT, id, answer=answer)

    # -- the categories

    def ping(self):
        line, i = self._frame("ping")
        return line, self.want("ping", line, i, answer=True)

    def make(self, category):
        line, i = getattr(self, "_" + category)()
        return line, self.want(category, line, i)

    def _random(self):
        return self._bytes(self.rng.randint(1, wire.MAX_LINE)), None

    def _bytes(self, n):
        return self.rng.randbytes(n).translate(_NO_ZERO_NO_CTRL_C)

    def _mutated(self):
        line, i = self._frame("mutated")
        b = bytearray(line)
        for _ in range(self.rng.randint(1, 3)):
            op = self.rng.randrange(3)
            pos = self.rng.randrange(len(b) + (op == 1))
            if op == 0 and b:
                b[pos] = self.rng.choice(_NONZERO)
            elif op == 1:
                b.insert(pos, self.rng.choice(_NONZERO))
            elif len(b) > 1:
                del b[pos]
        return bytes(b), i

    def _truncated(self):
        line, i = self._frame("truncated")
        return line[: self.rng.randrange(1, len(line))], i

    def _oversize(self):
        if self.rng.random() < 0.5:  # past the line buffer: dropped by the splitter
            return self._bytes(self.rng.randint(wire.MAX_LINE + 1, 3 * wire.MAX_LINE)), None
        # a well-formed body over MAX_BODY, in a line the buffer holds: too_long
        body = _with_crc(self._bytes(self.rng.randint(P.MAX_BODY + 1, 300)))
        return P.escape(P.cobs_encode(body)), None

    def _bad_crc(self):
        line, i = self._frame("bad_crc")
        body = _body(line)
        wrong = bytes(x ^ (1 << self.rng.randrange(8)) if k == 0 else x for k, x in enumerate(body[-4:]))
        return _line(body[:-4] + wrong), i

    def _bad_tag(self):
        if self.rng.random() < 0.5:
            return self._frame("bad_tag", key=bytes(self.rng.randrange(256) for _ in range(16)))  # a forger's key
        line, i = self._frame("bad_tag")
        covered = bytearray(_body(line)[:-4])
        covered[-1 - self.rng.randrange(P.TAG_LEN)] ^= 1 << self.rng.randrange(8)
        return _line(_with_crc(bytes(covered))), i

    def _unsigned(self):
        return self._frame("unsigned", signed=False)

    def _bad_fields(self):
        t = self.t
        kw = dict(counter=self._fresh(), key=t.key) if t.key is not None else {}
        r = self.rng.randrange(4)
        if r == 0:  # a known type with a payload of the wrong size
            typ = self.rng.choice(_CORE_TYPES)
            good = len(P.build_message(typ, _zero_msg(typ)))
            n = self.rng.choice([k for k in (0, good - 1, good + 1, good + 7) if 0 <= k <= P.MAX_PAYLOAD and k != good])
            return P.build_line(typ, t.peer, t.node_id, payload=bytes(n), **kw)[:-1], None
        if r == 1:  # a type no layout has
            typ = self.rng.choice([x for x in range(256) if x not in P.MESSAGES])
            return P.build_line(typ, t.peer, t.node_id, payload=bytes(self.rng.randrange(8)), **kw)[:-1], None
        if r == 2:  # a protocol version nobody speaks: build a v1 frame, then rewrite its version nibble
            line, i = self._frame("bad_fields")
            body = bytearray(_body(line)[:-4])
            body[0] = (body[0] & 0x0F) | (self.rng.choice(self._no_version) << 4)  # version: the high nibble
            return _line(_with_crc(_resign(bytes(body), t.key))), i
        src = self.rng.randint(P.MAX_NODE_ID + 1, 0xFFFF)  # a src no node can have
        return self._frame("bad_fields", src=src)

    def _replay(self):
        if not self.answered:
            return self._truncated()  # nothing answered yet: something hostile all the same
        line = self.rng.choice(self.answered)
        return line, term_of(line, self.t.key)

    def _replay_own(self):
        if not self.own:
            return self._random()
        return self.rng.choice(self.own), None

    def _stranger(self):
        src = self.t.members[0]
        while src in self.t.members:
            src = self.rng.randint(1, P.MAX_NODE_ID)
        return self._frame("stranger", src=src)


# ---- the layers, by hand (ground/protocol.py's COBS and escape) ---------------

_NONZERO = tuple(b for b in range(1, 256) if b != 0x03)
_NO_ZERO_NO_CTRL_C = bytes(range(256)).replace(b"\x00", b"\x01").replace(b"\x03", b"\x04")  # a translate table


def _body(line):
    return P.cobs_decode(P.unescape(line))


def _line(body):
    return P.escape(P.cobs_encode(body))


def _with_crc(covered):
    return covered + (zlib.crc32(covered) & 0xFFFFFFFF).to_bytes(4, "little")


def _resign(covered, key):
    """A covered part whose header was edited, with its tag made right again."""
    if key is None or not covered[0] & P.FLAG_AUTH:
        return covered
    signed = covered[: -P.TAG_LEN]
    return signed + hmac.new(key, signed, hashlib.sha256).digest()[: P.TAG_LEN]


def term_of(line, key):
    """The PREVOTE_REQUEST term (our id) a line we built carries."""
    f = P.parse_line(line, key=key)
    return f.msg["term"]


def _zero_msg(typ):
    struct = P.message_struct(typ)
    return {sc.name: 0 for sc in struct.subcons if sc.name}
