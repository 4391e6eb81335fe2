"""Contact plans: when each directed link is up, how fast, how far.

Two formats are read, both into one ContactPlan:

- ION's ionadmin commands (ionrc(5), as in an .ionrc or the ionadmin part of
  an .rc file):
      a contact +START +STOP FROM TO RATE [CONFIDENCE]   RATE in bytes/s
      a range   +START +STOP A B OWLT                     OWLT in seconds
  Times are seconds after the reference time (`+ss`; decimals are accepted,
  an extension) or absolute `yyyy/mm/dd-hh:mm:ss` (UTC), which needs the
  plan's `epoch`: the absolute time of mission 0. `@ TIME` moves the
  reference time, as in ionadmin. Contacts are directional. A range is
  directional too, but one whose first node is the lower number also
  declares the reverse direction unless the plan has a range for the
  reverse pair itself (ionrc's convenience rule). Registration contacts
  (start -1) and hypothetical ones (stop 0) schedule nothing and are
  skipped. ionadmin commands that do not touch the plan (1, s, x, e, v, m,
  ^, h, ?, i, l) are accepted and ignored, and so are the other admin
  programs' sections of an .rc file (## begin bpadmin ... ## end bpadmin).
  `c` and `d` (change, delete) are refused: write the plan as it is.
- HDTN's JSON contact plan:
      {"contacts": [{"contact": 0, "source": 1, "dest": 2, "startTime": 0,
                     "endTime": 2000, "rateBitsPerSec": 9600, "owlt": 1}]}
  startTime / endTime in seconds after mission 0, rateBitsPerSec in bit/s
  (0: no limit, as in HDTN; the deprecated "rate" is in Mbit/s), owlt in
  seconds (the contact's one way light time, in its direction only).

Into a link spec (ground.pipeline keys), per directed pair (src, dst):
  contacts_ms     the pair's contact windows: the link is up only inside them
                  (gated when the frame is sent, as contacts_ms always is)
  rate_schedule   [start_ms, end_ms, bps] per contact (bps = 8 x ION's bytes/s)
  delay_schedule  [start_ms, end_ms, delay_ms] per range (ION) or contact (HDTN)
Pairs with no contact in the plan keep the scenario's link model (and take
the plan's light times if it has ranges for them), or are never up with
`unplanned: down`: no contact, no transmission.

Refused, naming file:line: an unknown command or key, a malformed number or
time, a contact that ends before it starts, a zero rate (ION), and two
windows that overlap for one directed pair (contacts, or ranges): "the
intervals of scheduled contacts are not allowed to overlap" (ionrc(5)).
"""

import datetime
import json
import os

NS_PER_S = 1_000_000_000
NS_PER_MS = 1_000_000


class PlanError(ValueError):
    """A contact plan that cannot be used: the message starts with file:line."""


class Contact:
    def __init__(self, src, dst, start_ns, end_ns, rate_bps, where):
        self.src, self.dst = src, dst
        self.start_ns, self.end_ns = start_ns, end_ns
        self.rate_bps = rate_bps  # None: no limit
        self.where = where

    def __repr__(self):
        return "Contact(%d->%d, %g..%g s, %r bps, %s)" % (
            self.src, self.dst, self.start_ns / NS_PER_S, self.end_ns / NS_PER_S, self.rate_bps, self.where)


class Range:
    def __init__(self, src, dst, start_ns, end_ns, owlt_ns, where, implied=False):
        self.src, self.dst = src, dst
        self.start_ns, self.end_ns = start_ns, end_ns
        self.owlt_ns = owlt_ns
        self.where = where
        self.implied = implied  # the reverse of an ION range a < b

    def __repr__(self):
        return "Range(%d->%d, %g..%g s, owlt %g s, %s%s)" % (
            self.src, self.dst, self.start_ns / NS_PER_S, self.end_ns / NS_PER_S, self.owlt_ns / NS_PER_S,
            self.where, ", implied" if self.implied else "")


