# _emuboot.py: boot sequence and REPL of the emulated Pico.
#
# Runs under the MicroPython unix port, started by hil/emulated.py once per boot:
#
#     micropython -X heapsize=N _emuboot.py FOLDER MODE CTL_FD UID_HEX RESET_CAUSE PINS ROM_BYTES
#
# PINS is the GPIO output levels kept over a soft reboot, "25=1,3=0" or "";
# ROM_BYTES the ROM partition's size (0: a MicroPython built without ROMFS);
# N is 192K, plus ROM_BYTES and the GC's tables for it.
#
# It plays ports/rp2/main.c and shared/runtime/pyexec.c: mount FOLDER as "/",
# run boot.py, run main.py (friendly mode only, as rp2 skips it after a soft
# reset from the raw REPL), then the friendly or raw REPL on stdin/stdout with
# pyexec's bytes. A soft reboot prints "MPY: soft reboot" and exits with
# _EXIT_SOFT + mode; the supervisor starts a fresh interpreter (fresh heap,
# fresh modules) in that mode.
#
# Ctrl-C: pyexec enables the interrupt character only while code runs, and
# reads Ctrl-C as a character while it waits for input. Here _exec() tells the
# supervisor "E" (code runs) and "I" (REPL waits) on the control pipe; while
# code runs, the supervisor turns a host 0x03 into SIGINT if this process has
# MicroPython's SIGINT handler installed (micropython.kbd_intr(3)), and passes
# 0x03 on as data after kbd_intr(-1), as the Pico's USB stack does. The
# handler stays installed while the REPL waits, so a SIGINT still in flight
# when code ends never meets the default action; _rx() and _boot() turn such a
# late KeyboardInterrupt into a Ctrl-C.
#
# Style note: the REPL is a loop over blocking one-byte reads rather than an
# h11-style machine fed bytes, because exec() blocks the only thread: pyexec is
# written the same way for the same reason. Reads are one byte at a time so
# that bytes meant for the user's program are never swallowed by the REPL.
import sys, vfs

# A Pico built with ROMFS (MICROPY_VFS_ROM, MICROPY_HW_ROMFS_BYTES) maps a ROM
# partition of its flash into the address space: the .mpy modules of a ROMFS
# image there are imported in place, their bytecode and constant strings
# never copied to the heap. ROM_BYTES (argv[7]; 0: a build without ROMFS) is
# the partition's size; its contents are the file FOLDER/rom/romfs.img
# (outside what the board sees as its flash, as the partition is outside
# littlefs; erased flash, 0xFF, past the file's end). The partition is this
# interpreter's first allocation, one block at the bottom of the heap, and
# the supervisor gave the interpreter the board's 192K plus the partition
# (hil/emulated.py heap_bytes_for), so gc.mem_free() counts what Python
# objects get, as on a Pico, where the partition is flash.
_ROM_FILE = "/rom/romfs.img"
_rom = bytearray(int(sys.argv[7])) if len(sys.argv) > 7 and sys.argv[7] != "0" else None
if _rom is not None:
    _f = memoryview(_rom)
    for _i in range(0, len(_rom), 4096):  # partitions are whole 4K sectors
        _f[_i:_i + 4096] = b"\xff" * 4096
    try:
        _f = open(sys.argv[1] + _ROM_FILE, "rb")
    except OSError:  # never written: an erased partition
        pass
    else:
        _f.readinto(_rom)  # up to the partition's size
        _f.close()
        del _f

import builtins, os, io, gc, micropython, select
from micropython import const

_MODE_FRIENDLY = const(0)
_MODE_RAW = const(1)
_FORCED_EXIT = const(-1)  # pyexec's PYEXEC_FORCED_EXIT: leave the REPL, soft reboot
_EXIT_SOFT = const(64)  # exit code = _EXIT_SOFT + mode of the next boot
_EXIT_HOST_GONE = const(70)  # stdin closed: the supervisor has gone away

