# _boardvfs.py: the emulated Pico's `vfs` when its MicroPython has ROMFS.
#
# _emuboot.py puts this module in sys.modules as "vfs" on a board with a ROM
# partition, so `import vfs` on the board (the firmware, mpremote's `romfs`
# commands) gets it. Everything the unix port's vfs has is here unchanged;
# rom_ioctl, which the unix port lacks and a Pico built with ROMFS has, is a
# stand-in for rp2's ROM partition driver: _attach() gives it the partition
# (the bytearray _emuboot allocated first) and the host file that holds it.
#
# rom_ioctl as mpremote's `romfs query` and `romfs deploy` use it: 1 number of
# partitions, 2 the partition (a memoryview), 3 erase (offset, length; or the
# first length bytes), 4 write, 5 write complete, 6 its erase block size. A
# write changes the partition as mapped (as flash under XIP does) and the
# file, so the next boot sees it. Not modelled: erase and write timing, wear.
from vfs import *  # noqa: F401,F403
from vfs import VfsPosix
from micropython import const

__name__ = "vfs"

_SECTOR = const(4096)
_MIN_WRITE = const(4)
_EINVAL = const(22)
_ENOENT = const(2)
_ERASED = b"\xff" * 256  # erasing writes from this: a Pico erases without allocating

_rom = None  # the partition
_path = None  # the host file holding it
_host = VfsPosix()  # root-less: host paths (the board's "/" is its folder)


def _attach(rom, path):
    global _rom, _path
    _rom, _path = rom, path


def rom_ioctl(op, rom_id=0, *args):
    if op == 1:
        return 1
    if rom_id != 0:
        return -_ENOENT
    if op == 2:
        return memoryview(_rom)
    if op == 6:
        return _SECTOR
    if op == 5:
        return 0
    if op == 3:
        offset, length = args if len(args) == 2 else (0, args[0])
        if offset % _SECTOR or offset + length > len(_rom):
            return -_EINVAL
        for at in range(offset, offset + length, len(_ERASED)):
            _write(at, memoryview(_ERASED)[: min(len(_ERASED), offset + length - at)])
        return _MIN_WRITE
    if op == 4:
        offset, buf = args
        if offset + len(buf) > len(_rom):
            return -_EINVAL
        _write(offset, buf)
        return 0
    return -_EINVAL


def _write(offset, data):
    memoryview(_rom)[offset : offset + len(data)] = data
    try:
        f = _host.open(_path, "r+b")
    except OSError:  # never written: the partition was erased flash
        try:
            _host.mkdir(_path.rsplit("/", 1)[0])
        except OSError:
            pass  # it exists
        f = _host.open(_path, "wb")
    try:
        f.seek(offset)
        f.write(data)
    finally:
        f.close()
