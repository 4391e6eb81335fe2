"""`hil fuzz`: hostile input to a live board, and what the board did with it.

    hil fuzz PORT --board-json board.json [--lines N | --seconds T] [--seed S]
    hil fuzz --emulate [--lines N] [--power-cut-every K] ...   # a fresh emulated Pico

Sends hostile lines (hil/fuzz_lines.py: random, mutated, truncated, oversize,
bad crc, bad tag, unsigned, bad fields, replayed, the board's own frames,
strangers) mixed with legit pings, plus Ctrl-C bytes now and then, and
watches the board:

  - rejects: at each checkpoint (every --checkpoint lines) it stops, sends a
    ping, waits for the answer (so every line before it was read), then for
    the next TELEMETRY, and compares the board's counters with the rejects
    the lines were owed, counted by reason on our side: a version-3
    TELEMETRY's `rejects` (all reasons), `unknown_src`, `long_lines`
    (too_long) and `replayed` (replay), u32 each; an older board's
    `bad_frames` total (u16, mod 2**16, until it saturates at 65535);
  - accepted hostile frames: every valid frame sent carries a unique id in a
    PREVOTE_REQUEST term; an answer to a hostile one, or a second answer to
    one ping, is a forged or replayed frame accepted, named by category;
  - liveness: each ping must be answered within --answer-timeout-s;
  - crash text: anything the board prints that is not a frame is kept;
    MemoryError and Traceback are counted; a crashed board is brought back
    (reset when emulated, else Ctrl-D at the REPL) and the fuzz goes on;
  - reboots: a HELLO the fuzzer did not ask for is an unasked reboot. Any
    HELLO from the board moves the fuzzer's auth counter to its next block,
    as a hardened peer does (fuzz_lines.Hostile.peer_booted), so its pings
    clear the replay floor the board restored at boot.

Ctrl-C: the board must stop (KeyboardInterrupt, the REPL); the fuzzer then
asks for a soft reboot (Ctrl-D) and waits for the HELLO. With --emulate and
--power-cut-every K, the board's power is cut and restored every K lines,
after which old pings are replayed: a board whose replay window does not
survive the cut answers them (counted as replays accepted across reboots).

Exit status: 0 when every reject was counted, nothing hostile was accepted,
no crash text, no unasked reboot and every ping answered; 1 otherwise; 2 on
bad input. Every wait has a timeout.
"""

import json
import os
import random
import select
import sys
import time

from ground import firmware
from ground import protocol as P
from hil import fuzz_lines as FL
from hil.fuzz_report import COUNTERS, Report, crash_kind

wire = firmware.wire
U16 = 0x10000
U32 = 0x100000000
DEFAULT_MIX = {"random": 3, "mutated": 3, "truncated": 2, "oversize": 1, "bad_crc": 2, "bad_tag": 2, "unsigned": 1,
               "bad_fields": 2, "replay": 2, "replay_own": 1, "stranger": 1}
CRASH_WORDS = (b"MemoryError", b"Traceback")
AHEAD_BYTES = 16384  # bytes sent past the last answered ping at most: what a crashed board's REPL can swallow
FLOW_PING_LINES = 100  # a ping (not waited for) every so many lines, so the fuzzer knows how far the board read


class FuzzError(RuntimeError):
    """The fuzz could not go on: no board there, a board that never answers."""


