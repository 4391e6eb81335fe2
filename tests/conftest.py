# The firmware's core is imported as the package `node`, as it is on a board;
# under CPython, ground/shims supplies the `micropython` module (const()).
import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for p in (os.path.join(_ROOT, "ground", "shims"), os.path.join(_ROOT, "firmware"), os.path.join(_ROOT, "tests", "core"),
          os.path.join(_ROOT, "tests")):
    if p not in sys.path:
        sys.path.insert(0, p)
