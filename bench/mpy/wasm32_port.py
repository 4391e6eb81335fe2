"""A 32-bit MicroPython for heap figures: the official WebAssembly port
(npm @micropython/micropython-webassembly-pyscript, pinned in
bench/mpy/wasm32/package-lock.json), run by node through
bench/mpy/wasm32/run.mjs. wasm32 has 4-byte words and 16-byte GC blocks, as
an RP2040, so its objects take what a Pico's take; the unix port here is
64-bit. What it does not emulate (docs/HEAP.md): a fixed heap (it grows
instead of raising MemoryError), so fragmentation; and the rp2 port's C
modules (`machine` is the stand-in from hil/board_lib, compiled from source
on the heap, as on the unix port).

    .venv/bin/python -m bench.mpy.wasm32_port install   # npm ci into bench/mpy/wasm32 (make test does it)
    .venv/bin/python -m bench.mpy.wasm32_port check     # says whether it runs here
"""

import json
import os
import shutil
import subprocess
import sys

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "wasm32")
RUNNER = os.path.join(HERE, "run.mjs")
PACKAGE = "@micropython/micropython-webassembly-pyscript"
PACKAGE_DIR = os.path.join(HERE, "node_modules", *PACKAGE.split("/"))
INSTALL_TIMEOUT_S = 300


class Wasm32Error(Exception):
    """The 32-bit port cannot run, or a run failed: the message says which."""


def node():
    """Path of node, or None."""
    return shutil.which("node")


def installed():
    return os.path.exists(os.path.join(PACKAGE_DIR, "micropython.mjs"))


def available():
    """True if node is here and the package is installed."""
    return node() is not None and installed()


def install(timeout_s=INSTALL_TIMEOUT_S, again=False):
    """npm ci the pinned package into bench/mpy/wasm32/node_modules (if it is
    there already: only when `again`, as make does when the lock changed)."""
    if installed() and not again:
        return
    npm = shutil.which("npm")
    if npm is None or node() is None:
        raise Wasm32Error("bench/mpy/wasm32: %s not found: install Node.js 18+ and npm (Debian: apt-get install -y"
                          " nodejs npm)" % ("npm" if node() else "node"))
    try:
        out = subprocess.run([npm, "ci", "--prefix", HERE, "--no-audit", "--no-fund", "--loglevel=error"],
                             capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise Wasm32Error("bench/mpy/wasm32: npm ci took more than %d s (is the npm registry reachable?)"
                          % timeout_s) from None
    if out.returncode != 0 or not installed():
        last = (out.stdout + out.stderr).strip().splitlines()[-1:] or ["no output"]
        raise Wasm32Error("bench/mpy/wasm32: npm ci failed (exit %d): %s" % (out.returncode, last[0]))


def run(board, script, args=(), heap=192 * 1024, romfs=None, libs=(), timeout_s=600):
    """Run `script` (setup/chunk/finish, see run.mjs) for the board folder
    `board` on the 32-bit port with a heap of `heap` bytes and, if given, the
    ROM image `romfs` as its ROM partition; returns run.mjs's dict. The board
    folder is copied into the port's memory: nothing is written back."""
    if node() is None:
        raise Wasm32Error("bench/mpy/wasm32: node not found: install Node.js 18+")
    if not installed():
        raise Wasm32Error("bench/mpy/wasm32: %s is not installed: run `.venv/bin/python -m bench.mpy.wasm32_port"
                          " install` (make test does)" % PACKAGE)
    argv = [node(), RUNNER, "--board", board, "--heap", str(heap), "--script", script, "--timeout-s", str(timeout_s)]
    if romfs is not None:
        argv += ["--romfs", romfs]
    for d in libs:
        argv += ["--lib", d]
    argv += ["--", *[str(a) for a in args]]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s + 60)
    except subprocess.TimeoutExpired:
        raise Wasm32Error("%s on the 32-bit port: no answer within %d s" % (board, timeout_s + 60)) from None
    lines = out.stdout.strip().splitlines()
    try:
        r = json.loads(lines[-1])
    except (IndexError, ValueError):
        raise Wasm32Error("%s on the 32-bit port: run.mjs exited %d: %s"
                          % (board, out.returncode, (out.stdout + out.stderr).strip()[-400:])) from None
    if "error" in r:
        raise Wasm32Error("%s on the 32-bit port: %s %s" % (board, r["error"], r.get("output", "")))
    return r


def main(argv=None):
    what = (argv if argv is not None else sys.argv[1:]) or ["check"]
    try:
        if what[0] == "install":
            install(again=True)
            print("bench/mpy/wasm32: %s installed" % PACKAGE)
        elif what[0] == "check":
            print("bench/mpy/wasm32: node %s, %s %s" % (node() or "missing", PACKAGE,
                                                        "installed" if installed() else "not installed"))
            return 0 if available() else 1
        else:
            print("usage: python -m bench.mpy.wasm32_port [install|check]", file=sys.stderr)
            return 2
    except Wasm32Error as e:
        print(e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