class Fuzzer:
    """Drives one board through `port` (a pyserial object, opened); `board`
    is an EmulatedBoard when the fuzzer may reset and power-cut it."""

    def __init__(self, port, target, seed=1, board=None, answer_timeout_s=20.0, checkpoint=2000, mix=None,
                 counter_base=None, say=None):
        self.port = port
        self.t = target
        self.rng = random.Random(seed)
        self.board = board
        self.answer_timeout_s = answer_timeout_s
        self.checkpoint_lines = min(checkpoint, 30000)  # < 2**16 rejects between two reads of a u16 counter
        mix = dict(mix or DEFAULT_MIX)
        if target.key is None:
            for c in FL.SIGNED_ONLY:
                mix.pop(c, None)
        self.cats = [c for c in FL.CATEGORIES if mix.get(c)]
        self.weights = [mix[c] for c in self.cats]
        base = counter_base if counter_base is not None else int(time.time() - 1_700_000_000) * 16
        self.gen = FL.Hostile(target, self.rng, base & 0xFFFFFFFF)
        self.r = Report()
        self.say = say or (lambda text: None)
        self.splitter = wire.FrameSplitter()
        self.legit = {}  # ping id -> its line
        self.answers = {}  # id -> answers seen
        self.valid_ids = set()  # hostile-category lines the codec reads as valid frames (a mutation that changed nothing)
        self.raw = bytearray()  # what the board sent since the last scan (frames and text)
        self.crashed = False  # crash words seen: stop sending, bring the board back
        self.quiet_crash = False  # a Ctrl-C's KeyboardInterrupt traceback is expected, not a crash
        self.ping_bytes = {}  # flow-control ping id -> bytes sent up to it
        self.acked_bytes = 0  # bytes the board has shown it read (its answer to a later ping)
        self.after_boot_ids = set()  # pings replayed right after a power cut
        self.last_frame = time.monotonic()
        self.telemetry = None  # {counter: value} of the newest TELEMETRY (COUNTERS; only rejects before version 3)
        self.tel_wrap = U32  # what its counters wrap at: U16 for bad_frames
        self.tel_seen = 0
        self.boots = 0  # HELLOs seen
        self.expect_boot = None  # a boot we asked for: "exact" (nothing in flight) or "inexact"
        self.baseline = None  # the board's counters at the last exact checkpoint ({}: a fresh boot, all 0)
        self.owed_since = {}  # counter -> rejects owed since then
        self.cut = False  # a reboot fell in this interval

    # ---- reading ---------------------------------------------------------

    def _read(self, timeout_s):
        r, _, _ = select.select([self.port.fileno()], [], [], max(0.0, timeout_s))
        if not r:
            return
        data = self.port.read(self.port.in_waiting or 1)
        self.raw += data
        if len(self.raw) > 262144:
            del self.raw[:-131072]
        if not self.crashed and not self.quiet_crash and any(w in self.raw[-len(data) - 16:] for w in CRASH_WORDS):
            self.crashed = True
        for line in self.splitter.feed(data):
            self._board_line(line)

    def _board_line(self, line):
        try:
            f = P.parse_line(line, key=self.t.key)
        except P.FrameError:
            return  # text (a banner, a traceback): read from self.raw
        if f.src != self.t.node_id:
            return
        now = time.monotonic()
        self.r.max_silence_s = max(self.r.max_silence_s, now - self.last_frame)
        self.last_frame = now
        if len(self.gen.own) < 256:
            self.gen.own.append(bytes(line))
        elif self.rng.random() < 0.01:
            self.gen.own[self.rng.randrange(256)] = bytes(line)
        if f.type == P.HELLO:
            self.gen.peer_booted()  # as a peer would: our next counters clear the floor it restored
        if f.type == P.HELLO and f.dst == P.ADDR_GROUND:  # one boot: a HELLO to the ground (and one to the cluster)
            self.boots += 1
            self.gen.window.reboot()  # its replay floors: everything below the end of each source's block
            self.baseline = {}  # a fresh boot counts from zero
            if self.expect_boot == "exact":  # we stopped sending before it: nothing owed is in flight
                self.owed_since, self.cut = {}, False
            else:
                self.cut = True
            if self.expect_boot:
                self.r.reboots_asked += 1
            elif self.crashed:
                pass  # the crashed board's REPL ran something we sent (a Ctrl-D): part of that crash
            elif self.boots > 1 or self.r.lines:
                self.r.reboots_unasked += 1
                self.say("the board rebooted unasked after line %d" % self.r.lines)
            self.expect_boot = None
        elif f.type == P.TELEMETRY:
            m = f.msg
            if "rejects" in m:
                self.telemetry = {name: m[name] for name, _ in COUNTERS}
                self.tel_wrap = U32
            else:  # before version 3: the total only, a u16 that sticks at 65535
                self.telemetry = {"rejects": m["bad_frames"]}
                self.tel_wrap = U16
            self.tel_seen += 1
        elif f.type == P.PREVOTE and f.dst != P.ADDR_GROUND:
            self._answer(f.msg["term"])

    def _answer(self, i):
        n = self.answers.get(i, 0) + 1
        self.answers[i] = n
        if i in self.legit and n == 1:
            self.r.answered += 1
            self.gen.answered.append(self.legit[i])
            if len(self.gen.answered) > 512:
                self.gen.answered.pop(self.rng.randrange(512))
            self.acked_bytes = max(self.acked_bytes, self.ping_bytes.pop(i, 0))
            return
        if i in self.valid_ids and n == 1:
            return
        cat = "replay (a ping answered again)" if i in self.legit else self.gen.category_of.get(i, "unknown id %d" % i)
        self.r.accepted[cat] = self.r.accepted.get(cat, 0) + 1
        if i in self.after_boot_ids:
            self.r.replays_after_boot_accepted += 1

    def _scan_text(self, expected=()):
        """Count crash words in the text since the last scan (not those
        expected: a Ctrl-C's KeyboardInterrupt traceback)."""
        text = bytes(self.raw)
        self.raw.clear()
        self.crashed = False
        if not text or any(e in text for e in expected):
            return text
        found = [i for i in (text.find(w) for w in CRASH_WORDS) if i >= 0]
        if found:  # one crash episode: what follows it is its consequence (our lines typed at its REPL)
            at = min(found)
            first = text[max(0, at - 2000):at + 1000]  # what led to it, too
            self.r.crashes += 1
            self.r.memory_errors += b"MemoryError" in first
            self.r.tracebacks += b"Traceback" in first
            self.r.crash_text.append(first.decode("utf-8", "replace"))
            kind = crash_kind(first)
            self.r.crash_kinds[kind] = self.r.crash_kinds.get(kind, 0) + 1
            self.say("crash after line %d: %r" % (self.r.lines, first[-300:]))
        return text

    def _wait(self, done, timeout_s):
        deadline = time.monotonic() + timeout_s
        while not done():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._read(min(left, 0.2))
        return True

    # ---- sending --------------------------------------------------------

    def _send(self, data):
        self.port.write(data)
        self.r.bytes += len(data)
        self._read(0)

    def _line(self, line, want):
        self.r.lines += 1
        self.r.sent[want.category] = self.r.sent.get(want.category, 0) + 1
        self.r.owed[want.reason] = self.r.owed.get(want.reason, 0) + 1
        by = self.r.owed_by_category.setdefault(want.category, {})
        by[want.reason] = by.get(want.reason, 0) + 1
        if want.reason not in (FL.ACCEPT, FL.OVERFLOW):
            owed = self.owed_since
            owed["rejects"] = owed.get("rejects", 0) + 1
            for name, reason in COUNTERS[1:]:
                if reason == want.reason:
                    owed[name] = owed.get(name, 0) + 1
        elif want.id is not None and want.category not in ("ping", "stranger"):
            self.valid_ids.add(want.id)
            self.r.valid_variants += 1
        self._send(line + b"\x00")

    def _ping(self, wait=True):
        line, want = self.gen.ping()
        if want.reason != FL.ACCEPT:
            raise FuzzError("a legit ping would be refused (%s): the target settings are wrong" % want.reason)
        self.legit[want.id] = line
        self.r.pings += 1
        self.ping_bytes[want.id] = self.r.bytes + len(line) + 1  # set first: the answer may be read while sending
        self._line(line, want)
        if not wait:
            return want.id
        ok = self._wait(lambda: self.answers.get(want.id) or self.crashed, self.answer_timeout_s)
        ok = ok and bool(self.answers.get(want.id))
        if not ok:
            self.r.unanswered += 1
            self.ping_bytes.pop(want.id, None)
        return ok

    def _flow(self):
        """Keep at most AHEAD_BYTES in flight: wait for the board to answer a
        ping sent after them. False: it did not (it is brought back)."""
        if self.r.bytes - self.acked_bytes <= AHEAD_BYTES:
            return True
        if not self.ping_bytes:
            self._ping(wait=False)
        upto = max(self.ping_bytes.values(), default=0)  # empty: answered while it was being sent
        ok = self._wait(lambda: self.acked_bytes >= upto or self.crashed, self.answer_timeout_s)
        if self.crashed:
            return False
        if not ok:
            self.r.unanswered += len(self.ping_bytes)
            self.say("no answer to a ping after line %d: bringing the board back" % self.r.lines)
            self._scan_text()
            self.recover()
        return ok

    # ---- checkpoints, Ctrl-C, power --------------------------------------

    def checkpoint(self):
        """Ping, wait for the answer and the TELEMETRY after it, compare the
        board's bad_frames with what was owed. False: the board did not answer."""
        if not self._ping():
            self._wait(lambda: b">>> " in self.raw, 2.0 if self.crashed else 0)
            self._scan_text()
            self.say("no answer to a ping after line %d: bringing the board back" % self.r.lines)
            self.recover()
            return False
        seen = self.tel_seen
        if not self._wait(lambda: self.tel_seen > seen, self.answer_timeout_s):
            self.say("no TELEMETRY after line %d" % self.r.lines)
            self.cut = True
            return True
        self._scan_text()
        now = self.telemetry
        if self.tel_wrap == U16 and now["rejects"] == 0xFFFF:
            self.cut = True  # bad_frames stuck at its ceiling: nothing more to compare on this boot
        if self.baseline is not None and not self.cut:
            for name, _ in COUNTERS:
                if name not in now:
                    continue
                board = (now[name] - self.baseline.get(name, 0)) % self.tel_wrap
                owed = self.owed_since.get(name, 0)
                r = self.r
                r.board_by_counter[name] = r.board_by_counter.get(name, 0) + board
                r.owed_by_counter[name] = r.owed_by_counter.get(name, 0) + owed
                if name == "rejects":
                    r.board_counted += board
                    r.owed_counted += owed
                if board != owed % self.tel_wrap:
                    r.mismatches.append((r.lines, name, owed, board))
                    self.say("line %d: %s owed %d since the last checkpoint, the board counted %d"
                             % (r.lines, name, owed, board))
        elif self.cut and self.baseline is not None:
            self.r.inexact += 1
        self.baseline, self.owed_since, self.cut = now, {}, False
        return True

    def recover(self):
        """Bring a board that stopped answering back: reset it (emulated),
        else Ctrl-C then Ctrl-D (soft reboot) at its REPL; wait for HELLO."""
        self.expect_boot = "inexact"
        self.r.recoveries += 1
        boots = self.boots
        if self.board is not None:
            self.board.reset()
        else:
            self._send(b"\x03")
            time.sleep(0.3)
            self._send(b"\x04")
        if not self._wait(lambda: self.boots > boots, self.answer_timeout_s):
            raise FuzzError("the board did not boot again after line %d; it last said %r"
                            % (self.r.lines, bytes(self.raw[-300:])))
        self.raw.clear()  # what it printed since the crash was scanned: the rest is that crash's tail and the boot
        self.crashed = False
        self.cut = True
        self.ping_bytes.clear()  # lost with the crash: not counted as unanswered
        self.acked_bytes = self.r.bytes

    def ctrl_c(self):
        """Ctrl-C must stop the board (KeyboardInterrupt at the REPL); then a
        soft reboot (Ctrl-D) brings main.py back."""
        if not self.checkpoint():
            return
        self.r.ctrl_c += 1
        self.quiet_crash = True
        self._send(b"\x03")
        stopped = self._wait(lambda: b">>> " in self.raw, self.answer_timeout_s)
        if stopped:
            self.r.ctrl_c_stopped += 1
        self._scan_text(expected=(b"KeyboardInterrupt",))
        self.quiet_crash = False
        self.expect_boot = "exact"
        boots = self.boots
        self._send(b"\x04")
        if not self._wait(lambda: self.boots > boots, self.answer_timeout_s):
            self.say("no HELLO after Ctrl-C, Ctrl-D at line %d" % self.r.lines)
            self.recover()
        self._scan_text()
        self._replay_after_boot()

    def power_cycle(self):
        """Cut the (emulated) board's power, restore it, and replay pings it
        answered before the cut: none may be answered again."""
        if self.board is None or not self.checkpoint():
            return
        self.r.power_cuts += 1
        self.board.power_cut()
        time.sleep(self.rng.uniform(0.0, 0.2))
        self.expect_boot = "exact"
        boots = self.boots
        self.board.power_on()
        if not self._wait(lambda: self.boots > boots, self.answer_timeout_s):
            raise FuzzError("the board did not boot after a power cut at line %d" % self.r.lines)
        self._replay_after_boot()

    def _replay_after_boot(self):
        """Right after a reboot we asked for: pings the board answered before
        it, byte for byte. A replay window that did not survive the reboot
        answers them again."""
        for line in self.rng.sample(self.gen.answered, min(16, len(self.gen.answered))):
            i = FL.term_of(line, self.t.key)
            self.after_boot_ids.add(i)
            self.r.replays_after_boot += 1
            self._line(line, self.gen.want("replay", line, i))
        self.checkpoint()

    # ---- the run ---------------------------------------------------------

    def run(self, lines=None, seconds=None, ctrl_c_every=0, power_cut_every=0, progress=None):
        if lines is None and seconds is None:
            raise ValueError("give a number of lines or of seconds")
        start = time.monotonic()
        if not self._wait(lambda: self.tel_seen > 0, self.answer_timeout_s):
            raise FuzzError("no TELEMETRY from node %d within %.0f s: is a board running the firmware there?"
                            % (self.t.node_id, self.answer_timeout_s))
        self.baseline, self.cut = None, False  # the first checkpoint sets the baseline
        self.checkpoint()
        n = 0
        while (lines is None or n < lines) and (seconds is None or time.monotonic() - start < seconds):
            n += 1
            cat = self.rng.choices(self.cats, self.weights)[0]
            line, want = self.gen.make(cat)
            self._line(line, want)
            if n % FLOW_PING_LINES == 0:
                self._ping(wait=False)
            self._flow()
            if self.crashed:  # stop feeding a board that fell into its REPL: bring it back first
                self._wait(lambda: b">>> " in self.raw, 2.0)  # the whole traceback, up to the prompt
                self._scan_text()
                self.recover()
            if n % self.checkpoint_lines == 0:
                self.checkpoint()
                if progress:
                    progress(self.r, time.monotonic() - start)
            if ctrl_c_every and n % ctrl_c_every == 0:
                self.ctrl_c()
            if power_cut_every and n % power_cut_every == 0:
                self.power_cycle()
        self.checkpoint()
        self.r.wall_s = time.monotonic() - start
        self._scan_text()
        return self.r


