"""The history checker's election and version invariants (one_coordinator,
major_versions, firmware_declared; ground/history.py's docstring has the
rules): ElectionRules, the part of the checker (ground/history_checker.py)
that collects coordinator claims per (cluster, term) and each node's
firmware major from its HELLO."""

from ground import claims
from ground.history_verdict import Violation

MAX_MAJOR_VERSIONS = 3  # DESIGN.md: at most 3 concurrent major versions fleet-wide


class ElectionRules:
    """The checker's coordinator and version rules (a mixin of
    history_checker._Checker, whose state they read and write: claims,
    running, majors)."""

    def _claim(self, src, type_, msg, fid, line):
        term = claims.claimed_term(type_, msg, self.role_coordinator)  # the shared definition (ground/claims.py)
        if term is None:
            return
        key = (self.nodes[src], term)
        who = self.claims.setdefault(key, {})
        if src in who:
            return
        who[src] = (fid, line)
        if len(who) >= 2:
            nodes = sorted(who)
            parts = ", ".join("node %d (frame %d, line %d)" % (n, who[n][0], who[n][1]) for n in nodes)
            v = self.split_reported.get(key)
            text = "cluster %d term %d has %d coordinators: %s" % (key[0], term, len(nodes), parts)
            ids = [who[n][0] for n in nodes]
            lines = [who[n][1] for n in nodes]
            if v is None:
                v = Violation("one_coordinator", text, ids, lines)
                self.r.violations.append(v)
                self.split_reported[key] = v
            else:
                v.message, v.frame_ids, v.lines = text, ids, lines

    # ---- versions ----------------------------------------------------------

    def _hello(self, src, msg, fid, line):
        major = msg.get("fw_major")
        if not isinstance(major, int):
            return
        declared = self.majors.get(src)
        if declared is not None and declared != major and major not in self.rolled_majors:  # not rolled out to it
            self._violate("firmware_declared", "node %d says firmware major %d in its HELLO (frame %d, line %d); the"
                          " header declares %d" % (src, major, fid, line, declared), [fid], [line])
        counts = self.major_counts
        if counts is None:  # nodes per firmware major now, kept as HELLOs come (no pass over the fleet each)
            counts = self.major_counts = {}
            for nid in self.nodes:
                m = self.running[nid][0] if nid in self.running else self.majors.get(nid)
                if m is not None:
                    counts[m] = counts.get(m, 0) + 1
        was = self.running[src][0] if src in self.running else self.majors.get(src)
        if was is not None:
            counts[was] -= 1
            if not counts[was]:
                del counts[was]
        counts[major] = counts.get(major, 0) + 1
        self.running[src] = (major, fid, line)
        if len(counts) <= MAX_MAJOR_VERSIONS:
            return
        now = {}
        for nid in self.nodes:
            if nid in self.running:
                now.setdefault(self.running[nid][0], []).append(nid)
            elif nid in self.majors:
                now.setdefault(self.majors[nid], []).append(nid)
        key = tuple(sorted(now))
        if len(now) > MAX_MAJOR_VERSIONS and key not in self.too_many_reported:
            self.too_many_reported.add(key)
            seen = ["%d on node%s %s" % (m, "s" if len(now[m]) > 1 else "", ",".join(str(n) for n in sorted(now[m])))
                    for m in sorted(now)]
            ids = [self.running[n][1] for ns in now.values() for n in ns if n in self.running]
            lines = [self.running[n][2] for ns in now.values() for n in ns if n in self.running]
            self._violate("major_versions", "%d firmware major versions at once at line %d (at most %d): %s"
                          % (len(now), line, MAX_MAJOR_VERSIONS, "; ".join(seen)), sorted(ids), sorted(lines))


def _major(firmware):
    try:
        return int(str(firmware).partition(".")[0])
    except ValueError:
        return None

