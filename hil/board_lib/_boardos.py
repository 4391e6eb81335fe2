# _boardos.py: the emulated Pico's `os`: the unix port's, plus what rp2 has.
#
# _emuboot.py puts this module in sys.modules as "os", so `import os` on the
# board (main.py, the REPL, mpremote's commands) gets it. Everything the
# unix port's os has is here unchanged; os.uname(), which the unix port lacks
# and a Pico answers, is added. Its machine is a Pico's; its version says
# the board is emulated, and which MicroPython build runs it.
from os import *  # noqa: F401,F403
import sys
from collections import namedtuple

__name__ = "os"

_uname_result = namedtuple("uname_result", ("sysname", "nodename", "release", "version", "machine"))


def _release():
    v = sys.implementation.version
    r = "%d.%d.%d" % (v[0], v[1], v[2])
    return r + "-" + v[3] if len(v) > 3 and v[3] else r


def uname():
    return _uname_result("rp2", "rp2", _release(), "v%s (emulated Pico: MicroPython unix port)" % _release(),
                         "Raspberry Pi Pico with RP2040")
