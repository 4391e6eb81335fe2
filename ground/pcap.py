"""pcapng export of a run trace, for Wireshark and tshark.

    ground export-pcap runs/x/trace.jsonl -o run.pcapng
    tshark -X lua_script:tools/wireshark/fleetloop.lua -r run.pcapng -V

The mapping (docs/TRACE_TOOLS.md has it as a table):

- One interface (IDB) per endpoint of the harness: 0 is `ground` (the
  harness itself: frames it originates, frames addressed to it), then
  `node<N>` for every node in the header, in id order, then `events`.
  Every interface has link type 147, LINKTYPE_USER0 (Wireshark's wtap encap
  USER0, where tools/wireshark/fleetloop.lua registers), snaplen 0 (no
  limit) and if_tsresol 9: timestamps are nanoseconds.
- Timestamps are MISSION time by default: nanoseconds since mission 0, so
  Wireshark shows 1970-01-01 00:00:00 plus mission time and "seconds since
  the beginning of capture" is the scenario's clock. Mission time is what
  the scenario, the faults and the metrics speak; in a sim run wall time is
  only mission time divided by the time scale, and in a real-time run wall
  time carries host jitter that the link model never intended. `time="wall"`
  writes the trace's wall_ns instead (host epoch time in real-time runs).
- One packet per frame fate that carries bytes, in trace order:
    sent       on the sender's interface, epb_flags direction 01 (inbound:
               into the harness), the line frame as recorded (`hex`)
    delivered  on the recipient's interface, direction 10 (outbound), the
               bytes the recipient got (they differ from the sent ones when
               the link corrupted them)
    dropped    on the recipient's interface (the sender's if it was dropped
               before fan-out), direction 00 (information not available: it
               never went out), the sent bytes
  The packet data is the line WITHOUT its 0x00 delimiter, exactly the
  trace's `hex`. `duplicated` and `corrupted` events get no packet of their
  own: they are folded into the comment of the copy's final fate; so is
  `converted` (the harness re-wrote the frame at an older protocol version
  for that recipient), as converted=v2>v1 on every copy's final fate, whose
  delivered packet carries the converted bytes.
- epb_packetid (option 5) is the trace's frame `id`, so a send and all its
  deliveries and drops share one packet id (tshark: frame.packet_id); the
  comment repeats it as id=N for readers that do not show the option.
- opt_comment holds the fate as space-separated key=value words, e.g.
  "fate=dropped id=17 to=4 copy=0 reason=loss". Values never contain spaces.
- fault, link, node and end events become zero-length packets on the
  `events` interface with the event in the comment:
  "kind=fault fault=crash node=3 detail={...}" (detail, JSON, always last).

Nothing is written in place: the file is written under a temporary name
and renamed when complete, so a crash never leaves a half file that looks
whole. The pcapng writer is written here by hand from the pcapng draft
(draft-ietf-opsawg-pcapng: SHB, IDB, EPB, options), little endian.
"""

import json
import os
import struct

from ground.trace import TraceError, TraceReader

LINKTYPE_USER0 = 147  # tcpdump.org LINKTYPE_USER0; Wireshark's WTAP_ENCAP_USER0 (45)

# block types
SHB = 0x0A0D0D0A
IDB = 0x00000001
EPB = 0x00000006
BYTE_ORDER_MAGIC = 0x1A2B3C4D

# option codes
OPT_ENDOFOPT = 0
OPT_COMMENT = 1
SHB_HARDWARE = 2
SHB_OS = 3
SHB_USERAPPL = 4
IF_NAME = 2
IF_DESCRIPTION = 3
IF_TSRESOL = 9
EPB_FLAGS = 2
EPB_PACKETID = 5

# epb_flags bits 0-1: direction
DIR_UNKNOWN = 0
DIR_INBOUND = 1
DIR_OUTBOUND = 2

EVENT_KINDS = ("fault", "link", "node", "end")


class PcapError(ValueError):
    """A trace that cannot be exported: names the file and line."""


# ---- the writer ----------------------------------------------------------


def _pad4(n):
    return (4 - n % 4) % 4


