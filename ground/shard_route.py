"""Where a frame of a lean shard (ground/shard.py) goes, from its address:
its header, read from the line's first bytes (frame_header), the nodes its
destination reaches (Routes.recipients: a node, a cluster, a region's
electors or the whole fleet, each with its link's pipeline and whether it
is in the sender's unit, kept per sender and address) and the tier its
frames count under (Routes.tier_of, fleetcount.TIERS): the Router's
_recipients for the shard's in-process nodes, and the fleet counters' tiers.
"""

import struct

from ground import firmware
from ground import fleetcount as fc
from ground.regions import region_of

wire = firmware.wire
_ADDR_CLUSTER = wire.ADDR_CLUSTER
_BROADCAST = wire.ADDR_BROADCAST
_HDR = struct.Struct("<BBBHH")


def frame_header(line):
    """(version, type, seq, src, dst) of a line frame (escaped COBS, no
    delimiter), from its first bytes only: the frame is not checked (its
    recipient's core does that)."""
    head = bytes(line[:24])
    if 0x1B in head:
        if head[-1] == 0x1B:
            head = head[:-1]  # half an escape: its other half is past the 7 header bytes
        head = head.replace(b"\x1b\x01", b"\x03").replace(b"\x1b\x02", b"\x1b")
    out = bytearray()
    i, n = 0, len(head)
    while len(out) < 7 and i < n:
        code = head[i]
        out += head[i + 1:i + code]
        i += code
        if code < 255:
            out.append(0)
    vf, typ, seq, src, dst = _HDR.unpack_from(out)
    return vf >> 4, typ, seq, src, dst


class Routes:
    """The recipients and tiers of the frames the nodes of `shard` (a
    ground/shard.py Shard) send, by sender and destination address."""

    def __init__(self, shard):
        self.sc = shard.sc
        self.cluster_of = shard.cluster_of
        self.unit_of = shard.unit_of  # cluster id -> its unit (the cluster or its region)
        self.pipeline = shard._pipeline  # (src, dst) -> the link's pipeline
        self.regions = {r.region: r for r in getattr(shard.sc, "regions", None) or ()}  # region number -> RegionSpec
        self._rcpt = {}  # (src, dst address) -> [recipients]

    def recipients(self, src, addr):
        """[(recipient, its link's pipeline, in src's unit?)] for a frame from src to addr."""
        key = (src, addr)
        r = self._rcpt.get(key)
        if r is None:
            sc = self.sc
            ids = sc.wire_ids
            if addr == _BROADCAST:
                if ids is None:
                    r = [n for n in sorted(sc.nodes) if n != src]
                else:  # addressing: region: the whole of the sender's region (its ids name no other)
                    r = [n for n in sorted(ids.of_node[src].node_wire) if n != src]
            elif addr & 0xF000 == _ADDR_CLUSTER:
                k = addr & 0x0FFF
                region = self.regions.get(region_of(k))
                if region is not None:  # a region's address: its electors (each region its own)
                    if ids is not None and ids.of_node[src].region != region.region:
                        region = None  # another region's: its ids are not the sender's (ground/wireids.py)
                    r = [n for n in sorted(region.electors) if n != src] if region is not None else []
                else:
                    k = k if ids is None else ids.cluster_from(src, k)
                    r = [n for n in sc.clusters.get(k, ()) if n != src]
            else:
                addr = addr if ids is None else ids.node_from(src, addr)
                r = [addr] if addr in sc.nodes and addr != src else []
            unit = self.unit_of[self.cluster_of[src]]
            r = [(d, self.pipeline(src, d), self.unit_of[self.cluster_of[d]] == unit) for d in r]
            self._rcpt[key] = r
        return r

    def tier_of(self, src, addr):
        """2 * the tier (fleetcount.TIERS) a frame from src to addr counts under:
        by the address, the ground's, a region's (intra- or inter-region by
        src's region), a cluster's or a node's (by its cluster and region). A
        broadcast reaches the whole fleet: inter-region, or intra-region in a
        fleet of one region (or with addressing: region, where it reaches the
        sender's region). Without regions the fleet is one region."""
        if addr == wire.ADDR_GROUND:
            return 2 * fc.GROUND_TIER
        if addr == _BROADCAST and self.sc.wire_ids is not None:
            return 2 * fc.INTRA_REGION
        if addr == _BROADCAST:  # the whole fleet: across regions where there are several
            return 2 * (fc.INTER_REGION if len(self.regions) > 1 else fc.INTRA_REGION)
        regions = self.sc.cluster_region
        mine = self.cluster_of[src]
        ids = self.sc.wire_ids
        if addr & 0xF000 == _ADDR_CLUSTER:
            k = addr & 0x0FFF
            region = region_of(k)
            if region is not None and region in self.regions:
                same = regions.get(mine) == region
                return 2 * (fc.INTRA_REGION if same else fc.INTER_REGION)
            other = k if ids is None else ids.cluster_from(src, k)
        else:
            other = self.cluster_of.get(addr if ids is None else ids.node_from(src, addr))
        if other == mine:
            return 2 * fc.INTRA_CLUSTER
        return 2 * (fc.INTRA_REGION if other is not None and regions.get(other) == regions.get(mine)
                    else fc.INTER_REGION)
