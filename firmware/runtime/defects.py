# A test build's declared defects, really exhibited (docs/UPDATES.md "Bad builds").
#
# A manifest flagged "test_build": true may declare, under "defects":
#     "crash_after_h": H            raise after H mission hours
#     "crash_on_coordinator": true  raise when this node becomes coordinator
#     "mute_as_coordinator": true   stop heartbeating while coordinator
#     "leak_heap": BYTES            keep BYTES more heap every poll, until MemoryError
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
        self._leaked = []

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
