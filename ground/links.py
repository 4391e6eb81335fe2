"""A link to one node: the one small interface the router talks to.

Three kinds (DESIGN.md "one core, three shells"):

- `SimLink`: an in-process node, the core called directly; its clock is the
  router's (virtual or scaled real time), so it needs no bytes on a wire.
- `SerialLink`: a node behind a byte stream opened with pyserial's
  `serial_for_url`: `/dev/ttyACM0` (a Pico over USB), `rfc2217://host:port`
  or `socket://host:port` (labgrid exporters, ser2net), or an emulated
  board's pty (`hil.emulated`), which is just another device path.

Every link has `node_id`, `kind`, `deliver(line, mission_ms)` (a complete
line frame with its 0x00 delimiter, going to the node) and reports frames
coming from the node to the router; `up` is False while the node is crashed
or powered off (the router then drops frames to it as `node_down`).
"""

import os
import threading

from ground import firmware

wire = firmware.wire


def open_serial(url, baudrate=115200, timeout=0, write_timeout=2.0):
    """Open a pyserial URL (a device path, rfc2217://, socket://) with a read
    and a write timeout: the one place the harness opens a board's port.

    pyserial's rfc2217:// class refuses any write_timeout
    (NotImplementedError); its writes are bounded by its socket's 5 s timeout
    instead (rfc2217.Serial.open), after which write() raises. So an
    rfc2217:// port is opened without one and relies on that bound.
    """
    import serial  # pyserial; imported here so sim-only runs need no port

    if url.startswith("rfc2217://"):
        write_timeout = None
    return serial.serial_for_url(url, baudrate=baudrate, timeout=timeout, write_timeout=write_timeout)


def set_write_timeout(port, write_timeout_s):
    """Give an already opened port a write timeout, unless it is an rfc2217://
    port (see open_serial: its socket bounds writes)."""
    if not type(port).__module__.endswith("rfc2217"):
        port.write_timeout = write_timeout_s


class SimLink:
    """An in-process node in the router's clock. `skew` scales its clock reads
    (clock-drift faults); `power_cut()` loses everything but its flash."""

    kind = "sim"

    def __init__(self, node_id, make_node, updates=None):
        self.node_id = node_id
        self._make = make_node  # (saved_blob_or_None, boot_count[, version]) -> Node
        self.flash = None  # what the node persisted: survives power cuts
        self.updates = updates  # ground.update_sim.SimUpdates: its image slots (flash too), or None
        self.crashed = None  # why the node's build crashed (a test build's defect), until restart()
        self.boots = 0
        self.up = True
        self.skew = 1.0
        self.node = self._boot()

    def _boot(self):
        self.boots += 1
        if self.updates is None:
            return self._make(self.flash, self.boots)
        node = self._make(self.flash, self.boots, self.updates.boot())  # the boot pointer picks the version
        self.updates.attach(node)
        return node

    def _local_ms(self, mission_ms):
        return int(mission_ms * self.skew) if self.skew != 1.0 else mission_ms

    def deliver(self, line, mission_ms):
        if self.up:
            self.node.receive(line[:-1] if line and line[-1] == 0 else line, self._local_ms(mission_ms))

    def deliver_shared(self, line, mission_ms, decoded):
        """deliver() for a frame that reaches several in-process nodes as it
        was sent (line: its bytes and delimiter): decoded once per frame and
        decode key (Node.decode_key: the auth key, require_auth, proto_max),
        not once per recipient. `decoded` is the frame's {key: Frame or error
        code}, shared by its recipients. What the node does is what
        receive(line) does: the same decode, then receive_decoded, or the
        decode's error counted."""
        if not self.up:
            return
        node = self.node
        key = node.decode_key()
        got = decoded.get(key)
        if got is None:
            try:
                got = wire.decode(line[:-1], node.auth, key[1], key[2])
            except wire.ProtocolError as e:
                got = e.code
            decoded[key] = got
        if got.__class__ is int:
            node.errors[got] += 1
        else:  # (_local_ms written out: once per delivery)
            node.receive_decoded(got, mission_ms if self.skew == 1.0 else int(mission_ms * self.skew))

    def poll(self, mission_ms):
        """Frames the node wants to send now: [line with delimiter]."""
        if not self.up:
            return []
        now_ms = mission_ms if self.skew == 1.0 else int(mission_ms * self.skew)  # _local_ms, once per poll
        out = self.node.poll(now_ms)
        blob = self.node.take_persist()
        if blob is not None:
            self.flash = blob  # "written to flash" before the frames leave
        lines = [bytes(line) for _, line in out]
        if self.updates is not None:
            what = self.updates.after_poll(self.node, now_ms)
            if what == "crash":  # a test build's defect: down until the run restarts it
                self.crashed = self.updates.crash
                self.up = False
            elif what == "reset":  # install or rollback: the frames that say so go, then the node restarts
                self.node = self._boot()
        return lines

    def next_deadline_ms(self):
        """Mission ms of the node's next timer (None while down)."""
        if not self.up:
            return None
        local = self.node.next_deadline_ms()
        # Round up: waking a skewed node before its own clock reaches the
        # deadline would find nothing due and wake it again at once.
        return local if self.skew == 1.0 else int(local / self.skew) + 1

    def crash(self):
        self.up = False  # stops answering; its RAM state is kept (a hang)

    def power_cut(self):
        self.up = False
        self.node = None

    def restart(self):
        """Power on / reset: a fresh node from its flash."""
        self.crashed = None
        self.node = self._boot()
        self.up = True

    def close(self):
        pass


