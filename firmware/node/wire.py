# Wire format: how a frame becomes bytes on a serial line and back.
#
# Pure functions and two small stateful helpers (FrameSplitter, ReplayWindow);
# no I/O, no clock. Runs unchanged under MicroPython (Pico, unix port) and CPython.
# The ground declares the same format with `construct` in ground/protocol.py;
# tests/core/golden/ vectors keep the two byte-compatible. docs/PROTOCOL.md is
# the prose version of this file.
#
# Layers, outermost first:
#   line   : escaped-COBS bytes then one 0x00 delimiter. A receiver that loses
#            sync drops bytes up to the next 0x00 and carries on.
#   escape : after COBS, 0x1B -> 1B 02 and 0x03 -> 1B 01, so a frame never
#            carries 0x03 (Ctrl-C): MicroPython's USB console keeps its
#            keyboard interrupt and mpremote can always get in.
#   COBS   : removes 0x00 from the body; +1 byte for bodies under 254 bytes.
#   body   : header(7) | payload | [auth trailer(12)] | crc32(4)
#
# Header (little endian):
#   0  ver_flags  high nibble protocol version, low nibble flags (FLAG_*)
#   1  type       message type (see msgs.py)
#   2  seq        sender's frame counter, wraps at 256
#   3  src  u16   sending node id (0 = ground)
#   5  dst  u16   node id, ADDR_GROUND, 0xF000|cluster, or ADDR_BROADCAST
# Auth trailer (FLAG_AUTH): counter u32, tag 8 bytes = HMAC-SHA256(key,
#   header|payload|counter)[:8]. Replay protection (node/replay.py) is a
#   per-source sliding window over the counter, not a clock window, so minutes
#   of light delay never make a legitimate frame stale (MAVLink 2's one-minute
#   window would), with a floor per source that survives reboots.
# crc32: binascii.crc32 of everything before it (in the C core on a Pico).

from micropython import const


import binascii
import hashlib
import struct

# Protocol versions. This code can speak VERSION_MIN..VERSION; which of them a
# node speaks comes from its firmware version (node/config.py PROTOCOLS): it
# sends at its newest and refuses frames above it by this header nibble. What
# changed in each version is in node/msgs.py (layouts) and docs/PROTOCOL.md.
VERSION = const(4)  # newest protocol version this code knows
VERSION_MIN = const(1)  # oldest version it decodes

FLAG_AUTH = const(0x1)

HEADER_LEN = const(7)
CRC_LEN = const(4)
AUTH_LEN = const(12)  # counter u32 + 8-byte tag
TAG_LEN = const(8)
MAX_PAYLOAD = const(224)  # keeps every body under 254 bytes: COBS adds exactly 1
MAX_BODY = const(247)  # HEADER_LEN + MAX_PAYLOAD + AUTH_LEN + CRC_LEN
MAX_LINE = const(496)  # worst case escaped COBS of MAX_BODY (every byte escaped)

ADDR_GROUND = const(0x0000)
ADDR_CLUSTER = const(0xF000)  # | cluster number (0..0xFFE)
ADDR_BROADCAST = const(0xFFFF)
MAX_NODE_ID = const(0xEFFF)

_HDR = "<BBBHH"

# Auth counters: a sender reserves them in blocks of BLOCK (one flash write per
# block); a receiver persists, per roster source, the end of the block it has
# accepted counters from (node/replay.py ReplayWindow.ceiling).
BLOCK = const(1024)
# The ground's counter blocks are smaller: it sends few frames (CONFIG, INTENT)
# and starts each run at a block from the wall clock, GROUND_BLOCK counters a
# second (ground/router.py ground_counter_base), so a new run clears the
# floors a rig's boards keep from the last one after a second.
GROUND_BLOCK = const(16)
# (node/replay.py keeps the receiver's side.)
_ESC = const(0x1B)

# Why a frame was refused. One ProtocolError carries one of these.
ERR_EMPTY = const(1)
ERR_COBS = const(2)
ERR_ESCAPE = const(3)
ERR_SHORT = const(4)
ERR_CRC = const(5)
ERR_VERSION = const(6)
ERR_TOO_LONG = const(7)
ERR_NO_AUTH = const(8)  # we require auth and the frame has none
ERR_TAG = const(9)
ERR_REPLAY = const(10)
ERR_PAYLOAD = const(11)  # payload length or values wrong for its type
ERR_TYPE = const(12)  # unknown message type
ERR_ADDRESS = const(13)
# Refused by the node, not the codec (a decoder never raises these):
ERR_UNKNOWN_SRC = const(14)  # the source is in neither of the node's rosters
ERR_MEMORY = const(15)  # the board ran out of heap handling it (the shell counts it)
N_ERRORS = const(16)

