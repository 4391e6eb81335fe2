"""The history checker: invariants over a whole run trace.

    report = check("runs/x/trace.jsonl", scenario="bench")
    report.ok                 # True when no invariant is broken
    print(report.format())    # each violation with the frame ids and trace lines
    python -m hil check runs/x/trace.jsonl [--scenario bench] [--json]

ground.metrics *measures* a run; this module *judges* it: every rule below
must hold in every run, whatever the impairments, and a single breach is a
failure naming the frames and lines that break it. Like ground.metrics it is
a pure function of the trace (docs/TRACE.md), fed one event at a time
(`_Checker.feed`) and read at the end (`_Checker.report`).

The invariants (docs/HIL.md has the long form):

  trace              the trace reads to its `end` event: a torn last line, a
                     bad line, no `end` event, or (when the caller names one)
                     another scenario in the header is a violation naming the
                     file and line.
  one_coordinator    at most one node claims coordinator per (cluster, term).
                     A claim is a `sent` COORDINATOR frame, or a heartbeat or
                     telemetry frame with role 2 (msgs.ROLE_COORDINATOR).
  lease_exclusive    no resource is leased to two nodes for overlapping slots.
  lease_awarded      no node acts on a lease it was not awarded.
  major_versions     at most 3 firmware major versions at once (the header's
                     nodes and, as they boot, their HELLO frames).
  firmware_declared  a node's HELLO reports the firmware major the header
                     (the scenario) says it runs, or the major of an image a
                     rollout in the trace has started (a `rollout` event
                     `start` names the image).
  unique_ids         a daughter never reuses an id (history_replication.py).
  frame_fates        every sent frame has, for each recipient, exactly one
                     final fate (delivered or dropped) per copy; no fate for a
                     frame never sent. On a partial (lean) trace, whose header
                     `lean` counts more fleet nodes than `nodes` lists, only
                     the listed (traced) nodes and the ground are recipients.

Leases. The market tier's messages are not fixed yet, so message types are
recognised by name, from firmware/node/msgs.py's all_layouts() at run time and from
the type names the trace itself carries; a name is split on "_" and:
  any word in RELEASE_WORDS -> a release, else any in USE_WORDS -> an act on
  a lease, else any in AWARD_WORDS -> an award.
Fields are found by the first name present in each alias list below (FIELDS).
A lease covers slots [first + k*period, first + k*period + span) for k in
0..count-1 (firmware/node/ledger.py's shape); an award with no slot fields
covers every slot (the conservative reading). Who is doing what follows from
the frame's flags where the firmware has them (msgs.AWARD_REPLICA,
AWARD_SYNC, AWARD_CLAIM), else from its addresses:
  - an award sent to its holder, or to a group, is a lease (the same holder
    again is a resend or an extension, never a conflict); every award to
    different holders for overlapping slots is a violation, whatever came
    before it (a RESYNC, a takeover, a void round);
  - a replica or a ledger copy (AWARD_REPLICA / AWARD_SYNC: to another
    elector, or a ledger fetched by a new coordinator) is not a lease, even
    when it goes to the holder itself (an elector that also bids); without
    those flags, an award sent to another node than its holder is a copy;
  - the regional coordinator's own award never crosses the wire (it goes
    to itself); its replicas (src == holder) become its lease when the same
    coordinator announces that round COMPLETE (PRICES status 1, broadcast):
    a round no majority held is voided and never leased;
  - an award sent *by* its holder with the claim flag is a claim (a resync
    after a takeover), an act on a lease; where the firmware has no claim
    flag, every award sent by its holder is read as a claim, and one without
    it is the coordinator writing down its own lease;
  - a release by its holder is an act on a lease: it must have been awarded
    (copies of one release, which a coordinator that holds the lease sends
    on to every other elector, are one act, judged once);
  - a release cuts the holder's leases on that resource from `from_slot`.
With no award type in msgs nor in the trace, both lease invariants are
skipped with a note.

Frames the router rewrote in flight (a byzantine fault, `orig_hex`) are not
counted as their sender's claims: the sender did not say them.

Where this departs from STYLE.md: ground-side code under CPython, so it
allocates freely and reads the firmware's message table at run time.
"""

