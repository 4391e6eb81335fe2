"""Update goodput over a lossy, light-delayed link against the link's capacity.

The real core (firmware/node/update.py inside a Node) receives a real update
image (hil/update_image.py: the firmware as .mpy) from the ground's
UpdateSender (ground/update_sender.py), through ground link pipelines
(ground/pipeline.py: loss, one-way delay, rate) both ways, in virtual time
(1 ms steps). Goodput is the image's bytes divided by the time from the first
offer to the node holding every chunk, over the down link's capacity
(rate_bps / 8). The frame overhead counts against goodput: a 218-byte
chunk takes about 238 bytes on the line.

    .venv/bin/python -m bench.bench_update [--loss 0.02] [--delay-ms 2000] [--rate-bps 9600 19200 ...]
"""

import argparse
import hashlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.machine_info import describe  # noqa: E402
from ground import firmware  # noqa: E402
from ground import protocol as P  # noqa: E402
from ground.pipeline import build_pipeline  # noqa: E402
from ground.stages import link_seed  # noqa: E402
from ground.update_sender import UpdateSender  # noqa: E402

wire = firmware.wire
msgs = firmware.msgs


def run(image, rate_bps, loss, delay_ms, seed=1, limit_s=3600):
    from node import update as U
    from node.config import Config
    from node.node import Node

    node = Node(1, Config(cluster=1, members=[1], election_timeout_ms=1000, fw_version=(1, 0)), seed=seed)
    spec = {"loss": loss, "delay_ms": delay_ms, "rate_bps": rate_bps}
    down = build_pipeline(dict(spec), link_seed(seed, 0, 1))
    up = build_pipeline(dict(spec), link_seed(seed, 1, 0))
    s = UpdateSender(image, 1, 5, (1, 1), rto_s=2.5 * 2 * delay_ms / 1000 + 1.0, offer_every_s=2 * delay_ms / 1000 + 1)
    flash = {}
    queue = []  # (due ms, seq, "down"/"up", line)
    n = 0
    credit = 0.0
    line_Bps = rate_bps / 8.0
    done_ms = None
    t = 0
    import heapq

    while t < limit_s * 1000:
        credit = min(credit + line_Bps / 1000.0, 4 * 256)
        if credit > 0:
            for type, payload in s.due(t / 1000.0, max(1, int(credit // 240))):
                line = bytes(wire.encode(type, 0, 1, payload))
                credit -= len(line)
                r = down.route(1, line[:-1], t * 1_000_000)
                if r.__class__ is int:
                    n += 1
                    heapq.heappush(queue, (r // 1_000_000, n, "down", line[:-1]))
        while queue and queue[0][0] <= t:
            _, _, way, data = heapq.heappop(queue)
            if way == "down":
                node.receive(data, t)
            else:
                f = P.parse_line(data)
                s.on_ack(dict(f.msg))
        for dst, line in node.poll(t):
            f = wire.decode(line[:-1])
            if f.type == msgs.UPD_ACK:
                r = up.route(1, line[:-1], t * 1_000_000)
                if r.__class__ is int:
                    n += 1
                    heapq.heappush(queue, (r // 1_000_000, n, "up", line[:-1]))
        a = node.update
        if a is not None:
            for kind, arg in a.take_actions():
                if kind == U.ACT_WRITE:
                    flash[arg[0]] = bytes(arg[1])
                elif kind == U.ACT_VERIFY:
                    got = b"".join(flash[i] for i in range(a.chunks))
                    a.verified(U.R_NONE if hashlib.sha256(got).digest() == a.digest else U.R_DIGEST)
                    done_ms = t
        if done_ms is not None and s.state == "verified":
            break
        t += 1
    if done_ms is None:
        raise SystemExit("bench_update: no complete transfer within %d s at %d bps" % (limit_s, rate_bps))
    seconds = done_ms / 1000.0
    goodput = len(image) / seconds
    return seconds, goodput / line_Bps, s.sends, s.chunks


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--loss", type=float, default=0.02)
    ap.add_argument("--delay-ms", type=int, default=2000)
    ap.add_argument("--rate-bps", type=int, nargs="+", default=[2400, 9600, 19200])
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    from hil import update_image

    image = update_image.build((1, 1), b"bench key")
    print("machine:", describe())
    print("image: %d bytes; link: %.1f %% loss, %d ms one-way delay, both ways" % (
        len(image), args.loss * 100, args.delay_ms))
    print("%9s  %9s  %8s  %12s  %s" % ("rate_bps", "time_s", "goodput", "chunks sent", "of"))
    for bps in args.rate_bps:
        secs, frac, sends, chunks = run(image, bps, args.loss, args.delay_ms, args.seed)
        print("%9d  %9.1f  %7.1f%%  %12d  %d" % (bps, secs, 100 * frac, sends, chunks))


if __name__ == "__main__":
    main()
