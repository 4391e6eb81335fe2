"""Frame replay into a device in real time (ground/replay.py has the
overview): a board's pyserial URL, its HELLO as mission 0, each recorded
input written at its mission time scaled by the time scale, what the board
sends captured with the mission time it arrived at."""

from ground import firmware
from ground.replay_stream import ReplayError


def _wait_hello(link, node, wait_s, say):
    """Read the device until node's HELLO; returns it and the lines after it."""
    import select
    import time

    msgs, wire = firmware.msgs, firmware.wire
    if say:
        say("replay-frames: waiting up to %g s for node %d's HELLO on %s: reset the board now" % (wait_s, node, link.url))
    deadline = time.monotonic() + wait_s
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise ReplayError("no HELLO from node %d on %s within %g s: reset (or power on) the board while the "
                              "replay waits" % (node, link.url, wait_s))
        r, _, _ = select.select([link.fileno()], [], [], min(left, 0.2))
        if not r:
            continue
        lines, eof = link.read_lines()
        for i, line in enumerate(lines):
            try:
                f = wire.decode(line)
            except wire.ProtocolError:
                continue
            if f.type == msgs.HELLO and f.src == node:
                return [bytes(x) for x in lines[i:]]
        if eof:
            raise ReplayError("%s closed before node %d said HELLO" % (link.url, node))


def _replay_device(stream, sc, url, time_scale, wait_hello_s=30.0, say=None):
    from ground.clock import RealClock
    from ground.links import LinkError, SerialLink
    from ground.realtime import Scheduler

    notes = ["replaying into %s in real time at time scale %g (outputs compared by bytes, in order)" % (url, time_scale)]
    inputs = stream.inputs
    msgs, wire = firmware.msgs, firmware.wire
    outputs = stream.outputs
    boots_with_hello = False
    if outputs:
        try:
            boots_with_hello = wire.decode(outputs[0][1]).type == msgs.HELLO
        except wire.ProtocolError:
            pass
    has_config = False
    for _, data in inputs:
        try:
            has_config = has_config or wire.decode(data).type == msgs.CONFIG
        except wire.ProtocolError:
            pass
    try:
        link = SerialLink(stream.node, url)
    except LinkError as e:
        raise ReplayError(str(e)) from None
    out = []
    try:
        if boots_with_hello and wait_hello_s:
            out.extend((0, line) for line in _wait_hello(link, stream.node, wait_hello_s, say))
    except BaseException:
        link.close()
        raise
    clock = RealClock(time_scale, Scheduler())  # mission 0: the board's HELLO

    def readable():
        lines, eof = link.read_lines()
        now = clock.now_ns()
        for line in lines:
            out.append((now, bytes(line)))
        if eof:
            clock.remove_reader(link.fileno())

    def write(data):
        link.deliver(data + b"\x00")

    try:
        clock.add_reader(link.fileno(), readable)
        if not has_config:
            auth = wire.Auth(sc.auth_key) if sc.auth_key else None
            cfg = wire.encode(msgs.CONFIG, wire.ADDR_GROUND, stream.node,
                              msgs.pack(msgs.CONFIG, int(time_scale * 1000), 0), 0, auth, 0)
            notes.append("note: the trace has no CONFIG for node %d (a sim run); sent one with time scale %g first"
                         % (stream.node, time_scale))
            link.deliver(bytes(cfg))
        for t, data in inputs:
            clock.call_at(t, write, data)
        end = [ev["mission_ns"] for _, kind, ev, _ in stream.items if kind == "end"]
        clock.run_until(end[-1] if end else (inputs[-1][0] if inputs else 0))
    except LinkError as e:
        raise ReplayError(str(e)) from None
    finally:
        link.close()
    faults = [ev for _, kind, ev, _ in stream.items if kind == "fault"]
    if faults:
        notes.append("note: %d faults on node %d were not replayed into the device (power and reset need the rig)"
                     % (len(faults), stream.node))
    return out, notes
