"""Where a board's heap goes at boot (issue #14.5): each module's own bytes,
what building the node takes beyond its code, and the live heap once built,
for a board of a region of N nodes, as elector or trader. Not a test: it
asserts nothing; it prints figures and the machine.

For each size it writes the firmware image as `hil flash` does (.mpy
modules) and a board folder (signed; the board the region's only elector,
or node 2, a trader), and runs bench/mpy/heap_imports.py in the MicroPython
unix port with a heap large enough not to fail (-X heapsize, default 512K),
so the figures are what the board needs, not where 192K ran out. The unix
port is 64-bit (pointers, object headers and 32-byte GC blocks twice a
Pico's); the .mpy bytes of the modules loaded are printed too: bytecode a
Pico holds as well, so a floor for its code's heap.

    .venv/bin/python -m bench.mpy.heap_boot_run [--sizes 10,100,1000] [--heap 512K]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from bench.machine_info import describe  # noqa: E402
from bench.mpy.heap_seat_run import MICROPYTHON, board_cfg  # noqa: E402
from hil import flash as flash_mod  # noqa: E402
from hil.emulated import heap_bytes_for  # noqa: E402


def run(n, role, heap, built, folder, code="romfs"):
    cfg = board_cfg(n)
    if role == "trader":
        cfg.update(node_id=2, members=[2])
    bdir = os.path.join(folder, "%s%d-%s" % (role, n, code))
    flash_mod.write_image(bdir, version=(3, 0), label="3.0-bench", board_config=cfg, built=built, code=code)
    rom = os.path.join(bdir, flash_mod.EMU_ROM_IMAGE)
    heap_bytes = heap_bytes_for(heap, os.path.getsize(rom) if os.path.exists(rom) else 0)
    env = dict(os.environ, MICROPYPATH=".:" + os.path.join(ROOT, "hil", "board_lib"))
    out = subprocess.run([MICROPYTHON, "-X", "heapsize=%d" % heap_bytes, os.path.join(ROOT, "bench", "mpy",
                          "heap_imports.py"), "200"], cwd=bdir, env=env, capture_output=True, text=True, timeout=600)
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines:
        raise SystemExit("%s of %d nodes: %s" % (role, n, (out.stdout + out.stderr).strip()[-400:]))
    r = json.loads(lines[-1])
    mpy = 0
    by_remote = {f.remote: f.size for f in built}
    for name, _ in r["modules"]:
        mpy += by_remote.get("/".join(name.split(".")) + ".mpy", 0)
    r["mpy_bytes"] = mpy
    return r


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10,100,1000")
    ap.add_argument("--heap", default="512K", help="the unix port's heap for the measurement (plus the ROM image)")
    ap.add_argument("--code", default="romfs,files", help="layouts to measure, side by side: romfs, files")
    a = ap.parse_args(argv)
    print("machine:", describe())
    with tempfile.TemporaryDirectory() as folder:
        built = flash_mod.build(os.path.join(folder, ".image"))
        runs = [(code, n, role) for code in a.code.split(",") for n in [int(x) for x in a.sizes.split(",")]
                for role in ("elector", "trader")]
        for code, n, role in runs:
            r = run(n, role, a.heap, built, folder, code)
            mods = sorted((m for m in r["modules"] if m[1] > 0), key=lambda m: -m[1])
            print("[%s] %s of a %d-node region: live once built %d B (modules %d B as loaded, their .mpy files"
                  " %d B; the node's tables and objects %d B), after 200 shell steps %d B"
                  % (code, role, n, r["after_build"], r["modules_bytes"], r["mpy_bytes"],
                     r["built_beyond_imports"], r["after_steps"]), flush=True)
            print("   modules, own bytes as loaded (boot-only ones dropped later included): "
                  + ", ".join("%s %d" % (name, b) for name, b in mods), flush=True)


if __name__ == "__main__":
    main()
