"""The flash worker: one board, one process (`python -m hil.flash_worker`,
the job as JSON on stdin; progress and the result as JSON lines on stdout).
It runs stock mpremote as a subprocess per step (survey, stage, commit,
reset), every step with a timeout, then waits for the node's HELLO and
checks it against what was flashed. hil/flash.py starts one per board.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from typing import Any, Callable

from hil.flash_plan import (
    JOURNAL, STAGE_DIR, BoardResult, commit_script, commit_steps, plan, stage_prep_script, survey_script,
)
from hil.image import _BIN, FlashError, ImageFile, in_rom, managed_dirs

CALL_TIMEOUT_S = 60.0  # one mpremote call (connect, survey, commit, reset)
STAGE_FILE_TIMEOUT_S = 5.0  # more per staged file
HELLO_TIMEOUT_S = 30.0  # from the reset to the HELLO frame
REPL_TIMEOUT_S = 10.0  # waiting for ">>> " before a soft reset


# -- the worker: one board, one process ---------------------------------------------


def mpremote_command() -> list[str]:
    exe = _BIN / "mpremote"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "mpremote"]


class _Worker:
    """Flashes one board. Runs in its own process (`python -m hil.flash_worker
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
        rom = ImageFile(**self.job["rom"]) if self.job.get("rom") else None
        out = self._mpremote(["exec", survey_script([f.remote for f in self.files], self.dirs,
                                                    rom.size if rom else 0)],
                             self.call_timeout_s, "survey", resume=False)  # fmt: skip
        survey = self._marked(out, "@@SURVEY", "survey")
        rom_action = self._rom_action(rom, survey.get("rom"))
        files = self.files
        if self.result.code == "romfs":  # the modules are the ROM's: only the rest are files
            files = [f for f in self.files if not in_rom(f.remote)]
        p = plan(files, survey)
        if self.job.get("check_only"):
            c = asdict(p)
            c["up_to_date"] = p.up_to_date() and rom_action is None
            c["rom"] = rom_action
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
        if rom is not None and rom_action == "deploy":
            self._rom_deploy(rom)
        elif rom_action == "erase":
            self._rom_erase()
        steps = commit_steps(p, files)
        if steps or p.interrupted or p.leftovers:
            self._commit(steps)
        self.result.removed = list(p.remove)
        self._reset(wait_hello=True)

    def _rom_action(self, rom: ImageFile | None, have: dict | None) -> str | None:
        """What the ROM partition needs ("deploy", "erase" or None), and the
        layout this flash writes (result.code). The romfs layout on a board
        whose MicroPython has no ROMFS falls back to files, saying so."""
        self.result.code = "romfs" if rom is not None else "files"
        if rom is not None and have is None:
            self.result.code = "files"
            self.result.note = ("%s: no ROMFS in its MicroPython (no vfs.rom_ioctl; `mpremote romfs query` says so):"
                                " its modules go on flash as .mpy files" % self.who())  # fmt: skip
            self.phase("survey", self.result.note)
            return None
        if rom is not None:
            if rom.size > have["size"]:
                raise FlashError("%s: the ROMFS image (%d bytes) does not fit its ROM partition (%d bytes)"
                                 % (self.who(), rom.size, have["size"]))  # fmt: skip
            self.result.rom = "unchanged" if have.get("sha") == rom.sha256 else "deployed"
            return None if self.result.rom == "unchanged" else "deploy"
        if have is not None and have.get("valid"):  # files layout: old ROM code would come first on sys.path
            self.result.rom = "erased"
            return "erase"
        return None

    def _rom_deploy(self, rom: ImageFile) -> None:
        # Stock mpremote writes the partition in place (not atomic: a cut
        # leaves a partial image, which the next flash's survey sees differ).
        # Not resumed: a soft reset first, so its 4K chunks find a fresh heap.
        self.phase("romfs", "deploy %d bytes" % rom.size)
        self._mpremote(["romfs", "deploy", rom.local], self.call_timeout_s + rom.size / 4096.0, "romfs deploy",
                       resume=False)  # fmt: skip

    def _rom_erase(self) -> None:
        # The first sector holds the ROMFS header: erased, /rom mounts nothing.
        self.phase("romfs", "erase (files layout)")
        self._mpremote(["exec", "import vfs\ntry:\n vfs.umount('/rom')\nexcept OSError:\n pass\n"
                                "vfs.rom_ioctl(3,0,0,4096)\nvfs.rom_ioctl(5,0)\n"],
                       self.call_timeout_s, "romfs erase")  # fmt: skip

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
    """``python -m hil.flash_worker --worker``: one board; the job is JSON on stdin."""
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


if __name__ == "__main__":
    if sys.argv[1:] == ["--worker"]:
        sys.exit(_worker_main())
    print("usage: python -m hil.flash_worker --worker  (started by hil flash; see hil/cli.py)", file=sys.stderr)
    sys.exit(2)