TAIL_BYTES = 2048
CRASH_BYTES = 1024  # the most of a traceback kept (SerialLink.text_tail)
_TRACEBACK = b"Traceback (most recent call last)"


class SerialLink:
    """A node behind a pyserial URL. Bytes read are split into line frames
    (wire.FrameSplitter) and handed to `on_lines(link, lines, wall_ns)`.

    Ports with a file descriptor (posix serial, ptys, socket://) are watched by
    the router's selector; rfc2217:// has none, so a reader thread forwards
    its bytes through a pipe. Every read and write has a timeout.
    """

    kind = "serial"

    def __init__(self, node_id, url, baudrate=115200, write_timeout_s=2.0, port=None, splitter=None):
        import serial  # pyserial; imported here so sim-only runs need no port

        self.node_id = node_id
        self.url = url
        self.up = True
        self.errors = 0
        self.splitter = splitter or wire.FrameSplitter()
        self._tail = bytearray()  # the last TAIL_BYTES bytes read, frames or not
        self._crash = None  # the first traceback since frames last came, kept whole (text_tail)
        self.heard_ns = None  # mission ns of the last frame read (the run's silence check)
        self.silent = False  # the run has reported it silent and not heard it since
        if port is not None:
            self.port = port  # already opened (e.g. while waiting for the board's HELLO)
            set_write_timeout(port, write_timeout_s)
        else:
            try:
                self.port = open_serial(url, baudrate=baudrate, timeout=0, write_timeout=write_timeout_s)
            except (serial.SerialException, OSError, ValueError) as e:
                raise LinkError("node %d: cannot open %s: %s" % (node_id, url, e)) from None
        self._pipe = None
        try:
            self._fd = self.port.fileno()
        except (AttributeError, NotImplementedError, OSError):
            self._fd = None
        if self._fd is None:
            r, w = os.pipe()
            self._pipe = (r, w)
            self._fd = r
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._pump, name="link-%d" % node_id, daemon=True)
            self._thread.start()

    def fileno(self):
        return self._fd

    def _pump(self):
        try:
            self.port.timeout = 0.1  # rfc2217 sends this to the server: the socket may be gone already
        except Exception:
            os.close(self._pipe[1])
            return
        while not self._stop.is_set():
            try:
                data = self.port.read(max(1, self.port.in_waiting))
            except Exception:  # the port died: the router sees EOF
                os.close(self._pipe[1])
                return
            if data:
                os.write(self._pipe[1], data)

    def read_lines(self):
        """Read what is waiting; returns (lines, eof)."""
        try:
            if self._pipe is not None:
                data = os.read(self._fd, 65536)
            else:
                data = self.port.read(self.port.in_waiting or 1)
        except OSError:
            return [], True
        except Exception:
            return [], True
        if not data and self._pipe is not None:
            return [], True
        tail = self._tail
        tail += data
        if len(tail) > TAIL_BYTES:
            del tail[: len(tail) - TAIL_BYTES]
        lines = self.splitter.feed(data)
        if self._crash is None:
            i = tail.find(_TRACEBACK)
            if i >= 0:
                self._crash = bytearray(tail[i:i + CRASH_BYTES])
        elif lines and _TRACEBACK not in data:
            self._crash = None  # frames again: the board is back
            del tail[:]
        elif len(self._crash) < CRASH_BYTES:
            self._crash += data[:CRASH_BYTES - len(self._crash)]
        return lines, False

    def text_tail(self, max_chars=300):
        """What the device printed after its last frame delimiter, as text (a
        traceback, the REPL's prompt), or "" if it printed nothing else. For
        the message when a board stops answering. A traceback printed since
        frames last came is shown instead, up to the REPL prompt after it: a
        board at the REPL echoes the frames still sent to it, and that echo
        would push the traceback out of the tail."""
        crash = getattr(self, "_crash", None)
        if crash:
            tail = bytes(crash)
            prompt = tail.find(b"\n>>> ")
            text = (tail[:prompt + 4] if prompt >= 0 else tail).decode("utf-8", "replace")
            text = "".join(c if c.isprintable() or c == "\n" else "?" for c in text.replace("\r\n", "\n")).strip()
            return text[-max_chars:]
        tail = bytes(self._tail)
        text = tail[tail.rfind(b"\x00") + 1:].decode("utf-8", "replace")
        text = "".join(c if c.isprintable() or c == "\n" else "?" for c in text).strip()
        return text[-max_chars:]

    def deliver(self, line, mission_ms=None):
        try:
            self.port.write(line)
        except Exception as e:
            self.errors += 1
            raise LinkError("node %d: write to %s failed: %s" % (self.node_id, self.url, e)) from None

    def close(self):
        if self._pipe is not None:
            self._stop.set()
            self._thread.join(timeout=1.0)
            os.close(self._pipe[0])
        try:
            self.port.close()
        except Exception:
            pass


class LinkError(RuntimeError):
    """A link that cannot be opened or died: names the node and the port."""