def _options(opts):
    """opts: list of (code, bytes). Returns the encoded option list (empty
    if no options), terminated by opt_endofopt."""
    if not opts:
        return b""
    out = bytearray()
    for code, value in opts:
        if len(value) > 0xFFFF:
            raise ValueError("pcapng option %d: %d bytes, at most 65535" % (code, len(value)))
        out += struct.pack("<HH", code, len(value))
        out += value
        out += bytes(_pad4(len(value)))
    out += struct.pack("<HH", OPT_ENDOFOPT, 0)
    return bytes(out)


def _block(block_type, body):
    total = 12 + len(body)
    return struct.pack("<II", block_type, total) + body + struct.pack("<I", total)


def _text(s):
    return s.encode("utf-8")


class PcapngWriter:
    """Writes one section of a pcapng file to a binary stream.

        w = PcapngWriter(f, userappl="fleetloop")
        i = w.interface("node3", LINKTYPE_USER0)
        w.packet(i, ts, data, flags=DIR_INBOUND, comment="...", packet_id=17)

    Interfaces may be added at any time before the packets that use them.
    """

    def __init__(self, f, userappl=None, comment=None, hardware=None, os_name=None):
        self.f = f
        self.interfaces = []  # (name, linktype, tsresol)
        self.packets = 0
        opts = []
        if comment:
            opts.append((OPT_COMMENT, _text(comment)))
        if hardware:
            opts.append((SHB_HARDWARE, _text(hardware)))
        if os_name:
            opts.append((SHB_OS, _text(os_name)))
        if userappl:
            opts.append((SHB_USERAPPL, _text(userappl)))
        # major 1, minor 0, section length -1 (not specified)
        body = struct.pack("<IHHq", BYTE_ORDER_MAGIC, 1, 0, -1) + _options(opts)
        f.write(_block(SHB, body))

    def interface(self, name, linktype=LINKTYPE_USER0, description=None, tsresol=9, snaplen=0):
        opts = [(IF_NAME, _text(name))]
        if description:
            opts.append((IF_DESCRIPTION, _text(description)))
        opts.append((IF_TSRESOL, bytes([tsresol])))
        body = struct.pack("<HHI", linktype, 0, snaplen) + _options(opts)
        self.f.write(_block(IDB, body))
        self.interfaces.append((name, linktype, tsresol))
        return len(self.interfaces) - 1

    def packet(self, interface, ts, data, flags=None, comment=None, packet_id=None):
        if not 0 <= interface < len(self.interfaces):
            raise ValueError("packet on interface %d, which was never described" % interface)
        if ts < 0 or ts >= 1 << 64:
            raise ValueError("timestamp %r out of range" % (ts,))
        data = bytes(data)
        opts = []
        if comment:
            opts.append((OPT_COMMENT, _text(comment)))
        if flags is not None:
            opts.append((EPB_FLAGS, struct.pack("<I", flags)))
        if packet_id is not None:
            opts.append((EPB_PACKETID, struct.pack("<Q", packet_id)))
        body = struct.pack("<IIIII", interface, ts >> 32, ts & 0xFFFFFFFF, len(data), len(data))
        body += data + bytes(_pad4(len(data))) + _options(opts)
        self.f.write(_block(EPB, body))
        self.packets += 1


# ---- reading a trace strictly ---------------------------------------------


def read_trace(path, allow_torn=False):
    """(header, [(line_no, event), ...], torn) of a trace, checked for the tools.

    On top of ground.trace.TraceReader (which refuses a bad line in the
    middle and an unknown format version, naming file:line), refuses:
      - a torn last line, unless allow_torn (the run was cut off mid-write;
        the events before it are usable and the tools say so);
      - events out of order: mission_ns going backwards, a frame fate
        before its `sent`, a `sent` id used twice.
    """
    reader = TraceReader(path)
    events = []
    last_ns = 0
    last_line = 1
    sent = set()
    try:
        for i, ev in enumerate(reader):
            line = i + 1
            if i == 0:
                continue
            t = ev.get("mission_ns")
            if t.__class__ is not int or t < 0:
                raise PcapError("%s:%d: mission_ns %r is not a non-negative integer" % (path, line, t))
            if t < last_ns:
                raise PcapError("%s:%d: out of order: mission_ns %d is before line %d's %d"
                                % (path, line, t, last_line, last_ns))
            last_ns, last_line = t, line
            if ev["kind"] == "frame":
                fid = ev.get("id")
                fate = ev.get("fate")
                if fid.__class__ is not int or fid < 0:
                    raise PcapError("%s:%d: frame id %r is not a non-negative integer" % (path, line, fid))
                if fate == "sent":
                    if fid in sent:
                        raise PcapError("%s:%d: frame id %r sent twice" % (path, line, fid))
                    sent.add(fid)
                    try:
                        bytes.fromhex(ev.get("hex", ""))
                    except (TypeError, ValueError):
                        raise PcapError("%s:%d: frame %r: hex is not hexadecimal" % (path, line, fid)) from None
                elif fate in ("delivered", "dropped", "duplicated", "corrupted", "converted"):
                    if fid not in sent:
                        raise PcapError("%s:%d: out of order: %s of frame id %r before its sent event"
                                        % (path, line, fate, fid))
                else:
                    raise PcapError("%s:%d: unknown frame fate %r" % (path, line, fate))
            events.append((line, ev))
    except TraceError as e:
        raise PcapError(str(e)) from None
    except OSError as e:
        raise PcapError("%s: cannot read: %s" % (path, e.strerror)) from None
    if reader.header is None:
        raise PcapError("%s: empty trace" % path)
    if reader.torn and not allow_torn:
        line = len(events) + 2
        raise PcapError("%s:%d: the last line is torn (the run was cut off while writing it); "
                        "pass --allow-torn to use the %d complete events before it" % (path, line, len(events)))
    return reader.header, events, reader.torn


