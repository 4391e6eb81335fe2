"""The wire format's framing, declared with `construct` (ground/protocol.py
is the codec's API): sizes, addresses, REASONS and FrameError, COBS and the
Ctrl-C escape, and the constructs of one line frame around its payload.

Layers, outermost first, each one construct:
  Line    : _Escaped(_Cobs(Body)): un-escape 1B 01 / 1B 02, then COBS
  Body    : covered bytes | crc32, the crc a construct Checksum
  Covered : Signed | [tag], the tag a Checksum (HMAC-SHA256[:8]) when a key
            is given, raw bytes otherwise
  Signed  : Header | payload | [counter]
  (Message, the payload's fields: ground/protocol_msgs.py)

The checks run in the firmware's order (line, cobs, size, crc, version,
auth trailer, tag, no_auth, address, then the message), so the ground and a
node name the same reason for the same bad frame: the crc is checked before
anything inside the body is believed, which is why Body parses the covered
bytes once as raw bytes and only then re-parses them (RestreamData).
"""

import hashlib
import hmac
import re
import zlib

from construct import (
    BitsInteger,
    BitStruct,
    Bytes,
    Checksum,
    Construct,
    ConstructError,
    GreedyBytes,
    If,
    IfThenElse,
    Int32ul,
    Nibble,
    Octet,
    RawCopy,
    RestreamData,
    Struct,
    Subconstruct,
    Terminated,
    Tunnel,
    this,
)
from construct.core import BytesIOWithOffsets, stream_size, stream_tell

VERSION = 4  # newest protocol version this codec speaks
VERSION_MIN = 1  # oldest version it decodes

FLAG_AUTH = 0x1

HEADER_LEN = 7
CRC_LEN = 4
AUTH_LEN = 12  # counter u32 + tag
TAG_LEN = 8
MAX_PAYLOAD = 224  # every body stays under 254 bytes, so COBS adds exactly 1
MAX_BODY = HEADER_LEN + MAX_PAYLOAD + AUTH_LEN + CRC_LEN  # 247
MAX_LINE = 2 * (MAX_BODY + 1)  # 496: COBS of MAX_BODY with every byte escaped

ADDR_GROUND = 0x0000
ADDR_CLUSTER = 0xF000  # | cluster number (0..0xFFE)
ADDR_BROADCAST = 0xFFFF
MAX_NODE_ID = 0xEFFF

# Why a frame was refused: the same words, in the same order, as the
# firmware's wire.ERROR_NAMES (its ERR_* codes index this tuple).
REASONS = (
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
    "unknown_src",  # a node's own refusal (its rosters), never this decoder's
    "memory",  # a board's shell dropped the frame for lack of heap, never this decoder's
)


class FrameError(ValueError):
    """A line this codec will not parse, or fields it will not build.

    `reason` is one of REASONS; `detail` says what exactly, in words.
    """

    def __init__(self, reason, detail=""):
        super().__init__(reason + (": " + detail if detail else ""))
        self.reason = reason
        self.detail = detail


def cluster_addr(cluster):
    return ADDR_CLUSTER | cluster


def addr_name(addr):
    """'ground', 'broadcast', 'cluster 3' or 'node 12'."""
    if addr == ADDR_GROUND:
        return "ground"
    if addr == ADDR_BROADCAST:
        return "broadcast"
    if addr >= ADDR_CLUSTER:
        return "cluster %d" % (addr & 0x0FFF)
    return "node %d" % addr


# ---- COBS and the Ctrl-C escape, written from the definitions ------------
# (Cheshire & Baker 1999 for COBS.) Deliberately not a copy of wire.py.


def cobs_encode(data):
    """COBS: every run of up to 254 non-zero bytes gets a length code."""
    out = bytearray(1)
    code_at = 0  # where the current block's code byte goes
    for byte in bytes(data):
        if byte:
            out.append(byte)
            if len(out) - code_at == 0xFF:  # a full block: 254 bytes + code
                out[code_at] = 0xFF
                code_at = len(out)
                out.append(0)
        else:
            out[code_at] = len(out) - code_at
            code_at = len(out)
            out.append(0)
    out[code_at] = len(out) - code_at
    return bytes(out)


