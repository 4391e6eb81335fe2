# The board's configuration files, read and validated once, at boot.
#
#     board = load("board.json", "version.json")   # BoardConfig or ConfigError
#
# board.json is per board (written by the flashing tool or by hand); version.json
# describes the flashed image. docs/BOARD_SHELL.md lists every key. Unknown
# keys are refused, so a typo cannot silently fall back to a default. A
# ConfigError names the file and the key and is printed as one line by main.py.

import binascii
import json

from node.wire import MAX_NODE_ID

from runtime import version

# key -> (kind, default). kind: "int", "bool", "str", "list", "dict", "pin", "any".
# A default of _REQUIRED means the key must be present.
_REQUIRED = object()
_KEYS = {
    "node_id": ("int", None),  # None: the stored identity, else from machine.unique_id()
    "cluster": ("int", _REQUIRED),
    "members": ("list", _REQUIRED),
    "election_timeout_ms": ("int", 1000),  # mission ms
    "heartbeat_ms": ("int", None),  # None: the core derives it from the election timeout
    "telemetry_ms": ("int", None),
    "state_ms": ("int", None),
    "suspect_ms": ("int", None),
    "dead_ms": ("int", None),
    "lineage": ("int", 0),
    "hw_gen": ("int", 1),
    "seed": ("int", None),  # None: from machine.unique_id() and the node id
    "auth_key": ("str", None),  # hex
    "require_auth": ("bool", False),
    "time_scale_milli": ("int", 1000),  # until the ground's CONFIG frame says otherwise
    "transport": ("str", "usb"),
    "uart": ("dict", None),
    "ground": ("str", None),  # "host:port" of the ground's UDP socket (transport "udp")
    "wifi": ("dict", None),  # {"ssid", "password"}: the access point a Pico W joins (transport "udp")
    "led_pin": ("pin", "LED"),  # int GPIO, a pin name, or null for no LED
    "watchdog_ms": ("int", 5000),  # 0: no watchdog
    "journal": ("bool", False),  # send the core's call times to the ground (frame replay)
    "confirm_after_ms": ("int", 30000),  # mission ms a trial image must stay healthy to confirm (docs/UPDATES.md)
    "market": ("dict", None),  # the regional market tier: node.config.MarketConfig's arguments
    "replication": ("dict", None),  # node/join.py's settings: spares [first, count], max_members, ..., parent
}
_REPLICATION_KEYS = ("spares", "max_members", "min_members", "split_cluster", "parent")
_UART_KEYS = {"id": 0, "tx": 0, "rx": 1, "baud": 115200}
_MAX_WATCHDOG_MS = 8388  # RP2040 limit (MicroPython docs, machine.WDT); RP2350 allows more
_MIN_WATCHDOG_MS = 100  # the loop must be able to feed it between flash writes


class ConfigError(Exception):
    """A configuration file is missing or wrong; says which file and key."""

    def __init__(self, file, key, problem):
        super().__init__(file, key, problem)
        self.file = file
        self.key = key
        self.problem = problem

    def __str__(self):
        if self.key:
            return '%s: key "%s": %s' % (self.file, self.key, self.problem)
        return "%s: %s" % (self.file, self.problem)


class BoardConfig:
    """Plain data: board.json's values (defaults filled in) and the version.

    The defaults are class attributes and the class has no method, so a
    BoardConfig keeps nothing of this module alive: main.py drops the module
    once the board is built and keeps the BoardConfig (docs/HEAP.md)."""

    node_id = None
    cluster = 0
    members = ()
    election_timeout_ms = 1000
    heartbeat_ms = None
    telemetry_ms = None
    state_ms = None
    suspect_ms = None
    dead_ms = None
    lineage = 0
    hw_gen = 1
    seed = None
    auth_key = None  # type: bytes | None
    require_auth = False
    time_scale_milli = 1000
    transport = "usb"
    uart = None  # dict with id, tx, rx, baud when transport == "uart"
    ground = None  # (host, port) when transport == "udp"
    wifi = None  # {"ssid", "password"} or None (the unix port needs none)
    led_pin = "LED"
    watchdog_ms = 5000
    journal = False
    confirm_after_ms = 30000  # a trial image confirms itself after this long in its cluster (docs/UPDATES.md)
    market = None  # dict of MarketConfig arguments, or None: no market tier
    replication = None  # dict of Config's replication arguments (node/join.py), or None: none
    fw_version = version.VERSION
    fw_label = version.LABEL
    version_file = None  # the file the version came from, None: built in


