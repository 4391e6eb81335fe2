"""A rig file: the boards one test bench has, as plain data (boards/rig-*.yaml).

    rig = hil.rig.load("boards/rig-example-picos.yaml")   # (hil.rigfile.load; hil.rig names it too)
    rig.boards                  # [RigBoard(name, kind, node_id, cluster, role, serial|url|emulated, features, ...)]
    rig.spares                  # [RigBoard] of `spare: true` entries (no node_id): off until a daughter needs one
    rig.missing()               # [(board name, serial number)] of USB boards not attached now
    rig.devices_for(scenario)   # {node_id: device path or pyserial URL} for the scenario's nodes
    boards = rig.start_emulated(folder)   # EmulatedBoard per emulated entry; the caller stops them
    rig.board_json(board)       # the board.json the flasher writes for that board

A board is reached one of four ways, exactly one per entry:
  - ``serial: E6614C311B4A2B2F``: a USB board, found by its USB serial number
    in pyserial's port list (``mpremote connect id:SERIAL`` does the same);
  - ``url: rfc2217://host:4001`` or ``socket://host:4002`` (what labgrid's
    exporter and ser2net serve), or a device path: anything pyserial's
    serial_for_url opens;
  - ``emulated: true``: an emulated Pico (hil.emulated), whose flash is the
    folder <folder>/<name> and whose pty link is <folder>/<name>.tty;
  - ``place: pico-7`` (with ``coordinator: HOST:PORT`` on the entry or the
    rig, or $LG_COORDINATOR): a labgrid place, acquired by FileRig through
    hil.labgrid_places and reached at the RFC2217 URL its exporter serves
    (Rig.place_urls, filled while the place is held).

Like labgrid's resources, RigBoard and Rig hold data and find devices; they
never open a port. Every problem in a rig file raises ConfigError naming the
file and line; a board that is not there raises RigError (a ConfigError, so
``ground run --rig`` reports it as bad input) naming the board and its port.
File format: docs/BOARDS.md.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from typing import Any

from ground.yamlfile import ConfigError, Located, LocatedList, check_keys, load as load_yaml, number
from hil import boards as boards_mod

MAX_NODE_ID = 0xEFFF  # firmware/node/wire.py MAX_NODE_ID
MAX_CLUSTER = 0xFFE

_RIG_KEYS = {"rig", "description", "emulated_dir", "version", "label", "config", "boards", "coordinator", "udp"}
_BOARD_KEYS = {
    "name", "kind", "node_id", "cluster", "role", "serial", "url", "data_url", "emulated", "place", "coordinator",
    "lineage", "hw_gen", "members", "version", "label", "features", "config", "reset", "code", "spare",
}  # fmt: skip
# What a spare entry may not say: the daughter it takes brings them (its id,
# cluster, roster, its parent's lineage, generation and firmware).
_NOT_ON_A_SPARE = ("node_id", "cluster", "members", "lineage", "hw_gen", "version", "label", "role")
# board.json keys a rig may set through `config:` (docs/BOARD_SHELL.md). node_id,
# cluster, members, lineage and hw_gen come from the board entry itself.
CONFIG_KEYS = {
    "election_timeout_ms", "heartbeat_ms", "telemetry_ms", "state_ms", "suspect_ms", "dead_ms",
    "seed", "auth_key", "require_auth", "time_scale_milli", "transport", "uart", "led_pin", "watchdog_ms", "journal",
    "market", "wifi",
}  # fmt: skip


class RigError(ConfigError):
    """A board of the rig cannot be reached: the message names the board and
    its serial number, URL or folder."""


@dataclass(frozen=True)
class RigBoard:
    """One board of a rig. Exactly one of serial, url, emulated, place says how to reach it."""

    name: str
    kind: str  # a board kind name: boards/<kind>.yaml
    node_id: int
    cluster: int
    role: str  # free-form label for selecting boards ("node", "auditor", "canary", ...); not on the board
    serial: str | None  # USB serial number
    url: str | None  # pyserial URL or device path of its REPL (and, for USB, its frames)
    emulated: bool
    features: tuple[str, ...]  # the kind's features plus the entry's
    lineage: int
    hw_gen: int
    members: tuple[int, ...]  # its cluster's node ids (board.json "members")
    version: tuple[int, int] | None  # firmware version to flash; None: the rig's / the CLI's
    label: str | None
    config: dict = field(default_factory=dict)  # extra board.json keys (rig config + board config)
    reset: str = "soft"  # how the flasher restarts it (the kind's unless overridden)
    code: str = "romfs"  # where `hil flash` puts its modules: "romfs" (its ROM partition) or "files" (docs/FLASHING.md)
    data_url: str | None = None  # where its frames come out, when not on the REPL port (UART transport)
    where: str = "?"  # file:line of the entry
    place: str | None = None  # labgrid place name (hil/labgrid_places.py)
    coordinator: str | None = None  # its labgrid coordinator, HOST[:PORT] (None: $LG_COORDINATOR)
    spare: bool = False  # kept off until a daughter needs it (Rig.spares; node_id 0 until then)

    @property
    def port_text(self) -> str:
        """How this board is reached, for messages: serial E66..., url ..., emulated."""
        if self.serial:
            return "serial %s" % self.serial
        if self.url:
            return self.url
        if self.place:
            return "labgrid place %s" % self.place
        return "emulated"


def parse_version(value: Any, m: Located, key: str, section: str) -> tuple[int, int]:
    """"MAJOR.MINOR" or [major, minor] -> (major, minor), each 0..255."""
    if isinstance(value, float):
        raise m.error(key, "%s.%s: write the version as a string (\"%s\"): a YAML number loses "
                      "digits (1.10 reads as 1.1)" % (section, key, value))  # fmt: skip
    try:
        return version_tuple(value)
    except ValueError as e:
        raise m.error(key, "%s.%s: %s" % (section, key, e)) from None


def version_tuple(value: Any) -> tuple[int, int]:
    """"1.4" or [1, 4] -> (1, 4); ValueError otherwise."""
    if isinstance(value, str):
        parts = value.split(".")
        if len(parts) == 2 and all(p.isdigit() for p in parts):
            value = [int(p) for p in parts]
    if (isinstance(value, (list, tuple)) and len(value) == 2
            and all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x <= 255 for x in value)):
        return (value[0], value[1])
    raise ValueError("version %r must be \"MAJOR.MINOR\" with each part 0..255" % (value,))


def _int(m: Located, key: str, section: str, lo: int, hi: int, default: int | None = None) -> int:
    return number(m, key, section, lo=lo, hi=hi, default=default, integer=True)


def _config(m: Located, section: str, kind: boards_mod.BoardKind | None = None) -> dict:
    c = m.get("config")
    if c is None:
        return {}
    check_keys(c, CONFIG_KEYS, section + ".config", where=m.where("config"))
    out = dict(c)
    if kind is not None and kind.watchdog_max_ms and "watchdog_ms" in out:
        _int(c, "watchdog_ms", section + ".config", 0, kind.watchdog_max_ms)
    return out


class Rig:
    """The boards of one rig file. Plain data plus device look-ups."""

    def __init__(self, path: str, name: str, boards: list[RigBoard], kinds: dict[str, boards_mod.BoardKind],
                 emulated_dir: str, version: tuple[int, int] | None = None, label: str | None = None,
                 description: str = "") -> None:  # fmt: skip
        self.path = path
        self.name = name
        self.description = description
        self.boards = boards
        self.spares: list[RigBoard] = []  # `spare: true` entries, kept off until a daughter needs one
        self.kinds = kinds  # kind name -> BoardKind
        self.emulated_dir = emulated_dir  # where emulated boards' folders are by default
        self.version = version  # default firmware version for the rig's boards
        self.label = label
        self.running: dict[str, Any] = {}  # board name -> EmulatedBoard started by start_emulated()
        self.place_urls: dict[str, str] = {}  # board name -> URL of its labgrid place, while acquired
        self.udp: Any = None  # hil.rig_udp.UdpSettings: where the run's UDP hub binds (the rig's `udp:` key)

    def __repr__(self) -> str:
        return "Rig(%r, %d boards%s)" % (self.path, len(self.boards),
                                         ", %d spares" % len(self.spares) if self.spares else "")

    def board(self, name: str) -> RigBoard:
        for b in self.boards:
            if b.name == name:
                return b
        raise ConfigError("%s: no board named %r (boards: %s)" % (self.path, name, ", ".join(b.name for b in self.boards)))

    def by_node(self, node_id: int) -> RigBoard | None:
        for b in self.boards:
            if b.node_id == node_id:
                return b
        return None

    def kind_of(self, board: RigBoard) -> boards_mod.BoardKind:
        return self.kinds[board.kind]

    # -- where the boards are -------------------------------------------------

    def missing(self, ports: list[boards_mod.Port] | None = None) -> list[tuple[str, str]]:
        """[(board name, serial number)] of USB boards not attached now.
        Boards given by URL or emulated are not checked (nothing to list)."""
        ports = boards_mod.attached() if ports is None else ports
        numbers = {p.serial_number for p in ports}
        return [(b.name, b.serial) for b in self.boards if b.serial and b.serial not in numbers]

    def emulated_folder(self, board: RigBoard, folder: str | None = None) -> str:
        return os.path.join(folder or self.emulated_dir, board.name)

    def port(self, board: RigBoard, ports: list[boards_mod.Port] | None = None) -> str:
        """The device path or URL of `board`'s REPL; RigError if it is not there."""
        if board.serial:
            p = boards_mod.find_port(board.serial, ports)
            if p is None:
                raise RigError("%s: board %s (%s, node %d): USB serial number %s is not attached"
                               % (board.where, board.name, board.kind, board.node_id, board.serial))  # fmt: skip
            return p.device
        if board.url:
            return _device(board, board.url)
        if board.place:
            if board.name in self.place_urls:
                return self.place_urls[board.name]
            raise RigError("%s: board %s (node %d) is labgrid place %s, not acquired: `ground run --rig` and the "
                           "pytest plugin acquire it; for other commands: python -m hil.labgrid_places hold RIG "
                           "-- COMMAND {rig}" % (board.where, board.name, board.node_id, board.place))  # fmt: skip
        running = self.running.get(board.name)
        if running is not None and running.state != "stopped":  # the caller may have stopped it
            return running.device
        link = self.emulated_folder(board) + ".tty"
        if _live_pty_link(link):  # boards served by `hil emulate` in another process
            return os.path.realpath(link)
        raise RigError("%s: board %s (node %d) is emulated and not running: start it with "
                       "Rig.start_emulated(folder), or serve %s with `hil emulate`"
                       % (board.where, board.name, board.node_id, link))  # fmt: skip

    def data_port(self, board: RigBoard, ports: list[boards_mod.Port] | None = None) -> str:
        """Where the board's frames come out: its data_url, else its REPL port."""
        return _device(board, board.data_url) if board.data_url else self.port(board, ports)

    def devices_for(self, scenario: Any) -> dict[int, str]:
        """{node_id: device path or URL} for every node of `scenario`
        (a ground.scenario.Scenario: .nodes {id: spec with .cluster}, .path).
        ConfigError naming the node when the rig has no board for it or
        flashes its board for another cluster; RigError when a board is absent."""
        ports = boards_mod.attached()
        out = {}
        where = getattr(scenario, "path", "scenario")
        for nid in sorted(scenario.nodes):
            b = self.by_node(nid)
            if b is None:
                raise ConfigError("%s: the scenario's node %d has no board in rig %s (its nodes: %s)"
                                  % (where, nid, self.path, ", ".join(str(x.node_id) for x in self.boards)))
            cluster = getattr(scenario.nodes[nid], "cluster", b.cluster)
            if cluster != b.cluster:
                raise ConfigError("%s: board %s is node %d of cluster %d, but scenario %s puts node %d in cluster %d"
                                  % (b.where, b.name, nid, b.cluster, where, nid, cluster))
            out[nid] = self.data_port(b, ports)
        return out

    # -- emulated boards --------------------------------------------------------

    def start_emulated(self, folder: str | os.PathLike | None = None, only: list[str] | None = None,
                       micropython: str | None = None) -> list:  # fmt: skip
        """Start an EmulatedBoard for every emulated entry (or those named in
        `only`), its flash at <folder>/<name> (default: the rig's emulated_dir).
        Returns them in rig order; the caller stops them (board.stop()).
        Rig.port() and devices_for() use them from then on."""
        from hil.emulated import EmulatedBoard

        base = os.fspath(folder) if folder is not None else self.emulated_dir
        started = []
        try:
            for b in self.boards:
                if not b.emulated or (only is not None and b.name not in only):
                    continue
                kind = self.kinds[b.kind]
                eb = EmulatedBoard(os.path.join(base, b.name), name=b.name, heap=kind.heap_bytes,
                                   micropython=micropython)  # fmt: skip
                eb.start()
                started.append(eb)
                self.running[b.name] = eb
        except BaseException:
            for eb in started:
                eb.stop()
                self.running.pop(eb.name, None)
            raise
        return started

    def stop_emulated(self) -> None:
        """Stop the boards start_emulated() started (the caller may do it itself)."""
        for name, eb in list(self.running.items()):
            eb.stop()
            del self.running[name]

    # -- what goes on a board -----------------------------------------------------

    def board_json(self, board: RigBoard, secrets: bool = True) -> dict:
        """The board.json the flasher writes: identity, cluster, kind defaults,
        config; its Wi-Fi password read from where the rig says (hil.rig_udp;
        RigError naming the board if it cannot be), unless secrets=False."""
        kind = self.kinds[board.kind]
        cfg: dict[str, Any] = {
            "node_id": board.node_id,
            "cluster": board.cluster,
            "members": list(board.members),
            "lineage": board.lineage,
            "hw_gen": board.hw_gen,
            "transport": kind.transport,
            "led_pin": kind.led_pin,
        }
        cfg.update(board.config)
        if cfg["transport"] == "uart" and "uart" not in cfg:
            cfg["uart"] = dict(kind.uart)
        if secrets and isinstance(cfg.get("wifi"), dict):
            from hil import rig_udp

            cfg["wifi"] = rig_udp.resolve_wifi(cfg["wifi"], board, os.path.dirname(os.path.abspath(self.path)))
        return cfg


