"""pyserial's rfc2217:// ports, accepting a write timeout: the handler pyserial
uses for rfc2217:// URLs in a process that holds labgrid places.

pyserial's rfc2217.Serial refuses any write_timeout (NotImplementedError
"write_timeout is currently not supported"), and the harness opens every
board port with one (ground/links.py SerialLink, hil/serialboard.py). Its
writes are bounded anyway: the port's TCP socket has a 5 s timeout
(rfc2217.Serial.open), after which write() raises SerialException. This class
takes the write_timeout, keeps it (port.write_timeout reads it back) and
leaves the bound to that socket timeout; everything else is pyserial's.

hil/labgrid_places.py puts the `hil` package first in
serial.protocol_handler_packages (pyserial looks up `<package>.protocol_<scheme>`
for a URL's scheme, in that list's order), so this module answers rfc2217://
URLs in that process; other schemes fall through to pyserial's own handlers.
Other processes (mpremote, which sets no write timeout) use pyserial's class.
"""

from serial import rfc2217


class Serial(rfc2217.Serial):
    """rfc2217.Serial whose write_timeout is accepted; writes end at the socket's 5 s timeout."""

    def _reconfigure_port(self):
        wanted, self._write_timeout = self._write_timeout, None
        try:
            super()._reconfigure_port()
        finally:
            self._write_timeout = wanted


def use():
    """Answer rfc2217:// URLs in this process with Serial (idempotent)."""
    import serial

    if "hil" not in serial.protocol_handler_packages:
        serial.protocol_handler_packages.insert(0, "hil")