class ContactPlan:
    """Contacts and ranges by directed pair, checked for overlaps."""

    def __init__(self, path, fmt, contacts, ranges, unplanned="up", imply_reverse=None):
        if unplanned not in ("up", "down"):
            raise PlanError("%s: unplanned must be 'up' or 'down', got %r" % (path, unplanned))
        self.path = path
        self.format = fmt
        self.unplanned = unplanned
        self.contacts = {}  # (src, dst) -> [Contact] by start
        self.ranges = {}  # (src, dst) -> [Range] by start
        for c in contacts:
            self.contacts.setdefault((c.src, c.dst), []).append(c)
        explicit = {}
        for r in ranges:
            explicit.setdefault((r.src, r.dst), []).append(r)
        if imply_reverse is None:
            imply_reverse = fmt == "ion"  # HDTN's owlt belongs to one directed contact
        for (a, b), rs in list(explicit.items()):
            if imply_reverse and a < b and (b, a) not in explicit:  # ionrc: a < b declares b -> a too
                self.ranges.setdefault((b, a), []).extend(
                    Range(b, a, r.start_ns, r.end_ns, r.owlt_ns, r.where, implied=True) for r in rs)
        for k, rs in explicit.items():
            self.ranges.setdefault(k, []).extend(rs)
        for what, table in (("contact", self.contacts), ("range", self.ranges)):
            for (a, b), items in table.items():
                items.sort(key=lambda x: (x.start_ns, x.end_ns))
                for p, q in zip(items, items[1:]):
                    if q.start_ns < p.end_ns:
                        raise PlanError("%s: %s %d -> %d [%s, %s) overlaps the %s at %s [%s, %s): "
                                        "windows for one pair must not overlap"
                                        % (q.where, what, a, b, _s(q.start_ns), _s(q.end_ns), what, p.where,
                                           _s(p.start_ns), _s(p.end_ns)))

    def pairs(self):
        return sorted(set(self.contacts) | set(self.ranges))

    def nodes(self):
        """{node id: where it first appears}."""
        out = {}
        for table in (self.contacts, self.ranges):
            for (a, b), items in table.items():
                for n in (a, b):
                    out.setdefault(n, items[0].where)
        return out

    def link_keys(self, src, dst):
        """The link spec keys this plan gives directed pair (src, dst)."""
        keys = {}
        cs = self.contacts.get((src, dst))
        if cs:
            keys["contacts_ms"] = [[c.start_ns / NS_PER_MS, c.end_ns / NS_PER_MS] for c in cs]
            keys["rate_schedule"] = [[c.start_ns / NS_PER_MS, c.end_ns / NS_PER_MS, c.rate_bps] for c in cs]
        rs = self.ranges.get((src, dst))
        if rs:
            keys["delay_schedule"] = [[r.start_ns / NS_PER_MS, r.end_ns / NS_PER_MS, r.owlt_ns / NS_PER_MS] for r in rs]
        return keys

    def merge(self, src, dst, spec):
        """spec (a scenario link model) with this plan's keys for src -> dst.

        The plan's keys replace the same keys in spec; rate_bps and delay_ms
        stay as the values outside the plan's windows. A pair with no
        contact: the link model's own windows, or never up with unplanned:
        down."""
        spec = dict(spec)
        keys = self.link_keys(src, dst)
        if "contacts_ms" not in keys and self.unplanned == "down":
            keys["contacts_ms"] = []  # no contact, no transmission (ranges alone do not make a link)
        if "rate_schedule" in keys and "mahimahi" in spec:
            keys.pop("rate_schedule")  # the Mahimahi trace is the line; the plan gates it
        spec.update(keys)
        return spec

    def min_delay_ms(self):
        ds = [r.owlt_ns / NS_PER_MS for rs in self.ranges.values() for r in rs if r.owlt_ns]
        return min(ds) if ds else None

    def __repr__(self):
        return "ContactPlan(%s, %s: %d contacts, %d ranges)" % (
            self.path, self.format, sum(map(len, self.contacts.values())), sum(map(len, self.ranges.values())))


def _s(ns):
    return "%g s" % (ns / NS_PER_S)


def load(path=None, text=None, fmt=None, epoch=None, unplanned="up"):
    """A ContactPlan from a file (path) or from text (path names it in
    errors). fmt: 'ion' or 'hdtn'; default from the suffix (.json: hdtn)."""
    if text is None:
        if path is None:
            raise PlanError("contact plan: give a path or the text")
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise PlanError("%s: cannot read: %s" % (path, e.strerror)) from None
        except UnicodeDecodeError as e:
            raise PlanError("%s: not UTF-8 text: %s" % (path, e)) from None
    path = path or "<contact plan>"
    if fmt is None:
        fmt = "hdtn" if path.lower().endswith(".json") else "ion"
    if fmt == "ion":
        contacts, ranges = parse_ion(text, path, epoch)
    elif fmt == "hdtn":
        if epoch is not None:
            raise PlanError("%s: epoch applies to ION absolute times only" % path)
        contacts, ranges = parse_hdtn(text, path)
    else:
        raise PlanError("%s: unknown contact plan format %r (known: ion, hdtn)" % (path, fmt))
    return ContactPlan(path, fmt, contacts, ranges, unplanned)


