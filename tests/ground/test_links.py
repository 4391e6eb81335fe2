"""SerialLink on a real pty: what a board printed besides frames is kept
(bounded) for the message when it stops answering."""

import os
import select

from ground import firmware
from ground.links import TAIL_BYTES, SerialLink


def _read_all(link):
    lines = []
    while select.select([link.fileno()], [], [], 0.5)[0]:
        got, eof = link.read_lines()
        lines += got
        if eof:
            break
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
        crash = b'Traceback (most recent call last):\r\n  File "main.py", line 9\r\nValueError: boom\r\n>>> '
        os.write(master, crash)
        _read_all(link)
        tail = link.text_tail()
        assert tail.startswith("Traceback") and "ValueError: boom" in tail and tail.endswith(">>>")
        os.write(master, b"x" * (3 * TAIL_BYTES))  # a chatty board: the tail stays bounded
        _read_all(link)
        assert len(link._tail) == TAIL_BYTES and link.text_tail(max_chars=50) == "x" * 50
    finally:
        link.close()
        os.close(master)
        os.close(slave)
