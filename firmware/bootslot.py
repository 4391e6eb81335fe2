# Boot-slot selection: which image this boot runs (docs/UPDATES.md).
#
# Flash holds up to three images: the factory image at the root (boot.py,
# main.py, node/, runtime/, version.json: what `hil flash` writes, never
# touched by an update) and two update slots, slots/a and slots/b. A small
# boot pointer, state/boot.ptr, names the slot to run and its state:
#     confirmed     run it
#     trial         a new image's first boot: mark it trial_booted FIRST, then run it
#     trial_booted  the trial was reset before it confirmed (crash, watchdog,
#                   power cut): go back to `prev` and say reverted
#     reverted      run it (the previous image, after a failed trial)
# A slot is runnable only when its `ok` marker exists (written after every
# file of the slot); otherwise boot falls back to `prev`, then to the root.
# So a torn slot is never run and there is always an image to run.
#
# The pointer is written whole to boot.ptr.tmp, then renamed over boot.ptr
# (atomic on littlefs and POSIX); it carries a crc32, and a torn or missing
# pointer reads as the .tmp if that one is whole, else as "the root image,
# confirmed". select() runs from boot.py before anything else imports node/
# or runtime/: it puts the slot's folder (a real path) first on sys.path, so
# `import node` finds the slot's modules. This module imports nothing of the
# firmware's packages for that reason. What it decided goes into bootinfo.py
# (small, resident); boot.py drops this module afterwards (heap), and the
# update code (runtime/slots.py) imports it again when it moves the pointer.

import binascii
import json
import os
import sys

import bootinfo
from bootinfo import ROOT_SLOT, SLOTS

PTR = "state/boot.ptr"


def _sync():
    s = getattr(os, "sync", None)
    if s is not None:
        s()


def path(name, file):
    """A file of slot `name` relative to the flash root (the root image: "")."""
    return SLOTS + "/" + name + "/" + file if name else file


def slot_dir(name):
    """The slot's folder relative to the flash root ("" for the root image)."""
    return SLOTS + "/" + name if name else ""


def slot_ok(name):
    """A slot is runnable once its `ok` marker is written (the last file)."""
    if name is None:
        return False
    if name == ROOT_SLOT:
        return True
    try:
        os.stat(path(name, "ok"))
        return True
    except OSError:
        return False


def previous():
    """The image a rollback would return to (this boot's pointer), or None."""
    p = bootinfo.pointer
    prev = p.get("prev") if p else None
    return prev if slot_ok(prev) and prev != bootinfo.slot else None


def _decode(data):
    text = data.decode()
    cut = text.rfind("\n")
    if cut < 0 or int(text[cut + 1:], 16) != binascii.crc32(text[:cut].encode()):
        raise ValueError("bad crc")
    p = json.loads(text[:cut])
    if p.get("state") not in ("confirmed", "trial", "trial_booted", "reverted"):
        raise ValueError("bad state")
    return p


def read_pointer():
    """The pointer (dict), or None when there is none (factory image only)."""
    for name in (PTR, PTR + ".tmp"):
        try:
            with open(name, "rb") as f:
                return _decode(f.read())
        except (OSError, ValueError, KeyError):
            pass  # absent or torn: a torn boot.ptr cannot be (rename), a torn .tmp can
    return None


def write_pointer(p):
    """Commit pointer `p` atomically; returns once it would survive a cut."""
    body = json.dumps(p)
    data = "%s\n%08x" % (body, binascii.crc32(body.encode()))
    try:
        os.mkdir("state")
    except OSError:
        pass
    with open(PTR + ".tmp", "w") as f:
        f.write(data)
    _sync()
    os.rename(PTR + ".tmp", PTR)
    _sync()


def decide(p):
    """(slot to run, boot state, pointer to write first or None) for pointer p.
    Pure: tests drive it with every pointer shape."""
    if p is None:
        return ROOT_SLOT, "confirmed", None
    s, st, prev = p.get("slot", ROOT_SLOT), p["state"], p.get("prev")
    if st == "trial" and slot_ok(s):
        q = dict(p)
        q["state"] = "trial_booted"
        return s, "trial", q
    if st in ("trial", "trial_booted"):
        back = prev if slot_ok(prev) else ROOT_SLOT
        return back, "reverted", {"slot": back, "state": "reverted", "prev": None, "bad": s}
    if slot_ok(s):
        return s, st, None
    back = prev if slot_ok(prev) else ROOT_SLOT
    return back, "reverted", {"slot": back, "state": "reverted", "prev": None, "bad": s}


def select():
    """Choose this boot's image, write the pointer's new state before anything
    else runs, and put the slot's folder first on sys.path."""
    p = read_pointer()
    slot, boot_state, write = decide(p)
    if write is not None:
        write_pointer(write)
        p = write
    bootinfo.slot, bootinfo.boot_state, bootinfo.pointer = slot, boot_state, p
    bootinfo.info = _read_manifest(slot)
    if slot != ROOT_SLOT:
        cwd = os.getcwd()
        sys.path.insert(0, (cwd if cwd != "/" else "") + "/" + slot_dir(slot))
    return slot


def _read_manifest(slot):
    """The running slot's manifest less its file list, or None (the root
    image has none). Read at boot, on a young heap: a few KB of JSON."""
    if slot == ROOT_SLOT:
        return None
    try:
        with open(path(slot, "manifest.json")) as f:
            m = json.loads(f.read())
    except (OSError, ValueError, MemoryError):
        return None
    m.pop("files", None)
    return m
