"""The ground's side of the UDP transport: one socket per run, one link per board.

Boards on transport "udp" (Pico W over Wi-Fi, or an emulated board on
loopback; firmware/runtime/link_udp.py) send each frame as one datagram to
the ground's address (board.json "ground"). A `UdpHub` owns that socket:

    hub = UdpHub("127.0.0.1")          # bound at once: hub.address goes into board.json
    link = hub.link(3)                 # the link the router talks to for node 3
    hub.wait_hello(3, timeout_s)       # boot: node 3's HELLO teaches the hub its address

The hub learns each board's address from its HELLO (src node id -> (host,
port); or from the journal entry 0 a board with a journal sends just
before it); a later HELLO from another address moves the node there (a board
that rebooted binds a new port). Every datagram is judged before the router
sees it; what is refused is counted in `refused` and described in
`problems` (one line naming the sender address, and its node if known):

- not a frame: empty of frame bytes, no 0x00 delimiter at its end, or a
  delimiter inside (two frames glued);
- from an address no HELLO has taught, and not itself a HELLO of a node of
  this run;
- from node N's address but claiming another source.

The hub follows each board's frame sequence numbers: a frame that comes
after newer ones was reordered by the network (the run records a
`reordered` node event; the frame is routed when it comes, as it came), a
seq still missing after LOST_AFTER newer frames was lost on the way (the run
records a frame `sent` by that node with type "?" and its fate `dropped`,
reason `net_lost`, at the time the loss is known). Loss on the way to a board
is not visible from here: UDP says nothing, and the board's core treats it
like any missing frame.

A frame whose bytes do not decode (CRC, length) but comes from a known
board's address is passed on: the router records it as that node's
`bad_frame`, like a damaged frame on a serial line. Loss and reordering on
the network need no special case: a lost datagram is a frame never sent (or
a delivery never made), a reordered one arrives in its new order, and the
trace records what happened.

A `UdpLink` has the interface of links.SerialLink that the run uses
(node_id, kind, url, up, heard_ns, silent, board, deliver(), text_tail(),
close()); its reads go through the hub, which the run watches once
(`source`, one descriptor for every board on it).
"""

import select
import socket
import time

from ground import firmware
from ground.links import LinkError

wire = firmware.wire
msgs = firmware.msgs

MAX_DATAGRAM = 2048  # larger than any frame (MAX_LINE 496): a bigger datagram is junk, read whole
_MAX_PER_READ = 256  # datagrams handled per readable event before the run's other work
_MAX_PROBLEMS = 100  # problem lines kept (the count goes on)
LOST_AFTER = 16  # a missing seq is lost once this many newer frames of its board came