def _device(board: RigBoard, url: str) -> str:
    """url itself; RigError naming the board and its rig line when it is a
    device path that does not exist (mpremote would say "in use by another
    program", pyserial "could not open port"). pyserial URLs (scheme://) are
    not checked: only opening them tells."""
    if "://" not in url and not os.path.exists(url):
        raise RigError("no such device: %s (board %s, %s)" % (url, board.name, board.where))
    return url


def _live_pty_link(path: str) -> bool:
    """A symlink to an existing character device (a pty served by hil emulate).
    hil.emulated removes its link when the board stops; a link left by a
    process that was SIGKILLed may point at a reused pty: docs/BOARDS.md."""
    try:
        return os.path.islink(path) and stat.S_ISCHR(os.stat(path).st_mode)
    except OSError:
        return False


def _coordinator(m: Located, key: str, section: str) -> str:
    """A labgrid coordinator address, HOST or HOST:PORT."""
    value = m[key]
    host, sep, port = value.rpartition(":") if isinstance(value, str) else ("", "", "")
    if not isinstance(value, str) or not value or " " in value or (sep and not (port.isdigit() and host)):
        raise m.error(key, "%s.%s: expected a labgrid coordinator address HOST:PORT, got %r" % (section, key, value))
    return value


def _check_board_json(rig_path: str, entry: Located, board: RigBoard, cfg: dict) -> None:
    # Validate with the board's own parser (firmware/runtime/boardcfg.py), so
    # a config the board would refuse at boot is refused here, with file:line.
    from ground import firmware  # noqa: F401  (puts firmware/ on sys.path)
    from runtime import boardcfg

    if cfg.get("transport") == "udp" and "ground" not in cfg:
        cfg = dict(cfg, ground="127.0.0.1:1")  # the harness writes the run's UDP hub address (hil/rig.py)
    if "wifi" in cfg:
        from hil import rig_udp

        try:
            cfg = dict(cfg, wifi=rig_udp.check_wifi(cfg["wifi"]))
        except ValueError as e:
            raise entry.error("config" if "config" in entry else None, "board %s: %s" % (board.name, e)) from None
    try:
        boardcfg.core_config(boardcfg.parse_board(cfg, "board.json"))
    except boardcfg.ConfigError as e:
        key = e.key if e.key in entry else ("config" if "config" in entry else None)
        raise entry.error(key, "board %s: the board would refuse its board.json: %s" % (board.name, e)) from None
    except ValueError as e:  # the values do not make a core Config (a bad market section, ...)
        raise entry.error("config" if "config" in entry else None,
                          "board %s: the board would refuse its board.json: board.json: %s" % (board.name, e)) from None


