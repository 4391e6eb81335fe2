"""Update images (FLIM), packed and checked: the format a node fetches over
its link (docs/UPDATES.md), shared by `hil image` (hil/update_image.py, which
adds the compiled firmware) and in-process updates (ground/update_sim.py).

    b"FLIM" | body_len u32 LE | manifest (JSON) | tag (32 bytes) | the files, back to back

tag = HMAC-SHA256(fleet key, manifest bytes). The node checks the same
layout in firmware/runtime/slots.py.

    blob = pack([(path, bytes)], (1, 1), key, lineage=0, test_build=False, defects={})
    manifest = read(blob, key, name="runs/fw.flim")   # ImageError naming the fault
"""

import hashlib
import hmac
import json
import struct

MAGIC = b"FLIM"
TAG_LEN = 32
FORMAT = 1
DEFECTS = ("crash_after_h", "crash_on_coordinator", "mute_as_coordinator", "leak_heap", "bid_nonsense",
           "wrong_ledger_digest", "lineage")


class ImageError(ValueError):
    """An image that is not what it claims; the message names it and the fault."""


def version_json(version, label=None):
    """version.json's bytes (docs/BOARD_SHELL.md)."""
    return json.dumps({"version": list(version), "label": label or "%d.%d" % tuple(version)}).encode()


def protocols(version):
    """The protocol range a firmware version speaks (firmware/node/config.py)."""
    from ground import firmware

    return firmware.config.protocols(tuple(version))


def pack(files, version, key=None, label=None, lineage=0, test_build=False, defects=None):
    """The image bytes of `files` [(path on the board, bytes)] plus version.json."""
    files = [f for f in files if f[0] != "version.json"] + [("version.json", version_json(version, label))]
    region = b"".join(data for _, data in files)
    manifest = {
        "format": FORMAT,
        "version": list(version),
        "label": label or "%d.%d" % tuple(version),
        "lineage": lineage,
        "proto": list(protocols(version)),
        "test_build": bool(test_build),
        "defects": defects or {},
        "files": [[name, len(data), hashlib.sha256(data).hexdigest()] for name, data in files],
        "digest": hashlib.sha256(region).hexdigest(),
    }
    body = json.dumps(manifest, sort_keys=True).encode()
    tag = hmac.new(key or b"", body, hashlib.sha256).digest()
    return MAGIC + struct.pack("<I", len(body)) + body + tag + region


def read(blob, key=None, name="image"):
    """The manifest of an image, checked: ImageError naming the fault. With
    key=None the tag is not checked (`tag_ok` says None)."""
    if len(blob) < 8 or blob[:4] != MAGIC:
        raise ImageError(f"{name}: not an update image (no FLIM header)")
    (n,) = struct.unpack_from("<I", blob, 4)
    if 8 + n + TAG_LEN > len(blob):
        raise ImageError(f"{name}: truncated: manifest of {n} bytes in {len(blob)} bytes")
    body, tag = blob[8:8 + n], blob[8 + n:8 + n + TAG_LEN]
    try:
        m = json.loads(body)
    except ValueError as e:
        raise ImageError(f"{name}: manifest is not JSON: {e}") from None
    m["tag_ok"] = None if key is None else hmac.compare_digest(hmac.new(key, body, hashlib.sha256).digest(), tag)
    if m["tag_ok"] is False:
        raise ImageError(f"{name}: manifest tag is not this fleet key's")
    off = 8 + n + TAG_LEN
    total = off + sum(f[1] for f in m["files"])
    if total != len(blob):
        raise ImageError(f"{name}: truncated: manifest lists {total} bytes, file has {len(blob)}")
    for path, size, sha in m["files"]:
        if hashlib.sha256(blob[off:off + size]).hexdigest() != sha:
            raise ImageError(f"{name}: {path}: sha256 is not the manifest's")
        off += size
    if hashlib.sha256(blob[8 + n + TAG_LEN:]).hexdigest() != m["digest"]:
        raise ImageError(f"{name}: files digest is not the manifest's")
    if m.get("defects") and not m.get("test_build"):
        raise ImageError(f"{name}: declares defects but is not a test build")
    m["image_sha256"] = hashlib.sha256(blob).hexdigest()
    m["size"] = len(blob)
    return m
