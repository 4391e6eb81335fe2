"""Putting firmware on boards.

Two ways, one layout (docs/BOARD_SHELL.md: boot.py, main.py, node/, runtime/,
version.json, board.json):

  - `write_image(folder, ...)` lays the image out in a folder exactly as it
    must appear on a board's flash. An emulated board's folder *is* its
    flash, so hil/emulated_run.py flashes emulated boards this way.
  - `flash_rig(rig, ...)` (``hil flash RIG.yaml``) deploys to the boards of a
    rig, real or emulated, through stock mpremote: one worker process per
    board (``python -m hil.flash_worker``), all boards in parallel, each
    worker running mpremote as a subprocess per step, every step with a
    timeout. Per board:

        survey   mpremote exec: sha256 of every image file on the board, the
                 managed folders' listings, files staged earlier, an
                 interrupted commit's journal, version.json
        plan     (pure, `plan()`): copy what differs, reuse what an earlier
                 run staged intact, remove stale files (node/x.py would
                 shadow node/x.mpy)
        stage    mpremote fs cp: each file that differs to .flash/<path>; the
                 firmware in place is not touched
        commit   mpremote exec: check every staged file's sha256, write the
                 journal flash.todo, rename the staged files into place
                 (node/ and runtime/ first, then the removals, version.json,
                 board.json, boot.py, main.py last), delete the journal
        reset    soft (Ctrl-D at the friendly REPL, port held open) or hard
                 (mpremote reset, port held open); see docs/FLASHING.md
        hello    read frames until the node's HELLO: node id, cluster,
                 lineage and firmware version must be the ones flashed

    An interrupted flash leaves the previous firmware whole (cut before the
    commit: only .flash/ has changed) or a journal naming exactly the files
    not yet in place (cut inside the commit's renames); `check_rig()` /
    ``hil flash --check`` reports both, and the next flash finishes the job,
    reusing what was staged. docs/FLASHING.md has the details.

The plan and the board-side scripts are pure functions of their inputs, so
they are tested without boards; the worker is the only part that does I/O.

This module runs the workers (one per board, in parallel) and is the
flashing API; its parts are hil/image.py (the image), hil/flash_plan.py (the
plan, scripts and results) and hil/flash_worker.py (one board), whose names
are imported here too (flash.write_image, flash.plan, flash.read_hello, ...).
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from typing import Any, Callable

from hil.flash_plan import (  # noqa: F401  (the flashing API)
    JOURNAL, STAGE_DIR, BoardResult, Plan, check_text, commit_script, commit_steps, interrupted_commit, plan,
    stage_prep_script, survey_script,
)
from hil.flash_worker import (  # noqa: F401
    CALL_TIMEOUT_S, HELLO_TIMEOUT_S, REPL_TIMEOUT_S, STAGE_FILE_TIMEOUT_S, mpremote_command, read_hello,
    splitter_tail, wait_hello_frame,
)
from hil.image import (  # noqa: F401
    CODE_LAYOUTS, CONFIG_FILES, EMU_ROM_IMAGE, ENTRY_POINTS, FIRMWARE, ROOT, FlashError, ImageFile, board_json, build,
    build_once, extra_file, image_files, in_rom, managed_dirs, mpy_cross_command, romfs_for, romfs_image,
    version_json, write_image,
)


# -- the parent: every board of a rig in parallel ----------------------------------------


class Progress:
    """One line per board, updated in place on a terminal; on anything else,
    one line per change of phase (a log stays readable)."""

    def __init__(self, names: list[str], stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.names = names
        self.lines = {n: "waiting" for n in names}
        self.phases: dict[str, str] = {}
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.width = max((len(n) for n in names), default=4)
        self.drawn = 0

    def __call__(self, name: str, phase: str, text: str = "") -> None:
        self.lines[name] = ("%-6s %s" % (phase, text)).rstrip()
        if self.tty:
            self._draw()
        elif self.phases.get(name) != phase:
            self.phases[name] = phase
            self.stream.write("%-*s  %s\n" % (self.width, name, self.lines[name]))
            self.stream.flush()

    def _draw(self) -> None:
        cols = shutil.get_terminal_size((100, 20)).columns
        out = "\x1b[%dA" % self.drawn if self.drawn else ""
        for n in self.names:
            out += "\x1b[2K%s\n" % ("%-*s  %s" % (self.width, n, self.lines[n]))[: cols - 1]
        self.drawn = len(self.names)
        self.stream.write(out)
        self.stream.flush()


def _job_budget_s(job: dict) -> float:
    n = len(job["files"])
    c = job.get("call_timeout_s", CALL_TIMEOUT_S)
    return 4 * c + STAGE_FILE_TIMEOUT_S * n + job.get("hello_timeout_s", HELLO_TIMEOUT_S) + REPL_TIMEOUT_S + 30


def run_jobs(jobs: list[dict], progress: Callable[[str, str, str], None] | None = None) -> list[BoardResult]:
    """Run one worker process per job, all at once; results in job order.
    Each worker is killed (with its mpremote) if it outlives its budget."""
    results: dict[str, BoardResult] = {}
    procs: dict[str, subprocess.Popen] = {}
    sel = selectors.DefaultSelector()
    bufs: dict[str, bytearray] = {}
    errs: dict[str, Any] = {}
    deadlines: dict[str, float] = {}
    try:
        for job in jobs:
            name = job["name"]
            err = tempfile.TemporaryFile()
            errs[name] = err
            p = subprocess.Popen([sys.executable, "-m", "hil.flash_worker", "--worker"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=err, cwd=ROOT, start_new_session=True)  # fmt: skip
            procs[name] = p
            assert p.stdin is not None and p.stdout is not None
            p.stdin.write(json.dumps(job).encode())
            p.stdin.close()
            bufs[name] = bytearray()
            deadlines[name] = time.monotonic() + _job_budget_s(job)
            sel.register(p.stdout, selectors.EVENT_READ, name)
            if progress:
                progress(name, "start", "")
        running = set(procs)

        def finish(name: str) -> None:
            running.discard(name)
            stdout = procs[name].stdout
            try:
                if stdout is not None:
                    sel.unregister(stdout)
            except (KeyError, ValueError):
                pass
            if progress:
                r = results[name]
                progress(name, "done" if r.ok else "failed", r.summary() if r.ok else (r.error or ""))

        while running:
            now = time.monotonic()
            for name in sorted(running):
                if now >= deadlines[name]:
                    _kill_group(procs[name])
                    results[name] = _failed(jobs, name, "no result within %.0f s: worker killed"
                                            % _job_budget_s(_job(jobs, name)))  # fmt: skip
                    finish(name)
            if not running:
                break
            left = min(deadlines[n] for n in running) - time.monotonic()
            for key, _ in sel.select(max(0.05, min(left, 1.0))):
                name = key.data
                chunk = os.read(key.fd, 65536)
                if chunk:
                    buf = bufs[name]
                    buf += chunk
                    while b"\n" in buf:
                        raw, _, rest = bytes(buf).partition(b"\n")
                        buf[:] = rest
                        try:
                            msg = json.loads(raw)
                        except ValueError:
                            continue
                        if "result" in msg:
                            results[name] = BoardResult(**msg["result"])
                        elif progress:
                            progress(name, msg.get("phase", "?"), msg.get("text", ""))
                    continue
                try:
                    code = procs[name].wait(10)
                except subprocess.TimeoutExpired:
                    _kill_group(procs[name])
                    code = procs[name].wait()
                if name not in results:
                    errs[name].seek(0)
                    stderr = errs[name].read().decode(errors="replace").strip()
                    how = "killed by signal %d" % -code if code < 0 else "exit %d" % code
                    results[name] = _failed(jobs, name, "flash worker ended without a result (%s)%s"
                                            % (how, ": " + stderr[-400:] if stderr else ""))  # fmt: skip
                finish(name)
    finally:
        sel.close()
        for p in procs.values():
            if p.poll() is None:
                _kill_group(p)
            if p.stdout:
                p.stdout.close()
        for e in errs.values():
            e.close()
    return [results[j["name"]] for j in jobs]


def _job(jobs: list[dict], name: str) -> dict:
    return next(j for j in jobs if j["name"] == name)


def _failed(jobs: list[dict], name: str, error: str) -> BoardResult:
    j = _job(jobs, name)
    return BoardResult(name, j["node_id"], j["port"], ok=False,
                       error="board %s (node %d, %s): %s" % (name, j["node_id"], j["port"], error))  # fmt: skip


def _kill_group(p: subprocess.Popen) -> None:
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        pass


def flash_board_json(cfg: dict) -> dict:
    """The board.json a flash writes: the rig's, except that a board on
    transport udp is flashed on usb (without `ground` and `wifi`), since the
    flash reads its HELLO on the serial port; `ground run --rig` and the
    pytest plugin write its udp board.json, with the run's hub address and
    the Wi-Fi password, before each run (hil/rig_udp.py)."""
    if cfg.get("transport") != "udp":
        return cfg
    out = {k: v for k, v in cfg.items() if k not in ("ground", "wifi")}
    out["transport"] = "usb"
    return out


def flash_rig(rig: Any, version: tuple[int, int] | None = None, label: str | None = None,
              only: list[str] | None = None, progress: Callable[[str, str, str], None] | None = None,
              check_only: bool = False, firmware: str = FIRMWARE, call_timeout_s: float = CALL_TIMEOUT_S,
              hello_timeout_s: float = HELLO_TIMEOUT_S, faults: dict[str, str] | None = None,
              code: str | None = None) -> list[BoardResult]:  # fmt: skip
    """Flash the rig's boards (or those named in `only`) in parallel, one
    worker process per board, and wait for each board's HELLO.

    version: (major, minor) for every board flashed; None: each board's
    `version` in the rig, else the rig's, else 1.0. label: version.json's
    label (default "MAJOR.MINOR"). Emulated boards must be running
    (Rig.start_emulated) or served by `hil emulate` at their links.
    check_only: only survey each board and report (BoardResult.check).
    code: the layout, "romfs" or "files" (None: each board's `code` in the
    rig, romfs unless it says files): romfs deploys the compiled modules as
    a ROMFS image into the board's ROM partition (`mpremote romfs deploy`),
    falling back to files, with a note, on a MicroPython without ROMFS;
    files puts them on flash and erases a ROMFS image the partition holds.
    faults: {board name: "kill-stage:N" | "cut-commit:N"}, for tests only.
    Returns one BoardResult per board, in rig order; never raises for a
    board's failure (ConfigError for a bad `only` name)."""
    from hil import boards as boards_mod

    chosen = [rig.board(n) for n in only] if only else list(rig.boards)
    chosen = [b for b in rig.boards if b in chosen]  # rig order
    ports = boards_mod.attached() if any(b.serial for b in chosen) else []
    results: dict[str, BoardResult] = {}
    jobs = []
    build_root = tempfile.mkdtemp(prefix="fleetloop-flash-")
    try:
        images: dict[tuple, list[ImageFile]] = {}
        roms: dict[tuple, ImageFile] = {}
        for b in chosen:
            try:
                port = rig.port(b, ports)
                data_port = rig.data_port(b, ports)
            except Exception as e:  # RigError: not attached / not running
                results[b.name] = BoardResult(b.name, b.node_id, None, ok=False, error=str(e))
                if progress:
                    progress(b.name, "failed", str(e))
                continue
            kind = rig.kind_of(b)
            key = (kind.mpy, kind.mpy_march)
            if key not in images:
                if progress:
                    progress(b.name, "build", "mpy-cross%s" % (" -march=" + kind.mpy_march if kind.mpy_march else "") if kind.mpy else ".py")
                images[key] = build(os.path.join(build_root, "image-%d" % len(images)), kind.mpy, kind.mpy_march, firmware)
            layout = code or getattr(b, "code", "romfs")
            rom = None
            if layout == "romfs" and kind.mpy:  # a ROM of .py sources would save nothing: files
                if key not in roms:
                    path = romfs_image(images[key], os.path.join(build_root, "image-%d.romfs" % len(roms)))
                    roms[key] = ImageFile("<ROMFS0>", path, _sha256_of(path), os.path.getsize(path))
                rom = roms[key]
            v, lab = _version_for(rig, b, version, label)
            bdir = os.path.join(build_root, "board-" + b.name)
            files = list(images[key]) + [
                extra_file(bdir, "version.json", version_json(v, lab)),
                extra_file(bdir, "board.json", board_json(flash_board_json(rig.board_json(b, secrets=False)))),
            ]
            total = sum(f.size for f in files)
            if kind.fs_bytes and total > kind.fs_bytes // 2:  # staged copy + old copy must fit
                results[b.name] = BoardResult(b.name, b.node_id, port, ok=False, error=(
                    "board %s: the image (%d bytes) needs twice its size free and the %s filesystem has %d"
                    % (b.name, total, kind.name, kind.fs_bytes)))  # fmt: skip
                continue
            jobs.append({
                "name": b.name, "node_id": b.node_id, "cluster": b.cluster, "lineage": b.lineage,
                "port": port, "data_port": data_port if data_port != port else None,
                "files": [asdict(f) for f in files], "version": list(v), "version_text": lab,
                "reset": b.reset, "check_only": check_only, "call_timeout_s": call_timeout_s,
                "hello_timeout_s": hello_timeout_s, "fault": (faults or {}).get(b.name),
                "rom": asdict(rom) if rom is not None else None,
            })  # fmt: skip
        for r in run_jobs(jobs, progress):
            results[r.name] = r
    finally:
        shutil.rmtree(build_root, ignore_errors=True)
    return [results[b.name] for b in chosen if b.name in results]


def _sha256_of(path: str) -> str:
    import hashlib

    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _version_for(rig: Any, b: Any, version: tuple[int, int] | None, label: str | None) -> tuple[tuple[int, int], str]:
    # The caller's version wins, then the board's, then the rig's, then 1.0;
    # a label goes with the version it was written next to.
    if version:
        v, lab = version, label
    elif b.version:
        v, lab = b.version, label or b.label
    elif rig.version:
        v, lab = rig.version, label or b.label or rig.label
    else:
        v, lab = (1, 0), label or b.label
    return v, lab or "%d.%d" % v


def check_rig(rig: Any, only: list[str] | None = None, **kw: Any) -> list[BoardResult]:
    """Survey each board and report what a flash would do, and whether an
    earlier flash was cut (BoardResult.check; check_text() for one line).
    Changes nothing on the boards; restarts their firmware."""
    return flash_rig(rig, only=only, check_only=True, **kw)