# ---- the export -------------------------------------------------------------


def _word(v):
    s = str(v)
    return s.replace(" ", "_") if s else "-"


def frame_comment(fate, **fields):
    """'fate=<fate> k=v ...' with values that never contain spaces."""
    words = ["fate=%s" % fate]
    for k, v in fields.items():
        if v is None:
            continue
        words.append("%s=%s" % (k, _word(v)))
    return " ".join(words)


def event_comment(ev):
    kind = ev["kind"]
    words = ["kind=%s" % kind]
    detail = None
    for k in sorted(ev):
        if k in ("kind", "mission_ns", "wall_ns"):
            continue
        v = ev[k]
        if k == "detail" or isinstance(v, (dict, list)):
            if k == "detail":
                detail = v
                continue
            v = json.dumps(v, separators=(",", ":"), sort_keys=True)
        words.append("%s=%s" % (k, _word(v)))
    if detail not in (None, {}, ""):
        words.append("detail=" + json.dumps(detail, separators=(",", ":"), sort_keys=True))
    return " ".join(words)


class Exporter:
    """Turns checked trace events into pcapng packets (see the module doc)."""

    def __init__(self, header, writer, time="mission"):
        if time not in ("mission", "wall"):
            raise ValueError("time must be 'mission' or 'wall', got %r" % (time,))
        self.time = time
        self.w = writer
        self.iface = {}
        self.iface[0] = writer.interface("ground", description="the ground harness (node id 0)")
        nodes = header.get("nodes") or {}
        for nid in sorted(nodes, key=lambda k: int(k)):
            info = nodes[nid] or {}
            # The link's kind, not its host path (a pty or /dev/ttyACM0 says
            # nothing to whoever opens the capture; the trace header keeps it).
            link = info.get("link")
            desc = "node %s: cluster %s, firmware %s, %s" % (
                nid, info.get("cluster"), info.get("firmware"),
                "in-process (sim)" if link in (None, "sim") else
                "board over udp" if str(link).startswith("udp://") else "board over serial")
            self.iface[int(nid)] = writer.interface("node%d" % int(nid), description=desc)
        self.events_iface = writer.interface("events", description="faults, link and node events (zero-length packets)")
        self.sent = {}  # frame id -> (bytes, src)
        self.notes = {}  # (id, to, copy) -> ["corrupted=bitflip", ...]
        self.copy_now = {}  # (id, to) -> copy the next corrupted event belongs to
        self.copies = {}  # (id, to) -> copies made (0 and each duplicate)
        self.final = {}  # (id, to) -> copies that have their final fate
        self.converted = {}  # (id, to) -> "v2>v1": down-converted for that recipient
        self.frames = 0
        self.events = 0

    def _ts(self, ev):
        return ev["wall_ns"] if self.time == "wall" else ev["mission_ns"]

    def _iface_of(self, node):
        i = self.iface.get(node)
        if i is None:  # a node the header did not list (a board lying about its id...)
            i = self.iface[node] = self.w.interface("node%d" % node, description="node %d (not in the header)" % node)
        return i

    def event(self, line, ev):
        kind = ev["kind"]
        if kind == "frame":
            self._frame(ev)
        elif kind in EVENT_KINDS:
            self.w.packet(self.events_iface, self._ts(ev), b"", comment=event_comment(ev))
            self.events += 1

    def _frame(self, ev):
        fate = ev["fate"]
        fid = ev["id"]
        if fate == "sent":
            data = bytes.fromhex(ev.get("hex", ""))
            src = ev.get("src")
            self.sent[fid] = (data, src)
            extra = {}
            if ev.get("bad"):
                extra["bad"] = ev["bad"]
            if "claimed_src" in ev:
                extra["claimed_src"] = ev["claimed_src"]
            if "orig_hex" in ev:
                extra["rewritten"] = "yes"
            comment = frame_comment("sent", id=fid, src=src, dst=ev.get("dst"), type=ev.get("type"), **extra)
            self.w.packet(self._iface_of(src if src is not None else 0), self._ts(ev), data, DIR_INBOUND, comment, fid)
            self.frames += 1
            return
        to = ev.get("to")
        if fate == "duplicated":
            self.copy_now[(fid, to)] = ev.get("copy", 0)
            self.copies.setdefault((fid, to), {0}).add(ev.get("copy", 0))
            return
        if fate == "corrupted":
            copy = self.copy_now.get((fid, to), 0)
            self.notes.setdefault((fid, to, copy), []).append(ev.get("how", "?"))
            return
        if fate == "converted":
            self.converted[(fid, to)] = "v%s>v%s" % (ev.get("from_version", "?"), ev.get("to_version", "?"))
            return
        data, src = self.sent[fid]
        copy = ev.get("copy")
        done = self.final.setdefault((fid, to), set())
        if copy is None:
            # a fate without `copy` (the router's node_down drop at delivery
            # time): the lowest copy still without a final fate
            left = sorted(self.copies.get((fid, to), {0}) - done)
            copy = left[0] if left else 0
        done.add(copy)
        hows = self.notes.pop((fid, to, copy), None)
        corrupted = ",".join(hows) if hows else None
        converted = self.converted.get((fid, to))
        if fate == "delivered":
            unrecorded = None
            if "hex" in ev:
                data = bytes.fromhex(ev["hex"])
            elif corrupted:
                unrecorded = "unrecorded"  # corrupted, yet the trace kept no bytes: these are the sent ones
            comment = frame_comment("delivered", id=fid, to=to, copy=copy, delay_ns=ev.get("delay_ns"),
                                    converted=converted, corrupted=corrupted, bytes=unrecorded)
            self.w.packet(self._iface_of(to), self._ts(ev), data, DIR_OUTBOUND, comment, fid)
        else:  # dropped
            where = to if to is not None else (src if src is not None else 0)
            comment = frame_comment("dropped", id=fid, to=to if to is not None else "none", copy=copy,
                                    reason=ev.get("reason"), converted=converted, corrupted=corrupted)
            self.w.packet(self._iface_of(where), self._ts(ev), data, DIR_UNKNOWN, comment, fid)
        self.frames += 1


class Result:
    def __init__(self, path, packets, frames, events, torn):
        self.path = path
        self.packets = packets
        self.frames = frames
        self.events = events
        self.torn = torn


def export(trace_path, out_path, time="mission", allow_torn=False):
    """Write the pcapng for trace_path to out_path (atomically). Result."""
    header, events, torn = read_trace(trace_path, allow_torn=allow_torn)
    desc = "fleetloop trace %s: scenario %s, seed %s, mode %s, time_scale %s; timestamps are %s time%s" % (
        os.path.basename(trace_path), header.get("scenario"), header.get("seed"), header.get("mode"),
        header.get("time_scale"), time, " (the trace's last line was torn)" if torn else "")
    tmp = out_path + ".partial"
    try:
        with open(tmp, "wb") as f:
            w = PcapngWriter(f, userappl="fleetloop ground export-pcap", comment=desc)
            ex = Exporter(header, w, time=time)
            for line, ev in events:
                try:
                    ex.event(line, ev)
                except (KeyError, TypeError, ValueError) as e:
                    raise PcapError("%s:%d: cannot export this %s event: %s" % (trace_path, line, ev.get("kind"), e)) from None
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out_path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return Result(out_path, w.packets, ex.frames, ex.events, torn)

