# Values that must survive power loss, written atomically.
#
#     s = Store("state", "node3")
#     blob = s.read()        # newest intact value, or None
#     s.write(blob)          # returns only once the value is committed
#
# One value lives in up to three files: `name` (committed), `name.tmp` (being
# written) and `name.bak` (the value before `name`). A write goes:
#     1. write name.tmp whole, close it (and os.sync() where there is one);
#     2. rename name -> name.bak   (atomic, replaces the old .bak);
#     3. rename name.tmp -> name   (atomic).
# Every file carries magic, a sequence number, the payload length and a crc32
# over all of it, so a torn or bit-rotted file is recognised, never returned.
# read() returns the intact file with the highest sequence number:
#   - power cut in 1: .tmp is torn (ignored) or whole; `name` still holds the
#     last committed value, or .tmp the one being written: either is allowed;
#   - cut between 2 and 3: no `name`, but .tmp is whole and newest;
#   - `name` corrupt later (bit rot, a file system that writes in place): the
#     newest intact of .tmp/.bak, and `recovered` says so. That .bak is older
#     than the last committed value: only power loss is covered exactly, media
#     damage is reported, not undone.
# When the value read comes from a whole .tmp, read() first finishes that
# interrupted commit (steps 2 and 3). Otherwise the next write would overwrite
# the only copy of a value the caller has already acted on, and a cut in that
# write would hand back an older one (the power-cut test found exactly that).
# write() moves `name` to .bak only when `name` is known to be intact, so a
# damaged file never replaces a good backup.
# So a committed value is never lost to a power cut, a torn one is never read,
# and a value once read is never followed by an older one.
#
# Relies on os.rename replacing its target atomically, as littlefs (the rp2
# default file system) and POSIX do. MicroPython's FAT driver removes the
# target and then renames: a cut between the two leaves no `name`, and read()
# then uses .tmp or .bak, so it is still safe there.
#
# Runs under MicroPython and CPython (the tests read board state with it).
# Writes are rare (term changes, votes, identity, replay ceilings: once per
# source per counter block). A write never copies the value: header, value
# (any buffer, a memoryview too) and crc go to the file as they are, so a
# value of several KB (a 1,000-node region's ceilings) needs no contiguous
# block of that size on a fragmented heap. A read allocates the file's size.

import binascii
import os
import struct

_MAGIC = b"FL"
_FORMAT = 1
_HEAD = "<2sBBII"  # magic, format, flags (0), seq, payload length
_HEAD_LEN = 12
_CRC_LEN = 4
MAX_VALUE = 24576  # the largest: replay ceilings, 6 bytes per roster source (4,094 sources)

_TMP = ".tmp"
_BAK = ".bak"


class StoreError(Exception):
    """A value could not be written (flash full, read-only file system)."""


def _nbytes(buf):
    """Bytes in a buffer: len() counts items, and a memoryview of an array
    ('H', 'I') has no itemsize on MicroPython; one item's bytes say it."""
    n = len(buf)
    return n * len(bytes(buf[:1])) if n else 0


def _parts(seq, parts):
    """(header, crc) of a store file holding the buffers `parts` back to back."""
    n = 0
    for p in parts:
        n += _nbytes(p)
    head = struct.pack(_HEAD, _MAGIC, _FORMAT, 0, seq, n)
    crc = binascii.crc32(head)
    for p in parts:
        crc = binascii.crc32(p, crc)
    return head, struct.pack("<I", crc)


def encode(seq, payload):
    """The bytes of one store file holding `payload` (tests use this too)."""
    head, crc = _parts(seq, (payload,))
    return head + bytes(payload) + crc