class UdpHub:
    """The run's UDP socket and the board addresses learnt from HELLOs."""

    def __init__(self, host="127.0.0.1", port=0):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.bind((host, port))
        except OSError as e:
            self.sock.close()
            raise LinkError("udp: cannot bind %s:%d: %s" % (host, port, e)) from None
        self.sock.setblocking(False)
        self.host, self.port = self.sock.getsockname()[:2]
        self.address = "%s:%d" % (self.host, self.port)
        self.links = {}  # node id -> UdpLink
        self.addr_of = {}  # node id -> (host, port), from its HELLO
        self.node_at = {}  # (host, port) -> node id
        self.refused = 0
        self.problems = []  # [(node id or None, text)], oldest first, at most _MAX_PROBLEMS
        self._new_problems = []  # not yet taken by the run (take_problems)
        self.datagrams_in = 0
        self.datagrams_out = 0
        self.lost = 0  # board frames whose seq never came (LOST_AFTER newer ones did)
        self.reordered = 0  # board frames that came after newer ones
        self._next = {}  # (node, journal?) -> the seq expected next
        self._missing = {}  # (node, journal?) -> {seq: newer frames seen since}
        self._net = []  # not yet taken by the run (take_network)

    def fileno(self):
        return self.sock.fileno()

    def link(self, node_id):
        """The link for node `node_id` (one per node)."""
        if node_id not in self.links:
            self.links[node_id] = UdpLink(node_id, self)
        return self.links[node_id]

    def _refuse(self, node, addr, why):
        self.refused += 1
        where = "%s:%d" % addr[:2]
        text = "udp datagram from %s%s refused: %s" % (where, " (node %d's address)" % node if node else "", why)
        if len(self.problems) < _MAX_PROBLEMS:
            self.problems.append((node, text))
        self._new_problems.append((node, text))

    def take_problems(self):
        """Refusals since the last call: [(node id or None, one line)]."""
        out, self._new_problems = self._new_problems, []
        return out

    def _learn(self, node, addr):
        old = self.addr_of.get(node)
        if old is not None and old != addr:
            self.node_at.pop(old, None)
        self.addr_of[node] = addr
        self.node_at[addr] = node

    def judge(self, data, addr):
        """(node id, line without delimiter) for a datagram to route, or None
        (refused, or an empty frame). Learns addresses from HELLOs."""
        node = self.node_at.get(addr)
        if data == b"\x00":
            return None  # an empty frame: a delimiter that carries nothing
        if len(data) > wire.MAX_LINE + 1:
            self._refuse(node, addr, "%d bytes, longer than any frame (%d)" % (len(data), wire.MAX_LINE + 1))
            return None
        if not data or data[-1] != 0:
            self._refuse(node, addr, "not a frame: no 0x00 delimiter at its end (%r)" % bytes(data[:16]))
            return None
        line = data[:-1]
        if 0 in line:
            self._refuse(node, addr, "not a frame: a 0x00 inside (one frame per datagram)")
            return None
        try:
            f = wire.decode(line)
        except wire.ProtocolError as e:
            if node is None:
                self._refuse(None, addr, "not a frame (%s) from an address no HELLO came from" % e)
                return None
            return node, line  # the router records it as node's bad_frame
        if f.src in self.links and _is_boot(f):
            self._learn(f.src, addr)
            self._order(f, boot=True)
            return f.src, line
        if node is None:
            self._refuse(None, addr, "%s from node %d, but no HELLO came from this address"
                         % (msgs.name(f.type), f.src))
            return None
        if f.src != node:
            self._refuse(node, addr, "claims src %d" % f.src)
            return None
        self._order(f)
        return node, line

    def _order(self, f, boot=False):
        """Follow each board's frame sequence numbers (8 bits, one sequence
        for its core's frames, one for its journal's): a gap is a datagram
        the network lost or is still carrying; one that turns up later was
        reordered, one still missing after LOST_AFTER newer frames was lost."""
        key = (f.src, f.type == msgs.JOURNAL)
        if boot and (f.type == msgs.HELLO or key[1]):  # a new boot numbers from where it starts
            self._next.pop(key, None)
            self._missing.pop(key, None)
        missing = self._missing.setdefault(key, {})
        want = self._next.get(key)
        seq = f.seq
        if want is None or seq == want:
            self._next[key] = (seq + 1) & 0xFF
        else:
            ahead = (seq - want) & 0xFF
            if ahead < 128:  # frames want..seq-1 have not come (yet)
                for k in range(ahead):
                    missing[(want + k) & 0xFF] = 0
                self._next[key] = (seq + 1) & 0xFF
            elif seq in missing:  # an older one, overtaken
                late = missing.pop(seq)
                self.reordered += 1
                self._net.append(("reordered", f.src, seq, "node %d: %s seq %d arrived after %d newer frame%s (udp)"
                                  % (f.src, msgs.name(f.type), seq, late, "" if late == 1 else "s")))
                return
        for k in list(missing):
            missing[k] += 1
            if missing[k] > LOST_AFTER:
                del missing[k]
                self.lost += 1
                self._net.append(("lost", f.src, k, "node %d: %s seq %d never arrived (%d newer frames did; udp)"
                                  % (f.src, "journal" if key[1] else "frame", k, LOST_AFTER)))

    def take_network(self):
        """What the network did since the last call: [("lost" | "reordered",
        node id, seq, one line)]."""
        out, self._net = self._net, []
        return out

    def read(self):
        """Datagrams waiting now, judged: [(UdpLink, [line])] in arrival order."""
        out = []
        for _ in range(_MAX_PER_READ):
            try:
                data, addr = self.sock.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # ECONNREFUSED from an earlier send to a board that is gone: go on
                continue
            self.datagrams_in += 1
            got = self.judge(data, addr)
            if got is None:
                continue
            link = self.links[got[0]]
            if out and out[-1][0] is link:
                out[-1][1].append(got[1])
            else:
                out.append((link, [got[1]]))
        return out

    def forget(self):
        """Discard every datagram waiting and every address learnt: for a
        fresh start once the boards that sent them are off (their boot before
        this run is not part of it). The number of datagrams discarded."""
        n = 0
        while True:
            try:
                self.sock.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                continue
            n += 1
        self.addr_of.clear()
        self.node_at.clear()
        return n

    def send(self, node_id, line):
        """Send one frame (with its delimiter) to node_id's learnt address;
        False if no HELLO has taught it yet (the frame is lost)."""
        addr = self.addr_of.get(node_id)
        if addr is None:
            return False
        try:
            self.sock.sendto(bytes(line), addr)
        except (BlockingIOError, InterruptedError, ConnectionRefusedError):
            return False  # buffer full, or the board's old port is gone (it rebooted): lost, like on the air
        except OSError as e:
            raise LinkError("node %d: udp send to %s:%d failed: %s" % (node_id, addr[0], addr[1], e)) from None
        self.datagrams_out += 1
        return True

    def close(self):
        self.sock.close()


