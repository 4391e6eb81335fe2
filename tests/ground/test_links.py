"""SerialLink on a real pty: what a board printed besides frames is kept
(bounded) for the message when it stops answering."""

import os
import select

from ground import firmware
from ground.links import TAIL_BYTES, SerialLink


def _read_all(link, first_s=5.0, quiet_s=0.05):
    """What the link reads of bytes just written to the pty: waits up to first_s
    for them, then reads until quiet_s passes with nothing more (every call
    follows a write; a quiet wait of 0.5 s after each of the ~20 writes below
    was 10 s of the file's 11)."""
    lines = []
    wait_s = first_s
    while select.select([link.fileno()], [], [], wait_s)[0]:
        got, eof = link.read_lines()
        lines += got
        if eof:
            break
        wait_s = quiet_s
    return lines


def test_text_after_the_last_frame_is_the_tail():
    master, slave = os.openpty()
    link = SerialLink(3, os.ttyname(slave))
    try:
        wire, msgs = firmware.wire, firmware.msgs
        hb = wire.encode(msgs.HEARTBEAT, 3, wire.cluster_addr(1), msgs.pack(msgs.HEARTBEAT, 1, 3, 0, 2, 0, 1, 0, 0))
        os.write(master, bytes(hb))
        assert len(_read_all(link)) == 1
        assert link.text_tail() == ""  # nothing but frames so far
        os.write(master, b"x" * (3 * TAIL_BYTES))  # a chatty board: the tail stays bounded
        _read_all(link)
        assert len(link._tail) == TAIL_BYTES and link.text_tail(max_chars=50) == "x" * 50
        crash = b'Traceback (most recent call last):\r\n  File "main.py", line 9\r\nValueError: boom\r\n>>> '
        os.write(master, crash)
        _read_all(link)
        tail = link.text_tail()
        assert tail.startswith("Traceback") and "ValueError: boom\n" in tail and tail.endswith(">>>"), tail
    finally:
        link.close()
        os.close(master)
        os.close(slave)


def test_a_traceback_stays_the_tail_while_the_repl_echoes_frames_after_it():
    # A board that crashed to the REPL echoes the frames still sent to it, and
    # each echo can end in a REPL traceback of its own (an elector board out of
    # heap did): the first traceback is what the `silent` event must carry.
    master, slave = os.openpty()
    link = SerialLink(3, os.ttyname(slave))
    try:
        wire, msgs = firmware.wire, firmware.msgs
        hb = bytes(wire.encode(msgs.HEARTBEAT, 3, wire.cluster_addr(1), msgs.pack(msgs.HEARTBEAT, 1, 3, 0, 2, 0, 1, 0, 0)))
        os.write(master, hb)
        _read_all(link)
        os.write(master, b'Traceback (most recent call last):\r\n  File "node/node.py", line 372, in _send\r\n'
                         b'MemoryError: memory allocation failed, allocating 1024 bytes\r\n>>> ')
        _read_all(link)
        echo = b"\x9c\xe2\x01junk\x00" * 40 + b"\r\nTraceback (most recent call last):\r\nUnicodeError: \r\n>>> "
        for _ in range(3 * TAIL_BYTES // len(echo) + 1):
            os.write(master, echo)
            _read_all(link)
        tail = link.text_tail()
        assert tail.startswith("Traceback") and tail.endswith("allocating 1024 bytes\n>>>"), tail
        assert "UnicodeError" not in tail
        os.write(master, hb)  # frames again: the board is back, the traceback forgotten
        assert len(_read_all(link)) == 1
        assert "MemoryError" not in link.text_tail()
    finally:
        link.close()
        os.close(master)
        os.close(slave)
