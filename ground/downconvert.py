"""The down-converter: the link stage that lets an older node hear a newer one.

A node speaks the protocol versions its firmware was built for
(firmware/node/config.py PROTOCOLS) and refuses a frame above its newest by
the header's version nibble. When the router has a frame of version v for a
recipient whose HELLO said proto_max < v, it calls

    line, frame = convert(line, frame, to_version, auth)   # or ConvertError

and sends the result down the recipient's link instead (ground/router.py
`_send_one`, before the impairment pipeline; the trace records a
`converted` fate, then the usual delivered / dropped with the converted
bytes as `hex`). The rule, as docs/PROTOCOL.md states it:

  - header: the same type, seq, src, dst and flags; only the version nibble
    changes.
  - payload: the message's values moved to the older layout by field name
    (node/msgs.py convert): a field the older version lacks is left out. A
    type whose layout is the same at both versions keeps its payload byte
    for byte. Versions only ever append fields, so what an older node reads
    is exactly what the sender said, less what it could not have known.
  - auth: a signed frame is signed again under its own counter with the
    fleet key the harness holds (the tag covers the header, so the nibble
    alone changes it): the receiver's replay window sees the sender's counter
    once, as it would have. The crc is computed again.

What cannot be converted raises ConvertError (the router drops the frame
for that recipient with reason `unconvertible`): a type with no layout at
the frame's version (the converter cannot know what the sender added), a
payload that does not parse as its type at its version, a signed frame when
the harness holds no key, a variable layout that changed between the two
versions (none does today).

Both run paths decide alike through one Downconverter (the router's
`_send_one` for --sim and boards, ground/shard_skew.py on the lean path):
per recipient, the converted line, or the drop and its reason.

Ground code under CPython, built on the firmware's own codec (the very
wire.encode and msgs layouts the nodes run), as router._rewrite is; the
construct mirror (ground/protocol.py) checks the result in the tests.
"""

import binascii
import struct

from ground import firmware

wire = firmware.wire
msgs = firmware.msgs


class ConvertError(ValueError):
    """A frame the down-converter cannot write at the older version.

    `reason` is one word (type, payload, no_key, layout, version); `detail` says
    what exactly.
    """

    def __init__(self, reason, detail=""):
        super().__init__(reason + (": " + detail if detail else ""))
        self.reason = reason
        self.detail = detail


class Downconverter:
    """What a run does with a frame newer than its recipient speaks: the
    frame's line at the recipient's version, or why it is dropped for it
    (`version` when the scenario says `downconvert: false`, `unconvertible`
    with the ConvertError's text). Converts once per frame and version,
    however many recipients need it (frames come one at a time)."""

    def __init__(self, enabled, auth):
        self.enabled = enabled  # the scenario's `downconvert`
        self.auth = auth  # the fleet key's wire.Auth, or None
        self._last = (None, None, None)  # (frame key, version, what for_recipient gave)

    def for_recipient(self, key, line, frame, to_version):
        """bytes: `line` (the frame as sent, no delimiter) written at
        to_version; or (reason, detail) for the drop. key: the frame's
        identity in this run (its trace id, or (src, its frame number));
        frame: line's wire.decode, or None to decode it here."""
        if not self.enabled:
            return ("version", "")
        if self._last[0] != key or self._last[1] != to_version:
            try:
                if frame is None:
                    frame = wire.decode(line, self.auth)
                got = convert(line, frame, to_version, self.auth)[0]
            except ConvertError as e:
                got = ("unconvertible", str(e))
            except wire.ProtocolError as e:  # a line that does not decode: nothing to convert
                got = ("unconvertible", "payload: %s" % e)
            self._last = (key, to_version, got)
        return self._last[2]


def convert_payload(type, payload, from_version, to_version):
    """The payload of a `from_version` message of `type` in to_version's layout."""
    have = msgs.layout(type, from_version)
    if have is None:
        raise ConvertError("type", "0x%02x has no layout at version %d" % (type, from_version))
    want = msgs.layout(type, to_version)
    if want is None:
        raise ConvertError("type", "%s did not exist at version %d" % (have[0], to_version))
    if have is want:
        return bytes(payload)  # the same layout: the same bytes
    if have[1] is None or want[1] is None:
        raise ConvertError("layout", "%s: a variable layout changed between versions %d and %d"
                           % (have[0], to_version, from_version))
    try:
        values = msgs.unpack(type, payload, from_version)
    except wire.ProtocolError as e:
        raise ConvertError("payload", str(e)) from None
    return msgs.pack(type, *msgs.convert(type, values, from_version, to_version), version=to_version)


def convert(line, frame, to_version, auth=None):
    """(line, frame) of `frame` re-encoded at `to_version`.

    `line` is the frame as sent (no 0x00 delimiter), `frame` its wire.decode
    result; `auth` the fleet key's wire.Auth (needed for a signed frame).
    The line comes back unchanged when the frame is already at or below
    to_version.
    """
    if frame.version <= to_version:
        return bytes(line), frame
    if to_version < wire.VERSION_MIN:
        raise ConvertError("version", "no protocol version %d (oldest is %d)" % (to_version, wire.VERSION_MIN))
    payload = convert_payload(frame.type, frame.payload, frame.version, to_version)
    if frame.counter is not None and auth is None:
        raise ConvertError("no_key", "signed frame, and the harness holds no fleet key to sign it again")
    return reencode(frame, payload, to_version, auth)


def reencode(frame, payload, version, auth):
    """(line, frame): `frame` with `payload` at protocol `version`, its
    header otherwise as it came (type, seq, src, dst, reserved flag bits),
    signed again under its own counter when it was signed (with `auth`, the
    fleet key the harness holds), crc recomputed. The down-converter's and
    the byzantine rewrite's (ground/router.py) one way to re-encode."""
    signed = frame.counter is not None
    out = wire.encode(frame.type, frame.src, frame.dst, payload, frame.seq, auth if signed else None,
                      frame.counter or 0, version)
    out = bytes(out[:-1])
    if frame.flags & ~wire.FLAG_AUTH:  # reserved flag bits travel as they came
        body = bytearray(wire.cobs_decode(wire.unescape(out)))
        body[0] |= frame.flags & ~wire.FLAG_AUTH & 0xF
        out = _reframe(body, auth if signed else None)
    return out, wire.decode(out, auth)


def _reframe(body, auth):
    """Sign (if auth) and crc a body whose header byte was edited."""
    end = len(body) - wire.CRC_LEN
    if auth is not None:
        tag_at = end - wire.TAG_LEN
        body[tag_at:end] = auth.tag(bytes(body[:tag_at]))
    body[end:] = struct.pack("<I", binascii.crc32(bytes(body[:end])))
    return bytes(wire.escape(wire.cobs_encode(bytes(body))))
