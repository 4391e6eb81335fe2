# runtime/store.py under power cuts, on the real MicroPython unix port.
#
# Invariant: after any cut, the value read back is intact and is either the
# last acknowledged value (its write() returned) or the one being written;
# never a torn one, never an older one.
#
# A "power cut" here is SIGKILL of the micropython process at a random moment
# while it loops writing increasing values and printing each one after
# write() returns. What this does and does not model:
#   - it stops the program between any two system calls, so a kill can land
#     between the writes of .tmp's header, value and crc (a torn .tmp), or
#     between the two renames (no committed file, a whole .tmp);
#   - it does NOT lose data the kernel has already accepted (page cache), and
#     cannot tear inside one write() or reorder writes as a flash chip or a
#     file system without atomic rename could. Those torn-file shapes are
#     built by hand in test_damaged_files_* below and read back by the same
#     MicroPython code.

import json
import os
import random
import signal
import subprocess
import time

import pytest

from runtime import store

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIRMWARE = os.path.join(ROOT, "firmware")
MICROPYTHON = os.path.join(ROOT, ".venv", "bin", "micropython")
CUTS = 120
WAIT_S = 20

if not os.path.exists(MICROPYTHON):
    pytest.skip("no MicroPython unix port in .venv", allow_module_level=True)

# Values carry a filler whose length and bytes depend on the number, so a
# value that is not exactly what was written for its number is caught too.
_WRITER = r'''
import sys
from runtime.store import Store

def value(i):
    return b"%d:" % i + bytes([65 + i % 26]) * (i % 97)

def check(blob):
    i = int(blob.split(b":")[0])
    return i if blob == value(i) else -1

s = Store("state", "v")
blob = s.read()
i = 0 if blob is None else check(blob)
print("R %d %s" % (i, s.recovered or "-"))
if i < 0:
    sys.exit(3)
while True:
    i += 1
    s.write(value(i))
    sys.stdout.write("A %d\n" % i)  # one write(2) of under PIPE_BUF: a line arrives whole or not at all
'''


def _env():
    env = dict(os.environ)
    env["MICROPYPATH"] = FIRMWARE
    return env


def _read_lines(proc, want_acks, deadline):
    """Read stdout lines until `want_acks` acks were seen (or EOF)."""
    lines = []
    acks = 0
    while acks < want_acks and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith(b"A "):
            acks += 1
    return lines


def _last_ack(lines):
    last = None
    for line in lines:
        if line.startswith(b"A ") and line.endswith(b"\n"):
            last = int(line[2:])
    return last


def _file_state(folder):
    """What a cut left behind: (committed?, tmp: None/'torn'/'whole', bak?)."""
    base = os.path.join(folder, "state", "v")
    tmp = None
    if os.path.exists(base + ".tmp"):
        try:
            with open(base + ".tmp", "rb") as f:
                store.decode(f.read())
            tmp = "whole"
        except ValueError:
            tmp = "torn"
    return os.path.exists(base), tmp, os.path.exists(base + ".bak")


@pytest.mark.timeout(300)
def test_power_cuts_never_lose_an_acknowledged_value_nor_return_a_torn_one(tmp_path):
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    folder = str(tmp_path)
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    last_ack = 0  # nothing written yet reads back as 0
    seen = {"torn_tmp": 0, "whole_tmp": 0, "no_committed": 0, "newer_than_ack": 0, "recovered": 0}
    restarts = 0
    proc = None
    try:
        for cut in range(CUTS):
            deadline = time.monotonic() + WAIT_S
            proc = subprocess.Popen(
                [MICROPYTHON, "-X", "heapsize=192K", str(script)],
                cwd=folder, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            )
            restarts += 1
            first = proc.stdout.readline()
            assert first.startswith(b"R "), (seed, cut, first + proc.stdout.read())
            got, recovered = first[2:].split(b" ", 1)
            got = int(got)
            assert got >= 0, "seed %d cut %d: torn value read back" % (seed, cut)
            assert got in (last_ack, last_ack + 1), "seed %d cut %d: read %d, last acknowledged %d" % (
                seed, cut, got, last_ack)
            if got == last_ack + 1:
                seen["newer_than_ack"] += 1
            if recovered.strip() != b"-":
                seen["recovered"] += 1
            last_ack = got  # the next writes continue from what was read
            # Let it run a random number of writes, then cut at a random moment.
            lines = _read_lines(proc, rng.randrange(0, 6), deadline)
            time.sleep(rng.random() * 0.004)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=WAIT_S)
            # Through the same buffered reader as readline(): acks it already
            # buffered must not be skipped (communicate() would read the fd).
            lines += proc.stdout.read().splitlines(keepends=True)
            proc.stdout.close()
            ack = _last_ack(lines)
            if ack is not None:
                assert ack > last_ack
                last_ack = ack
            committed, tmp, _bak = _file_state(folder)
            seen["torn_tmp"] += tmp == "torn"
            seen["whole_tmp"] += tmp == "whole"
            seen["no_committed"] += not committed
            proc = None
        # One last clean read.
        out = subprocess.run(
            [MICROPYTHON, "-c", "from runtime.store import Store; print(Store('state', 'v').read())"],
            cwd=folder, env=_env(), capture_output=True, timeout=WAIT_S,
        ).stdout.decode()
        assert out.startswith("b'%d:" % last_ack) or out.startswith("b'%d:" % (last_ack + 1)), out
    finally:
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=WAIT_S)
            proc.stdout.close()
    print("power cuts: %d (seed %d), last value %d, %s" % (CUTS, seed, last_ack, seen))
    assert restarts == CUTS
    # The cuts must actually land mid-write, or this test proves nothing.
    assert seen["torn_tmp"] + seen["whole_tmp"] + seen["no_committed"] > 0, seen