def decode(data):
    """(seq, payload) from a store file's bytes; ValueError naming the fault."""
    n = len(data)
    if n < _HEAD_LEN + _CRC_LEN:
        raise ValueError("torn: %d bytes" % n)
    magic, fmt, _flags, seq, length = struct.unpack_from(_HEAD, data, 0)
    if magic != _MAGIC:
        raise ValueError("not a store file")
    if fmt != _FORMAT:
        raise ValueError("format %d" % fmt)
    if length > MAX_VALUE or n != _HEAD_LEN + length + _CRC_LEN:
        raise ValueError("torn: %d bytes for a %d byte value" % (n, length))
    (crc,) = struct.unpack_from("<I", data, n - _CRC_LEN)
    if binascii.crc32(data[: n - _CRC_LEN]) != crc:
        raise ValueError("bad crc")
    return seq, data[_HEAD_LEN : n - _CRC_LEN]


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _sync():
    sync = getattr(os, "sync", None)  # rp2 has it; the unix port does not
    if sync is not None:
        sync()


class Store:
    def __init__(self, folder, name):
        self.path = folder + "/" + name if folder else name
        self.folder = folder
        self.seq = 0  # of the newest intact file seen or written
        self.recovered = None  # None, or why the committed file was not used
        self.problems = []  # "file: fault" for each damaged file read() met
        self._read_done = False
        self._committed_ok = False  # `name` holds an intact value (may become .bak)

    def read(self):
        """The newest intact value (bytes), or None if there is none.

        Sets `problems` (damaged files met) and `recovered` (set when the
        value did not come from the committed file although one existed).
        """
        best = None
        best_seq = -1
        best_path = None
        self.problems = []
        self.recovered = None
        committed_ok = False
        committed_there = False
        for path in (self.path, self.path + _TMP, self.path + _BAK):
            try:
                size = os.stat(path)[6]
                with open(path, "rb") as f:
                    data = f.read(min(size, _HEAD_LEN + MAX_VALUE + _CRC_LEN) + 1)
            except OSError:
                continue  # absent
            if path == self.path:
                committed_there = True
            try:
                seq, payload = decode(data)
            except ValueError as e:
                if path != self.path + _TMP:  # a torn .tmp is expected after a cut
                    self.problems.append("%s: %s" % (path, e))
                continue
            if path == self.path:
                committed_ok = True
            if seq > best_seq:
                best, best_seq, best_path = payload, seq, path
        self._read_done = True
        if best_seq > self.seq:
            self.seq = best_seq
        if best is not None and best_path != self.path and committed_there and not committed_ok:
            self.recovered = "%s damaged, used %s" % (self.path, best_path)
        if best_path == self.path + _TMP:
            committed_ok = self._commit_tmp(committed_ok)
        self._committed_ok = committed_ok
        return None if best is None else bytes(best)

    def _commit_tmp(self, committed_ok):
        """Finish an interrupted write: the whole .tmp becomes `name`."""
        try:
            if committed_ok:
                os.rename(self.path, self.path + _BAK)
            os.rename(self.path + _TMP, self.path)
            _sync()
            return True
        except OSError as e:  # read-only file system: still return the value
            self.problems.append("%s: cannot commit: %s" % (self.path + _TMP, e))
            return False

    def write(self, payload):
        """Commit `payload` (bytes, or a tuple of buffers stored back to back
        as one value); returns once it would survive a power cut."""
        parts = payload if isinstance(payload, tuple) else (payload,)
        size = 0
        for p in parts:
            size += _nbytes(p)
        if size > MAX_VALUE:
            raise ValueError("store: value of %d bytes" % size)
        if not self._read_done:
            self.read()  # learn the sequence number already on flash
        seq = self.seq + 1
        tmp = self.path + _TMP
        try:
            if self.folder and not _exists(self.folder):
                os.mkdir(self.folder)  # one level: the shell's "state" folder
            head, crc = _parts(seq, parts)
            with open(tmp, "wb") as f:
                # Header, value and crc as separate writes: what a cut can tear.
                f.write(head)
                for p in parts:
                    f.write(p)
                f.write(crc)
            _sync()
            if self._committed_ok:
                os.rename(self.path, self.path + _BAK)
            os.rename(tmp, self.path)  # replaces a damaged `name`, if any
            _sync()
        except OSError as e:
            raise StoreError("%s: %s" % (self.path, e))
        self.seq = seq
        self._committed_ok = True
