# A hardware UART link (machine.UART), for boards wired to the ground through
# a USB-serial adapter or an RS-485 transceiver rather than their own USB.
# Same interface as link_usb.UsbLink. Optional: a board on USB never imports
# this file.
#
# The UART is not the REPL console, so a 0x03 on it is line noise, not a
# person: it is counted in `ctrl_c_bytes` and passed on (the frame splitter
# drops the damaged frame), never turned into KeyboardInterrupt. Ctrl-C on
# the board's USB console still reaches the REPL.

import select

_BUF_BYTES = 128
_RXBUF_BYTES = 1024  # driver ring buffer: two full frames (MAX_LINE 496)


class UartLink:
    def __init__(self, uart_id, tx, rx, baud):
        import machine  # here, not at import time: constructing touches hardware

        self._uart = machine.UART(
            uart_id, baudrate=baud, tx=machine.Pin(tx), rx=machine.Pin(rx), timeout=0, rxbuf=_RXBUF_BYTES
        )
        self.buf = bytearray(_BUF_BYTES)
        self._mv = memoryview(self.buf)
        self._poll = select.poll()
        self._poll.register(self._uart, select.POLLIN)
        self.bytes_in = 0
        self.bytes_out = 0
        self.ctrl_c_bytes = 0

    def wait(self, timeout_ms):
        for _obj, _events in self._poll.ipoll(timeout_ms):
            return True
        return False

    def read(self):
        waiting = self._uart.any()
        if not waiting:
            return 0
        n = self._uart.readinto(self.buf, min(waiting, _BUF_BYTES)) or 0
        if n and self.buf.find(b"\x03", 0, n) >= 0:
            self.ctrl_c_bytes += 1
        self.bytes_in += n
        return n

    def view(self, n):
        return self._mv[:n]

    def write(self, data):
        self._uart.write(data)
        self.bytes_out += len(data)