# ---- the verb ---------------------------------------------------------------


def add_arguments(p):
    p.add_argument("port", nargs="?", help="the board's serial port or pyserial URL (or --emulate)")
    p.add_argument("--board-json", metavar="FILE", help="the board's board.json: node id, members, auth key")
    p.add_argument("--key", metavar="HEX", help="the fleet key (default: board.json's auth_key)")
    p.add_argument("--peer", type=int, metavar="N", help="a member id to sign pings as (default: another member)")
    p.add_argument("--emulate", action="store_true", help="fuzz a fresh emulated Pico (signed fleet, flashed here)")
    p.add_argument("--lines", type=int, metavar="N", help="hostile lines to send (default 10000 unless --seconds)")
    p.add_argument("--seconds", type=float, metavar="T", help="or send for T wall seconds")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--mix", action="append", default=[], metavar="CATEGORY=WEIGHT",
                   help="weight of a category of hostile line (%s; defaults %s); repeatable"
                   % (", ".join(FL.CATEGORIES), ", ".join("%s=%d" % kv for kv in DEFAULT_MIX.items())))
    p.add_argument("--checkpoint", type=int, default=2000, metavar="K", help="compare reject counters every K lines")
    p.add_argument("--ctrl-c-every", type=int, default=0, metavar="K", help="send Ctrl-C every K lines (default never)")
    p.add_argument("--power-cut-every", type=int, default=0, metavar="K",
                   help="--emulate: cut and restore power every K lines, then replay old pings")
    p.add_argument("--answer-timeout-s", type=float, default=20.0, metavar="S", help="how long a ping may go unanswered")
    p.add_argument("--json", metavar="FILE", help="also write the report as JSON")


