# Run under a MicroPython, the current directory a board folder holding the
# .mpy image (hil/flash.py build and write_image; bench/mpy/heap_seat_run.py
# makes one): the whole board -- main.build(), the shell, the node core with
# its regional seat and market tier, signed -- over argv[1] mission hours,
# fed by a scripted link. As an elector (argv[3] "elector", the default) the
# board is the region's only elector, so it coordinates the region's market;
# each slot, argv[2] roster nodes bid (signed BID frames through the shell).
# As a trader ("trader": a board of a 1,000-node region as
# tests/hil/test_hardening.py runs one) it first hears a signed HELLO from
# every other roster node and argv[4] (default 2000) strangers.
# Two runtimes, one file: setup() boots the board, chunk(peak) runs shell
# steps up to the next heap sample (after a step with more than the peak
# allocated, or argv[5] steps, default 64; True once the hours are done),
# finish() returns the figures.
# - the unix port (64-bit; `micropython -X heapsize=... heap_seat.py ...`):
#   the loop at the bottom drives them and samples the free heap after a
#   collection between chunks, then prints one JSON line: heap figures as
#   TELEMETRY carries them (the shell's samples: free after a collection,
#   low-water since boot), the lowest free heap sampled, rounds, awards,
#   refusals.
# - the WebAssembly port (32-bit; bench/mpy/wasm32/run.mjs imports this
#   module and drives the same three from JS, sampling at top level, where
#   alone that port collects).
# Fake time: a wait() that sees no input advances the clock by its timeout.
# The romfs layout (docs/HEAP.md): on the unix port the board folder's
# rom/romfs.img is the ROM partition, read as this interpreter's first
# allocation and mounted at /rom, first on sys.path, as
# hil/board_lib/_emuboot.py does; the runner gives the interpreter 192K plus
# the image (hil/emulated.py heap_bytes_for). The WebAssembly port gets the
# image as its ROM partition outside the heap (run.mjs --romfs), already
# mounted: the board folder it sees has no rom/.
import sys
import vfs

try:
    _f = open("rom/romfs.img", "rb")
except OSError:  # the files layout, or a ROM the port mounted itself
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

HOURS = float(sys.argv[1]) if len(sys.argv) > 1 else 4
BIDDERS = int(sys.argv[2]) if len(sys.argv) > 2 else 200
ROLE = sys.argv[3] if len(sys.argv) > 3 else "elector"
STRANGERS = int(sys.argv[4]) if len(sys.argv) > 4 else 2000
STEPS = int(sys.argv[5]) if len(sys.argv) > 5 else 64  # shell steps a chunk: the heap is sampled between chunks
T = [0]
G = {}  # the run's state between setup(), chunk() and finish()


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


def setup():
    """Boot the board (main.build); False if it does not fit."""
    bids = []  # [round, bidders left, next k]: the bids of the round under way, made one by one
    hellos = [0, 0]  # [next roster HELLO, next stranger]: a trader's first frames, made one by one
    st = {}

    def next_frame():
        if ROLE == "trader":
            return next_hello()
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

    def next_hello():
        if hellos[0] < st["n"]:
            src = st["roster"][hellos[0]]
            hellos[0] += 1
            if src == st["id"]:
                return next_hello()
        elif hellos[1] < STRANGERS:
            hellos[1] += 1
            src = st["n"] + hellos[1]
        else:
            return None
        return wire.encode(msgs.HELLO, src, st["id"], st["hello"], 0, st["auth"], 7, 1)

    link = Link(next_frame)
    with open("board.json") as f:
        scale = json.load(f).get("time_scale_milli", 1000)
    try:
        sh = main.build(link=link, clock=MissionClock(scale, lambda: T[0], lambda a, b: a - b))
    except MemoryError as e:
        G.update(booted=False, error=str(e))
        return False
    node = sh.node
    region = node.region
    n = len(region.cfg.roster)
    st.update(roster=region.cfg.roster, n=n, id=node.id, auth=node.auth, seq=1, counter=1,
              hello=msgs.pack(msgs.HELLO, 1, 3, 0, 0, 1, 3, 1))
    G.update(booted=True, sh=sh, node=node, region=region, n=n, bids=bids, last_round=-1, end_ms=int(HOURS * 3600 * 1000))
    return True


