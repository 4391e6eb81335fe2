# The board's side of an update: the staging file, the image check, the
# slot it is unpacked into, and the boot pointer's moves (docs/UPDATES.md).
#
#     st = Slots(key)              # key: the fleet key (board.json auth_key) or None
#     st.begin()                   # ACT_BEGIN: a fresh staging file
#     st.write(index, size, data)  # ACT_WRITE: chunk at index * chunk_size
#     reason = st.verify_and_unpack(agent)   # ACT_VERIFY: node.update.R_* (R_NONE: unpacked)
#     st.install()                 # ACT_INSTALL: pointer -> the new slot as trial
#     st.confirm()                 # ACT_CONFIRM
#     st.rollback()                # ACT_ROLLBACK: pointer -> the previous image
#
# The image (hil/image.py builds it) is one byte string:
#     b"FLIM" | body_len u32 LE | manifest body (JSON) | tag (32 bytes) | the files, back to back
# tag = HMAC-SHA256(fleet key, body). The manifest lists each file's path,
# size and sha256, the digest of the files region, version, lineage,
# protocol range, test_build and defects. A board without a fleet key checks
# the tag with the empty key (the image is then only checked, not
# authenticated: docs/UPDATES.md).
#
# Unpacking goes into the slot not running and not the pointer's: first its
# `ok` marker goes, then its old files, then the new files and the manifest,
# then `ok` (the digest). A cut anywhere leaves a slot without `ok`, which
# boot never runs (bootslot.py). Reads and hashes in 512-byte pieces: the
# image never sits whole in the heap.

import binascii
import hashlib
import json
import os
import struct

import bootinfo
import bootslot
from node import update as U

STAGE_DIR = "upd"
STAGE = "upd/image.bin"
MAGIC = b"FLIM"
HEAD_LEN = 8
TAG_LEN = 32
_PIECE = 512


def hmac_sha256(key, data):
    """HMAC-SHA256 (RFC 2104) from hashlib.sha256: MicroPython has no hmac."""
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    key = bytes(key) + bytes(64 - len(key))
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
    inner.update(data)
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
    outer.update(inner.digest())
    return outer.digest()


def _mkdirs(path):
    cur = ""
    for part in path.split("/")[:-1]:
        cur = cur + "/" + part if cur else part
        try:
            os.mkdir(cur)
        except OSError:
            pass


def _rmtree(path):
    try:
        entries = list(os.ilistdir(path))
    except OSError:
        return
    for e in entries:
        p = path + "/" + e[0]
        if e[1] == 0x4000:
            _rmtree(p)
        else:
            os.remove(p)
    os.rmdir(path)


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