# ---- ION ---------------------------------------------------------------------

_ION_IGNORED = {"1", "s", "x", "e", "v", "m", "^", "h", "?", "i", "l"}


def parse_epoch(value, where):
    """An ION absolute time 'yyyy/mm/dd-hh:mm:ss' (UTC) -> POSIX ns."""
    try:
        dt = datetime.datetime.strptime(str(value), "%Y/%m/%d-%H:%M:%S").replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        raise PlanError("%s: %r is not an ION absolute time yyyy/mm/dd-hh:mm:ss" % (where, value)) from None
    return int(dt.timestamp()) * NS_PER_S


def _seconds(token, where, what):
    try:
        v = float(token)
    except ValueError:
        raise PlanError("%s: %s %r is not a number" % (where, what, token)) from None
    if not v >= 0 or v == float("inf"):
        raise PlanError("%s: %s %r must be a non-negative number" % (where, what, token))
    return v


def _ion_time(token, where, ref_ns, epoch_ns):
    """Mission ns of an ION time token."""
    if token.startswith("+"):
        return ref_ns + int(round(_seconds(token[1:], where, "time") * NS_PER_S))
    if "/" in token:
        if epoch_ns is None:
            raise PlanError("%s: absolute time %r needs the plan's epoch (the absolute time of mission 0): "
                            "contact_plan: {epoch: \"yyyy/mm/dd-hh:mm:ss\"}" % (where, token))
        t = parse_epoch(token, where) - epoch_ns
        if t < 0:
            raise PlanError("%s: %r is before the epoch (mission 0)" % (where, token))
        return t
    raise PlanError("%s: time %r: want +seconds (relative) or yyyy/mm/dd-hh:mm:ss" % (where, token))


def _node(token, where, what):
    if not token.isdigit():
        raise PlanError("%s: %s %r is not a node number" % (where, what, token))
    return int(token)


def parse_ion(text, path, epoch=None):
    """(contacts, ranges) from ionadmin commands."""
    epoch_ns = parse_epoch(epoch, "%s: epoch" % path) if epoch is not None else None
    ref_ns = 0
    contacts, ranges = [], []
    skipping = None  # the admin section being skipped (## begin bpadmin ...)
    for i, raw in enumerate(text.splitlines()):
        where = "%s:%d" % (path, i + 1)
        line = raw.strip()
        if line.startswith("##"):
            words = line[2:].split()
            if len(words) >= 2 and words[0] == "begin":
                skipping = None if words[1] == "ionadmin" else words[1]
            elif len(words) >= 2 and words[0] == "end" and words[1] == skipping:
                skipping = None
            continue
        if skipping is not None or not line or line.startswith("#"):
            continue
        tok = line.split()
        cmd = tok[0]
        if cmd == "a" and len(tok) >= 2 and tok[1] == "contact":
            if len(tok) not in (7, 8):
                raise PlanError("%s: a contact START STOP FROM TO RATE [CONFIDENCE]: %d arguments, want 5 or 6"
                                % (where, len(tok) - 2))
            if tok[2] == "-1" or tok[3] == "0":
                continue  # registration / hypothetical contact: schedules nothing
            start = _ion_time(tok[2], where, ref_ns, epoch_ns)
            stop = _ion_time(tok[3], where, ref_ns, epoch_ns)
            src, dst = _node(tok[4], where, "from node"), _node(tok[5], where, "to node")
            rate = _seconds(tok[6], where, "rate (bytes/s)")
            if len(tok) == 8:
                conf = _seconds(tok[7], where, "confidence")
                if not 0 < conf <= 1:
                    raise PlanError("%s: confidence %r must be in (0, 1]" % (where, tok[7]))
            if stop <= start:
                raise PlanError("%s: the contact stops (%s) before it starts (%s)" % (where, _s(stop), _s(start)))
            if rate <= 0:
                raise PlanError("%s: a scheduled contact needs a rate above 0 bytes/s, got %r" % (where, tok[6]))
            contacts.append(Contact(src, dst, start, stop, rate * 8, where))
        elif cmd == "a" and len(tok) >= 2 and tok[1] == "range":
            if len(tok) != 7:
                raise PlanError("%s: a range START STOP NODE NODE OWLT: %d arguments, want 5" % (where, len(tok) - 2))
            start = _ion_time(tok[2], where, ref_ns, epoch_ns)
            stop = _ion_time(tok[3], where, ref_ns, epoch_ns)
            a, b = _node(tok[4], where, "node"), _node(tok[5], where, "node")
            owlt = int(round(_seconds(tok[6], where, "one way light time (s)") * NS_PER_S))
            if stop <= start:
                raise PlanError("%s: the range stops (%s) before it starts (%s)" % (where, _s(stop), _s(start)))
            ranges.append(Range(a, b, start, stop, owlt, where))
        elif cmd == "@":
            if len(tok) != 2:
                raise PlanError("%s: @ TIME: want one argument" % where)
            ref_ns = _ion_time(tok[1], where, ref_ns, epoch_ns)
        elif cmd in ("c", "d"):
            raise PlanError("%s: %r: changing or deleting contacts is not supported; write the plan as it is"
                            % (where, line))
        elif cmd in _ION_IGNORED:
            continue
        else:
            raise PlanError("%s: unknown ionadmin command %r" % (where, line))
    return contacts, ranges