def cobs_decode(data):
    """Inverse of cobs_encode; FrameError('cobs') if `data` is not COBS."""
    out = bytearray()
    i = 0
    n = len(data)
    while i < n:
        code = data[i]
        block = data[i + 1 : i + code]
        if code == 0 or 0 in block:
            raise FrameError("cobs", "zero byte inside frame")
        if len(block) != code - 1:
            raise FrameError("cobs", "block runs past end")
        out += block
        i += code
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)


_ESCAPE = {b"\x1b": b"\x1b\x02", b"\x03": b"\x1b\x01"}
_UNESCAPE = {b"\x02": b"\x1b", b"\x01": b"\x03"}
_NEEDS_ESCAPE = re.compile(b"[\x03\x1b]")
_ESCAPED = re.compile(b"\x1b(.?)", re.DOTALL)


def escape(data):
    """After COBS: 0x1B -> 1B 02, 0x03 -> 1B 01, so no line carries Ctrl-C."""
    return _NEEDS_ESCAPE.sub(lambda m: _ESCAPE[m.group()], bytes(data))


def unescape(data):
    data = bytes(data)
    if b"\x03" in data:
        raise FrameError("escape", "raw 0x03")

    def one(m):
        code = m.group(1)
        if code not in _UNESCAPE:
            raise FrameError("escape", "bad escape")
        return _UNESCAPE[code]

    return _ESCAPED.sub(one, data)


def _crc32(data):
    return zlib.crc32(data) & 0xFFFFFFFF


def _hmac_tag(key_and_data):
    key, data = key_and_data
    return hmac.new(key, data, hashlib.sha256).digest()[:TAG_LEN]


# ---- five small constructs that construct does not have -----------------


class _Escaped(Tunnel):
    """The line layer: length limits, then the Ctrl-C escape."""

    def _decode(self, data, context, path):
        if not data:
            raise FrameError("empty")
        if len(data) > MAX_LINE:
            raise FrameError("too_long", "%d line bytes" % len(data))
        return unescape(data)

    def _encode(self, data, context, path):
        return escape(data)


class _Cobs(Tunnel):
    def _decode(self, data, context, path):
        return cobs_decode(data)

    def _encode(self, data, context, path):
        return cobs_encode(data)


class _AllBut(Subconstruct):
    """`subcon` over the stream's remaining bytes except the last `trailer`.

    GreedyBytes reads to the end; a payload stops where the fixed-size
    trailer (auth, crc) begins, and nothing on the wire says how long it is.
    Builds as `subcon` does.
    """

    def __init__(self, trailer, subcon):
        super().__init__(subcon)
        self.trailer = trailer

    def _parse(self, stream, context, path):
        trailer = self.trailer(context) if callable(self.trailer) else self.trailer
        length = stream_size(stream) - stream_tell(stream, path) - trailer
        if length < 0:
            raise FrameError("short", "%d bytes missing before the trailer" % -length)
        substream = BytesIOWithOffsets.from_reading(stream, length, path)
        return self.subcon._parsereport(substream, context, path)

    def _build(self, obj, stream, context, path):
        return self.subcon._build(obj, stream, context, path)


class _Expect(Construct):
    """A parse-time check naming its reason: refuse unless cond(ctx).

    Unlike construct's Check it does nothing when building, so the ground can
    still build frames a node must refuse (wrong version, bad address) for
    fault injection.
    """

    def __init__(self, reason, cond, detail=None):
        super().__init__()
        self.reason = reason
        self.cond = cond
        self.detail = detail
        self.flagbuildnone = True

    def _parse(self, stream, context, path):
        if not self.cond(context):
            raise FrameError(self.reason, self.detail(context) if self.detail else "")

    def _build(self, obj, stream, context, path):
        return None

    def _sizeof(self, context, path):
        return 0


