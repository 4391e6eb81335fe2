"""The run trace: JSON Lines, one header then one event per line.

Format (docs/TRACE.md has the full table):

    {"kind": "header", "format": "fleetloop-trace/1", "scenario": ..., ...}
    {"kind": "frame", "fate": "sent", "id": 17, "src": 3, "dst": 61441, ...}
    {"kind": "frame", "fate": "delivered", "id": 17, "to": 4, ...}
    {"kind": "fault", "fault": "crash", "node": 3, ...}
    {"kind": "link", "state": "down", "src": 3, "to": 4, ...}
    {"kind": "radio", "node": 3, "id": 17, "start_ns": ..., "airtime_ns": ...}
    {"kind": "rollout", "event": "abort", "image": "1.2", ...}  (ground/rollout_run.py)
    {"kind": "end", ...}

Every event carries `mission_ns` and `wall_ns` (nanoseconds; mission time is
the scenario's clock, wall time is time.time_ns() or, in virtual-time runs,
mission time divided by the time scale). A frame's `id` ties its `sent`
event to every `delivered` / `dropped` / `duplicated` / `corrupted` /
`converted` event.

Writers flush each line, so a crash loses at most the line being written; the
reader tolerates a torn last line (and only the last: a bad line in the middle
is an error naming the file and line). Like python-can's io: the writer is a
listener (call it with events), the reader is an iterable.

A line is `json.dumps(event, separators=(",", ":"), sort_keys=True)`. The
events most runs write most often, a frame delivered as it was sent (the
router's `_deliver_sent`: eight keys, every value an int but two fixed
strings) and a frame as a node sent it (the encoder writes only its `msg`),
are written by a format string that gives those same bytes (`line()`;
tests/ground/test_trace_line.py compares the two): the JSON encoder took
about a sixth of a 1,000-node `--sim` run (docs/FLEET_RUN.md).
"""

import json
import os

FORMAT = "fleetloop-trace/1"
FATES = ("sent", "delivered", "dropped", "duplicated", "corrupted", "converted")
KINDS = ("header", "frame", "fault", "link", "node", "radio", "rollout", "end")


_ENCODER = json.JSONEncoder(separators=(",", ":"), sort_keys=True)  # json.dumps(e, same args) without a new encoder per line
_encode = _ENCODER.encode
_DELIVERED_KEYS = frozenset(("copy", "delay_ns", "fate", "id", "kind", "mission_ns", "to", "wall_ns"))
_DELIVERED = '{"copy":%d,"delay_ns":%d,"fate":"delivered","id":%d,"kind":"frame","mission_ns":%d,"to":%d,"wall_ns":%d}\n'
_SENT_KEYS = frozenset(("dst", "fate", "hex", "id", "kind", "len", "mission_ns", "msg", "seq", "src", "type", "wall_ns"))
_SENT = ('{"dst":%d,"fate":"sent","hex":"%s","id":%d,"kind":"frame","len":%d,"mission_ns":%d,"msg":%s,"seq":%d,'
         '"src":%d,"type":"%s","wall_ns":%d}\n')


def _plain(text):
    """A str json writes between quotes as it is (no escape: printable ASCII, no quote or backslash)."""
    return text.__class__ is str and text.isascii() and text.isprintable() and '"' not in text and "\\" not in text


