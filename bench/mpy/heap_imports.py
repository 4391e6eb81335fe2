# Run under the MicroPython unix port with -X heapsize=192K, the current
# directory a board folder holding the .mpy image (bench/mpy/heap_boot_run.py
# makes one): where a board's heap goes at boot. Wraps __import__ so every
# module the boot loads is weighed (live heap after a collection, the
# module's own share: what its nested imports took is theirs), then builds
# the board as main.py does (main.build) and runs argv[1] shell steps.
# Prints one JSON line: the heap before anything, each module's own bytes in
# load order, what main.build took beyond its imports, and the live heap
# after the steps. Not a test: it asserts nothing.
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
import builtins
import gc
import json
import sys

STEPS = int(sys.argv[1]) if len(sys.argv) > 1 else 200
_real_import = builtins.__import__
_own = []  # [name, bytes]: each module's own share, in load order
_stack = []  # [bytes taken by nested imports] per import under way


def _weighed(name, *args):
    if name in sys.modules:
        return _real_import(name, *args)
    gc.collect()
    a0 = gc.mem_alloc()
    _stack.append(0)
    try:
        return _real_import(name, *args)
    finally:
        nested = _stack.pop()
        gc.collect()
        total = gc.mem_alloc() - a0
        if _stack:
            _stack[-1] += total
        _own.append([name, total - nested])


gc.collect()
base = gc.mem_alloc()
builtins.__import__ = _weighed
import main  # noqa: E402

T = [0]


class Link:
    """A link with nothing to read: a wait() is a sleep (fake time jumps)."""

    def wait(self, timeout_ms):
        T[0] += timeout_ms if timeout_ms > 0 else 1
        return False

    def read(self):
        return 0

    def view(self, n):
        return b""

    def write(self, data):
        pass


from runtime.clock import MissionClock  # noqa: E402

gc.collect()
a0 = gc.mem_alloc()
sh = main.build(link=Link(), clock=MissionClock(1000, lambda: T[0], lambda a, b: a - b))
builtins.__import__ = _real_import
gc.collect()
imported = 0
for _name, n in _own:
    imported += n
built = gc.mem_alloc() - base
for _ in range(STEPS):
    sh.step()
gc.collect()
print(json.dumps({"heap_total": gc.mem_alloc() + gc.mem_free() - ROM_BYTES, "rom_bytes": ROM_BYTES, "before": base, "modules": _own,
                  "modules_bytes": imported, "built_beyond_imports": built - imported, "after_build": built,
                  "after_steps": gc.mem_alloc() - base, "heap_min": sh.node.heap_min}))
