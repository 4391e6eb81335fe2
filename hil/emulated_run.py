"""Emulated Picos for a run: one board per scenario node, flashed and booted.

`start_farm(scenario, folder)` gives every node of the scenario its own
emulated Pico (hil.emulated: the MicroPython unix port behind a pty, 192K
heap), flashed with the firmware for its version label and the board.json
the scenario gives it (ground.board_json), and waits for each board's HELLO
frame. The engine's router then opens the boards' device paths with
pyserial, exactly as it would open /dev/ttyACM0.
"""

import os
import select
import shutil
import time

from ground import board_json, firmware
from hil import flash as flash_mod
from hil.emulated import EmulatedBoard
from hil.emulated_rules import OFF

wire = firmware.wire
msgs = firmware.msgs

BOOT_TIMEOUT_S = 30.0
STATE_DIR = "state"  # where the firmware keeps what survives power loss (firmware/runtime/start.py STATE_DIR)
UDP_NOTE = b"fleetloop: frames over udp to"  # what firmware/main.py prints on a board on transport udp


class Farm:
    def __init__(self, boards):
        self.boards = boards  # node id -> EmulatedBoard
        self.spares = []  # (folder, name) of spare boards still off (add_spares)
        self.built = None  # the compiled image the spares are flashed with

    def devices(self):
        return dict(self.boards)

    def add_spares(self, folder, count, built):
        """Keep `count` spare boards off until a daughter needs one (power_on_spare)."""
        self.built = built
        self.spares = [(os.path.join(folder, "spare%d" % k), "spare%d" % k) for k in range(1, count + 1)]

    def power_on_spare(self, nid, board_config, version, label):
        """A daughter appeared: the next spare board, still off, is flashed
        with its board.json (id `nid`, its parent's lineage and firmware
        `version`/`label`, its cluster's roster), powered on and booted to
        its HELLO; the EmulatedBoard with its port open, or None when no
        spare is left. TimeoutError/RuntimeError naming the board if it
        does not boot (the board is stopped)."""
        if not self.spares:
            return None
        bdir, name = self.spares.pop(0)
        b = boot_spare(bdir, name, nid, board_config, version, label, self.built)
        self.boards[nid] = b
        return b

    def stop(self):
        for b in self.boards.values():
            try:
                b.stop()
            except Exception:
                pass


def boot_spare(bdir, name, nid, board_config, version, label, built, code="romfs", heap=None, hub=None,
               timeout_s=BOOT_TIMEOUT_S):
    """A spare emulated Pico taken by a daughter (docs/CONTAINMENT.md,
    "Daughters on boards"): its flash folder `bdir` wiped (what an earlier
    daughter on it saved, its term, roster and ledger, does not leak into
    this one: a spare is handed out as new), written with the image
    `built` and the daughter's board.json, the board started, powered on and
    booted to node `nid`'s HELLO: on its serial port, or, with `hub` (a
    ground.udplink.UdpHub whose address board_config's "ground" names), on
    that hub (the board's `open_link`). The EmulatedBoard; on failure it is
    stopped and TimeoutError/RuntimeError/ValueError names it."""
    shutil.rmtree(bdir, ignore_errors=True)
    flash_mod.write_image(bdir, version=version, label=label, board_config=board_config, built=built, code=code)
    b = EmulatedBoard(bdir, name=name) if heap is None else EmulatedBoard(bdir, name=name, heap=heap)
    try:
        b.start()
        if hub is not None:
            boot_udp({nid: b}, hub, timeout_s)
        else:
            boot_and_wait_hello(b, nid, timeout_s)
    except BaseException:
        b.stop()
        raise
    return b


def wipe_saved_state(bdir):
    """Forget what an emulated board saved on its flash folder `bdir` (its
    terms, votes, identity, replay ceilings, the cluster membership it
    learnt: firmware/runtime/store.py), as a fresh board's flash would be.
    The board must be off. A rig file's emulated boards outlive a run (the
    pytest plugin's session): each run starts them from the scenario alone."""
    shutil.rmtree(os.path.join(bdir, STATE_DIR), ignore_errors=True)


