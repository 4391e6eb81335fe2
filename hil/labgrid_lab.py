"""A labgrid lab on this machine: a coordinator on loopback and one exporter
per "host", each serving serial ports (emulated boards' ptys) through ser2net,
and a place per board. For tests, the bench and trying a labgrid rig without
a lab (docs/HIL.md); a real lab runs the same three programs on its hosts.

    lab = LocalLab(folder).start()                       # labgrid-coordinator on 127.0.0.1:<free port>
    lab.add_exporter("hostA", {"pico-1": "/dev/pts/5"})  # labgrid-exporter: RawSerialPort per board, via ser2net
    lab.add_place("pico-1", "hostA", "pico-1")           # labgrid-client create + add-match
    lab.add_exporter("hostB", {"pico-2": tty}, power={"pico-2": (pdu.url, 0)})  # and a NetworkPowerPort
    lab.add_place("pico-2", "hostB", "pico-2", power=True)   # the place matches its power port too
    lab.address                                          # what a rig file's `coordinator:` says
    lab.stop()                                           # every process it started

Real parts throughout: labgrid's own programs from the venv, Debian's
ser2net (which labgrid-exporter starts per port). Every wait has a deadline
and an error that names the program and its log file.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time

START_TIMEOUT_S = 30.0  # a coordinator listening, an exporter's resources published


def missing() -> str | None:
    """Why a local lab cannot run here (labgrid or ser2net absent), or None."""
    from hil.labgrid_places import available

    why = available()
    if why:
        return why
    if not (shutil.which("ser2net") or os.path.exists("/usr/sbin/ser2net")):
        return "ser2net is not installed (Debian: apt-get install ser2net)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tool(name: str) -> str:
    path = os.path.join(os.path.dirname(sys.executable), name)
    return path if os.path.exists(path) else name


class LocalLab:
    """A coordinator, exporters and places on loopback; stop() ends every process it started."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = os.fspath(folder)
        self.port = 0
        self.address = ""
        self.procs: dict[str, subprocess.Popen] = {}  # "coordinator", "exporter hostA", ...
        self.exporters: dict[str, dict[str, str]] = {}  # exporter name -> {group: device}

    def __enter__(self) -> "LocalLab":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _spawn(self, key: str, cmd: list[str], log_name: str) -> subprocess.Popen:
        os.makedirs(self.folder, exist_ok=True)
        log = open(os.path.join(self.folder, log_name), "wb")
        try:
            p = subprocess.Popen(cmd, cwd=self.folder, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        finally:
            log.close()
        self.procs[key] = p
        return p

    def _log(self, name: str) -> str:
        try:
            with open(os.path.join(self.folder, name), "rb") as f:
                return f.read()[-600:].decode(errors="replace")
        except OSError:
            return ""

    def start(self) -> "LocalLab":
        """Start labgrid-coordinator on a free loopback port; wait until it listens."""
        for stale in ("places.yaml", "reservations.yaml"):  # a coordinator keeps its state in its folder
            if os.path.exists(os.path.join(self.folder, stale)):
                os.remove(os.path.join(self.folder, stale))
        self.port = free_port()
        self.address = "127.0.0.1:%d" % self.port
        p = self._spawn("coordinator", [_tool("labgrid-coordinator"), "-l", self.address], "coordinator.log")
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if p.poll() is not None:
                self.stop()
                raise RuntimeError("labgrid-coordinator exited (%s): %s" % (p.returncode, self._log("coordinator.log")))
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1.0).close()
                return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("labgrid-coordinator: not listening on %s within %.0f s" % (self.address, START_TIMEOUT_S))
            time.sleep(0.1)

    def add_exporter(self, name: str, ports: dict[str, str], speed: int = 115200,
                     power: dict[str, tuple[str, int]] | None = None) -> None:  # fmt: skip
        """Start labgrid-exporter `name` serving each {group: device} as a
        RawSerialPort (ser2net, RFC2217) on 127.0.0.1, and for each {group:
        (URL, index)} of `power` a NetworkPowerPort (model simplerest: a
        hil.labgrid_power.EmulatedPdu's url); wait until the coordinator lists them all."""
        cfg = os.path.join(self.folder, "exporter-%s.yaml" % name)
        power = power or {}
        with open(cfg, "w") as f:
            for group, device in ports.items():
                # ser2net gets the device itself: labgrid wants /dev/..., not a link to it
                f.write("%s:\n  RawSerialPort:\n    port: %s\n    speed: %d\n" % (group, os.path.realpath(device), speed))
                if group in power:
                    url, index = power[group]
                    f.write("  NetworkPowerPort:\n    model: simplerest\n    host: '%s'\n    index: %d\n" % (url, index))
        self._spawn("exporter " + name, [_tool("labgrid-exporter"), "-c", self.address, "-n", name,
                                         "--hostname", "127.0.0.1", cfg], "exporter-%s.log" % name)  # fmt: skip
        self.exporters[name] = dict(ports)
        want = {"%s/%s/NetworkSerialPort" % (name, g) for g in ports}
        want |= {"%s/%s/NetworkPowerPort" % (name, g) for g in power if g in ports}
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            p = self.procs["exporter " + name]
            if p.poll() is not None:
                raise RuntimeError("labgrid-exporter %s exited (%s): %s" % (name, p.returncode,
                                                                            self._log("exporter-%s.log" % name)))
            have = set(self.client("resources").split())
            if want <= have:
                return
            if time.monotonic() > deadline:
                raise RuntimeError("labgrid-exporter %s: %s not published within %.0f s; log: %s"
                                   % (name, ", ".join(sorted(want - have)), START_TIMEOUT_S,
                                      self._log("exporter-%s.log" % name)))  # fmt: skip
            time.sleep(0.3)

    def stop_exporter(self, name: str) -> None:
        """End exporter `name` (SIGTERM, then SIGKILL): its host goes away."""
        p = self.procs.pop("exporter " + name, None)
        if p is not None:
            _end(p)

    def add_place(self, place: str, exporter: str, group: str, power: bool = False) -> None:
        """Create `place` matching exporter/group's serial port (and its power port)."""
        self.client("-p", place, "create")
        self.client("-p", place, "add-match", "%s/%s/NetworkSerialPort" % (exporter, group))
        if power:
            self.client("-p", place, "add-match", "%s/%s/NetworkPowerPort" % (exporter, group))

    def client(self, *args: str, check: bool = True, user: str | None = None) -> str:
        """Run labgrid-client against this coordinator; its stdout. user: act
        as another lab user (LG_USERNAME), e.g. to take a place away."""
        env = dict(os.environ)
        if user:
            env["LG_USERNAME"] = user
        p = subprocess.run([_tool("labgrid-client"), "-x", self.address, *args], capture_output=True, text=True,
                           timeout=START_TIMEOUT_S, env=env)  # fmt: skip
        if check and p.returncode:
            raise RuntimeError("labgrid-client %s: %s" % (" ".join(args), (p.stderr or p.stdout).strip()))
        return p.stdout

    def acquired(self) -> dict[str, str]:
        """{place: acquired-by (HOST/USER)} for every acquired place (labgrid-client places, show)."""
        out = {}
        for place in self.client("places").split():
            for line in self.client("-p", place, "show").splitlines():
                line = line.strip()
                if line.startswith("acquired:") and line.split(":", 1)[1].strip() not in ("", "None"):
                    out[place] = line.split(":", 1)[1].strip()
        return out

    def stop(self) -> None:
        for key in sorted(self.procs, key=lambda k: k == "coordinator"):  # exporters first
            _end(self.procs.pop(key))


def _end(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(10.0)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5.0)
