"""Version skew on the lean path: a shard's frames for recipients on older
protocol versions (docs/FLEET_RUN.md), with the --sim path's meaning.

A frame newer than its recipient speaks (the protocol range of its firmware
in the scenario, firmware/node/config.py PROTOCOLS, until a rollout changes
it: below) goes through ground/downconvert.py's
Downconverter, the router's own: converted for that recipient, or dropped
for it (`unconvertible`, or `version` with `downconvert: false`). It
happens in the shard that sends the frame, per recipient, before the link's
impairment pipeline, as the Router does it: the pipeline's draws and a
corruption burst's flips see the converted bytes, and whichever shard holds
the recipient gets them from the window exchange, so the counters do not
depend on the shard count. A shard holds a Skew only when the fleet speaks
more than one newest version, or a rollout image could change a node's;
the common case never gets here.

A rollout whose images speak another range than some node (2.x rolled to
3.0, a test build of 4.0 rolled back to 3.0) makes the table move. The
--sim Router learns a node's new range from its HELLO the moment it is sent;
here the shard that holds the node sees that HELLO (ground/shard_rollout.py
calls `hello`), puts the change in its outbox as a RANGE entry, and
ground/fleetrun.py hands every RANGE entry of the window, in the exchange's
order, to EVERY shard (the node's own too, also with one shard), which
applies them as the next window opens (`opened`, before anything of that
window runs). So every shard's table is the same at every mission time,
whatever the shard count, and lags the node by at most one window: frames
sent to a just-upgraded node in that window are still converted for its old
range (which it still speaks: only `converted` counts more than on --sim),
and frames sent to a node just back on a smaller range (a rollback, a trial
reverted by its watchdog reset) reach it unconverted and it refuses them by
their version, as a board would (node errors `version`). The shared decode
(ground/shard.py `_decoded`) then stops at the oldest version any node can
have (`decode_max`): a frame above it is decoded by each recipient under its
own range, so no core takes a frame its firmware would refuse.

Counted as the --sim path's trace has it: `converted` per recipient
(fleetcount.Counters.converted, fleet.json's `converted`), drops by reason;
a traced recipient's trace gets the `converted` fate, or the drop with its
detail, and its delivery the converted bytes (`hex`), as the Router writes them.
"""

from ground import downconvert, firmware

wire = firmware.wire
RANGE = -3  # an exchanged entry's dst for a node's new newest version: every shard applies it as the next window opens


def _newest(spec):
    return firmware.config.protocols(spec.fw_version)[1]


def speaks(sc):
    """node id -> the newest protocol version its firmware speaks."""
    by_firmware = {}  # a fleet's nodes share a few firmware versions: each worked out once
    out = {}
    for nid, spec in sc.nodes.items():
        v = by_firmware.get(spec.firmware)
        if v is None:
            v = by_firmware[spec.firmware] = _newest(spec)
        out[nid] = v
    return out


def mixed(sc):
    """Whether sc's nodes speak more than one newest protocol version (every
    shard asks: one pass over the nodes' firmware strings)."""
    one = {}
    for spec in sc.nodes.values():
        one.setdefault(spec.firmware, spec)
    return len({_newest(spec) for spec in one.values()}) > 1


def newest_versions(sc):
    """Every newest protocol version a node of sc can speak during the run:
    its firmware's, and each rollout image's."""
    out = set(speaks(sc).values())
    if sc.rollout is not None:
        out.update(firmware.config.protocols(img.version)[1] for img in sc.rollout.images)
    return out


def moving(sc):
    """Whether sc's rollout can change a node's newest protocol version (an
    image of another range than some node's firmware)."""
    return sc.rollout is not None and len(newest_versions(sc)) > 1


def needed(sc):
    """Whether a shard of sc needs a Skew: several versions now, or later."""
    return mixed(sc) or moving(sc)


class Converted(bytes):
    """A frame's bytes as the down-converter wrote them for an older
    recipient: the recipient's shard, which may be another, knows them by
    their class (`delivered`) when the table moves."""

    __slots__ = ()


class Skew:
    """One shard's down-conversion for its senders' frames."""

    def __init__(self, shard):
        sc = shard.sc
        self.shard = shard
        self.speaks = speaks(sc)  # node -> newest version, as every shard knows it at this window
        self.oldest = min(self.speaks.values())  # a frame at or below it never needs converting
        self.conv = downconvert.Downconverter(sc.downconvert, shard.auth)
        self.moving = moving(sc)
        # the version up to which a frame is decoded once for every node here (Shard._decoded): with a moving
        # table the oldest any node can speak, so a recipient never takes a frame above its own range decoded
        self.decode_max = min(newest_versions(sc)) if self.moving else wire.VERSION
        self._said = dict(self.speaks)  # this shard's nodes: the newest version their last HELLO said
        self._raw = self._mark = None  # the converter's last line and its Converted copy

    def hello(self, src, nseq, proto_max):
        """Node src (this shard's) said HELLO (its nseq-th frame) with
        proto_max: a change goes out as a RANGE entry for every shard."""
        if proto_max is None or proto_max == self._said[src]:
            return
        self._said[src] = proto_max
        sh = self.shard
        sh.outbox.append((sh.now, src, nseq, RANGE, 0, 0, (src, proto_max), sh.now))

    def opened(self, inbox):
        """A window opens: apply the RANGE entries at the head of inbox (all
        of the last window's, in the exchange's order, ground/fleetrun.py);
        return the rest of it."""
        k = 0
        n = len(inbox)
        table = self.speaks
        while k < n and inbox[k][3] == RANGE:
            nid, version = inbox[k][6]
            table[nid] = version
            k += 1
        self.oldest = min(table.values())
        return inbox[k:]

    def line_for(self, src, nseq, d, line, version, typ, fid, tr):
        """src's frame `line` (its nseq-th, at `version`) as recipient d gets
        it: the line itself, converted, or None (dropped, counted)."""
        to = self.speaks[d]
        if version <= to:
            return line
        sh = self.shard
        got = self.conv.for_recipient((src, nseq), line, None, to)
        traced = tr is not None and d in sh.traced
        if got.__class__ is not bytes:
            sh.counters.drop(d, typ, got[0], sh.now)
            if traced:
                tr("frame", sh.now, fate="dropped", id=fid, to=d, reason=got[0], **({"detail": got[1]} if got[1] else {}))
            return None
        c = sh.counters.converted
        c[d] = c.get(d, 0) + 1
        if traced:
            tr("frame", sh.now, fate="converted", id=fid, to=d, from_version=version, to_version=to)
        if self.moving:  # marked, for its traced delivery (delivered)
            if got is not self._raw:
                self._raw, self._mark = got, Converted(got)
            return self._mark
        return got

    def delivered(self, src, dst, data):
        """A traced delivery's extra fields: the bytes (`hex`) when they are
        src's frame converted for dst, as the Router records them. With a
        fixed table, a node sends at its newest version, so a frame of a
        newer sender reaches dst converted or not at all; with a moving one
        the converted bytes say so themselves (Converted)."""
        if self.moving:
            return {"hex": data.hex()} if data.__class__ is Converted else {}
        return {"hex": data.hex()} if self.speaks.get(src, 1) > self.speaks[dst] else {}