def boot_and_wait_hello(board, node_id, timeout_s=BOOT_TIMEOUT_S):
    """Reset the board with its device open, wait for its HELLO frame.

    The reset is a power cut, the port's opening, then power on: opening
    flushes what the board said before (pyserial resets the input buffer; a
    real Pico drops output while no host has its port open), and with the
    board off nothing more of its earlier boot arrives (a board slow to
    start, under load, used to send its first boot's HELLO after the port
    opened: the run then saw two boots). Leaves the port open in `board.open_port`
    with the lines read so far, so the run records the HELLO; raises
    TimeoutError naming the board if no HELLO comes."""
    import serial

    splitter = wire.FrameSplitter()
    if board.state != OFF:
        board.power_cut()  # a reset in two halves: nothing of the boot before reaches the port after this
    port = serial.Serial(board.device, timeout=0)  # opening flushes what it said before
    mark = board.log_size  # what it prints from here on is this boot's
    board.power_on()
    deadline = time.monotonic() + timeout_s
    seen = []
    while time.monotonic() < deadline:
        r, _, _ = select.select([port.fileno()], [], [], 0.2)
        if not r:
            continue
        said_hello = False
        data = port.read(port.in_waiting or 1)
        if UDP_NOTE in board.log[-max(1, board.log_size - mark):]:
            port.close()
            raise ValueError("board %s (node %d, %s): board.json says transport \"udp\" (it printed %r), but this"
                             " rig expects frames on its serial port: give the board transport \"usb\" or the"
                             " rig transport udp" % (board.name, node_id, board.device, UDP_NOTE.decode()))
        for line in splitter.feed(data):
            seen.append(line)  # all of this read, the lines after the HELLO too
            try:
                f = wire.decode(line)
            except wire.ProtocolError:
                continue
            said_hello = said_hello or (f.type == msgs.HELLO and f.src == node_id)
        if said_hello:
            board.open_port = (port, splitter, _this_boot(seen, node_id))
            return board
    port.close()
    raise TimeoutError("board %s (node %d, %s): no HELLO within %.0f s; its log ends: %r"
                       % (board.name, node_id, board.device, timeout_s, bytes(board.log[-300:])))


def _this_boot(lines, node_id):
    """The lines from this boot on. A board slow to start may still be
    talking when the port opens and the reset lands: lines of that earlier
    boot (and its banner) are not part of the run. This boot starts at its
    first journal frame (entry 0, before the HELLO) when the board keeps a
    journal, else at its first HELLO after the last line that is not a frame
    (the "soft reboot" banner)."""
    def frame(line):
        try:
            return wire.decode(line)
        except wire.ProtocolError:
            return None

    frames = [frame(x) for x in lines]
    mine = [(i, f) for i, f in enumerate(frames) if f is not None and f.src == node_id]
    boots = [i for i, f in mine if f.type == msgs.JOURNAL and msgs.unpack_journal(f.payload)[0] == 0]
    if boots:
        return lines[boots[-1]:]
    junk = max([i for i, f in enumerate(frames) if f is None] or [-1])
    hellos = [i for i, f in mine if f.type == msgs.HELLO]
    after = [i for i in hellos if i > junk]
    return lines[(after or hellos)[0]:]


def _flash_and_start(sc, folder, count, config_of, boards, code="romfs"):
    """Flash one emulated Pico per scenario node with the image `hil flash`
    builds and board.json `config_of(nid)`, and start it; `boards` (nid ->
    EmulatedBoard) fills as they start, so the caller can stop what started.
    `count`, if given, must be the scenario's node count (or more: spares,
    for a scenario with replication:). The compiled image, for spares."""
    if count and count != len(sc.nodes) and not (count > len(sc.nodes) and sc.replication is not None):
        raise ValueError("%s: --emulated %d, but the scenario has %d nodes (one board per node; more only as spare"
                         " boards for daughters, with replication:)" % (sc.path, count, len(sc.nodes)))
    os.makedirs(folder, exist_ok=True)
    # What `hil flash` puts on a Pico: main.py and boot.py, every other module
    # compiled by mpy-cross -march=armv6m. Compiling on the board instead costs
    # heap a Pico would not spend (the market tier's modules do not compile
    # within 192K on the 64-bit unix port).
    # The modules go into the board's ROM partition (the romfs layout, an
    # emulated Pico is one built with ROMFS: docs/HEAP.md), unless `code` is
    # "files".
    built = flash_mod.build(os.path.join(folder, ".image"))
    for nid in sorted(sc.nodes):
        spec = sc.nodes[nid]
        bdir = os.path.join(folder, "node%d" % nid)
        flash_mod.write_image(bdir, version=spec.fw_version, label=spec.firmware, board_config=config_of(nid),
                              built=built, code=code)
        b = EmulatedBoard(bdir, name="node%d" % nid)
        b.start()
        boards[nid] = b
    return built


