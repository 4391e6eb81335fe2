"""The history checker's frame_fates invariant (ground/history.py's docstring
has the rule): every sent frame has, for each recipient, exactly one final
fate (delivered or dropped) per copy, and no frame gets a fate it was never
sent. FrameFates is fed each frame event as it is recorded and judged at
the end event.

Memory stays bounded on a long run: a frame is kept while it still owes a
fate (in flight), then among the last KEEP_DONE complete frames (so a late
extra fate is still reported with the frame's own lines), then only its id,
in a set of id ranges (the router numbers frames in order, so those ranges
stay few: one, plus a gap per frame not yet complete). A fate for a frame
retired that far back is a violation at once; a frame still owing fates at
the end is one at the end, as before.

Where this departs from STYLE.md: ground-side code under CPython, so it
allocates freely.
"""

from bisect import bisect_right
from collections import OrderedDict

GROUND = 0
_LISTED = 20  # frames listed in one violation before "and N more"
KEEP_DONE = 4096  # complete frames kept whole after their last fate (then their id only)
_NO_DUPS = {}  # shared by every frame with no duplicate copies: never written to


def _lines(final):
    """The lines of a recipient's final fates, as _Sent.finals holds them."""
    if final is None:
        return []
    return [final] if final.__class__ is int else final


class _Sent:
    __slots__ = ("fid", "line", "src", "dst", "type", "need", "finals", "dups", "untargeted", "short", "over")

    def __init__(self, fid, line, src, dst, type_, need):
        self.fid = fid
        self.line = line
        self.src = src
        self.dst = dst
        self.type = type_
        self.need = need  # recipients that must get a final fate
        # recipient -> the line of its delivered/dropped, a list of lines
        # when several (_lines); few allocations per frame: a run feeds this
        # as it goes, beside everything else it keeps
        self.finals = {}
        self.dups = _NO_DUPS  # recipient -> extra copies made (a dict of its own from the first)
        self.untargeted = None  # line of a `dropped` with to null (covers everyone)
        # Recipients still owed a final fate, and recipients with more final
        # fates than copies; the ground's own copy of a frame to the ground
        # counts here (so the frame is complete when it has arrived), though
        # the verdict never requires it.
        self.short = len(need) if need else (1 if dst == GROUND and need is not None else 0)
        self.over = 0

    def _counted(self, to):
        """Whether `to` owes this frame fates (a recipient, or the ground's own copy)."""
        return self.need is not None and (to in self.need or (to == GROUND and self.dst == GROUND))

    def add_final(self, to, line):
        """A final fate for `to`: one copy fewer owed, or one more than made."""
        finals = self.finals
        got = finals.get(to)
        if got is None:
            finals[to] = line
            n = 0
        elif got.__class__ is int:
            finals[to] = [got, line]
            n = 1
        else:
            n = len(got)
            got.append(line)
        need = self.need  # _counted(to), written out: once per delivery
        if need is not None and (to in need or (to == GROUND and self.dst == GROUND)):
            want = 1 + self.dups.get(to, 0)
        else:
            want = 0
        if n < want:
            if n + 1 == want:
                self.short -= 1
        elif n == want:
            self.over += 1

    def add_dup(self, to):
        """One more copy for `to`: one more final fate owed."""
        if self.dups is _NO_DUPS:
            self.dups = {}
        want = 1 + self.dups.get(to, 0)
        self.dups[to] = want
        if self._counted(to):
            n = len(_lines(self.finals.get(to)))
            if n == want:
                self.short += 1
            elif n == want + 1:
                self.over -= 1

    @property
    def complete(self):
        return self.untargeted is not None or (self.need is not None and self.short == 0 and self.over == 0)


class _IdRanges:
    """A set of ints as sorted half-open ranges [lo, hi)."""

    def __init__(self):
        self.lo = []
        self.hi = []

    def __contains__(self, n):
        i = bisect_right(self.lo, n) - 1
        return i >= 0 and n < self.hi[i]

    def __len__(self):
        return len(self.lo)

    def add(self, n):
        lo, hi = self.lo, self.hi
        i = bisect_right(lo, n) - 1
        if i >= 0 and n < hi[i]:
            return
        joins_left = i >= 0 and hi[i] == n
        joins_right = i + 1 < len(lo) and lo[i + 1] == n + 1
        if joins_left and joins_right:
            hi[i] = hi[i + 1]
            del lo[i + 1], hi[i + 1]
        elif joins_left:
            hi[i] = n + 1
        elif joins_right:
            lo[i + 1] = n
        else:
            lo.insert(i + 1, n)
            hi.insert(i + 1, n + 1)


