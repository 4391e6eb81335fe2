"""A rig's boards on transport udp: the run's UDP hub where the rig's `udp:` key
says, the ground address its boards are told, their Wi-Fi secrets, and
booting them together (docs/BOARDS.md, "Transport udp").

    settings = parse_udp(rig_data, path)     # `udp: {bind, port, ground}`; ConfigError naming file:line
    hub, ground = open_hub(settings, real)   # bound hub; "host:port" for board.json "ground"
    wifi = resolve_wifi(cfg["wifi"], board)  # {"ssid", "password"}: the secret from $ENV or a file
    boot(boards, hub, timeout_s)             # off / forget / on, then every HELLO on the hub

The hub binds 127.0.0.1 unless the rig says `udp: {bind: ADDRESS}` (a Pico W
reaches the ground over its Wi-Fi, so the hub must listen on an address of
that network, or 0.0.0.0); `port` fixes its port (a firewall rule, a Pico W
whose board.json was written once), default any free one. The address the
boards send to, board.json "ground", is `udp: {ground: HOST}` when given,
else the bind address, and for bind 0.0.0.0: 127.0.0.1 for emulated boards
only, else this machine's address on its default route (the one a board on
the lab network reaches).

A rig never holds a Wi-Fi password: its `config: {wifi: {ssid: ..., password_env:
NAME}}` names an environment variable, or `password_file: PATH` a file
(relative to the rig file; not committed), read when the board.json is
written. `password: ...` in clear is accepted for a lab's throwaway network.
`timeout_ms` bounds the join on the board (firmware/runtime/link_udp.py).
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from typing import Any

from ground.yamlfile import ConfigError, Located, check_keys

UDP_KEYS = {"bind", "port", "ground"}
WIFI_KEYS = {"ssid", "password", "password_env", "password_file", "timeout_ms"}
SECRET_KEYS = ("password", "password_env", "password_file")
CHECK_PASSWORD = "checked-at-load"  # stands in for the secret when the rig is loaded (the board's parser checks the rest)


@dataclass(frozen=True)
class UdpSettings:
    bind: str = "127.0.0.1"
    port: int = 0
    ground: str | None = None  # the host boards send to; None: from bind
    where: str = "?"  # file:line of the rig's `udp:` key


def parse_udp(data: Located, path: str) -> UdpSettings:
    """The rig's `udp:` key, or the defaults (loopback, any port)."""
    if "udp" not in data:
        return UdpSettings(where=path)
    u = data["udp"]
    if not isinstance(u, Located):
        raise data.error("udp", "rig.udp: expected a mapping {bind: ADDRESS, port: N, ground: HOST}, got %r" % (u,))
    check_keys(u, UDP_KEYS, "rig.udp")
    bind = u.get("bind", "127.0.0.1")
    if not isinstance(bind, str) or not _is_ipv4(bind):
        raise u.error("bind", "rig.udp.bind: expected an IPv4 address of this machine (or 0.0.0.0), got %r" % (bind,))
    port = u.get("port", 0)
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        raise u.error("port", "rig.udp.port: expected a port 0..65535 (0: any free one), got %r" % (port,))
    ground = u.get("ground")
    if ground is not None and (not isinstance(ground, str) or not ground or ":" in ground or " " in ground):
        raise u.error("ground", "rig.udp.ground: expected the host boards send to (an address or name, no port), "
                                "got %r" % (ground,))  # fmt: skip
    return UdpSettings(bind, port, ground, data.where("udp"))


def _is_ipv4(text: str) -> bool:
    try:
        socket.inet_aton(text)
    except OSError:
        return False
    return text.count(".") == 3


def check_wifi(wifi: Any) -> dict:
    """A rig's board.json "wifi" section, shape-checked (ValueError saying
    what is wrong; the rig loader names the line); what the board's own
    parser is given to check the rest: the secret replaced by a stand-in (it
    may only exist where the run is)."""
    if not isinstance(wifi, dict):
        raise ValueError("config.wifi: expected {ssid, password_env | password_file | password}, got %r" % (wifi,))
    unknown = sorted(set(wifi) - WIFI_KEYS)
    if unknown:
        raise ValueError("config.wifi: unknown key %r (allowed: %s)" % (unknown[0], ", ".join(sorted(WIFI_KEYS))))
    secrets = [k for k in SECRET_KEYS if k in wifi]
    if len(secrets) > 1:
        raise ValueError("config.wifi: give one of %s, not %s" % (", ".join(SECRET_KEYS), " and ".join(secrets)))
    for k in ("password_env", "password_file"):
        if k in wifi and (not isinstance(wifi[k], str) or not wifi[k]):
            raise ValueError("config.wifi.%s: expected a name, got %r" % (k, wifi[k]))
    out = {k: v for k, v in wifi.items() if k not in SECRET_KEYS}
    if secrets:
        out["password"] = wifi["password"] if secrets[0] == "password" else CHECK_PASSWORD
    return out