def start_farm(sc, folder, count=0, transport="usb"):
    """Start one emulated Pico per scenario node; `count`, if given, must match,
    or, for a scenario with replication:, be larger: the rest are spare
    boards, kept off until a daughter needs one (Farm.power_on_spare; on
    transport udp, UdpFarm.power_on_spare).
    transport "udp": frames over UDP on loopback (start_udp_farm)."""
    if transport == "udp":
        return start_udp_farm(sc, folder, count)
    boards = {}
    try:
        built = _flash_and_start(sc, folder, count, lambda nid: board_json.board_config(sc, nid), boards)
        for nid, b in sorted(boards.items()):
            boot_and_wait_hello(b, nid)
    except BaseException:
        Farm(boards).stop()
        raise
    farm = Farm(boards)
    if count > len(sc.nodes):
        farm.add_spares(folder, count - len(sc.nodes), built)
    return farm


class UdpFarm(Farm):
    """Emulated Picos on transport udp: frames over a real UDP socket on
    loopback (ground.udplink.UdpHub), console on the pty."""

    def __init__(self, boards, hub):
        super().__init__(boards)
        self.hub = hub
        self.spare_hubs = []  # one UdpHub per spare board powered on (power_on_spare)

    def power_on_spare(self, nid, board_config, version, label):
        """As Farm.power_on_spare, the board built for transport udp: it
        sends to a hub of its own, bound now on the run hub's host, which
        the run watches from then on (the run's hub is not read meanwhile:
        the other boards' datagrams wait in its socket, as their frames
        wait on their ports for a spare on usb)."""
        if not self.spares:
            return None
        from ground.udplink import UdpHub

        bdir, name = self.spares.pop(0)
        hub = UdpHub(self.hub.host)
        self.spare_hubs.append(hub)
        cfg = dict(board_config, transport="udp", ground=hub.address)
        b = boot_spare(bdir, name, nid, cfg, version, label, self.built, hub=hub)
        self.boards[nid] = b
        return b

    def stop(self):
        super().stop()
        self.hub.close()
        for hub in self.spare_hubs:
            hub.close()


def udp_board_config(sc, nid, hub, transport="udp", ground=None):
    """board.json for node nid on the hub's address, or `ground` (transport udp)."""
    cfg = board_json.board_config(sc, nid)
    cfg["transport"] = transport
    if transport == "udp":
        cfg["ground"] = ground or hub.address
    return cfg


def boot_udp(boards, hub, timeout_s=BOOT_TIMEOUT_S):
    """Reset every board {nid: EmulatedBoard} and wait for their HELLOs on the
    hub; sets each board's `open_link` (its UdpLink and boot lines) for the
    run. ValueError naming a board that sends its frames on its serial port
    instead (board.json transport "usb"); TimeoutError naming silent ones."""
    from ground import udplink

    for nid in sorted(boards):
        hub.link(nid)
    # Off first, then forget what they sent, then on: an emulated board is
    # dead once power_cut() returns, so what its earlier boot sent is all in
    # the socket already, and every datagram after this is from the new boot.
    for b in boards.values():
        if b.state != OFF:  # a rig file's board may be off already (hil.rig.FileRig._boot wiped its state)
            b.power_cut()
    hub.forget()
    marks = {nid: b.log_size for nid, b in boards.items()}
    for b in boards.values():
        b.power_on()
    try:
        seen = udplink.wait_hellos(hub, sorted(boards), timeout_s)
    except TimeoutError as e:
        for nid, b in sorted(boards.items()):
            if nid in hub.addr_of:
                continue
            log = bytes(b.log[-(b.log_size - marks[nid]):]) if b.log_size > marks[nid] else b""
            if UDP_NOTE not in log and b"\x00" in log:
                raise ValueError("board %s (node %d, %s): sends its frames on its serial port (board.json transport"
                                 " is not \"udp\"), but this rig expects them over udp at %s"
                                 % (b.name, nid, b.device, hub.address)) from None
        raise TimeoutError("%s; the boards' logs end: %s" % (e, "; ".join(
            "node %d: %r" % (n, bytes(b.log[-200:])) for n, b in sorted(boards.items()) if n not in hub.addr_of)))
    for nid, b in boards.items():
        b.open_link = (hub.link(nid), seen[nid])
    return boards


def start_udp_farm(sc, folder, count=0, host="127.0.0.1", hub=None, ground=None):
    """One emulated Pico per scenario node on transport udp: the hub is bound
    first (its address goes into every board.json), then the boards boot.
    `hub`: one already bound (the farm closes it); `ground`: the "host:port"
    the boards send to, if not the hub's own (a relay in between)."""
    from ground.udplink import UdpHub

    hub = hub or UdpHub(host)
    boards = {}
    try:
        built = _flash_and_start(sc, folder, count, lambda nid: udp_board_config(sc, nid, hub, ground=ground),
                                 boards)
        boot_udp(boards, hub)
    except BaseException:
        UdpFarm(boards, hub).stop()
        raise
    farm = UdpFarm(boards, hub)
    if count > len(sc.nodes):
        farm.add_spares(folder, count - len(sc.nodes), built)
    return farm
