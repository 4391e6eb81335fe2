"""Labgrid places as rig boards: acquire a rig file's `place:` entries through
labgrid's client API, turn each into the RFC2217 URL its exporter's ser2net
serves, and release every one of them again (docs/BOARDS.md, docs/HIL.md).

    python -m hil.labgrid_places hold RIG.yaml -- python -m hil flash {rig}
                                # hold the places for one command, which gets a
                                # copy of the rig with url: entries in their stead

    places = Places(rig)        # rig: a hil.rigfile.Rig with place entries
    urls = places.acquire()     # {board name: "rfc2217://host:port?ign_set_control"}; RigError naming the place
    ...                         # the boards are url boards from here on
    places.power                # {board name: PlacePower}: places with a power port (hil/labgrid_power.py)
    places.lost()               # ["board b3 (labgrid place p3, ...): its exporter hostB went away", ...]
    places.release()            # also at exit, on SIGTERM (as SystemExit), idempotent

A lab's boards sit on several hosts; each host runs a labgrid exporter that
serves its boards' serial ports through ser2net (RawSerialPort/USBSerialPort
resources, published as NetworkSerialPort), and one labgrid coordinator knows
every exporter and every place. A place is a named set of resource matches;
acquiring it is the lab's reservation. FileRig (hil/rig.py) acquires its
rig's places before the first run and releases them in close(), which
`ground run --rig` and the pytest plugin call on success, failure and Ctrl-C.

Every failure is a RigError (a ConfigError: `ground run` exits 2) that names
the place, the board and its rig line, and the coordinator; when one place
cannot be had, the places already acquired are released before it is raised.
Every call to the coordinator has a timeout (a coordinator that accepts the
connection and never answers is reported like one that refuses it).

labgrid's client is asyncio/gRPC; its loop runs on one daemon thread of this
module, so acquire() and release() can be called from any thread, from an
atexit hook or a signal handler.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import signal
import sys
import threading
from typing import Any

from hil.rigfile import RigBoard, RigError

COORDINATOR_TIMEOUT_S = 10.0  # connecting to the coordinator, and each request after that
DEFAULT_PORT = 20408  # labgrid's coordinator port
ENV_COORDINATOR = "LG_COORDINATOR"  # what labgrid-client reads too


def available() -> str | None:
    """None when labgrid's client can be imported; else why not (for skips and errors)."""
    # gRPC's fork handlers print a line at every fork while its threads run
    # (and the harness forks mpremote and micropython): it does not need them
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
    try:
        import labgrid.remote.client  # noqa: F401
    except ImportError as e:
        return "labgrid is not installed (pip install labgrid==26.0.1): %s" % e
    return None


def coordinator_of(board: RigBoard) -> str:
    """HOST:PORT of the board's coordinator: its entry's (or rig's)
    `coordinator:`, else $LG_COORDINATOR. RigError when neither says."""
    address = board.coordinator or os.environ.get(ENV_COORDINATOR)
    if not address:
        raise RigError("%s: board %s is labgrid place %s but names no coordinator: add `coordinator: HOST:PORT` "
                       "to the entry or the rig, or set %s" % (board.where, board.name, board.place, ENV_COORDINATOR))
    return address if ":" in address else "%s:%d" % (address, DEFAULT_PORT)


class _QuietClient(logging.Filter):
    """labgrid's client logs to the root logger what this module turns into
    its own one-line errors ("coordinator is unavailable", the traceback of
    its message pump): those records are dropped while places are in use."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.pathname.replace(os.sep, "/").endswith("labgrid/remote/client.py")


_QUIET = _QuietClient()


class _Loop:
    """An asyncio loop on a daemon thread: run(coro, timeout_s) from any thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="labgrid-client", daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout_s: float) -> Any:
        fut = asyncio.run_coroutine_threadsafe(asyncio.wait_for(coro, timeout_s), self.loop)
        try:
            return fut.result(timeout_s + 5.0)  # wait_for cancels first; this is the backstop
        except (asyncio.TimeoutError, TimeoutError):
            fut.cancel()
            raise TimeoutError("no answer within %.0f s" % timeout_s) from None

    def stop(self) -> None:
        # as asyncio.run ends a loop: first cancel what still runs on it (gRPC's calls of a session
        # whose exporter went away), so no pending task is destroyed with the loop ("Task was
        # destroyed but it is pending!" on stderr after the run's one-line error)
        try:
            asyncio.run_coroutine_threadsafe(asyncio.wait_for(_cancel_the_rest(), 2.0), self.loop).result(3.0)
        except Exception:  # a loop that no longer answers: stopped below all the same
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5.0)
        if not self.thread.is_alive():
            self.loop.close()