def chunk(peak=0):
    """Shell steps up to the next heap sample, given the highest live heap
    sampled so far (bytes after a collection): after the first step with
    more than `peak` allocated, garbage included (only there can the live
    heap be above it: so no step's live heap above the peak goes unseen), or
    after STEPS steps. True once the hours are done (or the board makes no
    progress)."""
    if not G["booted"]:
        return True
    sh = G["sh"]
    node = G["node"]
    region = G["region"]
    bids = G["bids"]
    for _ in range(STEPS):
        if sh.clock.now_ms() >= G["end_ms"]:
            return True
        sh.step()
        if sh.out_of_memory > 100:  # it survives each one, but makes no progress: the region is too large
            return True
        m = region.market
        if m is not None and m.round != G["last_round"] and node.seat is not None and node.seat.coordinator == node.id:
            G["last_round"] = m.round
            bids[:] = [m.round, BIDDERS if BIDDERS < G["n"] - 1 else G["n"] - 1, 0]
        if gc.mem_alloc() > peak:
            return False
    return False


def _nbytes(x):
    if isinstance(x, bytearray):
        return len(x)
    try:
        return len(x) * memoryview(x).itemsize
    except AttributeError:  # the unix port's memoryview has no itemsize: count a copy, if there is room
        try:
            return len(bytes(x))
        except MemoryError:
            return 0


def tables(root, min_bytes=256):
    """[path, bytes] of every bytearray and array of at least min_bytes
    reachable through the instance attributes of the node's objects (each
    once, under the first path found): the board's tables, the same bytes
    on every MicroPython."""
    from array import array

    out = []
    seen = set()
    todo = [("node", root, 0)]
    while todo:
        path, obj, depth = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        for k, v in getattr(obj, "__dict__", {}).items():
            if isinstance(v, (bytearray, array)):
                if id(v) in seen:
                    continue
                seen.add(id(v))
                n = _nbytes(v)
                if n >= min_bytes:
                    out.append([path + "." + k, n])
            elif depth < 4 and hasattr(v, "__dict__") and not isinstance(v, type):
                todo.append((path + "." + k, v, depth + 1))
    out.sort(key=lambda e: -e[1])
    return out


def finish():
    """The figures the board and its run give (the runner adds its heap samples)."""
    if not G["booted"]:
        return {"booted": False, "error": G["error"]}
    from node import refusal  # here, after the samples: not part of the board's heap

    sh = G["sh"]
    node = G["node"]
    m = G["region"].market
    return {
        "booted": True, "role": ROLE, "nodes": G["n"], "mission_ms": sh.clock.now_ms(), "hours": HOURS,
        "bidders": BIDDERS, "rom_bytes": ROM_BYTES, "heap_free": node.heap_free, "heap_min": node.heap_min,
        "rounds": m.rounds if m is not None else 0, "awarded": m.awarded if m is not None else 0,
        "bids_in": m.bids_in if m is not None else 0,
        "bids_full": m.refused[refusal.FULL] if m is not None else 0,  # bids beyond the book (bid again next round)
        "no_room": m.ledger.no_room if m is not None else 0,  # awards the holder's record slots could not hold
        "max_bids": m.book.max if m is not None else 0, "leases_per_node": m.ledger.per_holder if m is not None else 0,
        "refused": sum(node.errors), "out_of_memory": sh.out_of_memory, "iterations": sh.iterations,
        "coordinator": node.seat.coordinator if node.seat is not None else 0,
        "tables": tables(node),
    }


def main_():
    """The unix port's loop: setup, chunks, a collection and a sample between them."""
    if not setup():
        print(json.dumps(finish()))
        return
    gc.collect()
    lowest = gc.mem_free()
    peak = gc.mem_alloc()
    while not chunk(peak):
        gc.collect()
        free = gc.mem_free()
        if free < lowest:
            lowest = free
        if gc.mem_alloc() > peak:
            peak = gc.mem_alloc()
    gc.collect()
    r = finish()
    r.update(runtime="unix64", heap_total=gc.mem_free() + gc.mem_alloc() - ROM_BYTES, lowest_sampled=lowest)
    print(json.dumps(r))


if __name__ == "__main__":
    main_()