ERROR_NAMES = (
    "",
    "empty",
    "cobs",
    "escape",
    "short",
    "crc",
    "version",
    "too_long",
    "no_auth",
    "tag",
    "replay",
    "payload",
    "type",
    "address",
    "unknown_src",
    "memory",
)


class ProtocolError(Exception):
    """The remote side sent something this codec cannot accept.

    `code` is one of the ERR_* constants; the decoder raises nothing else.
    """

    def __init__(self, code, detail=""):
        super().__init__(code, detail)
        self.code = code
        self.detail = detail

    def __str__(self):
        return ERROR_NAMES[self.code] + (": " + self.detail if self.detail else "")


def cluster_addr(cluster):
    return ADDR_CLUSTER | cluster


# ---- COBS + escape -------------------------------------------------------


def cobs_encode(data):
    """COBS-encode `data` (bytes-like) into a new bytearray with no 0x00."""
    out = bytearray()
    for part in bytes(data).split(b"\x00"):  # each run up to a zero (the last: to the end)
        while len(part) >= 254:
            out.append(255)
            out += part[:254]
            part = part[254:]
        out.append(len(part) + 1)
        out += part
    return out


def cobs_decode(data):
    """Inverse of cobs_encode; raises ProtocolError(ERR_COBS) on bad input."""
    out = bytearray(data)  # each code byte becomes the zero it stands for, in place
    if b"\x00" in out:  # inside a block too, not only where a code byte falls: no code is 0
        raise ProtocolError(ERR_COBS, "zero byte inside frame")
    n = len(out)
    i = 0
    while i < n:
        code = out[i]
        out[i] = 0
        i += code
        if code == 255 and i < n:  # a full block, not in a frame (bodies are under 254 bytes):
            return out[1:i] + cobs_decode(data[i:])  # no zero after it; the rest decodes alone
    if i > n:
        raise ProtocolError(ERR_COBS, "block runs past end")
    return out[1:]


def escape(data):
    return data.replace(b"\x1b", b"\x1b\x02").replace(b"\x03", b"\x1b\x01")


def unescape(data):
    if b"\x03" in data:
        raise ProtocolError(ERR_ESCAPE, "raw 0x03")
    i = data.find(b"\x1b")
    while i >= 0:
        if i + 1 >= len(data) or data[i + 1] not in (1, 2):
            raise ProtocolError(ERR_ESCAPE, "bad escape")
        i = data.find(b"\x1b", i + 2)
    return data.replace(b"\x1b\x01", b"\x03").replace(b"\x1b\x02", b"\x1b")


# ---- authentication ------------------------------------------------------


class Auth:
    """HMAC-SHA256 under one fleet key, truncated to TAG_LEN bytes.

    MicroPython has hashlib.sha256 in its C core but no hmac module, so the
    two padded key blocks are built once here (RFC 2104).
    """

    def __init__(self, key):
        key = bytes(key)
        if len(key) > 64:
            key = hashlib.sha256(key).digest()
        key = key + bytes(64 - len(key))
        self._ipad = bytes([b ^ 0x36 for b in key])
        self._opad = bytes([b ^ 0x5C for b in key])

    def tag(self, msg):
        inner = hashlib.sha256(self._ipad)
        inner.update(msg)
        outer = hashlib.sha256(self._opad)
        outer.update(inner.digest())
        return outer.digest()[:TAG_LEN]