class Slots:
    def __init__(self, key=None, feed=None):
        self.key = key or b""
        self.feed = feed  # called between pieces of long work (the watchdog)
        self.last_error = None  # one line: why the last verify refused

    # ---- staging ---------------------------------------------------------

    def begin(self):
        _mkdirs(STAGE)
        with open(STAGE, "wb"):
            pass

    def write(self, offset, data):
        if not _exists(STAGE):
            self.begin()
        with open(STAGE, "r+b") as f:
            f.seek(offset)
            f.write(data)

    # ---- checking and unpacking --------------------------------------------

    def _refuse(self, reason, text):
        self.last_error = "update: %s: %s" % (U.REASON_NAMES[reason], text)
        return reason

    def verify_and_unpack(self, agent):
        """Check the staged image against the agent's offer and its manifest;
        unpack it into the free slot. node.update.R_NONE, or the refusal."""
        try:
            size = os.stat(STAGE)[6]
        except OSError:
            return self._refuse(U.R_TRUNCATED, "no staged image")
        if size != agent.size:
            return self._refuse(U.R_TRUNCATED, "%d bytes staged, offer says %d" % (size, agent.size))
        h = hashlib.sha256()
        with open(STAGE, "rb") as f:
            head = f.read(HEAD_LEN)
            h.update(head)
            if len(head) < HEAD_LEN or head[:4] != MAGIC:
                return self._refuse(U.R_TRUNCATED, "not an image")
            (body_len,) = struct.unpack_from("<I", head, 4)
            if HEAD_LEN + body_len + TAG_LEN > size or body_len > 8192:
                return self._refuse(U.R_TRUNCATED, "manifest of %d bytes in a %d byte image" % (body_len, size))
            body = f.read(body_len)
            tag = f.read(TAG_LEN)
            h.update(body)
            h.update(tag)
            while True:
                piece = f.read(_PIECE)
                if not piece:
                    break
                h.update(piece)
        if h.digest() != agent.digest:
            return self._refuse(U.R_DIGEST, "image sha256 is not the offer's")
        if hmac_sha256(self.key, body) != tag:
            return self._refuse(U.R_TAG, "manifest tag is not the fleet key's")
        try:
            m = json.loads(body)
            files = m["files"]
            version = m["version"]
        except (ValueError, KeyError, TypeError):
            return self._refuse(U.R_TRUNCATED, "manifest is not JSON")
        total = HEAD_LEN + body_len + TAG_LEN
        for entry in files:
            total += entry[1]
        if total != size:
            return self._refuse(U.R_TRUNCATED, "manifest lists %d bytes, image has %d" % (total, size))
        if m.get("defects") and not m.get("test_build"):
            return self._refuse(U.R_DEFECT, "defects declared by an image that is not a test build")
        if (version[0], version[1]) != agent.version or m.get("lineage", 0) != agent.lineage:
            return self._refuse(U.R_OFFER, "manifest version %r is not the offer's" % (version,))
        return self._unpack(m, files, HEAD_LEN + body_len + TAG_LEN, body, agent.digest)

    def target(self):
        """The slot an image is unpacked into: neither the running one nor
        the pointer's (a trial's prev stays intact)."""
        p = bootslot.read_pointer() or {}
        busy = (bootinfo.slot, p.get("slot"))
        return "a" if "a" not in busy else "b"

    def _unpack(self, m, files, offset, body, digest):
        slot = self.target()
        d = bootslot.slot_dir(slot)
        ok = d + "/ok"
        if _exists(ok):
            os.remove(ok)  # first: from here on the slot is not runnable
        _rmtree(d)
        _mkdirs(ok)
        fh = hashlib.sha256()
        with open(STAGE, "rb") as src:
            src.seek(offset)
            for entry in files:
                name, n, sha = entry[0], entry[1], entry[2]
                if name.startswith("/") or ".." in name or name == "ok":
                    return self._refuse(U.R_TRUNCATED, "file name %r" % name)
                dst = d + "/" + name
                _mkdirs(dst)
                h = hashlib.sha256()
                with open(dst, "wb") as out:
                    left = n
                    while left:
                        piece = src.read(min(_PIECE, left))
                        if not piece:
                            return self._refuse(U.R_TRUNCATED, "%s cut short" % name)
                        h.update(piece)
                        fh.update(piece)
                        out.write(piece)
                        left -= len(piece)
                        if self.feed is not None:
                            self.feed()
                if binascii.hexlify(h.digest()).decode() != sha:
                    return self._refuse(U.R_DIGEST, "%s sha256 is not the manifest's" % name)
        if binascii.hexlify(fh.digest()).decode() != m.get("digest"):
            return self._refuse(U.R_DIGEST, "files digest is not the manifest's")
        with open(d + "/manifest.json", "wb") as f:
            f.write(body)
        bootslot._sync()
        with open(ok, "w") as f:
            f.write(binascii.hexlify(digest).decode())
        bootslot._sync()
        self.unpacked = slot
        return U.R_NONE

    # ---- the boot pointer --------------------------------------------------

    def install(self):
        """Pointer -> the unpacked slot as a trial; the caller resets."""
        slot = getattr(self, "unpacked", None) or self._find_unpacked()
        if slot is None:
            return False
        bootslot.write_pointer({"slot": slot, "state": "trial", "prev": bootinfo.slot})
        return True

    def _find_unpacked(self):
        t = self.target()
        return t if bootslot.slot_ok(t) else None

    def confirm(self):
        p = dict(bootinfo.pointer or {"slot": bootinfo.slot, "prev": None})
        p["state"] = "confirmed"
        p["slot"] = bootinfo.slot
        bootslot.write_pointer(p)
        bootinfo.pointer = p

    def rollback(self):
        prev = bootslot.previous()
        if prev is None:
            return False
        bootslot.write_pointer({"slot": prev, "state": "confirmed", "prev": bootinfo.slot})
        return True
