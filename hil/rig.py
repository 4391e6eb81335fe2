"""A rig: the boards a run gets. One model for `ground run` and the pytest
plugin alike (docs/ARCHITECTURE.md, docs/HIL.md).

    rig = hil.rig.open_rig("emulated" | "sim" | "boards/rig-lab.yaml", folder)
    rig.unmet(count, kind, needs)      # why the rig cannot give that, or None
    boards = rig.prepare(sc, folder)   # a ground.backends.BoardSet: booted, for ground.run
    ...                                # run(sc, out, mode=boards.mode, boards=boards.boards)
    boards.stop(); rig.close()

Three rigs:
  - EmulatedRig: one emulated Pico per scenario node (hil/emulated_run.py),
    flashed with the scenario's board.json and booted for each run;
  - SimRig: in-process nodes in virtual time, no boards;
  - FileRig: the boards of a rig file (hil/rigfile.py): USB, URL, emulated or
    labgrid place entries, each given the scenario's board.json and
    version.json, reset, HELLO awaited. Places are acquired before the first
    run (hil/labgrid_places.py) and released by close(). Its `spare: true`
    entries stay off until a daughter needs one (hil/rig_spares.py).

`emulated_backend` and `rig_backend` are the engine's board back-ends
(ground/backends.py; pyproject.toml's `fleetloop.boards` entry points):
`ground run --emulated` and `ground run --rig FILE` come here.

The rig file itself (RigBoard, Rig, load, RigError) is hil/rigfile.py; its
names are imported here too, so `hil.rig.load(path)` reads a rig file.
"""

import os
import threading

from ground import board_json, firmware
from ground.backends import BoardSet
from ground.yamlfile import ConfigError
from hil import rig_spares
from hil.emulated_rules import OFF
from hil.rigfile import CONFIG_KEYS, Rig, RigBoard, RigError, load, parse, parse_version, version_tuple  # noqa: F401

MAX_EMULATED_BOARDS = 16  # CPU-bound: each emulated board is one MicroPython process
EMULATED_FEATURES = ("watchdog", "led", "power_control")  # boards/emulated_pico.yaml, if it cannot be read
BOOT_TIMEOUT_S = 30.0  # a board's HELLO after a reset


class CannotRun(ConfigError):
    """The rig has no board for a scenario's node, puts it in another cluster,
    or the board is not attached: the message names the rig, scenario and board.
    (The pytest plugin skips the test; `ground run` exits 2.)"""


def kind_matches(want, board_kind):
    """Kind `want` (None: any) is met by a board of that kind or by its emulation."""
    return want is None or want == board_kind or board_kind == "emulated_" + want


def open_rig(which, folder=None, spares=0):
    """The rig `which` names: "emulated", "sim" or a rig file's path. folder:
    () -> where a rig file's emulated entries' flash folders go (asked only
    if there are any); spares: the emulated rig's spare boards per scenario
    with replication: (a rig file names its own). ConfigError naming
    file:line for a bad rig file."""
    if which == "emulated":
        return EmulatedRig(spares=spares)
    if which == "sim":
        return SimRig()
    return FileRig(which, folder or (lambda: os.path.join("boards", "emulated")))


class EmulatedRig:
    """One emulated Pico per scenario node (hil.emulated_run), flashed with
    the scenario's board.json and booted for each run."""

    mode = "emulated"
    name = "emulated"
    kind = "emulated_pico"

    def __init__(self, transport="usb", spares=0):
        self.transport = transport  # "udp": frames over UDP on loopback (ground.udplink)
        self.spares = spares  # spare boards a scenario with replication: gets when prepare() is given no count
        try:
            from hil import boards as boards_mod

            self.features = tuple(boards_mod.kind("emulated_pico").features)
        except Exception:
            self.features = EMULATED_FEATURES

    def unmet(self, count, kind, needs):
        if not kind_matches(kind, self.kind):
            return "emulated boards are %s; the test needs kind %s (run it with --rig and a rig that has them)" % (
                self.kind, kind)
        lack = [f for f in needs if f not in self.features]
        if lack:
            return "emulated boards lack %s (they have: %s)" % (", ".join(lack), ", ".join(self.features))
        if count is not None and count > MAX_EMULATED_BOARDS:
            return "the test needs %d boards; at most %d emulated boards run at once" % (count, MAX_EMULATED_BOARDS)
        return None

    def prepare(self, sc, folder, count=0):
        """Boards for `sc`, booted (count, if given, must be the scenario's
        node count, or more for spares); without a count, a scenario with
        replication: gets `self.spares` spare boards, off until a daughter
        takes one (the pytest plugin's --hil-spares)."""
        from hil import emulated_run

        if not count and self.spares and sc.replication is not None:
            count = len(sc.nodes) + self.spares
        images = _rollout_images(sc)
        farm = emulated_run.start_farm(sc, folder, count=count, transport=self.transport)
        boards = farm.devices()

        def spare(nid, board_config, version, label):  # a daughter: a spare board on (docs/CONTAINMENT.md)
            b = farm.power_on_spare(nid, board_config, version, label)
            if b is not None:
                boards[nid] = b  # the run's board map and the serial logs include it
            return b

        return BoardSet("emulated", boards, farm.stop, lambda: {n: b.log for n, b in boards.items()},
                        update_images=images, spare_board=spare if farm.spares else None)

    def close(self):
        pass


