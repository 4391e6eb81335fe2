"""Where the engine finds boards: board back-ends, registered by name.

The engine routes frames between links; it does not know how a board is
flashed, booted or found. A back-end does: it turns a scenario into booted
boards for one run (a BoardSet). `ground run --emulated` asks for the
back-end `emulated`, `ground run --rig FILE` for `rig`; the board layer
(hil/, docs/ARCHITECTURE.md) provides both.

    backends.register("emulated", factory)        # factory(scenario, folder, arg) -> BoardSet
    boards = backends.start("emulated", sc, folder, arg)
    try:
        run(sc, out, mode=boards.mode, boards=boards.boards)
    finally:
        boards.stop()

A name is looked up, in order: in what was registered in this process; in
the `[project.entry-points."fleetloop.boards"]` table of the pyproject.toml
beside this package, when the engine runs from a source tree (so a checkout
finds its own back-ends even if the installed metadata is older or another
checkout's); in the `fleetloop.boards` entry points of the installed
packages (a wheel install, or another package's back-ends). A value is
`module:factory`.
"""

import importlib
import os

GROUP = "fleetloop.boards"
_PYPROJECT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pyproject.toml")

_registered = {}  # name -> factory


class BackendError(ValueError):
    """No back-end by that name, or its entry point does not load: bad input
    to `ground run` (exit 2), naming the back-end and where it was looked for."""


class BoardSet:
    """Booted boards for one run, as a back-end hands them to the engine.

    mode: the trace header's mode ("emulated", "rig", "sim"); boards: {node
    id: a board object (.device, and optionally .open_port (port, splitter,
    lines read while it booted), .reset(), .power_cut(), .power_on()) or a
    device path / pyserial URL}, as ground.run.Run takes them, or None for
    in-process nodes. stop() ends them (once; later calls do nothing);
    logs() is {node id: bytes the board printed}, for serial logs.

    update_image(spec) -> bytes, or None: the update image a rollout sends
    these boards (docs/UPDATES.md "A rollout on emulated boards"). spec is
    plain data: {"version": (major, minor), "label", "lineage",
    "test_build", "defects", "key": the fleet key or None}. A back-end that
    can build the real firmware gives `update_images` (spec -> bytes);
    without one it is None and the rollout sends the engine's own image
    (ground/flim.py: version.json only).

    spare_board(nid, board_config, version, label) -> a board, or None: a
    back-end with spare boards (`--emulated N`, N more than the scenario's
    nodes) powers one on for a daughter (docs/CONTAINMENT.md "Daughters on
    boards"): flashed with board.json `board_config` and firmware
    `version`/`label`, booted to its HELLO, its port open (as the boards
    above), and added to `boards`; None when no spare is left. Without
    one, `spare_board` is None and a board run records each daughter as
    not placed."""

    def __init__(self, mode, boards, stop=None, logs=None, update_images=None, spare_board=None):
        self.mode = mode
        self.boards = boards
        self._stop = stop
        self._logs = logs
        self._update_images = update_images
        self.spare_board = spare_board

    def logs(self):
        return self._logs() if self._logs else {}

    def update_image(self, spec):
        return self._update_images(spec) if self._update_images else None

    @property
    def has_update_images(self):
        return self._update_images is not None

    def stop(self):
        if self._stop is not None:
            stop, self._stop = self._stop, None
            stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False


def register(name, factory):
    """Register `factory(scenario, folder, arg) -> BoardSet` as back-end `name`
    (replacing one of that name)."""
    _registered[name] = factory


def names():
    """Every back-end name known: registered, installed and in the source tree's pyproject.toml."""
    return sorted(set(_registered) | set(_entry_points()) | set(_pyproject_entries()))


def get(name):
    """The factory of back-end `name`; BackendError if none is found or it does not load."""
    if name in _registered:
        return _registered[name]
    for where, entries in ((_PYPROJECT, _pyproject_entries()), ("entry point group " + GROUP, _entry_points())):
        if name in entries:
            factory = _load(name, entries[name], where)
            _registered[name] = factory
            return factory
    raise BackendError("no board back-end %r: none registered, none in the installed %s entry points, none in %s"
                       " (known: %s); reinstall fleetloop (pip install -e .) if its back-ends are missing"
                       % (name, GROUP, _PYPROJECT, ", ".join(names()) or "none"))


def start(name, scenario, folder, arg=None):
    """Boot back-end `name`'s boards for `scenario` (work files under `folder`); a BoardSet."""
    return get(name)(scenario, folder, arg)


def _load(name, value, where):
    module, _, attr = value.partition(":")
    try:
        obj = importlib.import_module(module.strip())
        for part in attr.strip().split(".") if attr.strip() else ():
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise BackendError("board back-end %r (%s = %r in %s) does not load: %s" % (name, name, value, where, e)) from e
    if not callable(obj):
        raise BackendError("board back-end %r (%s = %r in %s) is not callable" % (name, name, value, where))
    return obj


def _entry_points():
    from importlib import metadata

    try:
        return {ep.name: ep.value for ep in metadata.entry_points(group=GROUP)}
    except Exception:  # broken metadata of some installed package: look elsewhere
        return {}


def _pyproject_entries():
    if not os.path.exists(_PYPROJECT):
        return {}
    import tomllib

    try:
        with open(_PYPROJECT, "rb") as f:
            data = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise BackendError("%s: cannot read its [project.entry-points.%r] table: %s" % (_PYPROJECT, GROUP, e)) from None
    table = data.get("project", {}).get("entry-points", {}).get(GROUP, {})
    return {k: v for k, v in table.items() if isinstance(v, str)}