class FrameFates:
    """frame_fates: every sent frame's fates, judged as they come and at the end."""

    def __init__(self, violate):
        self.violate = violate  # fn(invariant, message, frame_ids, lines)
        self.sent = {}  # frame id -> _Sent: frames still owed a fate
        self.done = OrderedDict()  # frame id -> _Sent: the latest complete frames
        self.retired = _IdRanges()  # ids of complete frames no longer kept whole

    def _get(self, fid):
        s = self.sent.get(fid)
        return s if s is not None else self.done.get(fid)

    def _settle(self, s):
        """File s where it belongs now: owed a fate (sent) or complete (done)."""
        if s.complete:
            if self.sent.pop(s.fid, None) is not None:
                self.done[s.fid] = s
                while len(self.done) > KEEP_DONE:
                    self.retired.add(self.done.popitem(last=False)[0])
        elif self.done.pop(s.fid, None) is not None:
            self.sent[s.fid] = s

    def on_sent(self, fid, line, src, dst, type_, need):
        """A `sent` event; False (and a violation) if the id was sent before."""
        first = self._get(fid)
        if first is not None or fid in self.retired:
            where = "line %d" % first.line if first is not None else "long before: its fates were all in"
            self.violate("frame_fates", "line %d: frame id %d sent twice (first at %s)" % (line, fid, where),
                         frame_ids=[fid], lines=([first.line] if first is not None else []) + [line])
            return False
        s = _Sent(fid, line, src, dst, type_, need)
        self.sent[fid] = s
        self._settle(s)
        return True

    def on_fate(self, e, fate, fid, line):
        """Any other frame event of frame `fid` (its fate for one recipient)."""
        s = self.sent.get(fid)
        if s is not None and (fate == "delivered" or fate == "dropped"):
            to = e.get("to")
            if to is not None:  # the common case: a final fate for a frame still owed some
                s.add_final(to, line)
                if s.short == 0 and s.over == 0 and s.need is not None:
                    self._settle(s)  # complete now (a frame still owed fates has no untargeted drop)
                return
        if s is None:
            s = self.done.get(fid)
        if s is None:
            if fid in self.retired:
                if fate in ("delivered", "dropped", "duplicated"):
                    self.violate("frame_fates", "line %d: %s for frame %d to %s after all its fates were in (more"
                                 " than %d frames before)" % (line, fate, fid, e.get("to"), KEEP_DONE),
                                 frame_ids=[fid], lines=[line])
                return
            self.violate("frame_fates", "line %d: %s for frame %d, which was never sent" % (line, fate, fid),
                         frame_ids=[fid], lines=[line])
            return
        to = e.get("to")
        if fate in ("delivered", "dropped"):
            if to is None:
                if fate == "dropped":
                    if s.untargeted is not None or s.finals:
                        self.violate("frame_fates", "frame %d (sent line %d): dropped for every recipient at line %d"
                                     " after other fates" % (fid, s.line, line), frame_ids=[fid], lines=[s.line, line])
                    s.untargeted = line
                    self._settle(s)
                else:
                    self.violate("trace", "line %d: delivered frame %d without a recipient" % (line, fid),
                                 frame_ids=[fid], lines=[line])
                return
            s.add_final(to, line)
            self._settle(s)
        elif fate == "duplicated":
            s.add_dup(to)
            self._settle(s)
        elif fate not in ("corrupted", "converted"):  # alterations on the way, not final fates
            self.violate("trace", "line %d: unknown fate %r for frame %d" % (line, fate, fid), frame_ids=[fid], lines=[line])

    def judge(self):
        """At the end event: every frame kept is judged (a retired one was complete)."""
        missing = []
        extra = []
        for s in list(self.done.values()) + list(self.sent.values()):
            if s.untargeted is not None:
                continue
            if s.need is None:
                missing.append((s, ["everyone (the frame was not routed)"]))
                continue
            lack = []
            for to in sorted(s.need | set(s.finals)):
                want = 1 + s.dups.get(to, 0) if to in s.need else 0
                got = len(_lines(s.finals.get(to)))
                if s.dst == GROUND and to == GROUND:
                    continue  # the ground's own copy: delivered at once, not required
                if got < want:
                    lack.append(str(to) if want == 1 else "%d (%d of %d copies)" % (to, want - got, want))
                elif got > want:
                    extra.append((s, to, got, want))
            if lack:
                missing.append((s, lack))
        if missing:
            missing.sort(key=lambda x: x[0].line)
            shown = missing[:_LISTED]
            text = "; ".join("frame %d (%s %s -> %s, line %d): no fate for %s"
                             % (s.fid, s.type, s.src, s.dst, s.line, ", ".join(lack)) for s, lack in shown)
            if len(missing) > _LISTED:
                text += "; and %d more frames" % (len(missing) - _LISTED)
            self.violate("frame_fates", "%d sent frame(s) without a fate for every recipient: %s" % (len(missing), text),
                         [s.fid for s, _ in missing], [s.line for s, _ in missing])
        for s, to, got, want in sorted(extra, key=lambda x: x[0].line)[:_LISTED]:
            self.violate("frame_fates", "frame %d (%s %s -> %s, line %d) to %s: %d final fates (lines %s), expected %d"
                         % (s.fid, s.type, s.src, s.dst, s.line, to, got, ", ".join(map(str, _lines(s.finals[to]))), want),
                         [s.fid], [s.line] + _lines(s.finals[to]))
