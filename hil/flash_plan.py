"""What a flash does to one board, decided without touching it: the plan
(copy what differs, reuse what an earlier run staged intact, remove stale
files), the board-side scripts that survey a board and commit a staged image
through a journal (so a cut flash leaves the old firmware whole or names
exactly what is missing), and the per-board result. Pure functions of their
inputs, tested without boards (docs/FLASHING.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from hil.image import CONFIG_FILES, ENTRY_POINTS, ImageFile

STAGE_DIR = ".flash"  # staged files: .flash/<path on the board>
JOURNAL = "flash.todo"  # the commit in progress (deleted when it is done)


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


_ROM_FN = """\
def _rom(n):
 try:
  import vfs
  d=vfs.rom_ioctl(2,0) if hasattr(vfs,'rom_ioctl') else None
 except Exception:
  d=None
 if d is None or isinstance(d,int):
  return None
 r={'size':len(d),'sha':None,'valid':bytes(memoryview(d)[:3])==b'\\xd2\\xcd\\x31'}
 if hashlib and n<=len(d):
  h=hashlib.sha256();h.update(memoryview(d)[:n]);r['sha']=binascii.hexlify(h.digest()).decode()
 return r
"""


def survey_script(paths: list[str], dirs: list[str], rom_bytes: int | None = None) -> str:
    """Prints one line "@@SURVEY {json}": sha256 of each path (null when
    absent), file names in each managed dir, staged files and their sha256,
    the journal's text and version.json's text (null when absent). The JSON
    is printed a value at a time: one json.dumps of the whole survey needs a
    block of several KB, which a 192K heap after a cut flash may not have.
    rom_bytes (the romfs layout: the ROM image's size): also "rom", null on
    a MicroPython without ROMFS (no vfs.rom_ioctl), else the partition's
    size and the sha256 of its first rom_bytes bytes."""
    stage_dirs = [STAGE_DIR] + [STAGE_DIR + "/" + d for d in dirs]
    rom = "R['rom']=_rom(%d)\n" % rom_bytes if rom_bytes is not None else ""
    return _HASH_FN + (_ROM_FN if rom else "") + ("""\
R={'files':{},'dirs':{},'staged':{},'todo':_cat(%r),'version':_cat('version.json')}
%sfor p in %r:R['files'][p]=_h(p)
for d in %r:R['dirs'][d]=_ls(d)
for d in %r:
 for n in _ls(d) or ():R['staged'][d+'/'+n]=_h(d+'/'+n)
def _w(v):
 if isinstance(v,dict):
  print('{',end='');c=''
  for k in v:print(c+json.dumps(k)+':',end='');_w(v[k]);c=','
  print('}',end='')
 else:print(json.dumps(v),end='')
print('@@SURVEY ',end='');_w(R);print()
""" % (JOURNAL, rom, paths, dirs, stage_dirs))


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
    code: str | None = None  # the layout flashed: "romfs" (modules in the ROM partition) or "files"
    rom: str | None = None  # what happened to the ROM partition: "deployed", "unchanged", "erased"
    note: str | None = None  # one line worth saying though the flash succeeded (a fallback to files)

    def summary(self) -> str:
        if self.check is not None and self.ok:
            return check_text(self.check)
        if not self.ok:
            return "FAILED: %s" % self.error
        h = self.hello or {}
        rom = "; ROM %s" % self.rom if self.rom else ""
        return "ok: %d copied, %d reused, %d removed, %d unchanged%s; HELLO node %s v%s.%s (%.1f s)" % (
            len(self.copied), len(self.reused), len(self.removed), self.unchanged, rom,
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
