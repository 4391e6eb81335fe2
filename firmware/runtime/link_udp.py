# The UDP link: one frame per datagram between the board and the ground, over
# Wi-Fi on a Pico W. Same interface as link_usb.UsbLink (wait, read, view,
# write). The REPL and console stay on USB: only frames travel here.
#
#     join_wifi(ssid, password)                # a Pico W: network.WLAN; see below
#     link = UdpLink("192.168.1.10", 7400)     # board.json "ground": "host:port"
#
# - The socket is bound to any local port and connect()ed to the ground's
#   address: the ground learns the board's address from its HELLO, and the
#   kernel (unix port) or lwIP (rp2) passes on only the ground's datagrams.
# - Non-blocking; wait() sleeps in select.poll like the USB link, read()
#   takes ONE datagram into a preallocated buffer with readinto (both ports'
#   sockets are streams: no allocation per datagram), so each read is one
#   whole frame with its 0x00 delimiter.
# - A datagram that does not end with the delimiter is not a frame (cut by a
#   buffer too small, or junk on the port): counted in `bad_datagrams` and
#   dropped, never glued to the next one.
# - Sending a datagram can fail while the radio is busy or the network is
#   down (ENOMEM/EAGAIN from lwIP, ECONNREFUSED on the unix port when no
#   ground listens): that frame is lost, counted in `send_errors`, and the
#   loop goes on; UDP promises nothing more, and the ground records the loss
#   of whatever the board meant to say as the missing frame it is.
#
# The unix port (emulated boards) has the same socket module but no
# `network`: join_wifi() is only called where network exists (main.py), and
# the emulated board uses the host's loopback.
#
# A join that fails prints one line on the console (main.py's BootError: no
# loop, the LED error pattern) and leaves it in wifi_failed.txt; the next
# boot that joins sends it to the ground as a LOG note and removes the file.

import select

_BUF_BYTES = 512  # a whole frame: MAX_LINE (496) + its delimiter
WIFI_TIMEOUT_MS = 20000  # joining an access point: a few seconds usually
WIFI_FAILED_FILE = "wifi_failed.txt"  # why the last join failed, for the next boot's LOG note


class SettingError(Exception):
    """(key, problem) of a board.json key for this transport; boardcfg names the file."""


def parse_ground(text):
    """(host, port) from board.json "ground": "host:port"."""
    if text is None:
        raise SettingError("ground", 'missing (needed when transport is "udp")')
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise SettingError("ground", 'must be "host:port", port 1..65535')
    return host, int(port)


def parse_wifi(wifi):
    """{"ssid", "password", "timeout_ms"} from board.json "wifi", or None."""
    if wifi is None:
        return None
    for k in sorted(wifi):
        if k not in ("ssid", "password", "timeout_ms"):
            raise SettingError("wifi." + k, "unknown key")
    if not isinstance(wifi.get("ssid"), str) or not wifi["ssid"]:
        raise SettingError("wifi.ssid", "must be a non-empty string")
    if not isinstance(wifi.get("password", ""), str):
        raise SettingError("wifi.password", "must be a string")
    t = wifi.get("timeout_ms", WIFI_TIMEOUT_MS)
    if not isinstance(t, int) or isinstance(t, bool) or not 1000 <= t <= 120000:
        raise SettingError("wifi.timeout_ms", "must be an integer 1000..120000")
    return {"ssid": wifi["ssid"], "password": wifi.get("password", ""), "timeout_ms": t}


def open_link(board, notes):
    """The UdpLink to board.json's "ground" (a runtime.boardcfg.BoardConfig),
    after joining Wi-Fi where the board has a radio; OSError with one line
    naming the key otherwise. The unix port has no `network` module: an
    emulated board uses the host's network as it is, and says so in a note."""
    host, port = board.ground
    try:
        import network  # type: ignore[import-not-found]  # noqa: F401  (Pico W; not the unix port, a plain Pico or its stubs)
    except ImportError:
        network = None
    if network is None:
        notes.append("udp: no network module (unix port or a board without radio): using the host's network")
    else:
        if board.wifi is None:
            raise OSError('board.json: key "wifi": missing (needed to join Wi-Fi when transport is "udp")')
        try:
            ip = join_wifi(board.wifi["ssid"], board.wifi["password"], board.wifi["timeout_ms"])
        except OSError as e:
            _keep_failure(str(e))  # the ground hears of it at the first boot that joins
            raise
        notes.append("udp: joined %s as %s" % (board.wifi["ssid"], ip))
        failed = _take_failure()
        if failed:
            notes.append("udp: the boot before this one did not join: " + failed)
    try:
        link = UdpLink(host, port)
    except ImportError:
        raise OSError('board.json: key "transport": "udp" but this firmware has no socket module (a Pico W build is needed)')
    except OSError as e:
        raise OSError('board.json: key "ground": cannot reach %s:%d: %s' % (host, port, e))
    print("fleetloop: frames over udp to %s:%d" % (host, port))  # on the console, for the person and the harness
    return link


