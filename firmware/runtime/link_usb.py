# The USB CDC serial link: sys.stdin.buffer in, sys.stdout.buffer out.
#
# Also the emulated board's link: the unix port reads the pty (or pipe) the
# ground holds through the same objects.
#
# - wait(timeout_ms) sleeps in select.poll until a byte arrives or the
#   timeout passes; the shell computes the timeout from the core's next
#   deadline, so the loop never spins.
# - read() moves the bytes that are there now into one preallocated buffer.
#   Byte by byte, because on a board stdin.buffer.readinto(buf) blocks until
#   `buf` is full (shared/runtime/sys_stdio_mphal.c loops on
#   mp_hal_stdin_rx_chr); ipoll(0) between bytes says whether another is
#   waiting. ipoll, readinto and the buffers allocate nothing.
# - Ctrl-C: frames never carry 0x03, so a 0x03 on this link is always a
#   person or mpremote asking for the REPL. A board's USB driver turns it into
#   KeyboardInterrupt before we see it, and so does a pty with ISIG on the
#   unix port; through a plain pipe it arrives as a byte, and read() raises
#   KeyboardInterrupt itself, so every case ends the same way.
# - read() returns -1 at end of input (pipe or pty closed: unix port only;
#   a board's USB console never ends).

import select
import sys

_BUF_BYTES = 128  # one burst; the FrameSplitter keeps partial lines between bursts
_CTRL_C = 3


class UsbLink:
    def __init__(self):
        self._in = sys.stdin
        self._rd = sys.stdin.buffer
        self._wr = sys.stdout.buffer
        self.buf = bytearray(_BUF_BYTES)
        self._mv = memoryview(self.buf)
        self._one = bytearray(1)
        self._poll = select.poll()
        self._poll.register(self._in, select.POLLIN)
        self.bytes_in = 0
        self.bytes_out = 0

    def _ready(self, timeout_ms):
        for _obj, _events in self._poll.ipoll(timeout_ms):
            return True  # readable, or hung up / error: read() tells which
        return False

    def wait(self, timeout_ms):
        """True if input (or end of input) is waiting; -1 waits for ever."""
        return self._ready(timeout_ms)

    def read(self):
        """Move waiting bytes into `buf`; their count, or -1 at end of input."""
        buf = self.buf
        one = self._one
        n = 0
        while n < _BUF_BYTES and self._ready(0):
            try:
                got = self._rd.readinto(one)
            except OSError:  # EIO: the pty's other side closed (unix port)
                got = 0
            if not got:
                if n == 0:
                    return -1
                break
            c = one[0]
            if c == _CTRL_C:
                raise KeyboardInterrupt
            buf[n] = c
            n += 1
        self.bytes_in += n
        return n

    def view(self, n):
        """The first n bytes read, without copying them."""
        return self._mv[:n]

    def write(self, data):
        self._wr.write(data)
        self.bytes_out += len(data)