def parse(data: Any, path: str, boards_dir: str | None = None) -> Rig:
    """A Rig from a loaded rig file; ConfigError naming file:line."""
    if not isinstance(data, Located):
        raise ConfigError("%s:1: a rig file must be a mapping with a 'boards' list" % path)
    check_keys(data, _RIG_KEYS, "rig", required=("boards",))
    boards_dir = boards_dir or os.path.dirname(os.path.abspath(path))
    name = data.get("rig", os.path.splitext(os.path.basename(path))[0])
    rig_version = parse_version(data["version"], data, "version", "rig") if "version" in data else None
    rig_config = _config(data, "rig")
    emulated_dir = data.get("emulated_dir", "emulated")
    if not isinstance(emulated_dir, str):
        raise data.error("emulated_dir", "rig.emulated_dir: expected a folder name, got %r" % (emulated_dir,))
    emulated_dir = os.path.join(os.path.dirname(os.path.abspath(path)), emulated_dir)
    entries = data["boards"]
    if not isinstance(entries, LocatedList) or not entries:
        raise data.error("boards", "rig.boards: expected a non-empty list of boards")

    kinds: dict[str, boards_mod.BoardKind] = {}
    raw = []
    names: dict[str, str] = {}
    node_ids: dict[int, str] = {}
    serials: dict[str, str] = {}
    places: dict[tuple, str] = {}  # (coordinator, place) -> board name
    rig_coordinator = _coordinator(data, "coordinator", "rig") if "coordinator" in data else None
    for i, e in enumerate(entries):
        if not isinstance(e, Located):
            raise ConfigError("%s: rig.boards[%d]: expected a mapping" % (entries.where(i), i))
        section = "board %s" % e.get("name", "#%d" % (i + 1))
        spare = e.get("spare", False)
        if not isinstance(spare, bool):
            raise e.error("spare", "%s.spare: expected true or false, got %r" % (section, spare))
        if spare:
            said = [k for k in _NOT_ON_A_SPARE if k in e]
            if said:
                raise e.error(said[0], "%s: a spare board has no %s: the daughter it takes brings its id, cluster,"
                              " lineage and firmware (docs/BOARDS.md, \"Spare boards\")" % (section, said[0]))
        check_keys(e, _BOARD_KEYS, section, required=("name", "kind") if spare else ("name", "kind", "node_id", "cluster"))
        bname = e["name"]
        if not isinstance(bname, str) or not bname or "/" in bname or bname.startswith("."):
            raise e.error("name", "%s: name %r must be a plain file name" % (section, bname))
        if bname in names:
            raise e.error("name", "%s: name used twice (first at %s)" % (section, names[bname]))
        names[bname] = e.where("name")
        kname = e["kind"]
        if not isinstance(kname, str):
            raise e.error("kind", "%s.kind: expected a board kind name, got %r" % (section, kname))
        if kname not in kinds:
            # The rig's own folder first, then the repository's boards/.
            dirs = [d for d in dict.fromkeys((boards_dir, boards_mod.BOARDS_DIR))
                    if os.path.exists(os.path.join(d, kname + ".yaml"))]
            if not dirs:
                raise e.error("kind", "%s.kind: no board kind %r (no %s.yaml in %s)"
                              % (section, kname, kname, " or ".join(dict.fromkeys((boards_dir, boards_mod.BOARDS_DIR)))))
            kinds[kname] = boards_mod.kind(kname, dirs[0])
        kind = kinds[kname]
        node_id = _int(e, "node_id", section, 1, MAX_NODE_ID) if not spare else 0
        if node_id in node_ids:
            raise e.error("node_id", "%s: node %d is already board %s" % (section, node_id, node_ids[node_id]))
        if not spare:
            node_ids[node_id] = bname
        cluster = _int(e, "cluster", section, 0, MAX_CLUSTER) if not spare else 0
        ways = [k for k in ("serial", "url", "emulated", "place") if e.get(k) not in (None, False)]
        if len(ways) != 1:
            raise e.error(None, "%s: give exactly one of serial, url, emulated: true, place (got %s)"
                          % (section, ", ".join(ways) or "none"))  # fmt: skip
        serial = e.get("serial")
        if serial is not None:
            if isinstance(serial, int) and not isinstance(serial, bool):
                raise e.error("serial", "%s.serial: write the serial number as a string (quotes): %r" % (section, serial))
            if not isinstance(serial, str) or not serial:
                raise e.error("serial", "%s.serial: expected a USB serial number, got %r" % (section, serial))
            if serial in serials:
                raise e.error("serial", "%s: serial number %s is already board %s" % (section, serial, serials[serial]))
            serials[serial] = bname
            if kind.emulated:
                raise e.error("serial", "%s: kind %s is emulated; use emulated: true" % (section, kname))
        place, coordinator = e.get("place"), e.get("coordinator", rig_coordinator)
        if place is not None:
            if not isinstance(place, str) or not place or place.startswith("+"):
                raise e.error("place", "%s.place: expected a labgrid place name, got %r" % (section, place))
            if (coordinator, place) in places:
                raise e.error("place", "%s: place %s is already board %s" % (section, place, places[coordinator, place]))
            places[coordinator, place] = bname
            if kind.emulated:
                raise e.error("place", "%s: kind %s is emulated; name the kind of the board at the place" % (section, kname))
        if "coordinator" in e:
            if place is None:
                raise e.error("coordinator", "%s.coordinator: only a place entry has a coordinator" % section)
            _coordinator(e, "coordinator", section)
        for k in ("url", "data_url"):
            if e.get(k) is not None and not isinstance(e[k], str):
                raise e.error(k, "%s.%s: expected a pyserial URL or device path, got %r" % (section, k, e[k]))
        emulated = e.get("emulated", False)
        if not isinstance(emulated, bool):
            raise e.error("emulated", "%s.emulated: expected true or false, got %r" % (section, emulated))
        if emulated and not kind.emulated:
            raise e.error("emulated", "%s: emulated: true needs an emulated board kind (e.g. emulated_pico), not %s"
                          % (section, kname))  # fmt: skip
        if kind.emulated and not emulated:
            raise e.error("kind", "%s: kind %s is emulated: say emulated: true" % (section, kname))
        role = e.get("role", "spare" if spare else "node")
        if not isinstance(role, str) or not role:
            raise e.error("role", "%s.role: expected a word, got %r" % (section, role))
        members = e.get("members")
        if members is not None and (not isinstance(members, list) or not all(
                isinstance(x, int) and not isinstance(x, bool) and 1 <= x <= MAX_NODE_ID for x in members)):
            raise e.error("members", "%s.members: expected a list of node ids 1..%d" % (section, MAX_NODE_ID))
        version = parse_version(e["version"], e, "version", section) if "version" in e else None
        label = e.get("label")
        if label is not None and not isinstance(label, str):
            raise e.error("label", "%s.label: expected a string" % section)
        features = tuple(dict.fromkeys(kind.features + boards_mod.check_features(e, "features", section)))
        reset = kind.reset
        if "reset" in e:
            if e["reset"] not in boards_mod.RESETS:
                raise e.error("reset", "%s.reset: %r is not one of %s" % (section, e["reset"], ", ".join(boards_mod.RESETS)))
            reset = e["reset"]
        code = e.get("code", "romfs")
        if code not in ("romfs", "files"):
            raise e.error("code", "%s.code: %r is not one of romfs, files" % (section, code))
        config = dict(rig_config)
        config.update(_config(e, section, kind))
        raw.append((e, dict(
            name=bname, kind=kname, node_id=node_id, cluster=cluster, role=role, serial=serial,
            url=e.get("url"), emulated=emulated, features=features,
            lineage=_int(e, "lineage", section, 0, 255, default=0),
            hw_gen=_int(e, "hw_gen", section, 0, 255, default=1),
            members=tuple(sorted(members)) if members is not None else None,
            version=version, label=label, config=config, reset=reset, code=code,
            data_url=e.get("data_url"), where=e.where(), place=place, coordinator=coordinator if place else None,
            spare=spare,
        )))  # fmt: skip

    # A cluster's members are its boards in the rig unless an entry lists them.
    by_cluster: dict[int, list[int]] = {}
    for _, kw in raw:
        if not kw["spare"]:
            by_cluster.setdefault(kw["cluster"], []).append(kw["node_id"])
    out = []
    for e, kw in raw:
        if kw["spare"]:
            kw["members"] = ()
        elif kw["members"] is None:
            kw["members"] = tuple(sorted(by_cluster[kw["cluster"]]))
        elif kw["node_id"] not in kw["members"]:
            raise e.error("members", "board %s.members: must include its own node %d" % (kw["name"], kw["node_id"]))
        out.append(RigBoard(**kw))
    for key in ("rig", "label", "description"):
        if key in data and not isinstance(data[key], str):
            raise data.error(key, "rig.%s: expected a string, got %r" % (key, data[key]))
    nodes = [b for b in out if not b.spare]
    if not nodes:
        raise data.error("boards", "rig.boards: every board is a spare: a run needs boards with a node_id too")
    rig = Rig(path, str(name), nodes, kinds, emulated_dir, rig_version, data.get("label"),
              data.get("description", ""))
    rig.spares = [b for b in out if b.spare]
    from hil import rig_udp

    rig.udp = rig_udp.parse_udp(data, path)
    for (e, _), b in zip(raw, out):
        cfg = rig.board_json(b, secrets=False)
        if b.spare:  # as a daughter would have it: some id and a roster with it (the run writes the real ones)
            cfg.update(node_id=1, members=[1])
        _check_board_json(path, e, b, cfg)
    return rig


def load(path: str | os.PathLike) -> Rig:
    """Load a rig file (boards/rig-*.yaml); its board kinds come from the
    same folder. ConfigError naming file:line on any mistake."""
    path = os.fspath(path)
    data, _ = load_yaml(path)
    return parse(data, path)