# ---- damaged files that SIGKILL cannot produce --------------------------------

_READER = r'''
import json, sys
from runtime.store import Store
out = []
for case in sys.argv[1:]:
    s = Store(case, "v")
    v = s.read()
    out.append([None if v is None else v.decode(), s.recovered, s.problems])
print(json.dumps(out))
'''


def _put(folder, suffix, data):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "v" + suffix), "wb") as f:
        f.write(data)


def _read_all(tmp_path, cases):
    """Read each case folder with runtime/store.py on MicroPython."""
    script = tmp_path / "reader.py"
    script.write_text(_READER)
    proc = subprocess.run(
        [MICROPYTHON, "-X", "heapsize=192K", str(script)] + cases,
        cwd=str(tmp_path), env=_env(), capture_output=True, timeout=WAIT_S,
    )
    assert proc.returncode == 0, proc.stderr.decode() + proc.stdout.decode()
    return json.loads(proc.stdout)


@pytest.mark.timeout(60)
def test_damaged_files_torn_tmp_at_every_length_is_ignored(tmp_path):
    committed = store.encode(4, b"four")
    pending = store.encode(5, b"five, longer")
    cases = []
    for n in range(len(pending)):
        case = "torn%d" % n
        _put(str(tmp_path / case), "", committed)
        _put(str(tmp_path / case), ".tmp", pending[:n])
        cases.append(case)
    for value, recovered, problems in _read_all(tmp_path, cases):
        assert (value, recovered, problems) == ("four", None, [])


@pytest.mark.timeout(60)
def test_damaged_files_each_shape(tmp_path):
    four = store.encode(4, b"four")
    five = store.encode(5, b"five")
    flipped = bytearray(five)
    flipped[13] ^= 0x01
    shapes = {
        # cut between the two renames: no committed file, .tmp whole
        "between_renames": {".tmp": five, ".bak": four},
        # committed bit-rotted or torn in place: back to the newest intact copy
        "committed_flipped": {"": bytes(flipped), ".bak": four},
        "committed_torn": {"": five[:9], ".bak": four},
        # nothing intact at all: None, and said why
        "all_bad": {"": five[:3]},
        # an older .tmp left behind never wins over a newer committed value
        "stale_tmp": {"": five, ".tmp": four},
        "empty": {},
    }
    for name, files in shapes.items():
        os.makedirs(str(tmp_path / name))
        for suffix, data in files.items():
            _put(str(tmp_path / name), suffix, data)
    got = dict(zip(shapes, _read_all(tmp_path, list(shapes))))
    assert got["between_renames"] == ["five", None, []]
    # ... and reading it finished that commit: .tmp is now the committed file
    assert sorted(os.listdir(str(tmp_path / "between_renames"))) == ["v", "v.bak"]
    with open(str(tmp_path / "between_renames" / "v"), "rb") as f:
        assert store.decode(f.read()) == (5, b"five")
    value, recovered, problems = got["committed_flipped"]
    assert value == "four" and "damaged" in recovered and "bad crc" in problems[0]
    value, recovered, problems = got["committed_torn"]
    assert value == "four" and "damaged" in recovered and "torn" in problems[0]
    value, recovered, problems = got["all_bad"]
    assert value is None and problems and "torn" in problems[0]
    assert got["stale_tmp"] == ["five", None, []]
    assert got["empty"] == [None, None, []]


@pytest.mark.timeout(60)
def test_writes_after_recovery_continue_the_sequence(tmp_path):
    # After reading a whole .tmp left between the renames, the next write
    # must carry a higher sequence number than anything on flash.
    folder = str(tmp_path / "case")
    _put(folder, ".tmp", store.encode(9, b"nine"))
    _put(folder, ".bak", store.encode(8, b"eight"))
    script = tmp_path / "w.py"
    script.write_text(
        "from runtime.store import Store\n"
        "s = Store('case', 'v')\n"
        "print(s.read()); s.write(b'ten'); print(Store('case', 'v').read(), s.seq)\n"
    )
    proc = subprocess.run(
        [MICROPYTHON, str(script)], cwd=str(tmp_path), env=_env(), capture_output=True, timeout=WAIT_S
    )
    assert proc.stdout.decode().split() == ["b'nine'", "b'ten'", "10"], proc.stderr.decode()


@pytest.mark.timeout(60)
def test_a_value_read_from_tmp_survives_a_cut_in_the_next_write(tmp_path):
    # The power-cut test's first catch: read() handed out the value of a whole
    # .tmp (cut between the renames) without committing it; the next write
    # overwrote that .tmp, and a cut there brought back the older .bak.
    folder = str(tmp_path / "case")
    _put(folder, ".tmp", store.encode(9, b"nine"))
    _put(folder, ".bak", store.encode(8, b"eight"))
    assert _read_all(tmp_path, ["case"])[0][0] == "nine"
    _put(folder, ".tmp", store.encode(10, b"ten")[:7])  # the next write, torn
    assert _read_all(tmp_path, ["case"])[0][0] == "nine"