def _read_json(path):
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        raise ConfigError(path, None, "missing (cannot open)")
    try:
        data = json.loads(text)
    except ValueError:
        raise ConfigError(path, None, "not valid JSON")
    if not isinstance(data, dict):
        raise ConfigError(path, None, "must be a JSON object")
    return data


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _int(file, key, v, lo, hi):
    if not _is_int(v):
        raise ConfigError(file, key, "must be an integer")
    if not lo <= v <= hi:
        raise ConfigError(file, key, "%d out of range %d..%d" % (v, lo, hi))
    return v


def _check_kind(file, key, kind, v):
    if v is None:
        return
    if kind == "int":
        ok = _is_int(v)
    elif kind == "bool":
        ok = isinstance(v, bool)
    elif kind == "str":
        ok = isinstance(v, str)
    elif kind == "list":
        ok = isinstance(v, list)
    elif kind == "dict":
        ok = isinstance(v, dict)
    elif kind == "pin":
        ok = _is_int(v) or isinstance(v, str)
    else:
        ok = True
    if not ok:
        raise ConfigError(file, key, "must be of type " + kind)


def parse_board(data, file="board.json"):
    """BoardConfig from board.json's decoded object; ConfigError if wrong."""
    for key in sorted(data):
        if key not in _KEYS:
            raise ConfigError(file, key, "unknown key")
    b = BoardConfig()
    for key in sorted(_KEYS):
        kind, default = _KEYS[key]
        if key in data:
            v = data[key]
        elif default is _REQUIRED:
            raise ConfigError(file, key, "missing")
        else:
            v = default
        _check_kind(file, key, kind, v)
        setattr(b, key, v)

    if b.node_id is not None:
        _int(file, "node_id", b.node_id, 1, MAX_NODE_ID)
    _int(file, "cluster", b.cluster, 0, 0xFFE)
    members = data["members"]
    if not members:
        raise ConfigError(file, "members", "must list at least one node id")
    for m in members:
        _int(file, "members", m, 1, MAX_NODE_ID)
    if len(set(members)) != len(members):
        raise ConfigError(file, "members", "lists a node id twice")
    b.members = tuple(sorted(members))
    _int(file, "election_timeout_ms", b.election_timeout_ms, 4, 0x7FFFFFFF)
    _int(file, "confirm_after_ms", b.confirm_after_ms, 0, 0x7FFFFFFF)
    for key in ("heartbeat_ms", "telemetry_ms", "state_ms", "suspect_ms", "dead_ms"):
        v = getattr(b, key)
        if v is not None:
            _int(file, key, v, 1, 0x7FFFFFFF)
    if b.heartbeat_ms is not None and 2 * b.heartbeat_ms > b.election_timeout_ms:
        raise ConfigError(file, "heartbeat_ms", "must be at most half of election_timeout_ms")
    _int(file, "lineage", b.lineage, 0, 255)
    _int(file, "hw_gen", b.hw_gen, 0, 255)
    if b.seed is not None:
        _int(file, "seed", b.seed, 0, 0xFFFFFFFF)
    _int(file, "time_scale_milli", b.time_scale_milli, 0, 0xFFFFFFFF)
    key = data.get("auth_key")
    if key is not None:
        try:
            b.auth_key = binascii.unhexlify(key)
        except ValueError:
            raise ConfigError(file, "auth_key", "must be hex digits")
        if not b.auth_key:
            raise ConfigError(file, "auth_key", "is empty")
    if b.require_auth and b.auth_key is None:
        raise ConfigError(file, "require_auth", "needs auth_key")

    if b.transport not in ("usb", "uart", "udp"):
        raise ConfigError(file, "transport", 'must be "usb", "uart" or "udp"')
    if b.transport == "uart":
        b.uart = _parse_uart(file, data.get("uart"))
    elif data.get("uart") is not None:
        raise ConfigError(file, "uart", 'given but transport is "%s"' % b.transport)
    if b.transport == "udp":  # its checks live with the link: a board on usb never loads them
        from runtime import link_udp

        try:
            b.ground = link_udp.parse_ground(data.get("ground"))
            b.wifi = link_udp.parse_wifi(data.get("wifi"))
        except link_udp.SettingError as e:
            raise ConfigError(file, e.args[0], e.args[1])
    else:
        for key in ("ground", "wifi"):
            if data.get(key) is not None:
                raise ConfigError(file, key, 'given but transport is "%s"' % b.transport)
    if b.replication is not None:
        for k in sorted(b.replication):
            if k not in _REPLICATION_KEYS:
                raise ConfigError(file, "replication." + k, "unknown key")
            v = b.replication[k]
            if k == "spares" or isinstance(v, list):  # split_cluster may be a block [first, count] too
                if not isinstance(v, list) or len(v) != 2:
                    raise ConfigError(file, "replication." + k, "must be [first, count]")
                _int(file, "replication." + k, v[0], 0, MAX_NODE_ID)
                _int(file, "replication." + k, v[1], 0, MAX_NODE_ID)
            else:
                _int(file, "replication." + k, v, 0, MAX_NODE_ID)
    if b.watchdog_ms:
        _int(file, "watchdog_ms", b.watchdog_ms, _MIN_WATCHDOG_MS, _MAX_WATCHDOG_MS)
    else:
        _int(file, "watchdog_ms", b.watchdog_ms, 0, 0)
    return b


