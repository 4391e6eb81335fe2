"""The firmware's pure core, imported into CPython.

In-process nodes run the very files a Pico runs (firmware/node/). They import
each other as the package `node` and need `micropython.const`; this puts
firmware/ and the CPython shim (ground/shims) on sys.path once, here, and
re-exports the modules the ground uses.
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIRMWARE = os.path.join(ROOT, "firmware")
for _p in (os.path.join(ROOT, "ground", "shims"), FIRMWARE):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from node import config, election, msgs, wire  # noqa: E402
from node import node as core  # noqa: E402

__all__ = ["config", "core", "election", "msgs", "wire", "FIRMWARE", "ROOT"]