def index_of(ids, x):
    """Index of `x` in the sorted sequence `ids`, or -1 (binary search)."""
    lo = 0
    hi = len(ids)
    while lo < hi:
        mid = (lo + hi) >> 1
        if ids[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo if lo < len(ids) and ids[lo] == x else -1


# ---- frames --------------------------------------------------------------


class Frame:
    """One decoded frame. `payload` is bytes; `counter` is None when unsigned.
    `values`: msgs.payload_values of the payload when a harness that hands
    one Frame to many nodes (Node.receive_decoded) parsed it once, a tuple
    it never changes; else the class's None and the node parses it (a board
    never sets it: no instance slot, no allocation)."""

    values = None

    def __init__(self, type, src, dst, payload=b"", seq=0, version=VERSION, flags=0, counter=None):
        self.version = version
        self.flags = flags
        self.type = type
        self.seq = seq
        self.src = src
        self.dst = dst
        self.payload = payload
        self.counter = counter

    def __repr__(self):
        return "Frame(type=%d, src=%d, dst=0x%04x, seq=%d, len=%d%s)" % (
            self.type,
            self.src,
            self.dst,
            self.seq,
            len(self.payload),
            ", auth" if self.counter is not None else "",
        )


def encode_body(type, src, dst, payload, seq, auth=None, counter=0, version=VERSION_MIN):
    """The unframed body: header | payload | [counter | tag] | crc32.

    `version` goes into the header as given (the payload must already be in
    that version's layout); the default is the oldest, which every node
    decodes. A node passes its own (config.proto_max).
    """
    if len(payload) > MAX_PAYLOAD:
        raise ValueError("payload too long")
    flags = FLAG_AUTH if auth is not None else 0
    body = bytearray(struct.pack(_HDR, (version << 4) | flags, type, seq & 0xFF, src, dst))
    body += payload
    if auth is not None:
        body += struct.pack("<I", counter)
        body += auth.tag(body)
    body += struct.pack("<I", binascii.crc32(body))
    return body


def encode(type, src, dst, payload=b"", seq=0, auth=None, counter=0, version=VERSION_MIN):
    """A complete line frame: escaped COBS of the body plus the 0x00 delimiter."""
    line = escape(cobs_encode(encode_body(type, src, dst, payload, seq, auth, counter, version)))
    line.append(0)
    return line


def decode_body(body, auth=None, require_auth=False, version_max=VERSION):
    """Parse a COBS-decoded body. Returns a Frame or raises ProtocolError.

    With `auth`, a signed frame's tag is checked (replay is the caller's
    job: it owns the ReplayWindow). With `require_auth`, unsigned frames are
    refused. A version above `version_max` (a node's config.proto_max) is
    refused as ERR_VERSION, before anything else in the frame is believed.
    """
    n = len(body)
    if n < HEADER_LEN + CRC_LEN:
        raise ProtocolError(ERR_SHORT, "%d bytes" % n)
    if n > MAX_BODY:
        raise ProtocolError(ERR_TOO_LONG, "%d bytes" % n)
    mv = memoryview(body)
    (crc,) = struct.unpack_from("<I", body, n - CRC_LEN)
    if binascii.crc32(mv[: n - CRC_LEN]) != crc:
        raise ProtocolError(ERR_CRC)
    ver_flags, type, seq, src, dst = struct.unpack_from(_HDR, body, 0)
    version = ver_flags >> 4
    flags = ver_flags & 0xF
    if version < VERSION_MIN or version > version_max or version > VERSION:
        raise ProtocolError(ERR_VERSION, "v%d" % version)
    end = n - CRC_LEN
    counter = None
    if flags & FLAG_AUTH:
        if end - HEADER_LEN < AUTH_LEN:
            raise ProtocolError(ERR_SHORT, "auth trailer")
        end -= AUTH_LEN
        (counter,) = struct.unpack_from("<I", body, end)
        if auth is not None:
            if auth.tag(mv[: end + 4]) != bytes(mv[end + 4 : end + AUTH_LEN]):
                raise ProtocolError(ERR_TAG)
    elif require_auth:
        raise ProtocolError(ERR_NO_AUTH)
    if src > MAX_NODE_ID:
        raise ProtocolError(ERR_ADDRESS, "src 0x%04x" % src)
    return Frame(type, src, dst, bytes(mv[HEADER_LEN:end]), seq, version, flags, counter)


def decode(line, auth=None, require_auth=False, version_max=VERSION):
    """Decode one line frame (without its 0x00 delimiter)."""
    if not line:
        raise ProtocolError(ERR_EMPTY)
    if len(line) > MAX_LINE:
        raise ProtocolError(ERR_TOO_LONG, "%d line bytes" % len(line))
    return decode_body(cobs_decode(unescape(bytes(line))), auth, require_auth, version_max)


class FrameSplitter:
    """Reassembles line frames from a byte stream, one preallocated buffer.

    feed() bytes as they arrive; it returns the list of complete lines (each
    without its delimiter). A line longer than MAX_LINE is cut off and its
    tail skipped up to the next delimiter; `overflows` counts those.
    """

    def __init__(self):
        self._buf = bytearray(MAX_LINE)
        self._len = 0
        self._skipping = False
        self.overflows = 0

    def feed(self, data):
        lines = []
        buf = self._buf
        start = 0
        n = len(data)
        while start < n:
            zero = data.find(b"\x00", start) if not isinstance(data, memoryview) else _find0(data, start)
            end = n if zero < 0 else zero
            chunk = end - start
            if not self._skipping:
                if self._len + chunk > MAX_LINE:
                    self._skipping = True
                    self.overflows += 1
                else:
                    buf[self._len : self._len + chunk] = data[start:end]
                    self._len += chunk
            if zero < 0:
                break
            if not self._skipping and self._len:
                lines.append(bytes(buf[: self._len]))
            self._len = 0
            self._skipping = False
            start = zero + 1
        return lines

    def pending(self):
        """Bytes of an unfinished line held now."""
        return self._len


def _find0(mv, start):
    for i in range(start, len(mv)):
        if mv[i] == 0:
            return i
    return -1