# ---- HDTN --------------------------------------------------------------------

_HDTN_KEYS = ("contact", "source", "dest", "startTime", "endTime", "rateBitsPerSec", "rate", "owlt")


def _object_lines(text, key):
    """Line numbers of the objects in the array under top-level `key` of a
    JSON text already known to be valid (json gives no positions)."""
    depth = 0
    in_str = esc = False
    line = 1
    lines = []
    want_array = False
    array_depth = None
    str_start = None
    last_key = None
    for i, ch in enumerate(text):
        if ch == "\n":
            line += 1
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
                if depth == 1:
                    last_key = text[str_start + 1:i]
            continue
        if ch == '"':
            in_str = True
            str_start = i
        elif ch == ":" and depth == 1:
            want_array = last_key == key
        elif ch in "[{":
            if ch == "[" and depth == 1 and want_array:
                array_depth = depth + 1
            elif ch == "{" and array_depth is not None and depth == array_depth:
                lines.append(line)
            depth += 1
        elif ch in "]}":
            depth -= 1
            if array_depth is not None and depth < array_depth:
                array_depth = None
        elif ch == "," and depth == 1:
            want_array = False
    return lines


def _number(obj, k, where, default=None, integer=False):
    v = obj.get(k, default)
    if v is None:
        raise PlanError("%s: contact: missing %r" % (where, k))
    if v.__class__ is bool or not isinstance(v, (int, float)) or (integer and not isinstance(v, int)) or v < 0:
        raise PlanError("%s: contact: %s must be a non-negative %s, got %r" % (where, k, "integer" if integer else "number", v))
    return v


def parse_hdtn(text, path):
    """(contacts, ranges) from an HDTN contact plan (JSON)."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise PlanError("%s:%d: not JSON: %s" % (path, e.lineno, e.msg)) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("contacts"), list):
        raise PlanError("%s:1: an HDTN contact plan is an object with a \"contacts\" list" % path)
    lines = _object_lines(text, "contacts")
    contacts, ranges = [], []
    for i, c in enumerate(doc["contacts"]):
        where = "%s:%d" % (path, lines[i] if i < len(lines) else 1)
        if not isinstance(c, dict):
            raise PlanError("%s: contacts[%d]: a contact is an object" % (where, i))
        for k in c:
            if k not in _HDTN_KEYS:
                raise PlanError("%s: contacts[%d]: unknown key %r (known: %s)" % (where, i, k, ", ".join(_HDTN_KEYS)))
        src = _number(c, "source", where, integer=True)
        dst = _number(c, "dest", where, integer=True)
        start = int(round(_number(c, "startTime", where) * NS_PER_S))
        end = int(round(_number(c, "endTime", where) * NS_PER_S))
        if end <= start:
            raise PlanError("%s: contacts[%d]: endTime %r is not after startTime %r" % (where, i, c["endTime"], c["startTime"]))
        if "rateBitsPerSec" in c:
            bps = _number(c, "rateBitsPerSec", where)
        elif "rate" in c:
            bps = _number(c, "rate", where) * 1_000_000  # deprecated, Mbit/s
        else:
            bps = 0
        owlt = int(round(_number(c, "owlt", where, default=0) * NS_PER_S))
        contacts.append(Contact(src, dst, start, end, bps or None, where))
        if owlt:  # the contact's own light time, in its direction only
            ranges.append(Range(src, dst, start, end, owlt, where))
    return contacts, ranges


def resolve(base_dir, path):
    """A plan path from a scenario: relative to the scenario file's folder."""
    if os.path.isabs(path) or base_dir is None:
        return path
    return os.path.join(base_dir, path)
