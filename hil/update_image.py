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
import json
import sys
import tempfile

from hil import image

# The format itself (pack, read, the checks) is the engine's, ground/flim.py:
# in-process updates use it too, and the engine never imports hil/.
from ground.flim import DEFECTS, FORMAT, MAGIC, TAG_LEN, ImageError, pack, protocols, read  # noqa: F401


def firmware_files(mpy: bool = True) -> list[tuple[str, bytes]]:
    """[(path on the board, bytes)] of the compiled firmware (mpy-cross
    -march=armv6m, as `hil flash`), boot.py left out: it stays the root
    image's (a slot's modules are found through sys.path, and boot.py runs
    from the root)."""
    with tempfile.TemporaryDirectory() as d:
        built = image.build(d, mpy=mpy)
        files = []
        for f in built:
            if f.remote == "boot.py":
                continue
            with open(f.local, "rb") as fh:
                files.append((f.remote, fh.read()))
    return files


def build(version: tuple[int, int], key: bytes | None = None, mpy: bool = True, **kw) -> bytes:
    """Compile the firmware and pack it as an update image of `version`."""
    return pack(firmware_files(mpy), version, key, **kw)


class Images:
    """A rollout's images for boards (ground.backends.BoardSet.update_image):
    the firmware compiled once (on the first call, or by compile() before a
    run starts), packed once per spec with that spec's manifest.

        images = Images(); images.compile()
        blob = images({"version": (1, 1), "label": None, "lineage": 0, "test_build": False,
                       "defects": {}, "key": b"..."})
    """

    def __init__(self, mpy: bool = True):
        self.mpy = mpy
        self.files: list | None = None
        self._packed: dict = {}

    def compile(self) -> "Images":
        if self.files is None:
            self.files = firmware_files(self.mpy)
        return self

    def __call__(self, spec: dict) -> bytes:
        key = (tuple(spec["version"]), spec.get("label"), spec.get("lineage", 0), bool(spec.get("test_build")),
               json.dumps(spec.get("defects") or {}, sort_keys=True), spec.get("key"))
        if key not in self._packed:
            self._packed[key] = pack(self.compile().files, tuple(spec["version"]), spec.get("key"),
                                     label=spec.get("label"), lineage=spec.get("lineage", 0),
                                     test_build=bool(spec.get("test_build")), defects=spec.get("defects") or {})
        return self._packed[key]


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