import json
import re

from ground import trace as trace_mod

import json
import re

from ground import trace as trace_mod
from ground.history_checker import BROADCAST, CLUSTER_BASE, GROUND, INVARIANTS, ROLE_COORDINATOR, _Checker  # noqa: F401
from ground.history_election import MAX_MAJOR_VERSIONS  # noqa: F401
from ground.history_leases import (AWARD_WORDS, FIELDS, RELEASE_WORDS, USE_WORDS, classify,  # noqa: F401
                                   firmware_type_names, lease_intervals)
from ground.history_verdict import Report, Violation


# ---- public API -----------------------------------------------------------------


class Checker:
    """The history checker as a consumer of trace events, like a metrics
    family (ground/metrics/): a run feeds it each event as it records it,
    check() each line of a trace file; the verdict is the same either way.

        c = Checker(header, path)   # the header line, as a dict
        c.feed(event)               # each event after it, in order (line 2, 3, ...)
        report = c.result()         # at the end (torn: the file's last line was cut)

    Its state grows with nodes, elections, awards and the frames in flight,
    not with the run's length (history_fates.py: complete frames are
    retired)."""

    def __init__(self, header, path="<events>", scenario=None, type_names=None):
        self._c = _Checker(path, header, scenario, type_names)
        self._c.r.lines = self.line = 1
        self.report = None

    def feed(self, event):
        """One trace event (a dict as the trace holds it), in file order."""
        if self.report is not None:
            raise ValueError("history: the result was taken; no more events")
        self.line += 1
        self._c.feed(event, self.line)
        self._c.r.lines = self.line

    def result(self, torn=False):
        """The Report, once: every invariant judged over the events fed."""
        if self.report is None:
            self.report = self._c.report(torn)
            self.report.torn = torn
        return self.report


def check(path, scenario=None, type_names=None):
    """Check every invariant over the trace at `path`; returns a Report.

    scenario: the scenario name the caller expects (a different one is a
    violation). type_names: message type names to recognise leases from
    (default: firmware/node/msgs.py's all_layouts()); the trace's own type names
    are always added. Never raises on a bad trace: it is reported."""
    reader = trace_mod.TraceReader(path)
    checker = None
    line = 0
    try:
        for line, e in enumerate(reader, 1):
            if line == 1:
                checker = Checker(e, path, scenario, type_names)
            else:
                checker.feed(e)
    except trace_mod.TraceError as exc:
        r = checker._c.r if checker is not None else Report(path)
        r.readable = checker is not None
        r.violations.append(Violation("trace", str(exc), lines=[_line_of(str(exc), line + 1)]))
        r.notes.append("the checks stopped at the unreadable line; what came before was checked as far as it goes")
        return r
    except OSError as exc:
        r = Report(path)
        r.readable = False
        r.violations.append(Violation("trace", "%s: cannot read: %s" % (path, exc.strerror or exc)))
        return r
    if checker is None:
        r = Report(path)
        r.readable = False
        r.violations.append(Violation("trace", "%s: empty trace (no header)" % path, lines=[1]))
        return r
    return checker.result(reader.torn)


def check_events(header, events, path="<events>", scenario=None, type_names=None, torn=False):
    """check() over a header and the events after it, already in memory
    (line numbers count the header as line 1)."""
    c = Checker(header, path, scenario, type_names)
    for e in events:
        c.feed(e)
    return c.result(torn)


def _line_of(text, default):
    m = re.search(r":(\d+):", text)
    return int(m.group(1)) if m else default


# ---- the `hil check` verb ------------------------------------------------------------


def add_arguments(parser):
    parser.add_argument("trace", help="a run's trace.jsonl")
    parser.add_argument("--scenario", metavar="NAME", help="fail unless the trace is of this scenario")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def main(args):
    """Exit status: 0 clean, 1 an invariant broken, 2 the file could not be read."""
    r = check(args.trace, scenario=args.scenario)
    print(json.dumps(r.to_dict(), indent=2, sort_keys=True) if args.json else r.format())
    if not r.readable:
        return 2
    return 0 if r.ok else 1