def resolve_wifi(wifi: dict, board: Any, rig_dir: str = ".") -> dict:
    """board.json "wifi" with its secret read: {"ssid", "password"[, "timeout_ms"]}.
    RigError naming the board and the variable or file when it cannot be read."""
    from hil.rigfile import RigError

    out = {k: v for k, v in wifi.items() if k not in SECRET_KEYS}
    if "password_env" in wifi:
        name = wifi["password_env"]
        if name not in os.environ:
            raise RigError("%s: board %s: config.wifi.password_env: $%s is not set (the Wi-Fi password for %r)"
                           % (board.where, board.name, name, wifi.get("ssid")))  # fmt: skip
        out["password"] = os.environ[name]
    elif "password_file" in wifi:
        path = os.path.join(rig_dir, os.path.expanduser(wifi["password_file"]))
        try:
            with open(path, encoding="utf-8") as f:
                out["password"] = f.read().strip("\r\n")
        except OSError as e:
            raise RigError("%s: board %s: config.wifi.password_file: cannot read %s (%s)"
                           % (board.where, board.name, path, e.strerror or e)) from None  # fmt: skip
    elif "password" in wifi:
        out["password"] = wifi["password"]
    return out


def own_address() -> str | None:
    """This machine's IPv4 address on its default route (a UDP connect sends
    nothing), else the one its host name resolves to; None if only loopback."""
    for probe in ("192.0.2.1", "10.255.255.255", "8.8.8.8"):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.connect((probe, 9))
            addr = s.getsockname()[0]
        except OSError:
            continue
        finally:
            s.close()
        if addr and not addr.startswith("127.") and addr != "0.0.0.0":
            return addr
    try:
        addr = socket.gethostbyname(socket.gethostname())
    except OSError:
        return None
    return None if addr.startswith("127.") else addr


def open_hub(settings: UdpSettings, real: bool) -> tuple[Any, str]:
    """The run's hub, bound where `settings` say, and the "host:port" boards
    send to. LinkError naming the address when it cannot be bound; ConfigError
    when real boards need an address on their network and none is known."""
    from ground.udplink import UdpHub

    host = settings.ground
    if host is None:
        if settings.bind != "0.0.0.0":
            host = settings.bind
        elif not real:
            host = "127.0.0.1"
        else:
            host = own_address()
            if host is None:
                raise ConfigError("%s: rig.udp: bind 0.0.0.0 and this machine has no address but loopback: say the "
                                  "address the Pico Ws reach the ground at, udp: {ground: HOST}" % settings.where)
    if real and settings.ground is None and host.startswith("127."):
        raise ConfigError("%s: rig.udp: Pico Ws on Wi-Fi cannot reach this machine's loopback (%s): bind the hub on "
                          "the lab network, udp: {bind: 0.0.0.0} or an address of this machine" % (settings.where, host))
    hub = UdpHub(settings.bind, settings.port)
    return hub, "%s:%d" % (host, hub.port)


def boot(boards: dict, hub: Any, timeout_s: float) -> dict:
    """Boot the run's udp boards {nid: EmulatedBoard or SerialBoard} together:
    every one stopped (emulated: power cut; real: Ctrl-C at its REPL, over its
    console port), the hub's earlier datagrams and addresses forgotten, every
    one started (power on; a soft reset: main.py joins Wi-Fi and runs), then
    each one's HELLO awaited on the hub. Sets each board's `open_link`.
    TimeoutError naming the silent boards with what their consoles said."""
    from ground import udplink
    from ground.links import open_serial

    from hil.emulated_rules import OFF
    from hil.serialboard import SerialBoard

    consoles = {}
    try:
        for nid, b in sorted(boards.items()):
            if not isinstance(b, SerialBoard):
                if b.state != OFF:  # hil.rig.FileRig._boot may have cut it already
                    b.power_cut()  # an emulated board: dead once this returns
            else:
                port = open_serial(b.repl, timeout=0.2, write_timeout=2)
                consoles[nid] = port
                port.write(b"\x03\x03")  # stop its loop: it sends nothing more from this boot
                port.flush()
        time.sleep(0.2 if consoles else 0)  # a real board's last datagram, already on its way
        hub.forget()
        for nid, b in sorted(boards.items()):
            if nid in consoles:
                consoles[nid].reset_input_buffer()
                consoles[nid].write(b"\x02\x04")  # friendly REPL, soft reset: main.py runs
                consoles[nid].flush()
            else:
                b.power_on()
        try:
            seen = udplink.wait_hellos(hub, sorted(boards), timeout_s)
        except TimeoutError as e:
            said = []
            for nid, port in sorted(consoles.items()):
                if nid not in hub.addr_of:
                    text = port.read(port.in_waiting or 0).decode("utf-8", "replace")
                    lines = [x.strip() for x in text.splitlines() if "fleetloop" in x]
                    said.append("board %s (node %d, console %s) said: %s" % (
                        boards[nid].name, nid, boards[nid].repl, " | ".join(lines[-3:]) or repr(text[-200:])))
            raise TimeoutError("%s%s" % (e, ("; " + "; ".join(said)) if said else "")) from None
    finally:
        for port in consoles.values():
            try:
                port.close()
            except Exception:
                pass
    for nid, b in boards.items():
        b.open_link = (hub.link(nid), seen[nid])
    return boards