_CTRL_A = const(1)
_CTRL_B = const(2)
_CTRL_C = const(3)
_CTRL_D = const(4)
_CTRL_E = const(5)
_CR = const(13)
_ESC = const(27)
# pyexec: MICROPY_REPL_STDIN_BUFFER_MAX (256) / 2, sent to the host little-endian.
_PASTE_WINDOW = const(128)
_S_IFMT = const(0xF000)
_S_IFREG = const(0x8000)
_S_IFDIR = const(0x4000)
# A Pico's littlefs: 1408K of flash (rp2 MICROPY_HW_FLASH_STORAGE_BYTES) in
# 4K blocks, less the ROM partition on a ROMFS build. statvfs reports that
# size, and what the board folder uses of it.
_LFS_BLOCK = const(4096)
_LFS_BLOCKS = const(352)
_COMPOUND = ("if", "while", "for", "try", "with", "def", "class", "async")

_stdin = sys.stdin.buffer
_stdout = sys.stdout.buffer
_stdin_poll = select.poll()
_stdin_poll.register(sys.stdin, select.POLLIN)
_byte = bytearray(1)  # preallocated: every REPL byte passes through here
_echo = bytearray(1)
_g = {"__name__": "__main__"}  # boot.py, main.py and the REPL share globals
_ctl = None  # control pipe to the supervisor


def _tx(data):
    _stdout.write(data)


def _rx():
    # One byte from the host. A KeyboardInterrupt here is a late one, meant
    # for code that had just ended: read it as the Ctrl-C it was. It must be
    # raised before the read takes a byte: the unix port can raise a pending
    # interrupt inside a read that has already taken one (a SIGINT handled
    # while this process waited for the CPU, then a read that did not
    # block), and that byte, sent after the 0x03, would be lost. So wait in
    # poll, where an interrupt takes nothing, and let the loop's test after
    # it raise one still pending; only then read the byte that is there.
    try:
        while not _stdin_poll.poll(-1):
            pass
        if _stdin.readinto(_byte) != 1:
            sys.exit(_EXIT_HOST_GONE)
        return _byte[0]
    except KeyboardInterrupt:
        return _CTRL_C


_plain_fs = vfs.VfsPosix()
_host_root = ""


