"""Power switching of labgrid places: a place's NetworkPowerPort, switched with
labgrid's own NetworkPowerDriver, so a scenario's `power_cut` / `power_on`
faults reach a board behind a labgrid place (docs/HIL.md, "Power through
labgrid"); and the power switch of emulated boards, for a lab of them.

    power = place_power("pico-1", {"model": "simplerest", "host": "http://pdu:80/relay/{index}/{value}", "index": "3"})
    power.off(); power.on(); power.get()      # True: on

    pdu = EmulatedPdu({0: board0, 1: board1}).start()  # an HTTP power switch whose outlets are emulated boards
    pdu.url                                            # NetworkPowerPort host, model simplerest: .../power/{index}/{value}
    pdu.switched                                       # [(index, "off" | "on")], in order
    pdu.stop()

A lab switches its boards' power with a networked power switch (a PDU, a
relay board, a USB hub with per-port power) that the exporter describes as a
NetworkPowerPort resource (model, host, index) in the board's place; labgrid's
NetworkPowerDriver speaks the switch's protocol (its `power` backends: rest,
simplerest, gude, netio, shelly, ...). `place_power` builds that driver on a
target holding the place's power port, as `labgrid-client power` does, and
bounds every switching with a timeout (labgrid's HTTP backends wait without
one): PowerError names the place and the switch when it fails.

EmulatedPdu is the power switch of emulated boards: a real HTTP server that
speaks labgrid's `simplerest` model (GET .../{index}/{value} switches, GET
.../{index} reads "1" or "0"; `rest` model PUT too) and cuts or restores the
power of the emulated board at each outlet (hil.emulated.EmulatedBoard
power_cut / power_on). No physical switch exists here: this one stands in for
it, in the process that runs the boards (hil.labgrid_lab.LocalLab, the tests
and the bench); everything from the exporter to the driver is labgrid's.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ground.links import LinkError

SWITCH_TIMEOUT_S = 10.0  # one power switching, through the driver and the switch


class PowerError(LinkError):
    """A place's power could not be switched: names the place and the switch.
    A LinkError: during a run it ends the run as failed, naming it, with
    what was recorded kept (ground/run.py), like a board's port that died."""


class PlacePower:
    """The power of one labgrid place, through labgrid's NetworkPowerDriver."""

    def __init__(self, place: str, port: dict, timeout_s: float = SWITCH_TIMEOUT_S) -> None:
        from labgrid import Target
        from labgrid.driver.powerdriver import NetworkPowerDriver
        from labgrid.resource.power import NetworkPowerPort

        self.place = place
        self.port = dict(port)
        self.timeout_s = timeout_s
        self.where = "place %s's power switch (NetworkPowerPort %s %s, index %s)" % (
            place, self.port.get("model"), self.port.get("host"), self.port.get("index"))
        try:
            self._target = Target("fleetloop-power-%s" % place)
            NetworkPowerPort(self._target, name=None, model=str(self.port["model"]), host=str(self.port["host"]),
                             index=str(self.port.get("index", 0)))  # fmt: skip
            self._driver = NetworkPowerDriver(self._target, name=None)
            self._target.activate(self._driver)
        except Exception as e:  # an unknown model, a host that is not a URL, ...
            raise PowerError("%s: labgrid's NetworkPowerDriver refuses it: %s" % (self.where, e)) from None
        self.switched: list[str] = []  # "off" / "on", in order

    def _call(self, what: str, fn: Any) -> Any:
        out: dict[str, Any] = {}

        def go() -> None:
            try:
                out["value"] = fn()
            except BaseException as e:  # reported below, naming the place
                out["error"] = e

        t = threading.Thread(target=go, name="power-%s" % self.place, daemon=True)
        t.start()
        t.join(self.timeout_s)
        if t.is_alive():
            raise PowerError("%s: switching it %s: no answer within %.0f s" % (self.where, what, self.timeout_s))
        if "error" in out:
            raise PowerError("%s: switching it %s failed: %s" % (self.where, what, out["error"]))
        return out.get("value")

    def off(self) -> None:
        self._call("off", self._driver.off)
        self.switched.append("off")

    def on(self) -> None:
        self._call("on", self._driver.on)
        self.switched.append("on")

    def get(self) -> bool:
        """True while the place's power is on."""
        return bool(self._call("to read", self._driver.get))

    def __repr__(self) -> str:
        return "<PlacePower %s>" % self.where


def place_power(place: str, port: dict | None, timeout_s: float = SWITCH_TIMEOUT_S) -> PlacePower | None:
    """The power of `place` from its NetworkPowerPort's arguments, or None (no power port)."""
    return None if port is None else PlacePower(place, port, timeout_s)


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  (quiet: the tests read `switched`)
        pass

    def _reply(self, code: int, text: str) -> None:
        body = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _outlet(self, parts: list[str]) -> Any:
        if len(parts) < 2 or parts[0] != "power" or not parts[1].isdigit():
            self._reply(404, "expected /power/INDEX[/VALUE]\n")
            return None
        board = self.server.pdu.outlets.get(int(parts[1]))
        if board is None:
            self._reply(404, "no outlet %s (outlets: %s)\n" % (parts[1], sorted(self.server.pdu.outlets)))
        return board

    def _set(self, index: int, board: Any, value: str) -> None:
        if value not in ("0", "1"):
            self._reply(400, "value must be 0 or 1, not %r\n" % value)
            return
        try:
            self.server.pdu.switch(index, board, value == "1")
        except Exception as e:  # the board is stopped, ...: the driver reports the HTTP error
            self._reply(500, "outlet %d: %s\n" % (index, e))
            return
        self._reply(200, value)

    def do_GET(self) -> None:  # noqa: N802  (http.server's name)
        parts = [p for p in self.path.split("?")[0].split("/") if p]
        board = self._outlet(parts)
        if board is None:
            return
        if len(parts) == 2:  # read
            self._reply(200, "0" if board.state in ("off", "stopped") else "1")
        else:
            self._set(int(parts[1]), board, parts[2])

    def do_PUT(self) -> None:  # noqa: N802  (labgrid's `rest` model)
        parts = [p for p in self.path.split("?")[0].split("/") if p]
        board = self._outlet(parts)
        if board is not None:
            n = int(self.headers.get("Content-Length") or 0)
            self._set(int(parts[1]), board, self.rfile.read(min(n, 16)).decode(errors="replace").strip())


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    pdu: "EmulatedPdu"


class EmulatedPdu:
    """An HTTP power switch (labgrid model `simplerest`) whose outlets are
    emulated boards: {index: EmulatedBoard}. See the module's docstring."""

    def __init__(self, outlets: dict[int, Any], host: str = "127.0.0.1") -> None:
        self.outlets = dict(outlets)
        self.host = host
        self.switched: list[tuple[int, str]] = []
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    def start(self) -> "EmulatedPdu":
        self._server = _Server((self.host, 0), _Handler)
        self._server.pdu = self
        port = self._server.server_address[1]
        self.url = "http://%s:%d/power/{index}/{value}" % (self.host, port)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.5},
                                        name="emulated-pdu", daemon=True)  # fmt: skip
        self._thread.start()
        return self

    def switch(self, index: int, board: Any, on: bool) -> None:
        with self._lock:  # one switching at a time, in the order they came
            if on:
                if board.state in ("off",):
                    board.power_on()
            else:
                if board.state not in ("off",):
                    board.power_cut()
            self.switched.append((index, "on" if on else "off"))

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