async def _cancel_the_rest() -> None:
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class Coordinator:
    """One client session with one labgrid coordinator (labgrid.remote.client.ClientSession)."""

    def __init__(self, address: str, loop: _Loop, timeout_s: float = COORDINATOR_TIMEOUT_S) -> None:
        self.address = address
        self.loop = loop
        self.timeout_s = timeout_s
        self.session: Any = None

    def connect(self) -> None:
        """Start the session: the coordinator's places and resources arrive. RuntimeError why not."""
        from labgrid.remote import client

        async def start() -> Any:
            s = client.ClientSession(self.address, asyncio.get_running_loop())
            try:
                await s.start()
            except BaseException:
                await _quietly(s.stop(), s.close())
                raise
            return s

        try:
            self.session = self.loop.run(start(), self.timeout_s)
        except TimeoutError as e:
            raise RuntimeError("coordinator %s: %s" % (self.address, e)) from None
        except client.Error as e:  # ServerError("Could not connect to coordinator")
            raise RuntimeError("coordinator %s does not answer (%s)" % (self.address, e)) from None

    def places(self) -> dict:
        return self.session.places

    def acquire(self, name: str) -> str:
        """Acquire place `name` and return its serial port's pyserial URL.
        RuntimeError naming what is wrong (no such place, taken, its resources
        not exported or not available); the place is not left acquired by us."""
        from labgrid.remote.generated import labgrid_coordinator_pb2 as pb2

        s = self.session
        place = s.places.get(name)
        if place is None:
            raise RuntimeError("no place %r on coordinator %s (its places: %s)"
                               % (name, self.address, ", ".join(sorted(s.places)) or "none"))
        if place.acquired:
            raise RuntimeError("place %s is taken: acquired by %s (coordinator %s)"
                               % (name, place.acquired, self.address))
        exported = [(e, g, r.cls, n) for e, groups in s.resources.items() for g, group in groups.items()
                    for n, r in group.items() if "cls" in r.data]  # fmt: skip
        missing = place.unmatched(exported)
        if missing is not None:
            raise RuntimeError("place %s: no exporter offers %s (is its exporter running? coordinator %s)"
                               % (name, missing, self.address))
        for path in exported:
            res = s.resources[path[0]][path[1]][path[3]]
            if place.hasmatch(path) and not res.avail:
                raise RuntimeError("place %s: resource %s is not available on exporter %s"
                                   % (name, "/".join(path), path[0]))

        async def take() -> None:
            await s.stub.AcquirePlace(pb2.AcquirePlaceRequest(placename=name))
            await s.sync_with_coordinator()

        self._call(take(), "acquiring place %s" % name)
        try:
            return self._call(self._wait_url(name), "place %s: waiting for its exporter to serve it" % name)
        except BaseException:
            self.release(name)
            raise

    async def _wait_url(self, name: str) -> str:
        """The place's URL once its exporter says it serves it for the place:
        ser2net starts on acquire, and the resource's new port may arrive after
        the coordinator's answer (the run's timeout bounds the wait)."""
        while True:
            url = self._url(name)
            if url:
                return url
            await asyncio.sleep(0.05)

    def _url(self, name: str) -> str | None:
        """The place's serial port URL, None while its exporter has not yet
        published it as acquired for this place; RuntimeError if it cannot be."""
        s = self.session
        place = s.places[name]
        ports = []
        for exporter, group, cls, rname in place.acquired_resources:
            res = s.resources.get(exporter, {}).get(group, {}).get(rname)
            if res is None:
                raise RuntimeError("place %s: exporter %s went away (resource %s/%s)" % (name, exporter, group, rname))
            if res.cls == "NetworkSerialPort":
                ports.append((exporter, res))
        if len(ports) != 1:
            raise RuntimeError("place %s: expected one serial port (NetworkSerialPort), it has %d: %s"
                               % (name, len(ports), ", ".join(sorted(c for _, _, c, _ in place.acquired_resources))))
        exporter, res = ports[0]
        if not res.avail:
            raise RuntimeError("place %s: the serial port on exporter %s is not available" % (name, exporter))
        args = res.args
        if res.acquired != name or not args.get("port"):
            return None
        scheme = "socket" if args.get("protocol") == "raw" else "rfc2217"
        # ser2net does not answer RFC2217 SET_CONTROL for every port (a pty has no
        # modem lines): labgrid's own SerialDriver opens its ports this way too
        query = "?ign_set_control" if scheme == "rfc2217" else ""
        return "%s://%s:%d%s" % (scheme, args["host"], int(args["port"]), query)

    def power_port(self, name: str) -> dict | None:
        """The arguments (model, host, index) of place `name`'s NetworkPowerPort,
        among its acquired resources, or None if it has none (hil/labgrid_power.py)."""
        s = self.session
        for exporter, group, cls, rname in s.places[name].acquired_resources:
            res = s.resources.get(exporter, {}).get(group, {}).get(rname)
            if res is not None and res.cls == "NetworkPowerPort":
                return dict(res.args)
        return None

    def lost(self, name: str) -> str | None:
        """Why place `name`, acquired by us, cannot be used any more (its
        exporter went away, its port became unavailable, it was taken from
        us, the coordinator is gone), or None while it is fine."""

        async def look() -> str | None:
            s = self.session
            if s.stopping.is_set():
                return "coordinator %s went away" % self.address
            place = s.places.get(name)
            if place is None:
                return "the place was deleted"
            if not place.acquired:
                return "the place was released by someone else"
            for exporter, group, cls, rname in place.acquired_resources:
                res = s.resources.get(exporter, {}).get(group, {}).get(rname)
                if res is None or "cls" not in res.data:
                    return "its exporter %s went away (resource %s/%s/%s)" % (exporter, exporter, group, cls)
                if not res.avail:
                    return "its resource %s/%s/%s became unavailable" % (exporter, group, cls)
            return None

        try:
            return self.loop.run(look(), self.timeout_s)
        except TimeoutError as e:
            return "coordinator %s: %s" % (self.address, e)

    def release(self, name: str) -> None:
        """Release place `name` (ours); RuntimeError if the coordinator refuses or does not answer."""
        from labgrid.remote.generated import labgrid_coordinator_pb2 as pb2

        s = self.session

        async def give_back() -> None:
            await s.stub.ReleasePlace(pb2.ReleasePlaceRequest(placename=name))
            await s.sync_with_coordinator()

        self._call(give_back(), "releasing place %s" % name)

    def close(self) -> None:
        if self.session is not None:
            try:
                self.loop.run(_quietly(self.session.stop(), self.session.close()), self.timeout_s)
            except Exception:
                pass
            self.session = None

    def _call(self, coro: Any, what: str) -> Any:
        import grpc

        try:
            return self.loop.run(coro, self.timeout_s)
        except grpc.aio.AioRpcError as e:
            raise RuntimeError("%s: coordinator %s refused: %s" % (what, self.address, e.details())) from None
        except TimeoutError as e:
            raise RuntimeError("%s: coordinator %s: %s" % (what, self.address, e)) from None