def _parse_uart(file, uart):
    if uart is None:
        raise ConfigError(file, "uart", 'missing (needed when transport is "uart")')
    out = {}
    for k in sorted(uart):
        if k not in _UART_KEYS:
            raise ConfigError(file, "uart." + k, "unknown key")
    for k in sorted(_UART_KEYS):
        v = uart.get(k, _UART_KEYS[k])
        hi = 3000000 if k == "baud" else 47  # GPIO numbers on RP2350B go to 47
        out[k] = _int(file, "uart." + k, v, 300 if k == "baud" else 0, hi)
    return out


def parse_version(data, file="version.json"):
    """((major, minor), label) from version.json's decoded object."""
    for key in sorted(data):
        if key not in ("version", "label"):
            raise ConfigError(file, key, "unknown key")
    if "version" not in data:
        raise ConfigError(file, "version", "missing")
    v = data["version"]
    if not isinstance(v, list) or len(v) != 2:
        raise ConfigError(file, "version", "must be [major, minor]")
    major = _int(file, "version", v[0], 0, 255)
    minor = _int(file, "version", v[1], 0, 255)
    label = data.get("label", "%d.%d" % (major, minor))
    if not isinstance(label, str):
        raise ConfigError(file, "label", "must be a string")
    return (major, minor), label


def _exists(path):
    try:
        open(path).close()
        return True
    except OSError:
        return False


def load(board_path="board.json", version_path="version.json"):
    """BoardConfig from the files on flash; ConfigError naming file and key."""
    b = parse_board(_read_json(board_path), board_path)
    if _exists(version_path):
        b.fw_version, b.fw_label = parse_version(_read_json(version_path), version_path)
        b.version_file = version_path
    return b


def core_config(b):
    """The core's node.config.Config for BoardConfig `b` (ValueError if the
    values do not make one). The ground builds its replay node with this too."""
    from node.config import Config

    market = None
    if b.market is not None:
        from node.config import MarketConfig

        kw = {}
        for k in b.market:
            v = b.market[k]
            # the roster as it is: MarketConfig copies it into an array (a
            # tuple of a thousand ids first would be one more copy on the heap)
            kw[k] = bytes(v) if k == "gens" else tuple(v) if isinstance(v, list) and k != "roster" else v
        try:
            market = MarketConfig(**kw)
        except TypeError as e:  # an argument MarketConfig does not take
            raise ValueError("market: %s" % e)
    rep = {}
    if b.replication is not None:  # a fleet that replicates (node/join.py checks the values)
        for k in b.replication:
            v = b.replication[k]
            rep[k] = tuple(v) if k == "spares" else v
    return Config(
        cluster=b.cluster,
        members=b.members,
        election_timeout_ms=b.election_timeout_ms,
        heartbeat_ms=b.heartbeat_ms,
        telemetry_ms=b.telemetry_ms,
        state_ms=b.state_ms,
        suspect_ms=b.suspect_ms,
        dead_ms=b.dead_ms,
        hw_gen=b.hw_gen,
        fw_version=b.fw_version,
        lineage=b.lineage,
        auth_key=b.auth_key,
        require_auth=b.require_auth,
        market=market,
        **rep
    )


def led_pin_hint(board_path="board.json"):
    """The LED pin to blink an error on, even from a board.json that failed."""
    try:
        data = _read_json(board_path)
        pin = data.get("led_pin", "LED")
        return pin if (_is_int(pin) or isinstance(pin, str)) else "LED"
    except ConfigError:
        return "LED"