def main(args):
    if not args.emulate and not args.port:
        print("hil fuzz: give PORT (and --board-json), or --emulate", file=sys.stderr)
        return 2
    lines = args.lines if args.lines is not None or args.seconds is not None else 10000
    farm = None
    try:
        mix = parse_mix(args.mix)
        if args.emulate:
            farm = EmulatedTarget()
            board_json, port_name, board = farm.board_json, farm.board.device, farm.board
        else:
            board_json, port_name, board = args.board_json, args.port, None
        target = target_from(board_json, args.key, args.peer)
        from ground.links import open_serial

        port = open_serial(port_name, baudrate=115200, timeout=0, write_timeout=args.answer_timeout_s)
        fz = Fuzzer(port, target, seed=args.seed, board=board, answer_timeout_s=args.answer_timeout_s,
                    checkpoint=args.checkpoint, mix=mix,
                    say=lambda t: print("  " + t, file=sys.stderr, flush=True))
        print("hil fuzz: node %d on %s, %s lines, seed %d" % (target.node_id, port_name, lines or "-", args.seed),
              flush=True)
        r = fz.run(lines=lines, seconds=args.seconds, ctrl_c_every=args.ctrl_c_every,
                   power_cut_every=args.power_cut_every if board is not None else 0, progress=_progress)
    except (ValueError, OSError, FuzzError) as e:
        print("hil fuzz: %s" % e, file=sys.stderr)
        return 2
    finally:
        if farm is not None:
            farm.stop()
    print(r.format())
    if args.json:
        with open(args.json, "w") as f:
            json.dump(r.to_dict(), f, indent=1)
    return 0 if r.ok else 1