class UdpLink:
    """Node `node_id` behind the hub: the router's link to a board on UDP."""

    kind = "udp"

    def __init__(self, node_id, hub):
        self.node_id = node_id
        self.hub = hub
        self.source = hub  # the run watches the hub once for all its links
        self.up = True
        self.errors = 0
        self.unsent = 0  # frames for the board before its address was known
        self.heard_ns = None
        self.silent = False
        self.board = None  # the board object, set by the run (its console log, for text_tail)

    @property
    def url(self):
        addr = self.hub.addr_of.get(self.node_id)
        return "udp://%s:%d" % addr[:2] if addr else "udp://(node %d, no HELLO yet) via %s" % (self.node_id,
                                                                                              self.hub.address)

    def deliver(self, line, mission_ms=None):
        if not self.hub.send(self.node_id, line):
            self.unsent += 1

    def text_tail(self, max_chars=300):
        """The end of what the board printed on its console (USB, not this
        link), when the board object keeps it (an emulated board's `log`), as
        text; "" otherwise. For the message when a board stops answering."""
        log = getattr(self.board, "log", None)
        if not log:
            return ""
        text = bytes(log[-4 * max_chars:]).decode("utf-8", "replace")
        text = "".join(c if c.isprintable() or c == "\n" else "?" for c in text).strip()
        return text[-max_chars:]

    def close(self):
        pass


def wait_hellos(hub, node_ids, timeout_s):
    """Read the hub until every node of `node_ids` has said HELLO (boot);
    {node id: [lines it sent, from its HELLO on]} for the run to route at
    mission 0. TimeoutError naming the silent nodes and what was refused."""
    want = set(node_ids)
    seen = {nid: [] for nid in want}
    hello = set()
    deadline = time.monotonic() + timeout_s
    while want - hello:
        left = deadline - time.monotonic()
        if left <= 0:
            silent = sorted(want - hello)
            why = "; ".join(t for _, t in hub.problems[-3:])
            raise TimeoutError("udp %s: no HELLO from node%s %s within %.0f s%s" % (
                hub.address, "s" if len(silent) > 1 else "", ", ".join(map(str, silent)), timeout_s,
                "; refused: " + why if why else ""))
        r, _, _ = select.select([hub.fileno()], [], [], min(left, 0.2))
        if not r:
            continue
        for link, lines in hub.read():
            if link.node_id in want:
                for line in lines:
                    boot = _boot_kind(line, link.node_id)
                    if boot is not None and link.node_id not in hello:
                        if boot == "journal" or not seen[link.node_id]:
                            seen[link.node_id] = []  # this boot starts here
                    if boot == "hello":
                        hello.add(link.node_id)
                    if boot is not None or seen[link.node_id]:
                        seen[link.node_id].append(line)
    return seen


def _is_boot(f):
    """A frame that starts a boot: HELLO, or a journal's entry 0 (sent just before it)."""
    if f.type == msgs.HELLO:
        return True
    if f.type == msgs.JOURNAL:
        try:
            return msgs.unpack_journal(f.payload)[0] == 0
        except (wire.ProtocolError, ValueError, IndexError):
            return False
    return False


def _boot_kind(line, node_id):
    """"hello", "journal" (entry 0) or None for a line from node_id."""
    try:
        f = wire.decode(line)
    except wire.ProtocolError:
        return None
    if f.src != node_id or not _is_boot(f):
        return None
    return "hello" if f.type == msgs.HELLO else "journal"
