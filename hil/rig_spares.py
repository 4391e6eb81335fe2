"""A rig file's spare boards for one run: kept off, then powered on, flashed
and booted as a daughter when one needs a board (docs/BOARDS.md "Spare
boards", docs/CONTAINMENT.md "Daughters on boards").

    spares = RigSpares(rig, rig_folder, run_folder, power)  # power: {board name: PlacePower} of held places
    spares.power_off()                     # at prepare: every spare off (those with a power switch)
    board = spares.power_on(nid, cfg, version, label)   # a daughter: the next spare, booted; None if none left
    spares.stop()                          # after the run: the spares it powered on, off again

A rig's `spare: true` entries have no node id: the daughter brings it. Its
board.json is the entry's (kind defaults, the rig's and the entry's
`config:`, its Wi-Fi secret) with the daughter's on top (id, cluster, roster,
lineage, generation, replication: ground.board_json), its firmware its
parent's. How it gets there depends on the entry:
  - emulated: its flash folder <rig folder>/emulated/<name> is written as
    `hil flash` would, and the board started (it is not running before);
  - USB, URL or labgrid place: its power switched on when its place has a
    power port (held by FileRig; off from prepare until now), board.json and
    version.json written over its REPL with mpremote, a soft reset, its HELLO
    awaited; without a power switch it stays powered and idle until then.
On transport udp the spare sends to a hub of its own, bound now where the
rig's `udp:` says (any free port), which the run watches from then on (the
run's hub is not read meanwhile: the other boards' datagrams wait in its
socket, as their frames wait on their ports while a spare boots on usb).
"""

import os
from dataclasses import replace
from types import SimpleNamespace

BOOT_TIMEOUT_S = 30.0  # a spare's HELLO after it is powered on (hil.rig.BOOT_TIMEOUT_S)


class RigSpares:
    """The spares of one rig file for one run, handed out in rig order."""

    def __init__(self, rig, rig_folder, run_folder, power):
        """rig: hil.rigfile.Rig; rig_folder: () -> where its emulated boards'
        flash folders are (asked only for an emulated spare); run_folder: the
        run's folder (its image build, the board.json copies); power: {board
        name: PlacePower} of the rig's held labgrid places."""
        self.rig = rig
        self.rig_folder = rig_folder
        self.run_folder = run_folder
        self.power = power
        self.free = list(rig.spares)
        self.used = []  # (RigBoard, board object, its own UdpHub or None), powered on for this run

    def _image(self):
        from hil import flash

        return flash.build_once(os.path.join(self.run_folder, ".image"))

    def power_off(self):
        """Before the run: every spare whose place has a power switch off (a
        run before may have left one on); the image built for the emulated
        ones now, not inside the run's loop."""
        for s in self.free:
            power = self.power.get(s.name)
            if power is not None and power.get():
                power.off()
        if any(s.emulated for s in self.free):
            self._image()

    def board_json(self, spare, daughter_cfg):
        """The spare's board.json as daughter: its entry's, the daughter's on top."""
        cfg = dict(self.rig.board_json(spare))
        mine = dict(daughter_cfg)
        mine.pop("watchdog_ms", None)  # the rig's business (hil.rig.scenario_board_json)
        cfg.update(mine)
        return cfg

    def power_on(self, nid, daughter_cfg, version, label):
        """A daughter (id `nid`, its board.json `daughter_cfg`, its parent's
        firmware `version`/`label`) on the next free spare: powered on,
        configured and booted to its HELLO; the board for the run (its port
        open, or its `open_link` on its hub), or None when no spare is left.
        TimeoutError / RuntimeError / ValueError naming the board when it does
        not boot (its hub closed, an emulated one stopped, a powered one off)."""
        if not self.free:
            return None
        s = self.free.pop(0)
        cfg = self.board_json(s, daughter_cfg)
        hub = None
        if cfg.get("transport") == "udp":
            from hil import rig_udp

            hub, cfg["ground"] = rig_udp.open_hub(replace(self.rig.udp, port=0), not s.emulated)
        try:
            if s.emulated:
                board = self._boot_emulated(s, nid, cfg, version, label, hub)
            else:
                board = self._boot_real(s, nid, cfg, version, label, hub)
        except BaseException:
            if hub is not None:
                hub.close()
            power = self.power.get(s.name)
            if power is not None and not s.emulated:
                try:
                    power.off()
                except Exception:
                    pass
            raise
        self.used.append((s, board, hub))
        return board

    def _boot_emulated(self, s, nid, cfg, version, label, hub):
        from hil import emulated_run

        bdir = os.path.join(self.rig_folder(), "emulated", s.name)
        return emulated_run.boot_spare(bdir, s.name, nid, cfg, version, label, self._image(), code=s.code,
                                       heap=self.rig.kind_of(s).heap_bytes, hub=hub, timeout_s=BOOT_TIMEOUT_S)

    def _boot_real(self, s, nid, cfg, version, label, hub):
        from hil import rig_udp
        from hil.rig import keep_boot_hello_only
        from hil.serialboard import SerialBoard, configure_over_repl

        power = self.power.get(s.name)
        if power is not None and not power.get():
            power.on()
        repl = self.rig.port(s)
        spec = SimpleNamespace(fw_version=tuple(version), firmware=label)
        configure_over_repl(repl, cfg, spec, os.path.join(self.run_folder, s.name))
        board = SerialBoard(s.name, self.rig.data_port(s), repl, power=power)
        try:
            if hub is not None:  # a Pico W: its frames on its own hub
                rig_udp.boot({nid: board}, hub, BOOT_TIMEOUT_S)
            else:
                board.boot_and_wait_hello(nid, BOOT_TIMEOUT_S)
                keep_boot_hello_only(board, nid)
        except BaseException:
            board.close()
            raise
        return board

    def stop(self):
        """After the run: the spares it powered on stopped (emulated), or
        closed and switched off (with a power switch); their hubs closed."""
        used, self.used = self.used, []
        for s, board, hub in used:
            try:
                if s.emulated:
                    board.stop()
                else:
                    board.close()
                    power = self.power.get(s.name)
                    if power is not None:
                        power.off()
            except Exception:
                pass
            if hub is not None:
                hub.close()