class _OrRefuse(Subconstruct):
    """Any construct error (or bad UTF-8) inside `subcon` refuses the frame
    for `reason`: no ConstructError ever leaves parse_line."""

    def __init__(self, reason, subcon, detail=None):
        super().__init__(subcon)
        self.reason = reason
        self.detail = detail  # fixed words instead of construct's message

    def _parse(self, stream, context, path):
        try:
            return self.subcon._parsereport(stream, context, path)
        except (ConstructError, UnicodeError) as e:
            raise FrameError(self.reason, self.detail or _why(e, field=False)) from None

    def _build(self, obj, stream, context, path):
        return self.subcon._build(obj, stream, context, path)


def _why(e, field=True):
    """construct's message without its 'Error in path' line, led by the field."""
    text = str(e).strip().split("\n")[-1]
    name = (getattr(e, "path", None) or "").split(" -> ")[-1]
    return name + ": " + text if field and name and not name.startswith("(") else text


# ---- the body --------------------------------------------------------------

Header = BitStruct(  # little endian; byte 0 is version (high nibble) | flags
    "version" / Nibble,
    "flags" / Nibble,
    "type" / Octet,
    "seq" / Octet,
    "src" / BitsInteger(16, swapped=True),
    "dst" / BitsInteger(16, swapped=True),
)


def _signed_auth(signed):
    return signed.header.flags & FLAG_AUTH


Signed = Struct(  # what the HMAC tag covers
    "header" / Header,
    _Expect(  # version_max: a node's proto_max (a version-1 node refuses version 2 here)
        "version",
        lambda ctx: VERSION_MIN <= ctx.header.version <= min(VERSION, ctx._params.get("version_max", VERSION)),
        lambda ctx: "v%d" % ctx.header.version,
    ),
    "payload" / _AllBut(lambda ctx: AUTH_LEN if _signed_auth(ctx) else 0, GreedyBytes),
    "counter" / If(_signed_auth, Int32ul),
)

Covered = Struct(  # what the crc covers
    "signed" / RawCopy(Signed),
    "tag"
    / If(
        lambda ctx: _signed_auth(ctx.signed.value),
        IfThenElse(
            lambda ctx: ctx._params.get("key") is not None,
            _OrRefuse(  # never the computed tag in the message: traces are not secret
                "tag",
                Checksum(Bytes(TAG_LEN), _hmac_tag, lambda ctx: (ctx._params.key, ctx.signed.data)),
                "does not match the key",
            ),
            Bytes(TAG_LEN),  # no key: carried, not checked (as wire.decode)
        ),
    ),
    Terminated,
    _Expect(
        "no_auth",
        lambda ctx: ctx.tag is not None or not ctx._params.get("require_auth"),
    ),
    _Expect(
        "address",
        lambda ctx: ctx.signed.value.header.src <= MAX_NODE_ID,
        lambda ctx: "src 0x%04x" % ctx.signed.value.header.src,
    ),
)

Body = Struct(
    _Expect(
        "short",
        lambda ctx: stream_size(ctx._io) >= HEADER_LEN + CRC_LEN,
        lambda ctx: "%d bytes" % stream_size(ctx._io),
    ),
    _Expect(
        "too_long",
        lambda ctx: stream_size(ctx._io) <= MAX_BODY,
        lambda ctx: "%d bytes" % stream_size(ctx._io),
    ),
    "covered" / _AllBut(CRC_LEN, GreedyBytes),
    "crc" / _OrRefuse("crc", Checksum(Int32ul, _crc32, this.covered)),
    Terminated,
    # Only now, with the crc good, are the covered bytes read as fields.
    "frame" / RestreamData(this.covered, Covered),
)

Line = _Escaped(_Cobs(Body))  # one line frame, without its 0x00 delimiter
