# Run under the MicroPython unix port: encode+decode time per frame, as JSON.
import sys
import time

sys.path.insert(0, "firmware")
from node import msgs, wire

N = 2000
payload = msgs.pack(msgs.HEARTBEAT, 7, 3, 4, 2, 1, 9, 0x01020304, 0xDEADBEEF)
auth = wire.Auth(b"fleet-key")


def run(a):
    t0 = time.ticks_us()
    for i in range(N):
        line = wire.encode(msgs.HEARTBEAT, 3, 0xF001, payload, i, a, i)
        wire.decode(line[:-1], a)
    return time.ticks_diff(time.ticks_us(), t0) / N


print('{"plain_us": %.2f, "auth_us": %.2f, "n": %d}' % (run(None), run(auth), N))
