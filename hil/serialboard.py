"""A real board over its serial port, for a run: configure it through its
REPL with mpremote, soft-reset it, wait for its HELLO.

    configure_over_repl(repl, board_json, spec, folder)   # board.json + version.json, by mpremote cp
    board = SerialBoard(name, device, repl)
    board.boot_and_wait_hello(node_id, timeout_s)         # then ground.run.Run takes `board`

hil/rig.py's FileRig uses these for a rig file's USB and URL boards; an
emulated board served behind a `url:` takes the same path (tests/hil).
"""

import json
import os
import select
import subprocess
import sys
import time

from ground.links import open_serial

CONFIGURE_TIMEOUT_S = 60.0  # mpremote writing board.json + version.json to one board


def configure_over_repl(port, cfg, spec, folder):
    """Write board.json and version.json to a real board with mpremote (one
    process per board), leaving the firmware as flashed."""
    os.makedirs(folder, exist_ok=True)
    bj, vj = os.path.join(folder, "board.json"), os.path.join(folder, "version.json")
    with os.fdopen(os.open(bj, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:  # may hold a Wi-Fi password
        json.dump(cfg, f)
    with open(vj, "w") as f:
        json.dump({"version": list(spec.fw_version), "label": spec.firmware}, f)
    mpremote = os.path.join(os.path.dirname(sys.executable), "mpremote")
    cmd = [mpremote if os.path.exists(mpremote) else "mpremote", "connect", port, "cp", bj, ":board.json",
           "+", "cp", vj, ":version.json"]
    try:
        p = subprocess.run(cmd, capture_output=True, timeout=CONFIGURE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise RuntimeError("%s: mpremote gave no answer within %.0f s" % (port, CONFIGURE_TIMEOUT_S)) from None
    if isinstance(cfg.get("wifi"), dict) and cfg["wifi"].get("password"):
        with open(bj, "w") as f:  # the copy kept with the run: no Wi-Fi password in it
            json.dump(dict(cfg, wifi=dict(cfg["wifi"], password="(on the board only)")), f)
    if p.returncode:
        raise RuntimeError("%s: %s failed: %s" % (port, " ".join(cmd[1:]), (p.stderr or p.stdout).decode(errors="replace").strip()))



class SerialBoard:
    """A real board for ground.run: its frames at `device` (a path or a
    pyserial URL), its REPL at `repl` (the same port unless the frames go over
    a UART). reset() is a soft reset at the REPL (Ctrl-C, Ctrl-B, Ctrl-D:
    main.py runs, USB stays up). power_cut() / power_on() switch `power` (a
    labgrid place's power port: hil.labgrid_power.PlacePower) when it has
    one; without, tests that cut power say @pytest.mark.needs("power_control")
    and are skipped. `log` keeps the bytes read while it booted; the router
    keeps the frames after that (in the trace)."""

    def __init__(self, name, device, repl=None, power=None):
        self.name = name
        self.device = device
        self.repl = repl or device
        self.power = power
        self.log = bytearray()
        self.open_port = None

    def reset(self):
        port = self.open_port[0] if self.open_port and self.repl == self.device else None
        own = port is None
        if own:
            port = open_serial(self.repl, timeout=1, write_timeout=2)
        try:
            port.write(b"\x03\x03\x02\x04")
            port.flush()
        finally:
            if own:
                port.close()

    def boot_and_wait_hello(self, node_id, timeout_s):
        from ground import firmware

        wire, msgs = firmware.wire, firmware.msgs
        port = open_serial(self.device, timeout=0.1, write_timeout=2)
        try:
            port.reset_input_buffer()
            self.open_port = (port, wire.FrameSplitter(), [])
            self.reset()
            try:
                fd = port.fileno()
            except Exception:
                fd = None
            splitter, seen = self.open_port[1], self.open_port[2]
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                if fd is not None:
                    if not select.select([fd], [], [], 0.2)[0]:
                        continue
                    data = port.read(port.in_waiting or 1)
                else:
                    data = port.read(256)
                self.log += data
                for line in splitter.feed(data):
                    seen.append(line)
                    try:
                        f = wire.decode(line)
                    except wire.ProtocolError:
                        continue
                    if f.type == msgs.HELLO and f.src == node_id:
                        port.timeout = 0
                        return self
        except BaseException:
            port.close()
            self.open_port = None
            raise
        port.close()
        self.open_port = None
        raise TimeoutError("board %s (node %d, %s): no HELLO within %.0f s after a soft reset; it said: %r"
                           % (self.name, node_id, self.device, timeout_s, bytes(self.log[-300:])))

    def _no_power(self):
        raise NotImplementedError("board %s: no power control: a USB or network board has none here unless its"
                                  " labgrid place has a power port (docs/HIL.md); tests that cut power say"
                                  " @pytest.mark.needs('power_control')" % self.name)

    def power_cut(self):
        """Switch its power off (its place's power port)."""
        if self.power is None:
            self._no_power()
        self.power.off()

    def power_on(self):
        """Switch its power on: the board boots from flash and says HELLO."""
        if self.power is None:
            self._no_power()
        self.power.on()

    def close(self):
        if self.open_port:
            try:
                self.open_port[0].close()
            except Exception:
                pass

    def __repr__(self):
        return "<SerialBoard %s %s>" % (self.name, self.device)
