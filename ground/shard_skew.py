"""Version skew on the lean path: a shard's frames for recipients on older
protocol versions (docs/FLEET_RUN.md), with the --sim path's meaning.

A frame newer than its recipient speaks (the protocol range of its firmware
in the scenario, firmware/node/config.py PROTOCOLS; the lean path runs no
rollout, so a node's HELLO says the same) goes through ground/downconvert.py's
Downconverter, the router's own: converted for that recipient, or dropped
for it (`unconvertible`, or `version` with `downconvert: false`). It
happens in the shard that sends the frame, per recipient, before the link's
impairment pipeline, as the Router does it: the pipeline's draws and a
corruption burst's flips see the converted bytes, and whichever shard holds
the recipient gets them from the window exchange, so the counters do not
depend on the shard count. A shard holds a Skew only when the fleet speaks
more than one newest version; the common case never gets here.

Counted as the --sim path's trace has it: `converted` per recipient
(fleetcount.Counters.converted, fleet.json's `converted`), drops by reason;
a traced recipient's trace gets the `converted` fate, or the drop with its
detail, and its delivery the converted bytes (`hex`), as the Router writes them.
"""

from ground import downconvert, firmware


def speaks(sc):
    """node id -> the newest protocol version its firmware speaks."""
    return {nid: firmware.config.protocols(spec.fw_version)[1] for nid, spec in sc.nodes.items()}


def mixed(sc):
    """Whether sc's nodes speak more than one newest protocol version."""
    return len(set(speaks(sc).values())) > 1


class Skew:
    """One shard's down-conversion for its senders' frames."""

    def __init__(self, shard):
        sc = shard.sc
        self.shard = shard
        self.speaks = speaks(sc)
        self.oldest = min(self.speaks.values())  # a frame at or below it never needs converting
        self.conv = downconvert.Downconverter(sc.downconvert, shard.auth)

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
        return got

    def delivered(self, src, dst, data):
        """A traced delivery's extra fields: the bytes (`hex`) when they are
        src's frame converted for dst, as the Router records them (a node
        sends at its newest version, so a frame of a newer sender reaches dst
        converted or not at all)."""
        return {"hex": data.hex()} if self.speaks.get(src, 1) > self.speaks[dst] else {}
