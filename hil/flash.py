"""Putting firmware on boards.

`write_image(folder, ...)` lays a firmware image out in a folder exactly as it
must appear on a board's flash: boot.py, main.py, node/, runtime/,
version.json and board.json (formats: docs/BOARD_SHELL.md). An emulated
board's folder *is* its flash, so this is how emulated boards are flashed
directly; the mpremote path copies the same layout to a device.
"""

import json
import os
import shutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIRMWARE = os.path.join(ROOT, "firmware")


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


def write_image(folder, version=(1, 0), label=None, board_config=None, firmware=FIRMWARE):
    """Copy the firmware into `folder` plus version.json and board.json."""
    os.makedirs(folder, exist_ok=True)
    for rel, src in image_files(firmware):
        dst = os.path.join(folder, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copyfile(src, dst)
    major, minor = version
    with open(os.path.join(folder, "version.json"), "w") as f:
        json.dump({"version": [major, minor], "label": label or "%d.%d" % (major, minor)}, f)
    if board_config is not None:
        with open(os.path.join(folder, "board.json"), "w") as f:
            json.dump(board_config, f)
    return folder
