"""Board kinds (boards/<kind>.yaml) and finding boards on USB.

A board kind is plain data, loaded once from YAML and never changed:

    kind = boards.load_kind("boards/pico.yaml")    # or boards.kind("pico")
    kind.mpy_march, kind.heap_bytes, kind.features, kind.reset, ...

`find_port(serial_number)` is what ``mpremote connect id:SERIAL`` does:
the first port in pyserial's ``serial.tools.list_ports.comports()`` whose
USB serial number matches. `attached()` lists every such port.

Bad input is expected input: a kind file with an unknown key, a missing key
or a value of the wrong type raises ground.yamlfile.ConfigError naming the
file and the line. The key table (_KIND_KEYS) is the one list of what a kind
file may say; docs/BOARDS.md explains each key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, NamedTuple

from ground.yamlfile import ConfigError, Located, check_keys, load, number

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BOARDS_DIR = os.path.join(ROOT, "boards")

# What a board can offer a test. A test or a rig selects boards by these
# names (the pytest plugin turns them into markers), so a typo is an error.
FEATURES = frozenset({
    "watchdog",  # a hardware watchdog the firmware arms (machine.WDT)
    "led",  # a status LED
    "uart",  # the frame link can run over a UART instead of USB
    "radio",  # a radio chip (Pico W: CYW43439 Wi-Fi/Bluetooth)
    "power_control",  # the harness can cut and restore power (emulated boards; a relay or PPPS hub)
})  # fmt: skip

RESETS = ("soft", "hard")  # see docs/FLASHING.md, "Reset"
TRANSPORTS = ("usb", "uart", "udp")

# mpy-cross -march values (mpy-cross --help); None: bytecode only.
MARCHES = ("x86", "x64", "armv6", "armv6m", "armv7m", "armv7em", "armv7emsp", "armv7emdp",
           "xtensa", "xtensawin", "rv32imc", "rv64imc")  # fmt: skip

_KIND_KEYS = {
    "kind", "description", "mcu", "emulated", "heap_bytes", "fs_bytes", "usb", "transport",
    "uart", "led_pin", "mpy", "mpy_march", "reset", "watchdog_max_ms", "features",
}  # fmt: skip
_KIND_REQUIRED = ("kind", "mcu", "heap_bytes", "transport", "reset")
_UART_KEYS = {"id": 0, "tx": 0, "rx": 1, "baud": 115200}


@dataclass(frozen=True)
class BoardKind:
    """One kind of board, as boards/<kind>.yaml describes it."""

    name: str
    description: str
    mcu: str
    heap_bytes: int
    fs_bytes: int | None  # the board filesystem's size; None: unknown
    usb_vid: int | None  # USB ids of its serial port (None: not a USB device)
    usb_pid: int | None
    transport: str  # "usb", "uart" or "udp": the default frame link (board.json "transport")
    uart: dict[str, int]  # board.json "uart" when the transport is uart
    led_pin: Any  # int GPIO, a pin name, or None for no LED
    mpy: bool  # copy .mpy (compiled by mpy-cross) rather than .py
    mpy_march: str | None  # mpy-cross -march; None: bytecode only, no -march
    reset: str  # how the flasher restarts the board: "soft" or "hard"
    watchdog_max_ms: int | None
    features: tuple[str, ...]
    emulated: bool  # run by hil.emulated, not found on USB
    path: str  # the file it came from

    def where(self) -> str:
        return self.path


def _string(m: Located, key: str, section: str, default: Any = ...) -> Any:
    if key not in m:
        if default is ...:
            raise m.error(None, "%s: missing key %r" % (section, key))
        return default
    v = m[key]
    if not isinstance(v, str):
        raise m.error(key, "%s.%s: expected a string, got %r" % (section, key, v))
    return v


def _bool(m: Located, key: str, section: str, default: bool) -> bool:
    v = m.get(key, default)
    if not isinstance(v, bool):
        raise m.error(key, "%s.%s: expected true or false, got %r" % (section, key, v))
    return v


def _choice(m: Located, key: str, section: str, choices: tuple, default: Any = ...) -> Any:
    if key not in m and default is not ...:
        return default
    v = m.get(key)
    if v not in choices:
        raise m.error(key, "%s.%s: %r is not one of %s" % (section, key, v, ", ".join(map(str, choices))))
    return v


def check_features(m: Located, key: str, section: str) -> tuple[str, ...]:
    """A list of feature names from FEATURES; errors name file:line."""
    v = m.get(key, [])
    if not isinstance(v, list):
        raise m.error(key, "%s.%s: expected a list of features, got %r" % (section, key, v))
    for f in v:
        if f not in FEATURES:
            raise m.error(key, "%s.%s: unknown feature %r (known: %s)" % (section, key, f, ", ".join(sorted(FEATURES))))
    return tuple(v)


def check_pin(m: Located, key: str, section: str, default: Any) -> Any:
    v = m.get(key, default)
    if v is not None and (isinstance(v, bool) or not isinstance(v, (int, str))):
        raise m.error(key, "%s.%s: expected a GPIO number, a pin name or null, got %r" % (section, key, v))
    return v


def check_uart(m: Located, key: str, section: str) -> dict[str, int]:
    u = m.get(key)
    if u is None:
        return dict(_UART_KEYS)
    check_keys(u, set(_UART_KEYS), "%s.%s" % (section, key))
    out = {}
    for k, default in _UART_KEYS.items():
        hi = 3_000_000 if k == "baud" else 47  # GPIO numbers on the RP2350B go to 47
        out[k] = number(u, k, "%s.%s" % (section, key), lo=300 if k == "baud" else 0, hi=hi,
                        default=default, integer=True)  # fmt: skip
    return out


def parse_kind(data: Any, path: str) -> BoardKind:
    """A BoardKind from a loaded kind file; ConfigError naming file:line."""
    if not isinstance(data, Located):
        raise ConfigError("%s:1: a board kind file must be a mapping" % path)
    section = "board kind"
    check_keys(data, _KIND_KEYS, section, required=_KIND_REQUIRED)
    name = _string(data, "kind", section)
    stem = os.path.splitext(os.path.basename(path))[0]
    if name != stem:
        raise data.error("kind", "%s.kind: %r, but the file is named %s (they must agree)"
                         % (section, name, os.path.basename(path)))  # fmt: skip
    usb_vid = usb_pid = None
    if data.get("usb") is not None:
        usb = data["usb"]
        check_keys(usb, {"vid", "pid"}, section + ".usb", required=("vid", "pid"))
        usb_vid = number(usb, "vid", section + ".usb", lo=0, hi=0xFFFF, integer=True)
        usb_pid = number(usb, "pid", section + ".usb", lo=0, hi=0xFFFF, integer=True)
    march = data.get("mpy_march")
    if march is not None and march not in MARCHES:
        raise data.error("mpy_march", "%s.mpy_march: %r is not an mpy-cross -march (%s)"
                         % (section, march, ", ".join(MARCHES)))  # fmt: skip
    fs_bytes = number(data, "fs_bytes", section, lo=1, integer=True) if data.get("fs_bytes") is not None else None
    wd = data.get("watchdog_max_ms")
    return BoardKind(
        name=name,
        description=_string(data, "description", section, ""),
        mcu=_string(data, "mcu", section),
        heap_bytes=number(data, "heap_bytes", section, lo=16 * 1024, integer=True),
        fs_bytes=fs_bytes,
        usb_vid=usb_vid,
        usb_pid=usb_pid,
        transport=_choice(data, "transport", section, TRANSPORTS),
        uart=check_uart(data, "uart", section),
        led_pin=check_pin(data, "led_pin", section, "LED"),
        mpy=_bool(data, "mpy", section, True),
        mpy_march=march,
        reset=_choice(data, "reset", section, RESETS),
        watchdog_max_ms=None if wd is None else number(data, "watchdog_max_ms", section, lo=100, integer=True),
        features=check_features(data, "features", section),
        emulated=_bool(data, "emulated", section, False),
        path=path,
    )


def load_kind(path: str) -> BoardKind:
    """Load boards/<kind>.yaml (or any path)."""
    data, _ = load(path)
    return parse_kind(data, path)


_cache: dict[str, BoardKind] = {}


def kind(name: str, boards_dir: str = BOARDS_DIR) -> BoardKind:
    """The kind called `name`, from `boards_dir`/`name`.yaml (cached)."""
    path = os.path.join(boards_dir, name + ".yaml")
    if path not in _cache:
        if not os.path.exists(path):
            raise ConfigError("%s: no such board kind (no %s)" % (name, path))
        _cache[path] = load_kind(path)
    return _cache[path]


def kinds(boards_dir: str = BOARDS_DIR) -> dict[str, BoardKind]:
    """Every kind file in boards_dir (files not starting with "rig-")."""
    out = {}
    for f in sorted(os.listdir(boards_dir)):
        if f.endswith(".yaml") and not f.startswith("rig-"):
            k = kind(f[: -len(".yaml")], boards_dir)
            out[k.name] = k
    return out


# -- USB -----------------------------------------------------------------------


class Port(NamedTuple):
    """A serial port as pyserial lists it (the fields this package uses)."""

    device: str
    serial_number: str | None
    vid: int | None
    pid: int | None
    description: str


def attached() -> list[Port]:
    """Every serial port the host sees now (pyserial's list_ports.comports())."""
    from serial.tools import list_ports

    return [Port(p.device, p.serial_number, p.vid, p.pid, p.description or "") for p in list_ports.comports()]


def find_port(serial_number: str, ports: list[Port] | None = None) -> Port | None:
    """The port whose USB serial number is `serial_number`, as ``mpremote
    connect id:SERIAL`` finds it; None when no such board is attached."""
    for p in attached() if ports is None else ports:
        if p.serial_number == serial_number:
            return p
    return None