def _rollout_images(sc):
    """A scenario with a rollout: its boards get the compiled firmware as
    update images (hil/update_image.Images), compiled now, before the run's
    clock starts. None without a rollout."""
    if getattr(sc, "rollout", None) is None:
        return None
    from hil import update_image

    return update_image.Images().compile()


class SimRig:
    """In-process nodes in virtual time: no boards, exact and fast. For
    developing tests; a HIL result needs boards."""

    mode = "sim"
    name = "sim"
    features = ("power_control",)  # the in-process link models power cuts

    def unmet(self, count, kind, needs):
        if kind not in (None, "sim"):
            return "--rig sim runs in-process nodes, not %s boards" % kind
        lack = [f for f in needs if f not in self.features]
        if lack:
            return "in-process nodes have no %s" % ", ".join(lack)
        return None

    def prepare(self, sc, folder, count=0):
        return BoardSet("sim", None)

    def close(self):
        pass


class FileRig:
    """The boards of a rig file (hil.rigfile). Emulated entries are started
    once, on the first run; before each run every board of the scenario gets
    the scenario's board.json and version.json (emulated: written into its
    flash folder; real: one mpremote process per board, in parallel), is
    reset and its HELLO awaited."""

    mode = "rig"

    def __init__(self, path, folder):
        """folder: () -> where emulated entries' flash folders go (asked only if there are any)."""
        self.rig = load(path)
        self.path = path
        self.name = "%s (%s)" % (self.rig.name, path)
        self.folder = folder
        self._started = None
        self._places = None  # hil.labgrid_places.Places while the rig's places are held
        self._ground = None  # "host:port" the run's udp boards send to (hil.rig_udp.open_hub)

    def unmet(self, count, kind, needs):
        boards = self.rig.boards
        fit = [b for b in boards if kind_matches(kind, b.kind) and all(f in b.features for f in needs)]
        what = " ".join(x for x in ("" if count is None else str(count), kind or "",
                                    "board" if count == 1 else "boards") if x)
        what += " with " + ", ".join(needs) if needs else ""
        if count is None:
            count = 1 if (kind or needs) else 0
        if len(fit) < count:
            lack = []
            for b in boards:
                if not kind_matches(kind, b.kind):
                    lack.append("%s is %s" % (b.name, b.kind))
                else:
                    miss = [f for f in needs if f not in b.features]
                    if miss:
                        lack.append("%s lacks %s" % (b.name, ", ".join(miss)))
            return "rig %s: the test needs %s; the rig has %d (%s)" % (self.name, what, len(fit),
                                                                       "; ".join(lack) or "no boards")
        missing = dict(self.rig.missing())
        present = [b for b in fit if b.name not in missing]
        if len(present) < count:
            gone = ", ".join("%s (serial %s)" % (b.name, b.serial) for b in fit if b.name in missing)
            return "rig %s: the test needs %s; %d available; not attached: %s" % (self.name, what, len(present), gone)
        return None

    def _start_emulated(self):
        if self._started is None:
            self._started = []
            if any(b.emulated for b in self.rig.boards):
                self._started = self.rig.start_emulated(os.path.join(self.folder(), "emulated"))
        return self._started

    def _acquire_places(self):
        """Acquire the rig's labgrid places (its spares' too), once (held until
        close()); RigError naming the place, with none left acquired, if one
        cannot be had."""
        if self._places is None and any(b.place for b in self.rig.boards + self.rig.spares):
            from hil.labgrid_places import Places

            places = Places(self.rig)
            self.rig.place_urls.update(places.acquire())
            self._places = places

    def _check_places(self):
        """After a run: RigError naming every labgrid place lost during it (its
        exporter went away, ...); the run's boards on it stopped answering."""
        lost = self._places.lost() if self._places is not None else []
        if lost:
            raise RigError("rig %s: lost during the run: %s" % (self.name, "; ".join(lost)))

    def _release_places(self):
        places, self._places = self._places, None
        if places is not None:
            self.rig.place_urls.clear()
            places.release()

    def prepare(self, sc, folder, count=0):
        """The scenario's boards, configured and booted; CannotRun if the rig
        has no fitting board for a node; RigError naming a labgrid place that
        cannot be acquired; RuntimeError naming every board that failed to boot."""
        from hil.serialboard import CONFIGURE_TIMEOUT_S

        self._acquire_places()
        self._start_emulated()
        spares = rig_spares.RigSpares(self.rig, self.folder, folder,
                                      self._places.power if self._places is not None else {})
        spares.power_off()  # kept off until a daughter needs one (a run before may have left one on)
        try:
            devices = self.rig.devices_for(sc)
        except ValueError as e:  # ConfigError: no board for a node, another cluster; RigError: not attached
            if not _is_config_error(e):
                raise
            raise CannotRun("rig %s cannot run scenario %s: %s" % (self.name, sc.name, e)) from None
        boards, errors = {}, {}
        hub = self._udp_hub(sc, devices)

        def one(nid):
            try:
                boards[nid] = self._boot(sc, nid, devices[nid], folder, hub)
            except BaseException as e:  # reported below, by board
                errors[nid] = e

        threads = [threading.Thread(target=one, args=(nid,), name="rig-node%d" % nid, daemon=True) for nid in sorted(devices)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(CONFIGURE_TIMEOUT_S + BOOT_TIMEOUT_S + 10)
        stuck = [nid for nid, t in zip(sorted(devices), threads) if t.is_alive()]
        if hub is not None and not errors and not stuck:
            from hil import emulated_run, rig_udp

            on_hub = {n: boards[n] for n in hub.links}
            try:  # together: the hub forgets what came before their boot
                if all(self.rig.by_node(n).emulated for n in on_hub):
                    emulated_run.boot_udp(on_hub, hub, BOOT_TIMEOUT_S)
                else:  # Pico Ws among them: stopped and soft-reset over their consoles
                    rig_udp.boot(on_hub, hub, BOOT_TIMEOUT_S)
            except (ValueError, TimeoutError) as e:
                errors[0] = e
        if errors or stuck:
            for b in boards.values():
                _close_board(b)
            if hub is not None:
                hub.close()
            text = "; ".join(("node %d: %s" % (n, e)) if n else str(e) for n, e in sorted(errors.items()))
            if stuck:
                text += "; node%s %s: no answer within %.0f s" % ("s" if len(stuck) > 1 else "", stuck,
                                                                    CONFIGURE_TIMEOUT_S + BOOT_TIMEOUT_S)
            raise RuntimeError("rig %s: preparing scenario %s: %s" % (self.name, sc.name, text))

        def stop():
            for b in boards.values():
                _close_board(b)
            spares.stop()
            if hub is not None:
                hub.close()
            self._check_places()

        def spare(nid, board_config, version, label):  # a daughter: a spare board on (docs/CONTAINMENT.md)
            b = spares.power_on(nid, board_config, version, label)
            if b is not None:
                boards[nid] = b  # the run's board map and the serial logs include it
            return b

        return BoardSet("rig", boards, stop, lambda: {n: bytes(getattr(b, "log", b"")) for n, b in boards.items()},
                        update_images=_rollout_images(sc), spare_board=spare if self.rig.spares else None)

    def _udp_hub(self, sc, devices):
        """The run's UDP hub (ground.udplink) when some of its boards are on
        transport udp, else None; bound where the rig's `udp:` key says
        (hil/rig_udp.py). CannotRun for a real board on udp without a radio or
        without Wi-Fi settings."""
        udp = [b for b in (self.rig.by_node(n) for n in sorted(devices))
               if self.rig.board_json(b, secrets=False).get("transport") == "udp"]
        if not udp:
            return None
        real = [b for b in udp if not b.emulated]
        for b in real:
            if "radio" not in b.features:
                raise CannotRun("rig %s: board %s (%s, kind %s) is on transport udp but has no radio: a Pico W "
                                "(kind pico_w) sends its frames over Wi-Fi" % (self.name, b.name, b.where, b.kind))
            if not isinstance(self.rig.board_json(b, secrets=False).get("wifi"), dict):
                raise CannotRun("rig %s: board %s (%s) is on transport udp and has no Wi-Fi settings: add config: "
                                "{wifi: {ssid: NAME, password_env: VARIABLE}} (docs/BOARDS.md)"
                                % (self.name, b.name, b.where))  # fmt: skip
        from hil import rig_udp

        hub, self._ground = rig_udp.open_hub(self.rig.udp, bool(real))
        for b in udp:
            hub.link(b.node_id)
        return hub

    def _boot(self, sc, nid, device, folder, hub=None):
        from hil import emulated_run, flash
        from hil.serialboard import SerialBoard, configure_over_repl

        b = self.rig.by_node(nid)
        spec = sc.nodes[nid]
        cfg = dict(self.rig.board_json(b))
        cfg.update(scenario_board_json(sc, nid))
        udp = cfg.get("transport") == "udp"
        if udp:
            cfg["ground"] = self._ground
        running = self.rig.running.get(b.name)
        if running is not None:  # an emulated entry: its folder is its flash, written as `hil flash` would
            if running.state != OFF:
                running.power_cut()  # nothing of the run before writes to its flash from here on
            emulated_run.wipe_saved_state(str(running.folder))  # a run before (a daughter it admitted) does not leak
            flash.write_image(str(running.folder), version=spec.fw_version, label=spec.firmware, board_config=cfg,
                              built=flash.build_once(os.path.join(folder, ".image")), code=b.code)
            if udp:
                return running  # booted with the other udp boards (boot_udp), once all are written
            return keep_boot_hello_only(emulated_run.boot_and_wait_hello(running, nid, BOOT_TIMEOUT_S), nid)
        repl = self.rig.port(b)
        power = self._places.power.get(b.name) if self._places is not None else None
        if power is not None and not power.get():  # a run that ended with its power cut
            power.on()
        configure_over_repl(repl, cfg, spec, os.path.join(folder, b.name))
        board = SerialBoard(b.name, device, repl, power=power)
        if udp:  # a Pico W: booted with the other udp boards (hil.rig_udp.boot), its frames on the hub
            return board
        board.boot_and_wait_hello(nid, BOOT_TIMEOUT_S)
        return keep_boot_hello_only(board, nid)

    def close(self):
        try:
            if self._started:
                self.rig.stop_emulated()
        finally:
            self._release_places()


def keep_boot_hello_only(board, nid):
    """Of the lines a board said while it booted (board.open_port[2], which
    ground.run routes at mission 0), keep only its HELLO to the ground.

    A rig's board is reset over a port that was open before: what it said
    before the reset landed (a heartbeat of its previous run, say) is among
    those lines, and is not part of this run. A HELLO to the ground is; the
    rest a board says again within a heartbeat. (Emulated farms trim to the
    board's own boot instead: hil.emulated_run._this_boot.)"""
    wire, msgs = firmware.wire, firmware.msgs
    port = getattr(board, "open_port", None)
    if not port:
        return board
    seen = port[2]
    keep = []
    for line in seen:
        try:
            f = wire.decode(line)
        except wire.ProtocolError:
            continue
        if f.type == msgs.HELLO and f.src == nid and f.dst == wire.ADDR_GROUND:
            keep = [line]
    seen[:] = keep
    return board


def scenario_board_json(sc, nid):
    """The board.json keys a scenario decides (ground.board_json.board_config
    minus the watchdog, which is the rig's business)."""
    cfg = board_json.board_config(sc, nid)
    cfg.pop("watchdog_ms", None)
    return cfg


def _is_config_error(e):
    """ground.yamlfile.ConfigError (or hil.rigfile.RigError), by name: a test
    session may hold two copies of the module (pytester's in-process runs)."""
    return any(c.__name__ == "ConfigError" for c in type(e).__mro__)


def _close_board(b):
    close = getattr(b, "close", None)
    if close is not None:
        try:
            close()
        except Exception:
            pass


# ---- the engine's board back-ends (ground/backends.py) ----------------------------------------


def emulated_backend(sc, folder, count=None):
    """`ground run --emulated [N]`: one emulated Pico per node (N, if given, must match)."""
    return EmulatedRig().prepare(sc, folder, count=count or 0)


def emulated_udp_backend(sc, folder, count=None):
    """One emulated Pico per node on transport udp: frames over a real UDP socket on loopback."""
    return EmulatedRig(transport="udp").prepare(sc, folder, count=count or 0)


def rig_backend(sc, folder, path):
    """`ground run --rig FILE`: the rig file's boards for the scenario's nodes,
    configured and booted; the rig's emulated entries run under `folder`."""
    rig = FileRig(path, lambda: folder)
    try:
        boards = rig.prepare(sc, os.path.join(folder, "repl"))
    except BaseException:
        rig.close()
        raise

    def stop(stop_boards=boards.stop):
        try:
            stop_boards()
        finally:
            rig.close()

    return BoardSet(boards.mode, boards.boards, stop, boards.logs,
                    update_images=boards.update_image if boards.has_update_images else None,
                    spare_board=boards.spare_board)
