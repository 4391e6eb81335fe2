"""What a Pico answers, the emulated board answers alike, through stock
mpremote: `df` shows a Pico's 1408K littlefs (not the host's disk, not a
Python object repr) and counts what is stored; `os.uname()` answers as rp2
does (the unix port has no uname), saying in its version that it is emulated."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hil.emulated import EmulatedBoard

BIN = Path(sys.executable).parent
MPREMOTE = BIN / "mpremote"
MICROPYTHON = BIN / "micropython"

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(not (MPREMOTE.exists() and MICROPYTHON.exists()),
                       reason="needs .venv/bin/mpremote and .venv/bin/micropython (make venv)"),
]


@pytest.fixture
def board(tmp_path):
    folder = tmp_path / "pico"
    folder.mkdir()
    b = EmulatedBoard(folder, name="pico")
    b.start()
    yield b
    b.stop()


def mpremote(board, *args, timeout_s=30):
    r = subprocess.run([str(MPREMOTE), "connect", str(board.device), *args], capture_output=True, timeout=timeout_s)
    assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r.stdout.decode()


def _df(board):
    lines = mpremote(board, "df").splitlines()
    assert lines[0].split() == ["filesystem", "size", "used", "avail", "use%", "mounted", "on"], lines
    (row,) = [line.split() for line in lines[1:] if line.strip()]
    return row


def test_df_shows_a_picos_flash_and_what_is_stored(board, tmp_path):
    fs, size, used, avail, _, mount = _df(board)
    # rp2's 1408K of littlefs, less the 256K ROM partition of a ROMFS build (hil/emulated.py)
    assert (fs, int(size), mount) == ("<VfsLfs2>", (1408 - 256) * 1024, "/")
    assert int(used) + int(avail) == int(size)
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(10000))  # 3 blocks of 4K
    mpremote(board, "fs", "mkdir", ":lib")
    mpremote(board, "fs", "cp", str(big), ":lib/big.bin")
    _, _, used2, avail2, _, _ = _df(board)
    assert int(used2) - int(used) == (2 + 3) * 4096  # the directory's metadata pair and the file's blocks
    assert int(avail2) == int(avail) - (int(used2) - int(used))


def test_os_uname_answers_as_rp2(board):
    out = mpremote(board, "exec", "import os; u = os.uname(); print(u.sysname, u[0] == u.sysname, len(u));"
                   " print(u.machine); print(u.version); print(os.__name__, 'listdir' in dir(os))")
    first, machine, version, last = out.splitlines()
    assert first == "rp2 True 5"
    assert machine == "Raspberry Pi Pico with RP2040"
    assert "emulated" in version
    assert last == "os True"
