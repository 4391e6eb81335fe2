"""`hil fuzz`'s report: what the board did with the hostile lines, by
category and reason, and how a crash is named (hil/fuzz.py drives the board
and fills it in)."""

import re

# What a checkpoint compares: (counter name, the wire reason it counts: None
# for all of them). A version-3 TELEMETRY carries them all; an older one only
# the total, as bad_frames (u16, saturating).
COUNTERS = (("rejects", None), ("unknown_src", "unknown_src"), ("long_lines", "too_long"), ("replayed", "replay"))


class Report:
    def __init__(self):
        self.sent = {}  # category -> lines
        self.owed = {}  # reason -> lines owed that reject ('' accepted)
        self.owed_by_category = {}  # category -> {reason: lines}
        self.board_counted = 0  # rejects the board counted over exact checkpoint intervals
        self.owed_counted = 0  # counted rejects owed over the same intervals
        self.board_by_counter = {}  # TELEMETRY counter -> increments over exact intervals (rejects: the total)
        self.owed_by_counter = {}  # the same, owed
        self.mismatches = []  # (line number, counter, owed, board)
        self.inexact = 0  # intervals a reboot cut (not compared)
        self.pings = self.answered = self.unanswered = 0
        self.valid_variants = 0  # hostile-category lines that came out valid frames (owed no reject)
        self.accepted = {}  # category -> hostile frames the board answered
        self.replays_after_boot = self.replays_after_boot_accepted = 0
        self.crashes = self.memory_errors = 0  # crash episodes; those whose text says MemoryError
        self.tracebacks = 0  # crash episodes with a Traceback
        self.recoveries = 0  # boards brought back after a crash or silence
        self.crash_kinds = {}  # "MemoryError at node/wire.py:226 in accept" -> episodes
        self.crash_text = []
        self.reboots_asked = self.reboots_unasked = 0
        self.ctrl_c = self.ctrl_c_stopped = 0
        self.power_cuts = 0
        self.lines = self.bytes = 0
        self.wall_s = 0.0
        self.max_silence_s = 0.0

    @property
    def ok(self):
        return (not self.mismatches and not self.accepted and not self.replays_after_boot_accepted
                and not self.crashes and not self.reboots_unasked
                and not self.unanswered and self.ctrl_c_stopped == self.ctrl_c)

    def to_dict(self):
        d = {k: v for k, v in vars(self).items()}
        d["mismatches"] = [list(m) for m in self.mismatches]
        d["ok"] = self.ok
        return d

    def format(self):
        rate = self.lines / self.wall_s if self.wall_s else 0.0
        out = ["hil fuzz: %d lines (%d bytes) in %.1f s: %.0f lines/s" % (self.lines, self.bytes, self.wall_s, rate)]
        out.append("  sent by category: " + ", ".join("%s %d" % kv for kv in sorted(self.sent.items())))
        owed = sorted(((r or "accepted"), n) for r, n in self.owed.items())
        out.append("  owed by reason:   " + ", ".join("%s %d" % kv for kv in owed))
        out.append("  rejects: the board counted %d where %d were owed (exact checkpoints; %d mismatch(es), %d interval(s)"
                   " cut by a reboot not compared)" % (self.board_counted, self.owed_counted, len(self.mismatches),
                                                       self.inexact))
        out.append("  board counters:   " + ", ".join(
            "%s %d/%d" % (name, self.board_by_counter[name], self.owed_by_counter.get(name, 0))
            for name, _ in COUNTERS if name in self.board_by_counter) + " (board/owed)")
        out.append("  pings: %d sent, %d answered, %d unanswered; max silence %.1f s" % (
            self.pings, self.answered, self.unanswered, self.max_silence_s))
        out.append("  hostile frames accepted: %s" % (", ".join("%s %d" % kv for kv in sorted(self.accepted.items()))
                                                      or "none"))
        out.append("  replayed after a reboot/power cut: %d sent, %d accepted" % (
            self.replays_after_boot, self.replays_after_boot_accepted))
        out.append("  crashes: %d (MemoryError %d, Traceback %d), boards brought back %d; reboots: asked %d, unasked %d;"
                   " power cuts %d; Ctrl-C %d sent, %d stopped the board"
                   % (self.crashes, self.memory_errors, self.tracebacks, self.recoveries, self.reboots_asked,
                      self.reboots_unasked, self.power_cuts, self.ctrl_c, self.ctrl_c_stopped))
        out.append("  valid frames among the hostile lines (mutations that changed nothing): %d" % self.valid_variants)
        for kind, n in sorted(self.crash_kinds.items(), key=lambda kv: -kv[1]):
            out.append("    %dx %s" % (n, kind))
        for line, name, owed, board in self.mismatches[:5]:
            out.append("    mismatch at line %d: %s owed %d, the board counted %d" % (line, name, owed, board))
        out.append("PASS" if self.ok else "FAIL")
        return "\n".join(out)


def crash_kind(text):
    """'MemoryError at node/wire.py:226 in accept' from the first traceback
    in `text` (its innermost frame); 'UnicodeError (no frames: at the REPL)'."""
    at = text.find(b"Traceback")
    where = None
    for line in text[at if at >= 0 else 0:].decode("utf-8", "replace").splitlines():
        m = re.match(r'\s*File "([^"]+)", line (\d+), in (\S+)', line)
        if m:
            where = "%s:%s in %s" % m.groups()
            continue
        m = re.match(r"(\w+(?:Error|Exception|Interrupt|Exit))\b", line.strip())
        if m and at >= 0:
            return "%s at %s" % (m.group(1), where) if where else "%s (no frames: at the REPL)" % m.group(1)
    m = re.search(rb"(\w+Error)", text)
    return (m.group(1).decode() if m else "crash text") + " (no traceback)"
