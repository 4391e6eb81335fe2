# A test build's declared defects, really exhibited (docs/UPDATES.md "Bad builds").
#
# A manifest flagged "test_build": true may declare, under "defects":
#     "crash_after_h": H            raise after H mission hours
#     "crash_on_coordinator": true  raise when this node becomes coordinator
#     "mute_as_coordinator": true   stop heartbeating while coordinator
#     "leak_heap": BYTES            keep BYTES more heap every poll, until MemoryError
#     "bid_nonsense": true          the trader's bids carry an absurd price (above
#                                   auction.MAX_PRICE) and no lease (count 0): the market refuses them
#     "wrong_ledger_digest": true   an elector reports (ROUND_ACK) and a coordinator
#                                   announces (PRICES prepare) a ledger digest its ledger does not have
#     "lineage": N                  only boards of lineage N exhibit them
# Never honoured in an image that is not a test build (Defects.of returns
# None, and the node refuses such an image before it is installed: R_DEFECT).
# The shell calls check() once per iteration, after the core's poll.


class DefectCrash(Exception):
    """A declared defect made this build crash (on purpose)."""


class Defects:
    def __init__(self, defects):
        self.crash_after_ms = None
        if "crash_after_h" in defects:
            self.crash_after_ms = int(defects["crash_after_h"] * 3600000)
        self.crash_on_coordinator = bool(defects.get("crash_on_coordinator"))
        self.mute_as_coordinator = bool(defects.get("mute_as_coordinator"))
        self.leak_bytes = int(defects.get("leak_heap", 0))
        self.bid_nonsense = bool(defects.get("bid_nonsense"))
        self.wrong_digest = bool(defects.get("wrong_ledger_digest"))
        self._leaked = []
        self._region = None  # the market tier the last two are put on (a node's, rebuilt at each boot)

    @staticmethod
    def of(manifest, lineage):
        """The defects a board of `lineage` exhibits for this manifest, or None."""
        d = manifest.get("defects")
        if not d or manifest.get("test_build") is not True:
            return None
        if "lineage" in d and d["lineage"] != lineage:
            return None
        return Defects(d)

    def check(self, shell, now_ms):
        node = shell.node
        if self.crash_after_ms is not None and now_ms >= self.crash_after_ms:
            raise DefectCrash("test build: crash after %d mission ms" % self.crash_after_ms)
        coordinator = node.coordinator == node.id
        if self.crash_on_coordinator and coordinator:
            raise DefectCrash("test build: crash on becoming coordinator")
        if self.mute_as_coordinator and coordinator:
            node._next_hb_ms = now_ms + 0x7FFFFFFF  # its heartbeats never come due
        if self.leak_bytes:
            self._leaked.append(bytearray(self.leak_bytes))
        r = getattr(node, "region", None)
        if r is not None and r is not self._region and (self.bid_nonsense or self.wrong_digest):
            self._region = r
            if self.bid_nonsense:
                r.trader.send = _nonsense_bids(r.trader.send)
            if self.wrong_digest and r.market is not None:
                led = r.market.ledger
                led.digest = _wrong_digest(led.digest, node.id)


_ABSURD_PRICE = 0xFFFF  # credits per slot: far above auction.MAX_PRICE


def _nonsense_bids(send):
    """send, with every BID's price made absurd and its lease count 0."""
    from node import msgs

    def out(dst, type, payload):
        if type == msgs.BID:
            f = list(msgs.unpack(msgs.BID, payload, msgs.VERSION))  # the trader builds the newest layout
            f[4] = _ABSURD_PRICE  # price
            f[8] = 0  # count: no occurrence, no lease
            payload = msgs.pack(msgs.BID, *f, version=msgs.VERSION)
        send(dst, type, payload)

    return out


def _wrong_digest(digest, node_id):
    """The ledger's digest(), off by a per-node constant: what this node says
    of its ledger (acks, prepares) is not what its ledger holds, and two such
    nodes do not agree with each other either."""
    off = (0x0BADD16E + node_id * 0x9E3779B1) & 0xFFFFFFFF

    def wrong():
        return (digest() ^ off) & 0xFFFFFFFF

    return wrong