async def _quietly(*coros: Any) -> None:
    for c in coros:
        try:
            await c
        except BaseException:
            pass


class Places:
    """The labgrid places of one rig: acquire() them all or none, release() them all."""

    def __init__(self, rig: Any, timeout_s: float = COORDINATOR_TIMEOUT_S) -> None:
        self.rig = rig
        self.timeout_s = timeout_s
        self.boards = [b for b in rig.boards + list(getattr(rig, "spares", ())) if b.place]
        self.held: list[tuple[RigBoard, str, Coordinator]] = []  # (board, place, its coordinator) acquired, in order
        self.power: dict[str, Any] = {}  # board name -> hil.labgrid_power.PlacePower of its place's power port
        self._coordinators: dict[str, Coordinator] = {}
        self._loop: _Loop | None = None
        self._old_sigterm: Any = None
        self._lock = threading.Lock()

    def acquire(self) -> dict[str, str]:
        """{board name: URL} for every place entry, all acquired; RigError
        naming the place (and nothing left acquired) if one cannot be."""
        if not self.boards:
            return {}
        why = available()
        if why:
            b = self.boards[0]
            raise RigError("%s: board %s is labgrid place %s: %s" % (b.where, b.name, b.place, why))
        urls = {}
        atexit.register(self.release)
        logging.getLogger().addFilter(_QUIET)
        self._catch_sigterm()
        try:
            for b in self.boards:
                address, place = coordinator_of(b), str(b.place)
                try:
                    c = self._coordinator(address)
                    urls[b.name] = c.acquire(place)
                except RuntimeError as e:
                    raise RigError("%s: board %s (labgrid place %s, coordinator %s): %s"
                                   % (b.where, b.name, b.place, address, e)) from None
                self.held.append((b, place, c))
                self._power_of(b, place, c)
        except BaseException:
            self.release()
            raise
        return urls

    def lost(self) -> list[str]:
        """One line per held place that cannot be used any more (its exporter
        went away during the run, ...), naming the board and the place."""
        return ["board %s (labgrid place %s, coordinator %s): %s" % (b.name, place, c.address, why)
                for b, place, c in self.held for why in [c.lost(place)] if why]  # fmt: skip

    def _power_of(self, b: RigBoard, place: str, c: Coordinator) -> None:
        """The power switch of a held place (its NetworkPowerPort), into
        self.power; RigError when the entry says power_control and the place
        has no power port, or labgrid cannot drive the one it has."""
        from hil.labgrid_power import PowerError, place_power

        try:
            power = place_power(place, c.power_port(place), self.timeout_s)
        except PowerError as e:
            raise RigError("%s: board %s: %s" % (b.where, b.name, e)) from None
        if power is not None:
            self.power[b.name] = power
        elif "power_control" in b.features:
            raise RigError("%s: board %s says power_control, but labgrid place %s (coordinator %s) has no power "
                           "port: add its NetworkPowerPort to the place (labgrid-client -p %s add-match "
                           "EXPORTER/GROUP/NetworkPowerPort)" % (b.where, b.name, place, c.address, place))

    def _coordinator(self, address: str) -> Coordinator:
        c = self._coordinators.get(address)
        if c is None:
            if self._loop is None:
                self._loop = _Loop()
            c = Coordinator(address, self._loop, self.timeout_s)
            c.connect()
            self._coordinators[address] = c
        return c

    def release(self) -> list[str]:
        """Release every place acquire() took (each once) and end the sessions.
        A place that cannot be released is reported on stderr, with the command
        that releases it by hand; returns those messages."""
        problems = []
        with self._lock:
            held, self.held = self.held, []
            self.power = {}
            for b, place, c in reversed(held):
                try:
                    c.release(place)
                except Exception as e:
                    msg = ("board %s: could not release labgrid place %s: %s; release it with "
                           "`labgrid-client -x %s -p %s release`" % (b.name, place, e, c.address, place))
                    problems.append(msg)
                    print("hil: " + msg, file=sys.stderr)
            for c in self._coordinators.values():
                c.close()
            self._coordinators = {}
            if self._loop is not None:
                self._loop.stop()
                self._loop = None
            self._restore_sigterm()
            logging.getLogger().removeFilter(_QUIET)
        atexit.unregister(self.release)
        return problems

    # SIGTERM (a CI job cancelled, `timeout`) would end the process without
    # unwinding: while places are held it raises SystemExit instead, so the
    # run's finally blocks and FileRig.close release them. Only a default
    # handler in the main thread is replaced, and it is put back on release.
    def _catch_sigterm(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            self._old_sigterm = signal.signal(signal.SIGTERM, _sigterm_exit)

    def _restore_sigterm(self) -> None:
        if self._old_sigterm is not None and threading.current_thread() is threading.main_thread():
            if signal.getsignal(signal.SIGTERM) is _sigterm_exit:
                signal.signal(signal.SIGTERM, self._old_sigterm)
            self._old_sigterm = None


def _sigterm_exit(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


# ---- `python -m hil.labgrid_places hold RIG -- COMMAND` ----------------------------------------


def held_rig(path: str, urls: dict[str, str]) -> str:
    """Write a copy of rig file `path` beside it (board kinds and emulated_dir
    resolve alike) whose place entries are `url:` entries; return its path."""
    import yaml

    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f)
    data.pop("coordinator", None)
    for entry in data["boards"]:
        if entry.get("name") in urls:
            entry.pop("place", None)
            entry.pop("coordinator", None)
            entry["url"] = urls[entry["name"]]
    folder, name = os.path.split(os.path.abspath(path))
    out = os.path.join(folder, ".%s.held-%d.yaml" % (os.path.splitext(name)[0], os.getpid()))
    with open(out, "w", encoding="utf-8") as f:
        f.write("# %s with its labgrid places held by pid %d (hil.labgrid_places hold); removed after\n" % (name, os.getpid()))
        yaml.safe_dump(data, f, sort_keys=False)
    return out


def main(argv: list[str] | None = None) -> int:
    """hold RIG -- COMMAND: acquire RIG's places, run COMMAND with {rig} replaced by
    a copy of RIG whose places are url: entries, release; COMMAND's exit status."""
    import argparse
    import subprocess

    from ground import exitcodes
    from hil import rigfile

    p = argparse.ArgumentParser(prog="python -m hil.labgrid_places", description="hold a rig's labgrid places while a command runs")
    sub = p.add_subparsers(dest="verb", required=True)
    h = sub.add_parser("hold", help="hold a rig's labgrid places while a command runs (e.g. hil flash {rig})")
    h.add_argument("rig", help="a rig file with place: entries")
    h.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ARGS...; {rig} is the held copy's path")
    args = p.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        p.error("hold: give the command after --")

    def run(args_: Any) -> int:
        rig = rigfile.load(exitcodes.readable(args.rig))
        places = Places(rig)
        urls = places.acquire()
        copy = None
        try:
            copy = held_rig(args.rig, urls)
            print("hil.labgrid_places: holding %s for: %s" % (", ".join("%s (%s)" % (b.place, b.name) for b in places.boards),
                                                               " ".join(command)), file=sys.stderr)
            return subprocess.call([copy if a == "{rig}" else a.replace("{rig}", copy) for a in command])
        finally:
            if copy:
                os.remove(copy)
            places.release()

    return exitcodes.main_wrapper("hil.labgrid_places", run, args)


if __name__ == "__main__":
    sys.exit(main())