def parse_mix(items):
    """['stranger=5', 'random=0'] over DEFAULT_MIX; ValueError names the bad item."""
    mix = dict(DEFAULT_MIX)
    for item in items:
        cat, sep, value = item.partition("=")
        if not sep or cat not in FL.CATEGORIES or not value.isdigit():
            raise ValueError("--mix %r: CATEGORY=WEIGHT, a whole number, CATEGORY one of %s"
                             % (item, ", ".join(FL.CATEGORIES)))
        mix[cat] = int(value)
    if not any(mix.values()):
        raise ValueError("--mix: every weight is 0")
    return mix


def _progress(r, elapsed):
    print("  %d lines, %.0f lines/s, %d rejects counted, %d pings answered"
          % (r.lines, r.lines / elapsed if elapsed else 0, r.board_counted, r.answered), file=sys.stderr, flush=True)


def target_from(board_json, key_hex=None, peer=None):
    """A Target from a board.json (and --key, --peer); ValueError names the file."""
    if not board_json:
        raise ValueError("--board-json: the board's board.json is needed for its node id and members")
    try:
        with open(board_json) as f:
            cfg = json.load(f)
        node_id, cluster, members = cfg["node_id"], cfg["cluster"], cfg["members"]
    except (OSError, ValueError, KeyError) as e:
        raise ValueError("%s: %s" % (board_json, e)) from None
    hexkey = key_hex or cfg.get("auth_key")
    try:
        key = bytes.fromhex(hexkey) if hexkey else None
    except ValueError:
        raise ValueError("%s: auth_key/--key %r is not hex" % (board_json, hexkey)) from None
    proto = P.VERSION  # the newest; a version.json beside board.json says the image's (node/config.py PROTOCOLS)
    try:
        with open(os.path.join(os.path.dirname(os.path.abspath(board_json)), "version.json")) as f:
            proto = firmware.config.protocols(tuple(json.load(f)["version"]))[1]
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        pass
    return FL.Target(node_id, cluster, members, key, bool(cfg.get("require_auth")), proto, peer)


class EmulatedTarget:
    """A fresh emulated Pico for `hil fuzz --emulate`: the firmware as `hil
    flash` builds it, version 3.0 (TELEMETRY with u32 counters by reason), a
    signed three-member cluster of which the board is node 1, TELEMETRY
    every 200 ms, no watchdog."""

    def __init__(self, folder=None, telemetry_ms=200):
        import tempfile

        from hil import flash as flash_mod
        from hil.emulated import EmulatedBoard

        self._tmp = None
        if folder is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="hil-fuzz-")
            folder = self._tmp.name
        cfg = {"node_id": 1, "cluster": 1, "members": [1, 2, 3], "election_timeout_ms": 1000,
               "telemetry_ms": telemetry_ms, "auth_key": "00112233445566778899aabbccddeeff", "require_auth": True,
               "watchdog_ms": 0, "seed": 7}
        built = flash_mod.build(os.path.join(folder, ".image"))
        bdir = os.path.join(folder, "board")
        flash_mod.write_image(bdir, version=(3, 0), board_config=cfg, built=built)
        self.board_json = os.path.join(bdir, "board.json")
        self.board = EmulatedBoard(bdir, name="fuzz")
        self.board.start()

    def stop(self):
        self.board.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