class _BoardFS(vfs.VfsPosix):
    # The board folder as "/". Every path is made absolute and ".." stops at
    # "/", so no path reaches the host's files. Symlinks inside the folder are
    # still followed: a confinement of paths, not a sandbox.
    _cwd = "/"

    def _path(self, path):
        if path[:1] != "/":
            path = self._cwd + "/" + path
        parts = []
        for part in path.split("/"):
            if part == "..":
                if parts:
                    parts.pop()
            elif part and part != ".":
                parts.append(part)
        return "/" + "/".join(parts)

    def open(self, path, mode):
        return super().open(self._path(path), mode)

    def stat(self, path):
        return super().stat(self._path(path))

    def ilistdir(self, path):
        path = self._path(path)
        return self._sized(path if path == "/" else path + "/", super().ilistdir(path))

    def _sized(self, prefix, entries):
        # 4-tuples with the file size, as littlefs gives (VfsPosix gives 3).
        for entry in entries:
            if prefix == "/" and entry[0] == "rom":
                continue  # the ROM partition's file, not littlefs: /rom is the VfsRom mount
            size = self.stat(prefix + entry[0])[6] if entry[1] == _S_IFREG else 0
            yield (entry[0], entry[1], entry[2], size)

    def mkdir(self, path):
        return super().mkdir(self._path(path))

    def rmdir(self, path):
        return super().rmdir(self._path(path))

    def remove(self, path):
        return super().remove(self._path(path))

    def rename(self, old, new):
        # VfsPosix.rename joins its root onto paths wrongly in this build
        # (MicroPython issue #7389, ENOENT for any rename under a root), so
        # rename through a root-less VfsPosix with the host paths instead.
        return _plain_fs.rename(_host_root + self._path(old), _host_root + self._path(new))

    def statvfs(self, path):
        # A Pico's flash, not the host's disk: 1408K in 4K blocks, used by the
        # folder's files (whole blocks each) and directories (a metadata pair).
        blocks = _LFS_BLOCKS - (len(_rom) // _LFS_BLOCK if _rom is not None else 0)
        free = blocks - 2 - self._blocks("/")
        free = free if free > 0 else 0
        return (_LFS_BLOCK, _LFS_BLOCK, blocks, free, free, 0, 0, 0, 0, 255)

    def _blocks(self, path):
        n = 0
        for entry in super().ilistdir(path):
            if path == "/" and entry[0] == "rom":
                continue  # the ROM partition, not littlefs
            child = (path if path == "/" else path + "/") + entry[0]
            if entry[1] == _S_IFDIR:
                n += 2 + self._blocks(child)
            else:
                n += (super().stat(child)[6] + _LFS_BLOCK - 1) // _LFS_BLOCK
        return n

    def __repr__(self):
        return "<VfsLfs2>"  # what `mpremote df` and vfs.mount() show on a Pico

    def chdir(self, path):
        path = self._path(path)
        super().chdir(path)  # also moves the process cwd, used for relative imports
        self._cwd = path

    def getcwd(self):
        return self._cwd


class _CookedStdout(io.IOBase):
    # The Pico's sys.stdout turns "\n" into "\r\n" (sys.stdout.buffer does
    # not); the unix port's writes both unchanged. print() and REPL results go
    # through here; sys.stdout.write() cannot be reached and stays uncooked.
    def write(self, data):  # print() hands over bytes, and wants their count back
        n = len(data)
        data = bytes(data)
        if b"\n" in data:
            data = data.replace(b"\n", b"\r\n")
        _stdout.write(data)
        return n

    def ioctl(self, request, arg):  # print() flushes: nothing to do
        return 0


_cooked = _CookedStdout()
_builtin_print = print


def _print(*args, sep=" ", end="\n", file=None):
    if file is None or file is sys.stdout:
        file = _cooked
    _builtin_print(*args, sep=sep, end=end, file=file)


def _repl_print(value):
    # py/modbuiltins.c __repl_print__: the REPL's echo of an expression's value.
    if value is not None:
        _print(repr(value))
        builtins._ = value


def _print_exc(exc):
    # pyexec prints through the cooked printer, so "\r\n"; frames of this
    # script are not the board's and are left out.
    buf = io.StringIO()
    sys.print_exception(exc, buf)
    for line in buf.getvalue().split("\n"):
        if line and not (line.startswith('  File "') and '_emuboot.py"' in line):
            _tx(line)
            _tx(b"\r\n")


def _exec(source, kind, raw, ack=None):
    # pyexec's parse_compile_execute. kind: "file" (a path), "exec" or "single".
    # ack: what tells the host its code was received (raw REPL: "OK"); sent
    # after "E", so a host that answers it with 0x03 always interrupts.
    # Returns True when the code raised SystemExit (pyexec: forced exit).
    forced = False
    err = None
    try:
        _ctl.write(b"E\n")  # from here a host 0x03 is an interrupt
        if ack:
            _tx(ack)
        micropython.kbd_intr(_CTRL_C)
        if kind == "file":
            execfile(source, _g)
        else:
            exec(compile(str(source, "utf8"), "<stdin>", kind), _g)
    except SystemExit:
        forced = True
    except BaseException as e:  # the board prints whatever user code raised
        err = e
    while True:  # a SIGINT sent just before the supervisor read "I" lands here
        try:
            micropython.kbd_intr(_CTRL_C)  # undo a kbd_intr(-1) the code left behind
            _ctl.write(b"I\n")  # from here a 0x03 is a character for the REPL
            break
        except KeyboardInterrupt as e:  # as pyexec's mp_handle_pending after the run
            if err is None and not forced:
                err = e
    if raw:
        _tx(b"\x04")
    if err is not None:
        _print_exc(err)
    if raw:
        _tx(b"\x04")
    return forced


def _run_file(name):
    # pyexec_file_if_exists: a missing file is a successful empty one.
    try:
        if os.stat(name)[0] & _S_IFMT != _S_IFREG:
            return False
    except OSError:
        return False
    return _exec(name, "file", False)


def _banner():
    v = sys.implementation.version
    _tx(
        "MicroPython v%d.%d.%d%s on %s; Raspberry Pi Pico (emulated) with RP2040\r\n"
        % (v[0], v[1], v[2], "-" + v[3] if len(v) > 3 and v[3] else "", sys.version.split(" on ")[-1])
    )
    _tx(b'Type "help()" for more information.\r\n')


def _continue_with_input(line):
    # py/repl.c mp_repl_continue_with_input, on the bytes typed so far.
    if not line:
        return False
    try:
        text = str(line, "utf8")
    except UnicodeError:
        return False  # _exec reports it
    compound = text[0] == "@"
    for word in _COMPOUND:
        if text.startswith(word):
            after = text[len(word):len(word) + 1]
            if not after or not (after.isalpha() or after.isdigit() or after == "_"):
                compound = True
    paren = 0
    quote = None  # None, "'", '"', "'''" or '"""'
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c == "'" or c == '"':
            if text[i:i + 3] == c * 3 and (quote is None or quote == c * 3):
                quote = None if quote else c * 3
                i += 2
            elif quote is None or quote == c:
                quote = None if quote else c
        elif c == "\\" and i + 1 < n and text[i + 1] in "'\"\\":
            if quote is not None:
                i += 1
        elif quote is None:
            if c in "([{":
                paren += 1
            elif c in ")]}":
                paren -= 1
        i += 1
    if quote is not None and len(quote) == 3:
        return True
    if paren > 0 and quote is None:
        return True
    if text[-1] == "\\":
        return True
    return compound and text[-1] != "\n"


def _readline(line, prompt):
    # shared/readline without history, cursor keys or tab completion. Appends
    # to line; returns 0 at Enter (CR; LF is ignored, as on the Pico) or a
    # control character: Ctrl-A..E on an empty line, Ctrl-C at any time.
    _tx(prompt)
    start = len(line)
    while True:
        c = _rx()
        if c == _CR:
            _tx(b"\r\n")
            return 0
        if c == _CTRL_C or (_CTRL_A <= c <= _CTRL_E and len(line) == start):
            return c
        if c == 8 or c == 127:
            if len(line) > start:
                line[-1:] = b""
                _tx(b"\x08 \x08")
        elif c == _ESC:
            c = _rx()
            if c == 0x5B:  # CSI: skip to its final byte
                while not 0x40 <= _rx() <= 0x7E:
                    pass
            elif c == 0x4F:  # SS3: one more byte
                _rx()
        elif c >= 32:
            line.append(c)
            _echo[0] = c
            _tx(_echo)


def _paste(line):
    # Friendly REPL paste mode; returns False when cancelled with Ctrl-C.
    _tx(b"\r\npaste mode; Ctrl-C to cancel, Ctrl-D to finish\r\n=== ")
    while True:
        c = _rx()
        if c == _CTRL_C:
            _tx(b"\r\n")
            return False
        if c == _CTRL_D:
            _tx(b"\r\n")
            return True
        line.append(c)
        if c == _CR:
            _tx(b"\r\n=== ")
        else:
            _echo[0] = c
            _tx(_echo)


def _friendly_repl(greet):
    if greet:
        _banner()
    line = bytearray()
    while True:
        line[:] = b""
        c = _readline(line, b">>> ")
        kind = "single"
        if c == _CTRL_A:
            _tx(b"\r\n")
            return _MODE_RAW
        elif c == _CTRL_B:
            _tx(b"\r\n")
            _banner()
            continue
        elif c == _CTRL_C:
            _tx(b"\r\n")
            continue
        elif c == _CTRL_D:
            _tx(b"\r\n")
            return _FORCED_EXIT
        elif c == _CTRL_E:
            if not _paste(line):
                continue
            kind = "exec"
        elif not line:
            continue
        else:
            cancelled = False
            while _continue_with_input(line):
                line.append(10)
                c = _readline(line, b"... ")
                if c == _CTRL_C:
                    _tx(b"\r\n")
                    cancelled = True
                    break
                if c == _CTRL_D:
                    break
            if cancelled:
                continue
        if _exec(line, kind, False):
            return _FORCED_EXIT


def _raw_paste(command):
    # pyexec's do_reader_stdin: flow-controlled raw paste. Returns True on a
    # forced exit.
    if command != 0x41:  # "A"
        _tx(b"R\x00")
        return False
    _tx(b"R\x01")
    _tx(bytes((_PASTE_WINDOW & 0xFF, _PASTE_WINDOW >> 8, 0x01)))
    source = bytearray()
    remain = _PASTE_WINDOW
    while True:
        c = _rx()
        if c == _CTRL_D:
            return _exec(source, "exec", True, b"\x04")  # end of data acknowledged
        if c == _CTRL_C:
            _tx(b"\x04\x04KeyboardInterrupt: \r\n\x04")
            return False
        source.append(c)
        remain -= 1
        if remain == 0:
            _tx(b"\x01")  # another window is free
            remain = _PASTE_WINDOW


def _raw_repl(greet):
    line = bytearray()
    if greet:
        _tx(b"raw REPL; CTRL-B to exit\r\n")
    while True:
        line[:] = b""
        _tx(b">")
        while True:
            c = _rx()
            if c == _CTRL_A:
                if len(line) == 2 and line[0] == _CTRL_E:
                    if _raw_paste(line[1]):
                        return _FORCED_EXIT
                else:
                    _tx(b"raw REPL; CTRL-B to exit\r\n")
                line[:] = b""
                _tx(b">")
            elif c == _CTRL_B:
                _tx(b"\r\n")
                return _MODE_FRIENDLY
            elif c == _CTRL_C:
                line[:] = b""
            elif c == _CTRL_D:
                break
            else:
                line.append(c)
        if not line:
            _tx(b"OK\r\n")
            return _FORCED_EXIT
        if _exec(line, "exec", True, b"OK"):
            return _FORCED_EXIT


def _mount(folder):
    vfs.umount("/")
    global _host_root
    _host_root = folder.rstrip("/")
    vfs.mount(_BoardFS(folder), "/")
    os.chdir("/")
    sys.path.clear()
    sys.path.extend(("", ".frozen", "/lib"))  # the rp2 port's sys.path
    if _rom is not None:  # rp2 with ROMFS: vfs.rom_ioctl; /rom mounted, and first on sys.path
        sys.modules["vfs"]._attach(_rom, _host_root + _ROM_FILE)  # _boardvfs: its rom_ioctl
        try:
            vfs.mount(vfs.VfsRom(_rom), "/rom")
        except OSError:  # erased, or not a ROMFS image: nothing mounted, as on a Pico
            return
        sys.path[0:0] = ["/rom", "/rom/lib"]


def _boot(mode):
    # ports/rp2/main.c: boot.py, then main.py in friendly mode only, then the
    # REPL. Returns the mode of the next boot.
    try:
        if _run_file("boot.py"):
            return mode
        if mode == _MODE_FRIENDLY and _run_file("main.py"):
            return mode
    except KeyboardInterrupt:
        pass  # a SIGINT that landed between the two files
    greet = True
    while True:
        try:
            next_mode = _raw_repl(greet) if mode == _MODE_RAW else _friendly_repl(greet)
        except KeyboardInterrupt:
            # A late SIGINT that landed in the REPL's own code, outside _rx
            # and _exec: pyexec would have read a Ctrl-C. Go on as after one:
            # a fresh prompt, without the greeting again.
            if mode != _MODE_RAW:
                _tx(b"\r\n")
            greet = False
            continue
        greet = True
        if next_mode == _FORCED_EXIT:
            return mode
        mode = next_mode


def _main():
    global _ctl
    folder = sys.argv[1]
    mode = int(sys.argv[2])
    _ctl = open("/dev/fd/" + sys.argv[3], "wb")  # before "/" becomes the board
    import machine  # the stand-in, from this script's folder
    import _boardos  # os as a Pico has it (uname), from this script's folder

    sys.modules["os"] = _boardos
    if _rom is not None:
        import _boardvfs  # vfs as a ROMFS build has it (rom_ioctl), from this script's folder

        sys.modules["vfs"] = _boardvfs

    machine._attach(_ctl, bytes.fromhex(sys.argv[4]), int(sys.argv[5]), sys.argv[6])
    _mount(folder)
    sys.argv.clear()
    builtins.print = _print
    builtins.__repl_print__ = _repl_print
    micropython.kbd_intr(_CTRL_C)
    gc.collect()
    mode = _boot(mode)
    _tx(b"MPY: soft reboot\r\n")
    sys.exit(_EXIT_SOFT + mode)


_main()