def _keep_failure(text):
    """Write why the join failed to WIFI_FAILED_FILE (best effort: the console has it too)."""
    try:
        with open(WIFI_FAILED_FILE, "w") as f:
            f.write(text[:200])
    except OSError:
        pass


def _take_failure():
    """What _keep_failure wrote at an earlier boot (then removed), or None."""
    try:
        with open(WIFI_FAILED_FILE) as f:
            text = f.read(200)
        import os

        os.remove(WIFI_FAILED_FILE)
    except OSError:
        return None
    return text


class UdpLink:
    def __init__(self, host, port):
        import socket  # type: ignore[import-not-found]  # Pico W and unix port; the plain-Pico stubs lack it

        addr = socket.getaddrinfo(host, port, 0, socket.SOCK_DGRAM)[0][-1]
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(socket.getaddrinfo("0.0.0.0", 0)[0][-1])
        s.connect(addr)
        s.setblocking(False)
        self._sock = s
        self.ground = "%s:%d" % (host, port)
        self.buf = bytearray(_BUF_BYTES)
        self._mv = memoryview(self.buf)
        self._poll = select.poll()
        self._poll.register(s, select.POLLIN)
        self.bytes_in = 0
        self.bytes_out = 0
        self.bad_datagrams = 0
        self.send_errors = 0

    def wait(self, timeout_ms):
        """True if a datagram is waiting; -1 waits for ever."""
        for _obj, _events in self._poll.ipoll(timeout_ms):
            return True
        return False

    def read(self):
        """Move one waiting datagram into `buf`; its length (0: none, or dropped)."""
        try:
            n = self._sock.readinto(self.buf)
        except OSError:  # ECONNREFUSED after a send nobody received (unix port): nothing to read
            return 0
        if not n:
            return 0
        if self.buf[n - 1] != 0 or n >= _BUF_BYTES:
            self.bad_datagrams += 1
            return 0
        self.bytes_in += n
        return n

    def view(self, n):
        """The first n bytes read, without copying them."""
        return self._mv[:n]

    def write(self, data):
        """Send one frame (with its delimiter) as one datagram."""
        if len(data) < 2:  # a lone delimiter (Shell.run's first write) carries nothing over UDP
            return
        try:
            self._sock.write(data)
        except OSError:
            self.send_errors += 1
            return
        self.bytes_out += len(data)

    def close(self):
        self._sock.close()


# network.WLAN.status() on the Pico W (CYW43 link states): what a failed join says.
_WIFI_STATUS = {-3: "wrong password", -2: "no access point with that SSID", -1: "the join failed",
                0: "link down", 1: "joining", 2: "joined, no IP address yet (DHCP)"}


def join_wifi(ssid, password, timeout_ms=WIFI_TIMEOUT_MS):
    """Join the access point (network.WLAN station); the board's IP address.
    OSError naming the key, the SSID and the driver's status if it does not
    join: at once on a status that will not change (wrong password, no such
    access point), else after timeout_ms. Only on a board with `network` (a
    Pico W): the unix port has none."""
    import network  # type: ignore[import-not-found]  # Pico W only; not in the plain-Pico stubs
    import time

    wlan = network.WLAN(network.STA_IF)
    wlan.active(True)
    if not wlan.isconnected():
        wlan.connect(ssid, password)
        t0 = time.ticks_ms()
        while not wlan.isconnected():
            status = wlan.status()
            waited = time.ticks_diff(time.ticks_ms(), t0)
            if status < 0 or waited > timeout_ms:
                wlan.active(False)
                raise OSError('board.json: key "wifi": %r not joined %s: %s (status %d)' % (
                    ssid, "after %d ms" % waited if status < 0 else "within %d ms" % timeout_ms,
                    _WIFI_STATUS.get(status, "?"), status))
            time.sleep_ms(100)
    return wlan.ifconfig()[0]
