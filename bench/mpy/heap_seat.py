# Run under the MicroPython unix port with -X heapsize=192K, the current
# directory a board folder holding the .mpy image (hil/flash.py build and
# write_image; bench/mpy/heap_seat_run.py makes one): the whole board --
# main.build(), the shell, the node core with its regional seat and market
# tier, signed -- over argv[1] mission hours, fed by a scripted link. The
# board is the region's only elector, so it coordinates the region's market;
# each slot, argv[2] roster nodes bid (signed BID frames through the shell).
# Prints one JSON line: heap figures as TELEMETRY carries them (the shell's
# samples: free after a collection, low-water since boot), the lowest free
# heap after a collection at any iteration, rounds, awards, refusals.
# Fake time: a wait() that sees no input advances the clock by its timeout.
# The romfs layout (docs/HEAP.md): the board folder's rom/romfs.img is the
# ROM partition, read as this interpreter's first allocation and mounted at
# /rom, first on sys.path, as hil/board_lib/_emuboot.py does; the runner gives
# the interpreter 192K plus the image (hil/emulated.py heap_bytes_for).
import sys
import vfs

try:
    _f = open("rom/romfs.img", "rb")
except OSError:  # the files layout
    ROM_BYTES = 0
else:
    _rom = bytearray(_f.seek(0, 2))
    _f.seek(0)
    _f.readinto(_rom)
    _f.close()
    del _f
    ROM_BYTES = len(_rom)
    vfs.mount(vfs.VfsRom(_rom), "/rom")
    sys.path[0:0] = ["/rom", "/rom/lib"]
import gc
import json
import sys

import main
from node import msgs, wire
from runtime.clock import MissionClock

HOURS = int(sys.argv[1]) if len(sys.argv) > 1 else 4
BIDDERS = int(sys.argv[2]) if len(sys.argv) > 2 else 200
T = [0]


class Link:
    """Scripted input as a UART gives it: one frame at a time into a fixed
    buffer. Frames are encoded when the board reads them (next_frame), so
    the script holds one frame, not a slot's worth of bids: what the heap
    holds is the board's."""

    def __init__(self, next_frame):
        self.next_frame = next_frame  # () -> bytes of the next line, or None
        self.frame = b""
        self.at = 0
        self.buf = bytearray(128)
        self._mv = memoryview(self.buf)
        self.out = 0

    def wait(self, timeout_ms):
        if self.at < len(self.frame):
            return True
        f = self.next_frame()
        if f is not None:
            self.frame, self.at = f, 0
            return True
        T[0] += timeout_ms if timeout_ms > 0 else 1
        return False

    def read(self):
        n = min(len(self.frame) - self.at, len(self.buf))
        self.buf[:n] = memoryview(self.frame)[self.at:self.at + n]
        self.at += n
        return n

    def view(self, n):
        return self._mv[:n]

    def write(self, data):
        self.out += 1


def main_():
    bids = []  # [round, bidders left, next k]: the bids of the round under way, made one by one
    st = {}

    def next_frame():
        if not bids or bids[1] == 0:
            return None
        rnd, left, k = bids
        bids[1] -= 1
        bids[2] += 1
        src = st["roster"][1 + (k * 7919 + rnd) % (st["n"] - 1)]
        st["seq"] += 1
        st["counter"] += 1
        p = msgs.pack(msgs.BID, rnd, st["seq"], rnd + 1, 0xFFFF, 8 + k % 32, 1 << (4 + k % 2), 1, 3, 1, 1)
        return wire.encode(msgs.BID, src, st["id"], p, st["seq"], st["auth"], st["counter"], 3)

    link = Link(next_frame)
    with open("board.json") as f:
        scale = json.load(f).get("time_scale_milli", 1000)
    try:
        sh = main.build(link=link, clock=MissionClock(scale, lambda: T[0], lambda a, b: a - b))
    except MemoryError as e:
        print(json.dumps({"booted": False, "error": str(e)}))
        return
    gc.collect()
    node = sh.node
    region = node.region
    mcfg = region.cfg
    end_ms = HOURS * 3600 * 1000
    lowest = gc.mem_free()
    last_round = -1
    n = len(mcfg.roster)
    st.update(roster=mcfg.roster, n=n, id=node.id, auth=node.auth, seq=1, counter=1)
    while sh.clock.now_ms() < end_ms:
        sh.step()
        if sh.out_of_memory > 100:  # it survives each one, but makes no progress: the region is too large
            break
        m = region.market
        if m is not None and m.round != last_round and node.seat is not None and node.seat.coordinator == node.id:
            last_round = m.round
            bids[:] = [m.round, BIDDERS if BIDDERS < n - 1 else n - 1, 0]
        if sh.iterations % 64 == 0:
            gc.collect()
            free = gc.mem_free()
            if free < lowest:
                lowest = free
    gc.collect()
    m = region.market
    print(json.dumps({
        "booted": True, "nodes": n, "mission_ms": sh.clock.now_ms(), "hours": HOURS, "bidders": BIDDERS, "heap_total": gc.mem_free() + gc.mem_alloc() - ROM_BYTES, "rom_bytes": ROM_BYTES,
        "heap_free": node.heap_free, "heap_min": node.heap_min, "lowest_sampled": lowest,
        "rounds": m.rounds if m is not None else 0, "awarded": m.awarded if m is not None else 0,
        "refused": sum(node.errors), "out_of_memory": sh.out_of_memory, "iterations": sh.iterations,
        "coordinator": node.seat.coordinator if node.seat is not None else 0,
    }))


main_()
