# The firmware codec as a subprocess, for tests/ground/test_protocol.py.
#
# Run under the real MicroPython unix port (it also runs under CPython, with
# ground/shims on the path, but the point is the board's interpreter):
#     micropython -X heapsize=192K tests/ground/mpy_codec_peer.py < requests
# Reads one JSON request per line from stdin, writes one JSON reply per line:
#   {"op": "encode", "type", "src", "dst", "seq", "fields", "key", "counter", "version"}
#       -> {"line": hex of wire.encode(...), delimiter included}
#   {"op": "decode", "line": hex without delimiter, "key", "require_auth"}
#       -> {"version", "flags", "type", "seq", "src", "dst", "payload",
#           "counter", "fields"}  or  {"error": wire.ERROR_NAMES[code]}
# key is hex or null; version is the protocol version (default 1); fields
# are by the names of msgs.layout(type, version) (STATE entries as
# {node, version, data}), decoded in the layout of the frame's version. Decoding goes wire.decode then the msgs layer, in
# the order a node applies them. Anything but a ProtocolError is a bug and
# ends the script with a traceback (the test sees a non-zero exit).
import json
import sys

_parts = sys.argv[0].split("/")
_ROOT = "/".join(_parts[:-3]) or "."
sys.path.insert(0, _ROOT + "/firmware")
sys.path.insert(0, _ROOT + "/tests/core")

from msgfields import fields_of, payload_of  # noqa: E402
from node import msgs, wire  # noqa: E402


def _auth(key_hex):
    return wire.Auth(bytes.fromhex(key_hex)) if key_hex is not None else None


def encode(req):
    counter = req["counter"]
    auth = _auth(req["key"]) if counter is not None else None
    version = req.get("version", 1)
    payload = payload_of(req["type"], req["fields"], version)
    line = wire.encode(req["type"], req["src"], req["dst"], payload, req["seq"], auth, counter or 0, version)
    return {"line": bytes(line).hex()}


def decode(req):
    try:
        f = wire.decode(bytes.fromhex(req["line"]), _auth(req["key"]), req.get("require_auth", False))
        fields = fields_of(f.type, f.payload, f.version)
    except wire.ProtocolError as e:
        return {"error": wire.ERROR_NAMES[e.code]}
    return {
        "version": f.version,
        "flags": f.flags,
        "type": f.type,
        "seq": f.seq,
        "src": f.src,
        "dst": f.dst,
        "payload": f.payload.hex(),
        "counter": f.counter,
        "fields": fields,
    }


def main():
    ops = {"encode": encode, "decode": decode}
    while True:
        text = sys.stdin.readline()
        if not text:
            return
        req = json.loads(text)
        sys.stdout.write(json.dumps(ops[req["op"]](req)))
        sys.stdout.write("\n")


main()
