"""What the history checker found (ground/history.py): one Violation per
broken invariant, naming the frames and trace lines that show it, and the
Report of a whole trace (violations, what was checked, notes)."""

class Violation:
    """One breach of one invariant: what, and the frames and lines that show it."""

    def __init__(self, invariant, message, frame_ids=(), lines=()):
        self.invariant = invariant
        self.message = message
        self.frame_ids = list(frame_ids)
        self.lines = list(lines)

    def to_dict(self):
        return {"invariant": self.invariant, "message": self.message, "frame_ids": self.frame_ids, "lines": self.lines}

    def __str__(self):
        return "%s: %s" % (self.invariant, self.message)

    def __repr__(self):
        return "Violation(%r, %r)" % (self.invariant, self.message)


class Report:
    """What check() found. `ok` when nothing is broken; `notes` say what was
    not checked and why; `readable` is False when the file could not be read
    at all (no header)."""

    def __init__(self, path):
        self.path = path
        self.violations = []
        self.notes = []
        self.checked = []
        self.header = None
        self.lines = 0
        self.torn = False
        self.readable = True

    @property
    def ok(self):
        return not self.violations

    def by_invariant(self, name):
        return [v for v in self.violations if v.invariant == name]

    def to_dict(self):
        return {
            "trace": self.path, "ok": self.ok, "scenario": (self.header or {}).get("scenario"), "lines": self.lines,
            "torn": self.torn, "checked": self.checked, "violations": [v.to_dict() for v in self.violations],
            "notes": self.notes,
        }

    def format(self):
        h = self.header or {}
        head = "history of %s (scenario %s, %d lines): " % (self.path, h.get("scenario", "?"), self.lines)
        out = [head + ("clean" if self.ok else "%d violation(s)" % len(self.violations))]
        for v in self.violations:
            out.append("  VIOLATION " + str(v))
        for n in self.notes:
            out.append("  note: " + n)
        return "\n".join(out)

    def __str__(self):
        return self.format()
