"""Update images: the firmware image `hil flash` builds (hil/image.py), as
one authenticated artifact a node fetches over the link (docs/UPDATES.md).

    b"FLIM" | body_len u32 LE | manifest (JSON) | tag | files back to back

The manifest says version, label, lineage, protocol range, test_build,
defects, each file's path, size and sha256, and `digest` (sha256 of the files
region); tag = HMAC-SHA256(fleet key, manifest bytes). The node checks all of
it with the same layout (firmware/runtime/slots.py). `hil image build` writes
one, `hil image show` prints and checks one.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import struct
import sys
import tempfile

from hil import image

MAGIC = b"FLIM"
TAG_LEN = 32
FORMAT = 1
DEFECTS = ("crash_after_h", "crash_on_coordinator", "mute_as_coordinator", "leak_heap", "lineage")


class ImageError(ValueError):
    """An image file that is not what it claims; the message names the file and the fault."""


def protocols(version: tuple[int, int]) -> tuple[int, int]:
    from ground import firmware  # noqa: F401  (puts firmware/ on sys.path)
    from node import config

    return config.protocols(version)


def pack(files: list[tuple[str, bytes]], version: tuple[int, int], key: bytes | None = None, label: str | None = None,
         lineage: int = 0, test_build: bool = False, defects: dict | None = None) -> bytes:
    """The image bytes of `files` [(path on the board, bytes)] plus version.json."""
    files = [f for f in files if f[0] != "version.json"] + [("version.json", image.version_json(version, label))]
    region = b"".join(data for _, data in files)
    manifest = {
        "format": FORMAT,
        "version": list(version),
        "label": label or "%d.%d" % version,
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


def build(version: tuple[int, int], key: bytes | None = None, mpy: bool = True, **kw) -> bytes:
    """Compile the firmware (mpy-cross -march=armv6m, as `hil flash`) and pack it.
    boot.py stays the root image's: a slot's modules are found through
    sys.path, and boot.py runs from the root."""
    with tempfile.TemporaryDirectory() as d:
        built = image.build(d, mpy=mpy)
        files = []
        for f in built:
            if f.remote == "boot.py":
                continue
            with open(f.local, "rb") as fh:
                files.append((f.remote, fh.read()))
    return pack(files, version, key, **kw)


def read(blob: bytes, key: bytes | None = None, name: str = "image") -> dict:
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


# ---- hil image build / show -------------------------------------------------


def _version(text: str) -> tuple[int, int]:
    try:
        major, minor = (int(x) for x in text.split("."))
        return major, minor
    except ValueError:
        raise argparse.ArgumentTypeError(f"version {text!r}: want MAJOR.MINOR") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    verbs = parser.add_subparsers(dest="image_verb", required=True, metavar="build|show")
    b = verbs.add_parser("build", help="compile the firmware and write an update image")
    b.add_argument("out", help="the image file to write")
    b.add_argument("--version", type=_version, default=(1, 0), help="MAJOR.MINOR (default 1.0)")
    b.add_argument("--label", default=None)
    b.add_argument("--lineage", type=int, default=0)
    b.add_argument("--key", default=None, help="the fleet key (hex), as in board.json auth_key")
    b.add_argument("--test-build", action="store_true", help="a test build: may declare defects")
    b.add_argument("--defect", action="append", default=[], metavar="NAME[=VALUE]",
                   help="a declared defect (%s); test builds only" % ", ".join(DEFECTS))
    b.add_argument("--no-mpy", action="store_true", help="modules as .py, not mpy-cross output")
    s = verbs.add_parser("show", help="print an image's manifest and check it")
    s.add_argument("image")
    s.add_argument("--key", default=None, help="check the tag with this fleet key (hex)")


def _key(text: str | None) -> bytes | None:
    if text is None:
        return None
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise ImageError(f"--key: {text!r} is not hex") from None


def main(args: argparse.Namespace) -> int:
    try:
        if args.image_verb == "build":
            defects: dict = {}
            for d in args.defect:
                k, _, v = d.partition("=")
                if k not in DEFECTS:
                    raise ImageError(f"--defect {k}: unknown (known: {', '.join(DEFECTS)})")
                defects[k] = json.loads(v) if v else True
            if defects and not args.test_build:
                raise ImageError("--defect needs --test-build: defects are never honoured in a real build")
            blob = build(args.version, _key(args.key), mpy=not args.no_mpy, label=args.label, lineage=args.lineage,
                         test_build=args.test_build, defects=defects)
            with open(args.out, "wb") as f:
                f.write(blob)
            m = read(blob, _key(args.key), args.out)
            print(f"{args.out}: {m['label']} ({len(m['files'])} files, {m['size']} bytes, sha256 {m['image_sha256'][:16]}...)")
            return 0
        try:
            with open(args.image, "rb") as f:
                blob = f.read()
        except OSError as e:
            raise ImageError(f"{args.image}: {e.strerror}") from None
        m = read(blob, _key(args.key), args.image)
        tag = {None: "not checked (no --key)", True: "ok"}[m["tag_ok"]]
        print(f"{args.image}: version {m['version'][0]}.{m['version'][1]} ({m['label']}), lineage {m['lineage']}, "
              f"protocols {m['proto'][0]}..{m['proto'][1]}, {m['size']} bytes")
        print(f"  sha256 {m['image_sha256']}  files digest {m['digest']}  tag {tag}")
        print(f"  test build: {'yes' if m['test_build'] else 'no'}; defects: {json.dumps(m['defects']) or 'none'}")
        for path, size, sha in m["files"]:
            print(f"  {size:7d}  {sha[:16]}  {path}")
        return 0
    except ImageError as e:
        print(f"hil image: {e}", file=sys.stderr)
        return 2