def line(event):
    """One trace line (with its newline): json.dumps(event, separators=(",", ":"),
    sort_keys=True), byte for byte; a plain `delivered` fate or `sent` frame
    (exactly the keys of _DELIVERED_KEYS / _SENT_KEYS, each number a true int,
    not a bool or a float, each string one json writes unescaped, msg a dict)
    through its format string, whose %d writes an int as json does."""
    keys = event.keys()
    if keys == _DELIVERED_KEYS and event["fate"] == "delivered" and event["kind"] == "frame":
        c, d, i, m, t, w = event["copy"], event["delay_ns"], event["id"], event["mission_ns"], event["to"], event["wall_ns"]
        if (c.__class__ is int and d.__class__ is int and i.__class__ is int and m.__class__ is int and t.__class__ is int
                and w.__class__ is int):
            return _DELIVERED % (c, d, i, m, t, w)
    elif keys == _SENT_KEYS and event["fate"] == "sent" and event["kind"] == "frame":
        # a frame as a node sent it: the fixed keys by format, its msg by the encoder
        d, i, n, m, q, s, w = (event["dst"], event["id"], event["len"], event["mission_ns"], event["seq"], event["src"],
                               event["wall_ns"])
        h, t, msg = event["hex"], event["type"], event["msg"]
        if (d.__class__ is int and i.__class__ is int and n.__class__ is int and m.__class__ is int and q.__class__ is int
                and s.__class__ is int and w.__class__ is int and msg.__class__ is dict and _plain(h) and _plain(t)):
            return _SENT % (d, h, i, n, m, _encode(msg), q, s, t, w)
    return _encode(event) + "\n"


class TraceError(ValueError):
    """A trace file that cannot be read: names the file and line."""


class TraceWriter:
    """Appends events to a JSON Lines file; each write is flushed."""

    def __init__(self, path, header):
        if header.get("kind") != "header":
            raise ValueError("trace header must have kind 'header'")
        self.path = path
        self._f = open(path, "w", encoding="utf-8")
        self.count = 0
        header = dict(header)
        header.setdefault("format", FORMAT)
        self._write(header)

    def _write(self, event):
        self._f.write(line(event))
        self._f.flush()
        self.count += 1

    def __call__(self, event):
        f = self._f  # (_write, written out: once per event of a run)
        if f is None:
            raise ValueError("trace %s is closed" % self.path)
        f.write(line(event))
        f.flush()
        self.count += 1

    def close(self, end=None):
        """Write the `end` event (if given), sync and close; returns the end
        event as written, so a caller keeping the events in memory keeps it too."""
        if self._f is None:
            return None
        if end is not None:
            self._write(dict(end, kind="end"))
        os.fsync(self._f.fileno())
        self._f.close()
        self._f = None
        return None if end is None else dict(end, kind="end")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class TraceReader:
    """Iterates a trace's events (header first). `torn` says if the last line was cut."""

    def __init__(self, path):
        self.path = path
        self.torn = False
        self.header = None

    def __iter__(self):
        with open(self.path, "rb") as f:
            data = f.read()
        lines = data.split(b"\n")
        last = len(lines) - 1
        if lines[last] == b"":
            lines.pop()
            last -= 1
        for i, raw in enumerate(lines):
            try:
                event = json.loads(raw)
                if not isinstance(event, dict) or event.get("kind") not in KINDS:
                    raise ValueError("not a trace event")
            except ValueError as e:
                if i == last and not data.endswith(b"\n"):
                    self.torn = True  # crash mid-write: the line was never finished
                    return
                raise TraceError("%s:%d: %s" % (self.path, i + 1, e)) from None
            if i == 0:
                if event.get("kind") != "header":
                    raise TraceError("%s:1: first line is not a header" % self.path)
                if event.get("format") != FORMAT:
                    raise TraceError("%s:1: unknown format %r (this reader: %s)" % (self.path, event.get("format"), FORMAT))
                self.header = event
            yield event


def torn_message(path, complete):
    """The one refusal of a torn trace, shared by every verb that reads one
    (`complete`: the events before the torn line, header not counted)."""
    return ("%s:%d: the last line is torn (the run was cut off while writing it); "
            "pass --allow-torn to use the %d complete events before it" % (path, complete + 2, complete))


def read(path, allow_torn=True):
    """(header, [events after the header], torn) in one call. With
    allow_torn=False a torn last line is a TraceError (torn_message)."""
    r = TraceReader(path)
    events = list(r)
    if not events:
        raise TraceError("%s: empty trace" % path)
    if r.torn and not allow_torn:
        raise TraceError(torn_message(path, len(events) - 1))
    return events[0], events[1:], r.torn
