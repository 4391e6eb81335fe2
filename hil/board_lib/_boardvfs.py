# _boardvfs.py: the emulated Pico's `vfs` when its MicroPython has ROMFS.
#
# _emuboot.py puts this module in sys.modules as "vfs" on a board with a ROM
# partition, so `import vfs` on the board (the firmware, mpremote's `romfs`
# commands) gets it. Everything the unix port's vfs has is here unchanged;
# rom_ioctl, which the unix port lacks and a Pico built with ROMFS has, is
# _emuboot's stand-in for the partition (set by _emuboot at boot).
from vfs import *  # noqa: F401,F403

__name__ = "vfs"

rom_ioctl = None
