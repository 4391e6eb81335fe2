# ground/metrics/ and ground/report.py against small hand-built traces.
#
# Every trace here is written with ground.trace.TraceWriter and read back with
# ground.trace.read, so the metrics see exactly what a run leaves on disk (node
# ids as JSON object keys are strings, for one). The base story, T = 1 s,
# heartbeats every T/4, cluster 1 = nodes 1, 2, 3 (node n's heartbeats at
# k/4 + n/100 s, its telemetry at k + 0.3 n s):
#   0.00      hello from every node; heartbeats name nobody
#   1.00      node 1: COORDINATOR term 1, standby 2; everyone names 1 by 1.03
#   5.10      crash of node 1 (its last heartbeat 5.01)
#   5.90      node 3's telemetry: alive 3 -> 2, suspect 0 -> 1  (detected, 0.8 s)
#   6.20      node 2: COORDINATOR term 2 (1.1 T after the crash)
#   6.28      node 3's heartbeat names 2: all live members agree (1.18 s)
#  10.00      end
import heapq
import json
import random
import re

import pytest

from ground import metrics as M
from ground import protocol as P
from ground import report as R
from ground.trace import TraceWriter, read

T_MS = 1000
NODE_INFO = {"firmware": "1.0", "hw_gen": 1, "lineage": 0, "link": "sim"}
LEN = {"hello": 24, "heartbeat": 36, "telemetry": 32, "coordinator": 20, "vote_request": 18, "state": 40}
CLUSTER1 = 0xF001


class Run:
    """Writes a trace by hand: frames with their fates, faults, the end."""

    def __init__(self, tmp_path, nodes=None, t_ms=T_MS, name="trace.jsonl"):
        nodes = nodes or {1: 1, 2: 1, 3: 1}
        self.cluster = nodes
        self.down = set()
        self.header = {
            "kind": "header",
            "scenario": "synthetic",
            "seed": 7,
            "time_scale": 1.0,
            "mode": "sim",
            "nodes": {n: dict(NODE_INFO, cluster=c) for n, c in nodes.items()},
            "links": {},
            "election_timeout_ms": t_ms,
        }
        self.path = str(tmp_path / name)
        self.w = TraceWriter(self.path, self.header)
        self.next_id = 1

    @staticmethod
    def ns(t_s):
        return int(round(t_s * 1e9))

    def event(self, t_s, **fields):
        self.w(dict(fields, mission_ns=self.ns(t_s), wall_ns=self.ns(t_s)))

    def send(self, t_s, src, type, msg, dst=None, fate=True):
        """A sent frame, then a fate for each recipient (fate=False: none;
        fate=a set: only for those recipients). Returns the frame id."""
        fid = self.next_id
        self.next_id += 1
        dst = (0xF000 | self.cluster[src]) if dst is None else dst
        size = LEN.get(type, 30)
        sent = dict(kind="frame", fate="sent", id=fid, src=src, dst=dst, type=type, seq=fid & 0xFF)
        self.event(t_s, len=size, hex="00", msg=msg, **sent)
        if dst == 0 or fate is False:
            return fid
        to = [n for n, c in self.cluster.items() if n != src and 0xF000 | c == dst] if dst >= 0xF000 else [dst]
        for n in to:
            if fate is not True and n not in fate:
                continue
            if n in self.down:
                self.event(t_s, kind="frame", fate="dropped", id=fid, to=n, reason="node_down")
            else:
                self.event(t_s + 0.001, kind="frame", fate="delivered", id=fid, to=n, copy=0, delay_ns=1_000_000)
        return fid

    def hb(self, t_s, src, role, term, coord, standby=0):
        msg = {"term": term, "coordinator": coord, "standby": standby, "role": role}
        msg.update(lineage=0, rec_version=1, rec_data=0, digest=0)
        return self.send(t_s, src, "heartbeat", msg)

    def coord(self, t_s, src, term, standby=0):
        return self.send(t_s, src, "coordinator", {"term": term, "standby": standby})

    def tel(self, t_s, src, role, term, coord, alive, suspect):
        msg = {"role": role, "term": term, "coordinator": coord, "standby": 0, "digest": 0}
        msg.update(alive=alive, suspect=suspect, bad_frames=0)
        return self.send(t_s, src, "telemetry", msg, dst=0)

    def fault(self, t_s, fault, node):
        if fault in ("crash", "power_cut", "reset"):
            self.down.add(node)
        self.event(t_s, kind="fault", fault=fault, node=node, detail={})

    def finish(self, t_s):
        t_ns = self.ns(t_s)
        end = {"mission_ns": t_ns, "wall_ns": t_ns, "frames": self.next_id - 1, "status": "ok", "reason": ""}
        self.w.close(end=end)
        header, events, torn = read(self.path)
        assert not torn
        return header, events


def story(tmp_path, crash=1, takeover=True, extra=None, quiet=None, end_s=10.0):
    """The base story above, as a time-ordered script. crash: the node that
    crashes at 5.1; takeover: whether node 2 takes over; quiet: {node: (t0, t1)}
    silences a node's usual frames; extra(at, run, ids) adds steps."""
    run = Run(tmp_path)
    steps = []  # (t, order, fn)
    ids = {}
    quiet = quiet or {}
    crash_t, takeover_t = 5.1, 6.2

    def at(t, fn, order=0):
        steps.append((round(t, 6), order, fn))

    def state(n, t):
        """(role, term, coordinator) node n reports at t."""
        if t < 1.0:
            return (0, 0, 0)
        if crash != 1 or t < crash_t:
            return ({1: 2, 2: 3, 3: 0}[n], 1, 1)
        if n == 2:
            if takeover and t >= takeover_t:
                return (2, 2, 2)
            return (3, 1, 1) if t < 6.01 else (1, 1, 0)  # standby times out at 5.01 + T
        return (0, 2, 2) if takeover and t > takeover_t else (0, 1, 1)

    def speaks(n, t):
        q = quiet.get(n)
        return not (n == crash and t > crash_t) and not (q and q[0] <= t <= q[1])

    for n in (1, 2, 3):
        hello = {"hw_gen": 1, "fw_major": 1, "fw_minor": 0, "lineage": 0, "proto_min": 1, "proto_max": 1, "cluster": 1}
        at(0.0, lambda n=n, h=hello: run.send(0.0, n, "hello", h), -1)
    at(1.0, lambda: ids.__setitem__("coord1", run.coord(1.0, 1, 1, standby=2)))
    at(crash_t, lambda: run.fault(crash_t, "crash", crash))
    if takeover and crash == 1:
        at(takeover_t, lambda: ids.__setitem__("coord2", run.coord(takeover_t, 2, 2)))
    # heartbeats: node n at k/4 + n/100; a new coordinator at once, then every T/4
    grid = [k / 4 for k in range(int(end_s * 4))]
    for n in (1, 2, 3):
        times = [g + n / 100 for g in grid]
        if n == 2 and takeover and crash == 1:
            after = [takeover_t + k / 4 for k in range(int((end_s - takeover_t) * 4) + 1)]
            times = [t for t in times if t < takeover_t] + after
        for t in times:
            if t < end_s and speaks(n, t):
                at(t, lambda t=t, n=n: run.hb(t, n, *state(n, t)), 1)
    # telemetry: node n at k + 0.3 n; peers suspect the crashed node from crash + 3T/4
    for k in range(int(end_s)):
        for n in (1, 2, 3):
            t = k + 0.3 * n
            if speaks(n, t):
                counts = (2, 1) if t > crash_t + 0.75 else (3, 0)
                at(t, lambda t=t, n=n, c=counts: run.tel(t, n, *state(n, t), *c))
    if extra:
        extra(at, run, ids)
    for t, _, fn in sorted(steps, key=lambda s: (s[0], s[1])):
        fn()
    header, events = run.finish(end_s)
    return header, events, ids, run


def metrics_of(tmp_path, **kw):
    header, events, ids, run = story(tmp_path, **kw)
    return M.compute(header, events), ids, header, events


# ---- the story's figures ------------------------------------------------------


def test_failover_time_in_seconds_and_T(tmp_path):
    m, ids, _, _ = metrics_of(tmp_path)
    fo = m["clusters"]["1"]["failover"]
    assert fo["count"] == 1 and fo["incomplete"] == []
    ev = fo["events"][0]
    assert (ev["node"], ev["fault"], ev["term"]) == (1, "crash", 1)
    assert (ev["new_coordinator"], ev["new_term"], ev["frame_id"]) == (2, 2, ids["coord2"])
    assert ev["s"] == pytest.approx(1.1)
    assert ev["T"] == pytest.approx(1.1)
    fl = m["flat"]
    assert fl["failover_count"] == 1 and fl["failover_incomplete"] == 0
    for q in ("p50", "p99", "max"):
        assert fl["failover_T_" + q] == pytest.approx(1.1)
        assert fl["failover_s_" + q] == pytest.approx(1.1)


def test_failover_in_units_of_T_follows_the_header(tmp_path):
    header, events, _, _ = story(tmp_path)
    header = dict(header, election_timeout_ms=500)
    m = M.compute(header, events)
    # T = 0.5 s: 1.1 s is 2.2 T. (The silence rule shrinks too: 2 x T/4 = 0.25 s.)
    assert m["flat"]["failover_T_p99"] == pytest.approx(2.2)


def test_crash_of_a_follower_is_no_failover(tmp_path):
    m, _, _, _ = metrics_of(tmp_path, crash=3, takeover=False)
    fl = m["flat"]
    assert fl["failover_count"] == 0 and fl["failover_incomplete"] == 0
    assert fl["failover_T_p99"] is None
    assert fl["decision_count"] == 0 and fl["decision_incomplete"] == 0
    assert fl["detection_count"] == 1  # but peers still notice it


def test_failover_that_never_completes_is_counted_apart(tmp_path):
    m, _, _, _ = metrics_of(tmp_path, takeover=False)
    fl = m["flat"]
    assert fl["failover_count"] == 0 and fl["failover_incomplete"] == 1
    assert fl["decision_incomplete"] == 1
    inc = m["clusters"]["1"]["failover"]["incomplete"][0]
    assert (inc["node"], inc["term"], inc["at_s"]) == (1, 1, pytest.approx(5.1))


def test_no_split_brain_and_no_overlap_in_a_clean_failover(tmp_path):
    m, _, _, _ = metrics_of(tmp_path)
    assert m["flat"]["split_brain"] == 0
    assert m["flat"]["overlap_count"] == 0 and m["flat"]["overlap_s"] == 0


def test_split_brain_two_coordinators_in_one_term(tmp_path):
    def doctor(at, run, ids):
        at(6.3, lambda: ids.__setitem__("rogue", run.coord(6.3, 3, 2)))

    m, ids, _, _ = metrics_of(tmp_path, extra=doctor)
    assert m["flat"]["split_brain"] == 1
    sb = m["clusters"]["1"]["split_brain"]["events"]
    assert sb == [{"term": 2, "nodes": [2, 3], "frame_ids": [ids["coord2"], ids["rogue"]], "at_s": pytest.approx(6.3)}]
    # The rogue claim is one frame inside node 2's claim: an overlap of zero length.
    assert m["flat"]["overlap_count"] == 1 and m["flat"]["overlap_s"] == 0


def test_overlapping_claims_in_different_terms(tmp_path):
    def rogue(at, run, ids):
        # node 3 heartbeats as coordinator of term 3 from 7.03 to 8.03, then as a follower
        for k in range(5):
            t = 7.03 + k * 0.25
            at(t, lambda t=t: run.hb(t, 3, 2, 3, 3), 1)
        at(8.28, lambda: run.hb(8.28, 3, 0, 3, 2), 1)

    m, _, _, _ = metrics_of(tmp_path, extra=rogue, quiet={3: (7.0, 8.2)})
    assert m["flat"]["split_brain"] == 0
    ov = m["clusters"]["1"]["overlap"]
    assert ov["count"] == 1
    assert ov["s"] == pytest.approx(1.0)
    assert ov["intervals"][0]["nodes"] == [2, 3]
    assert ov["intervals"][0]["start_s"] == pytest.approx(7.03)
    assert m["flat"]["leader_changes"] == 2  # 1 -> 2 (term 2), 2 -> 3 (term 3)


def test_a_claim_ends_after_two_heartbeat_intervals_of_silence(tmp_path):
    def rogue(at, run, ids):
        # two bursts of claims with 1.25 s of silence between: two claims
        for t in (7.03, 7.28, 8.53, 8.78):
            at(t, lambda t=t: run.hb(t, 3, 2, 3, 3), 1)

    m, _, _, _ = metrics_of(tmp_path, extra=rogue, quiet={3: (7.0, 9.0)})
    ov = m["clusters"]["1"]["overlap"]
    assert ov["count"] == 2
    assert ov["s"] == pytest.approx(0.5)


def test_leader_churn(tmp_path):
    m, _, _, _ = metrics_of(tmp_path)
    lead = m["clusters"]["1"]["leader"]
    assert lead["changes"] == 1
    assert lead["events"] == [{"at_s": pytest.approx(6.2), "from": 1, "to": 2, "term": 2}]
    assert m["flat"]["leader_changes"] == 1
    assert m["flat"]["leader_changes_per_hour"] == pytest.approx(360.0)  # one in 10 s


def test_a_node_re_elected_is_no_leader_change(tmp_path):
    run = Run(tmp_path)
    run.coord(1.0, 1, 1)
    run.coord(2.0, 1, 2)  # node 1 again, a later term
    run.coord(3.0, 2, 3)
    m = M.compute(*run.finish(4.0))
    assert m["clusters"]["1"]["leader"]["changes"] == 1
    assert m["clusters"]["1"]["leader"]["max_term"] == 3


def test_a_claim_in_the_crashed_coordinators_term_is_no_failover(tmp_path):
    def bogus(at, run, ids):
        at(5.5, lambda: run.hb(5.5, 3, 2, 1, 3), 1)  # node 3 claims term 1 after the crash

    m, ids, _, _ = metrics_of(tmp_path, extra=bogus)
    ev = m["clusters"]["1"]["failover"]["events"]
    assert [(e["new_coordinator"], e["frame_id"]) for e in ev] == [(2, ids["coord2"])]
    assert m["flat"]["split_brain"] == 1  # but it is two claims of term 1


def test_a_rebooted_node_has_no_telemetry_baseline(tmp_path):
    run = Run(tmp_path)
    for n in (1, 2, 3):
        run.hb(0.0, n, 0, 0, 0)
    run.tel(0.1, 3, 0, 0, 0, 3, 0)
    run.tel(0.2, 1, 0, 0, 0, 3, 0)
    run.fault(1.0, "reset", 3)
    run.fault(1.05, "power_cut", 2)
    run.tel(1.1, 3, 0, 0, 0, 1, 0)  # just booted: knows only itself, which is no detection
    run.tel(1.9, 1, 0, 0, 0, 2, 1)
    m = M.compute(*run.finish(2.0))
    det = m["clusters"]["1"]["detection"]["events"]
    assert [(e["node"], e["by"]) for e in det] == [(2, 1)]
    assert det[0]["s"] == pytest.approx(0.85)


def test_failure_detection_time(tmp_path):
    m, ids, _, _ = metrics_of(tmp_path)
    det = m["clusters"]["1"]["detection"]
    assert det["count"] == 1 and det["missed"] == []
    ev = det["events"][0]
    assert (ev["node"], ev["by"]) == (1, 3)
    assert ev["s"] == pytest.approx(0.8)
    assert m["flat"]["detection_s_p50"] == pytest.approx(0.8)
    assert m["flat"]["detection_s_max"] == pytest.approx(0.8)
    assert m["flat"]["detection_T_max"] == pytest.approx(0.8)


def test_detection_by_alive_count_alone(tmp_path):
    run = Run(tmp_path)
    run.hb(0.0, 1, 0, 0, 0)
    run.tel(0.1, 2, 0, 0, 0, 3, 0)
    run.fault(1.0, "power_cut", 1)
    run.tel(1.2, 2, 0, 0, 0, 3, 0)  # no change yet
    run.tel(1.7, 2, 0, 0, 0, 2, 0)  # one fewer alive, none suspect
    m = M.compute(*run.finish(2.0))
    det = m["clusters"]["1"]["detection"]["events"]
    assert [(e["node"], e["fault"], e["by"]) for e in det] == [(1, "power_cut", 2)]
    assert m["flat"]["detection_s_max"] == pytest.approx(0.7)


def test_a_coordinator_that_stepped_down_before_crashing_is_no_failover(tmp_path):
    # node 1's telemetry says follower at 5.05 (stepped down), then it crashes
    def step_down(at, run, ids):
        at(5.05, lambda: run.tel(5.05, 1, 0, 1, 0, 3, 0), 1)

    m, _, _, _ = metrics_of(tmp_path, extra=step_down)
    assert m["flat"]["failover_count"] == 0 and m["flat"]["failover_incomplete"] == 0
    assert m["flat"]["leader_changes"] == 1  # node 2's term still counts as a change


def test_telemetry_with_another_role_ends_a_claim(tmp_path):
    def rogue(at, run, ids):
        for t in (7.03, 7.28, 7.53, 8.03, 8.28):  # claims, but...
            at(t, lambda t=t: run.hb(t, 3, 2, 3, 3), 1)
        at(7.6, lambda: run.tel(7.6, 3, 0, 3, 2, 3, 0), 1)  # ...steps down in between

    m, _, _, _ = metrics_of(tmp_path, extra=rogue, quiet={3: (7.0, 9.0)})
    ov = m["clusters"]["1"]["overlap"]
    assert [(o["start_s"], o["end_s"]) for o in ov["intervals"]] == [(7.03, 7.53), (8.03, 8.28)]


def test_agreeing_again_on_the_old_coordinator_is_no_decision(tmp_path):
    # node 1 resets and comes straight back claiming its old term: everyone
    # still names 1 in term 1, which is not a new coordinator
    run = Run(tmp_path)
    for n, role in ((1, 2), (2, 3), (3, 0)):
        run.hb(1.0 + n / 100, n, role, 1, 1)
    run.fault(1.1, "reset", 1)
    run.hb(1.3, 1, 2, 1, 1)
    run.hb(1.4, 2, 3, 1, 1)
    run.hb(1.5, 3, 0, 1, 1)
    m = M.compute(*run.finish(3.0))
    assert m["flat"]["decision_count"] == 0 and m["flat"]["decision_incomplete"] == 1
    assert m["flat"]["failover_count"] == 0 and m["flat"]["failover_incomplete"] == 1
    # Agreement is among live members: node 1 alone from 1.01 (2 and 3 have
    # not spoken yet), all three until the reset at 1.1, and again from 1.3,
    # when node 1 speaks and 2 and 3 still name it.
    assert m["clusters"]["1"]["no_coordinator_s"] == pytest.approx(1.01 + 0.2)


def test_decision_latency_waits_for_every_live_member(tmp_path):
    m, _, _, _ = metrics_of(tmp_path)
    dec = m["clusters"]["1"]["decision"]
    assert dec["count"] == 1
    assert dec["events"][0]["coordinator"] == 2
    assert dec["events"][0]["s"] == pytest.approx(1.18)  # node 3's heartbeat at 6.28


def test_time_without_an_agreed_coordinator(tmp_path):
    m, _, _, _ = metrics_of(tmp_path)
    c = m["clusters"]["1"]
    # [0, 1.03) before everyone names node 1, [5.1, 6.28) after its crash
    assert c["no_coordinator_s"] == pytest.approx(1.03 + 1.18)
    assert c["no_coordinator_share"] == pytest.approx(0.221)
    assert m["flat"]["no_coordinator_share_max"] == pytest.approx(0.221)


def test_messages_and_bytes_per_node_by_type(tmp_path):
    m, _, _, _ = metrics_of(tmp_path)
    n1 = m["nodes"]["1"]
    assert n1["cluster"] == 1
    # heartbeats at 0.01, 0.26, ... 5.01; telemetry at 0.3 ... 4.3
    assert n1["types"]["heartbeat"]["messages"] == 21
    assert n1["types"]["heartbeat"]["bytes"] == 21 * LEN["heartbeat"]
    assert n1["types"]["heartbeat"]["messages_per_hour"] == pytest.approx(21 * 360)
    assert n1["types"]["telemetry"]["messages"] == 5
    assert n1["types"]["coordinator"]["messages"] == 1
    assert n1["types"]["hello"]["messages"] == 1
    assert n1["messages"] == 28
    assert n1["bytes"] == 21 * 36 + 5 * 32 + 20 + 24
    assert m["nodes"]["2"]["types"]["coordinator"]["messages"] == 1
    assert "coordinator" not in m["nodes"]["3"]["types"]


def test_coordination_overhead_counts_all_but_telemetry_and_log(tmp_path):
    m, _, _, events = metrics_of(tmp_path)
    sent = [e for e in events if e.get("fate") == "sent"]
    total = sum(e["len"] for e in sent)
    coord = sum(e["len"] for e in sent if e["type"] not in ("telemetry", "log"))
    assert m["flat"]["coordination_bytes_share"] == pytest.approx(coord / total)
    assert 0 < coord < total


def test_frame_fates_and_faults(tmp_path):
    m, _, _, events = metrics_of(tmp_path)
    fr = m["frames"]
    assert fr["sent"] == sum(1 for e in events if e.get("fate") == "sent")
    assert fr["delivered"] == sum(1 for e in events if e.get("fate") == "delivered")
    assert fr["dropped"] == {"node_down": sum(1 for e in events if e.get("reason") == "node_down")}
    assert fr["dropped"]["node_down"] > 0
    assert fr["unfated"] == 0 and m["flat"]["unfated_frames"] == 0
    assert m["faults"] == {"crash": 1} and m["flat"]["faults"] == 1
    assert m["anomalies"]["count"] == 0


def test_frames_without_a_recorded_fate(tmp_path):
    def lose(at, run, ids):
        at(9.5, lambda: ids.__setitem__("lost", run.send(9.5, 3, "state", {}, fate=False)), 1)
        at(9.6, lambda: ids.__setitem__("half", run.send(9.6, 3, "state", {}, fate={2})), 1)
        at(9.7, lambda: run.send(9.7, 3, "log", {"text": "x"}, dst=0, fate=False), 1)  # to the ground: no recipient

        def before_fan_out():  # dropped with to=null: a fate for every recipient
            fid = run.send(9.8, 3, "state", {}, fate=False)
            run.event(9.8, kind="frame", fate="dropped", id=fid, to=None, reason="bad_frame")

        at(9.8, before_fan_out, 1)

    m, ids, _, _ = metrics_of(tmp_path, extra=lose)
    assert m["flat"]["unfated_frames"] == 2
    assert m["frames"]["unfated_ids"] == [ids["lost"], ids["half"]]
    assert m["frames"]["unfated_recipients"] == 3  # lost: 1 and 2; half: 1


def test_duplicates_and_corruption_are_counted(tmp_path):
    run = Run(tmp_path)
    fid = run.hb(0.0, 1, 0, 0, 0)
    run.event(0.0, kind="frame", fate="duplicated", id=fid, to=2, copy=1)
    run.event(0.0, kind="frame", fate="delivered", id=fid, to=2, copy=1, delay_ns=5)
    run.event(0.0, kind="frame", fate="corrupted", id=fid, to=3, how="bitflip")
    m = M.compute(*run.finish(1.0))
    fr = m["frames"]
    assert (fr["duplicated"], fr["corrupted"], fr["delivered"], fr["delivered_copies"]) == (1, 1, 3, 1)
    assert fr["unfated"] == 0


def test_bad_and_unrouted_frames_are_counted_not_anomalies(tmp_path):
    run = Run(tmp_path)
    bad = dict(kind="frame", fate="sent", id=1, src=2, dst=CLUSTER1, type="type_0x7f", seq=0, len=9, hex="00", msg={})
    run.event(0.5, bad="type", **bad)
    run.event(0.5, kind="frame", fate="dropped", id=1, to=None, reason="bad_frame")
    run.event(0.6, kind="frame", fate="sent", id=2, len=5, hex="00", msg={}, bad="crc")  # nothing known about it
    # what a node that is down still writes: sent, never routed, not a sign of life
    run.fault(0.7, "crash", 3)
    run.event(0.8, kind="frame", fate="sent", id=3, src=3, dst=None, type="?", seq=0, len=7, hex="00", msg={})
    run.event(0.8, kind="frame", fate="dropped", id=3, to=None, reason="node_down")
    header, events = run.finish(1.0)
    m = M.compute(header, events)
    assert M.timeline(header, events)["nodes"]["3"]["segments"][-1][2] == "down"
    assert m["frames"]["bad"] == 2 and m["frames"]["sent"] == 3
    assert m["frames"]["dropped"] == {"bad_frame": 1, "node_down": 1} and m["frames"]["unfated"] == 0
    assert m["anomalies"]["count"] == 0
    per_type = {"messages": 1, "bytes": 9, "messages_per_hour": 3600.0, "bytes_per_hour": 32400.0}
    assert m["nodes"]["2"]["types"] == {"type_0x7f": per_type}


def test_role_names_match_the_firmware():
    from node import msgs

    assert M.ROLE_NAMES == msgs.ROLE_NAMES


# ---- the real core ---------------------------------------------------------------


class TracedMesh:
    """tests/core/mesh.py's in-process cluster, every frame traced like a run:
    sent (decoded by ground.protocol), then delivered / dropped per recipient."""

    def __init__(self, tmp_path, n, seed):
        from mesh import Mesh

        self.mesh = mesh = Mesh(n, seed=seed, election_timeout_ms=T_MS)
        self.run = Run(tmp_path, nodes={i: 1 for i in mesh.ids}, name="mesh%d.jsonl" % seed)
        self.ids = {}  # mesh queue order -> frame id, for frames in flight
        self._super_route = mesh._route
        mesh._route = self._route
        mesh._step = self._step

    def _step(self, t):
        # Mesh._step, with a fate recorded for every recipient
        mesh = self.mesh
        touched = []
        while mesh._queue and mesh._queue[0][0] <= t:
            _, order, src, dst, line = heapq.heappop(mesh._queue)
            fid = self.ids.pop(order)
            targets = mesh.ids if dst in (mesh.cluster_dst, 0xFFFF) else (dst,)
            for d in targets:
                if d == src or d not in mesh.nodes:
                    continue
                if d in mesh.down or not mesh.connected(src, d):
                    reason = "node_down" if d in mesh.down else "partition"
                    self.run.event(t / 1000, kind="frame", fate="dropped", id=fid, to=d, reason=reason)
                    continue
                mesh.nodes[d].receive(line, t)
                delay_ns = mesh.delay_ms * 1_000_000
                self.run.event(t / 1000, kind="frame", fate="delivered", id=fid, to=d, copy=0, delay_ns=delay_ns)
                if d not in touched:
                    touched.append(d)
        for i in mesh.ids:
            if i not in mesh.down and (i in touched or mesh.nodes[i].next_deadline_ms() <= t):
                mesh._poll(mesh.nodes[i], t)

    def _route(self, src, dst, line, t):
        d = P.describe(line)
        head = ("type", "type_code", "version", "src", "dst", "dst_name", "seq", "auth", "counter")
        head += ("payload_bytes", "line_bytes", "role_name")
        msg = {k: v for k, v in d.items() if k not in head}
        fid = self.run.next_id
        self.run.next_id += 1
        sent = dict(kind="frame", fate="sent", id=fid, src=src, dst=dst, type=d["type"], seq=d["seq"])
        self.run.event(t / 1000, len=d["line_bytes"], hex=line.hex(), msg=msg, **sent)
        self._super_route(src, dst, line, t)
        if dst != 0:
            self.ids[self.mesh._order] = fid

    def finish(self):
        """End the run; frames still in flight get a fate, as a router's shutdown would."""
        for fid in self.ids.values():
            self.run.event(self.mesh.now / 1000, kind="frame", fate="dropped", id=fid, to=None, reason="queue")
        return self.run.finish(self.mesh.now / 1000)

    def crash(self, node_id):
        self.run.fault(self.mesh.now / 1000, "crash", node_id)
        self.mesh.crash(node_id)


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_the_real_core_a_coordinator_crash(tmp_path, seed):
    tm = TracedMesh(tmp_path, 5, seed)
    mesh = tm.mesh
    mesh.run_for(5000)
    [(old, term)] = mesh.coordinators()
    crash_ms = mesh.now
    tm.crash(old)
    mesh.run_for(8000)
    [(new, new_term)] = mesh.coordinators()
    took_ms = [t for t, i, tt in mesh.events if tt > term][0] - crash_ms
    m = M.compute(*tm.finish())
    fl = m["flat"]
    assert fl["anomalies"] == 0 and fl["unfated_frames"] == 0
    assert fl["split_brain"] == 0 and fl["overlap_count"] == 0
    ev = m["clusters"]["1"]["failover"]["events"]
    assert [(e["node"], e["new_coordinator"], e["new_term"]) for e in ev] == [(old, new, new_term)]
    assert ev[0]["s"] == pytest.approx(took_ms / 1000)  # what the mesh itself saw
    # the standby times out T after it last heard the coordinator, which was
    # at most one heartbeat interval (T/4) before the crash
    assert 0.75 <= fl["failover_T_max"] <= 3.0
    assert fl["leader_changes"] == 1
    assert fl["detection_count"] == 1 and 0 < fl["detection_T_max"] <= 2.0
    assert fl["decision_count"] == 1 and fl["decision_s_max"] >= fl["failover_s_max"]
    assert m["clusters"]["1"]["decision"]["events"][0]["coordinator"] == new
    assert m["frames"]["dropped"]["node_down"] > 0


# ---- bad input ---------------------------------------------------------------------


def test_unknown_nodes_and_missing_fields_are_anomalies_not_crashes(tmp_path):
    header, events, _, _ = story(tmp_path)
    end = 10**10
    hb = {"kind": "frame", "fate": "sent", "mission_ns": end, "dst": CLUSTER1, "type": "heartbeat", "len": 3}
    junk = [
        "not an event",
        {"kind": "frame", "fate": "sent", "id": 9001},  # no mission_ns
        dict(hb, id=9002, src=99, msg={}),  # unknown node
        dict(hb, id=9003, src=2, msg={"role": 2}),  # a heartbeat without term or coordinator
        {"kind": "frame", "fate": "sent", "id": 9004, "mission_ns": end, "src": 2, "dst": CLUSTER1},
        {"kind": "frame", "fate": "delivered", "id": 123456, "mission_ns": end, "to": 2},
        {"kind": "frame", "fate": "delivered", "id": 9003, "mission_ns": end, "to": {"x": 1}},
        {"kind": "fault", "fault": "crash", "node": 42, "mission_ns": end},
        {"kind": "fault", "fault": "crash", "mission_ns": end},
        {"kind": "mystery", "mission_ns": end},
        {"kind": "frame", "fate": "sent", "mission_ns": end},
        {"kind": "fault", "fault": "reset", "node": 3, "mission_ns": 5},
    ]
    m = M.compute(header, events + junk)
    by = m["anomalies"]["by_reason"]
    assert by == {
        "not_an_event": 1,
        "missing_field": 8,
        "unknown_node": 2,
        "unknown_frame": 1,
        "unknown_kind": 1,
        "time_backwards": 1,
    }
    assert m["flat"]["anomalies"] == m["anomalies"]["count"] == 14
    assert m["anomalies"]["examples"][0].startswith("trace line %d: not_an_event" % (len(events) + 2))
    # the story's figures survive the junk
    assert m["flat"]["failover_T_p99"] == pytest.approx(1.1)


def test_a_header_without_nodes_or_T(tmp_path):
    _, events, _, _ = story(tmp_path)
    m = M.compute({"kind": "header"}, events)
    assert m["flat"]["failover_T_p99"] is None
    assert m["anomalies"]["by_reason"]["header"] == 2
    assert m["anomalies"]["by_reason"]["unknown_node"] > 0


def test_any_mangled_trace_gives_metrics_not_an_exception(tmp_path):
    # Invariant: whatever is deleted from or scribbled over the events,
    # compute() returns the full flat namespace and counts what it skipped.
    header, events, _, _ = story(tmp_path, end_s=6.5)
    rng = random.Random(5)
    junk_values = [None, "x", -1, 2**40, 1.5, [], {}, True]
    for _ in range(40):
        mangled = []
        for e in events:
            e = dict(e)
            if rng.random() < 0.2 and e:
                key = rng.choice(sorted(e))
                if rng.random() < 0.5:
                    del e[key]
                else:
                    e[key] = rng.choice(junk_values)
            if isinstance(e.get("msg"), dict) and rng.random() < 0.2:
                e["msg"] = dict(e["msg"], **{rng.choice(sorted(e["msg"]) or ["x"]): rng.choice(junk_values)})
            mangled.append(e)
        m = M.compute(header, mangled)
        assert set(m["flat"]) == set(M.FLAT)
        json.dumps(m, allow_nan=False)
        M.timeline(header, mangled)


# ---- gates -------------------------------------------------------------------------------


def test_gates_pass(tmp_path):
    m, _, _, _ = metrics_of(tmp_path)
    gates = {"split_brain": {"max": 0}, "failover_T_p99": {"max": 3}, "unfated_frames": {"max": 0}}
    gates["failover_count"] = {"min": 1}
    assert M.evaluate(m, gates) == []


def test_gates_fail_with_a_reason(tmp_path):
    m, _, _, _ = metrics_of(tmp_path)
    gates = {"failover_T_p99": {"max": 1.0}, "failover_count": {"min": 2}, "split_brain": {"max": 0}}
    assert M.evaluate(m, gates) == ["failover_T_p99 = 1.1 > max 1", "failover_count = 1 < min 2"]


def test_a_gate_on_a_figure_never_measured_fails(tmp_path):
    m, _, _, _ = metrics_of(tmp_path, takeover=False)
    failures = M.evaluate(m, {"failover_T_p99": {"max": 3}})
    assert failures == ["failover_T_p99 has no value (nothing measured); gate max 3"]


def test_unknown_gate_names_and_bounds_are_errors(tmp_path):
    m, _, _, _ = metrics_of(tmp_path)
    with pytest.raises(ValueError, match="'split_brains'"):
        M.evaluate(m, {"split_brains": {"max": 0}})
    with pytest.raises(ValueError, match="split_brain: unknown bound 'maximum'"):
        M.evaluate(m, {"split_brain": {"maximum": 0}})
    with pytest.raises(ValueError, match="split_brain"):
        M.evaluate(m, {"split_brain": 0})
    with pytest.raises(ValueError, match="not a number"):
        M.evaluate(m, {"split_brain": {"max": "0"}})


def test_every_gate_name_is_documented():
    with open(__file__.replace("tests/ground/test_metrics.py", "docs/METRICS.md"), encoding="utf-8") as f:
        doc = f.read()
    missing = [name for name in M.FLAT if "`%s`" % name not in doc]
    assert missing == []


# ---- reports -------------------------------------------------------------------------------

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL = r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"'
_VALUE = r"(?:[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)|NaN|[+-]Inf)"
_SAMPLE = re.compile(r"^(%s)(?:\{((?:%s)(?:,%s)*,?)?\})? (%s)(?: (-?\d+))?$" % (_NAME, _LABEL, _LABEL, _VALUE))
_HELP = re.compile(r"^# HELP (%s) ((?:[^\\\n]|\\[\\n])*)$" % _NAME)
_TYPE = re.compile(r"^# TYPE (%s) (counter|gauge|histogram|summary|untyped)$" % _NAME)
_SUFFIXES = {"summary": ("", "_sum", "_count"), "histogram": ("_bucket", "_sum", "_count")}


def check_exposition(text):
    """Prometheus text format 0.0.4, line by line; returns {family: type}.
    Raises AssertionError naming the line that breaks a rule."""
    assert text.endswith("\n"), "the last line must end with a line feed"
    types, helps, seen, sampled, done, current = {}, set(), set(), set(), set(), None
    for i, line in enumerate(text.split("\n")[:-1], 1):
        where = "line %d: %r" % (i, line)
        if line == "":
            continue
        if line.startswith("#"):
            m = _HELP.match(line) or _TYPE.match(line)
            if line.startswith("# HELP "):
                assert m, where
                assert m.group(1) not in helps, "second HELP, " + where
                helps.add(m.group(1))
            elif line.startswith("# TYPE "):
                assert m, where
                name = m.group(1)
                assert name not in types, "second TYPE, " + where
                assert name not in sampled, "TYPE after samples, " + where
                types[name] = m.group(2)
            else:
                continue  # a plain comment
            fam = m.group(1)
        else:
            m = _SAMPLE.match(line)
            assert m, where
            name = m.group(1)
            labels = dict(re.findall(_LABEL, m.group(2) or ""))
            fam = name
            for base, t in types.items():
                if t in _SUFFIXES and any(name == base + s for s in _SUFFIXES[t]):
                    fam = base
            if types.get(fam) == "summary" and name == fam:
                assert "quantile" in labels, "summary sample without quantile, " + where
            if types.get(fam) == "counter":
                assert float(m.group(len(m.groups()) - 1)) >= 0 or "NaN" in line, "negative counter, " + where
            sampled.add(fam)
            key = (name, tuple(sorted(labels.items())))
            assert key not in seen, "duplicate series, " + where
            seen.add(key)
        if fam != current:
            assert fam not in done, "family %s is not one uninterrupted group, %s" % (fam, where)
            if current is not None:
                done.add(current)
            current = fam
    return types


def test_the_validator_can_fail():
    good = '# HELP fleetloop_x Help.\n# TYPE fleetloop_x gauge\n'
    good += 'fleetloop_x{cluster="1"} 1\nfleetloop_x{cluster="2"} NaN\n'
    assert check_exposition(good) == {"fleetloop_x": "gauge"}
    for bad in (
        good[:-1],  # no final line feed
        good + "# TYPE fleetloop_x gauge\n",  # second TYPE
        good.replace('cluster="1"', "cluster=1"),  # unquoted label value
        good.replace('cluster="1"', 'cluster="a"b"'),  # bare quote
        good.replace("} 1", "} one"),  # not a number
        good + '# TYPE fleetloop_y gauge\nfleetloop_y 1\nfleetloop_x{cluster="3"} 2\n',  # family split
        good + 'fleetloop_x{cluster="1"} 2\n',  # duplicate series
        good.replace("fleetloop_x{", "fleetloop-x{"),  # bad name
        "# TYPE fleetloop_s summary\nfleetloop_s 1\n",  # summary sample without quantile
    ):
        with pytest.raises(AssertionError):
            check_exposition(bad)


def test_reports_are_written(tmp_path):
    header, events, _, _ = story(tmp_path)
    m = M.compute(header, events)
    out = tmp_path / "run"
    paths = R.write_reports(str(out), header, m, events)
    assert sorted(paths) == ["json", "png", "prom", "table"]
    # metrics.json: the dict itself, sorted keys, indented
    text = (out / "metrics.json").read_text()
    assert json.loads(text) == json.loads(json.dumps(m))
    assert text == json.dumps(json.loads(text), sort_keys=True, indent=2) + "\n"
    # timeline.png: a PNG
    assert (out / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the table: the key figures, columns aligned
    table = (out / "metrics.txt").read_text()
    assert table == R.format_table(m)
    head, rule, row = table.splitlines()[2:5]
    assert set(rule) <= {"-", " "}
    assert head.index("split-brain") == row.index("0 ", head.index("split-brain"))
    assert "1.10/1.10/1.10" in row  # failover T p50/p99/max
    assert "22.1 %" in row  # no agreed coordinator


def test_prometheus_exposition(tmp_path):
    def doctor(at, run, ids):
        at(6.3, lambda: run.coord(6.3, 3, 2))

    m, _, _, _ = metrics_of(tmp_path, extra=doctor)
    text = R.to_prometheus(m)
    types = check_exposition(text)
    assert all(name.startswith("fleetloop_") for name in types)
    assert types["fleetloop_failover_seconds"] == "summary"
    assert types["fleetloop_split_brain_total"] == "counter"
    assert types["fleetloop_no_coordinator_ratio"] == "gauge"
    assert all(name.endswith("_total") for name, t in types.items() if t == "counter")
    lines = text.splitlines()
    assert 'fleetloop_split_brain_total{cluster="1"} 1' in lines
    assert 'fleetloop_failover_seconds{cluster="1",quantile="0.99"} 1.1' in lines
    assert 'fleetloop_failover_seconds_count{cluster="1"} 1' in lines
    assert 'fleetloop_node_messages_total{cluster="1",node="1",type="heartbeat"} 21' in lines
    assert 'fleetloop_frames_dropped_total{reason="node_down"} %d' % m["frames"]["dropped"]["node_down"] in lines
    assert 'fleetloop_faults_total{fault="crash"} 1' in lines


def test_prometheus_escapes_label_values_and_writes_nan():
    m = M.compute({"nodes": {}, "election_timeout_ms": 1000}, [
        {"kind": "fault", "fault": 'we"ird\\fault\nname', "mission_ns": 5},
    ])
    text = R.to_prometheus(m)
    check_exposition(text)
    assert 'fleetloop_faults_total{fault="we\\"ird\\\\fault\\nname"} 1' in text.splitlines()
    m = M.compute({"nodes": {"1": {"cluster": 1}}}, [])  # no T, no time
    check_exposition(R.to_prometheus(m))
    assert "fleetloop_election_timeout_seconds NaN" in R.to_prometheus(m).splitlines()


def test_timeline_segments(tmp_path):
    header, events, _, _ = story(tmp_path)
    tl = M.timeline(header, events)
    n1 = tl["nodes"]["1"]["segments"]
    assert [s[2] for s in n1] == ["follower", "coordinator", "down"]
    assert n1[1][:2] == [pytest.approx(1.0), pytest.approx(5.1)]
    assert n1[2][1] == pytest.approx(10.0)
    n2 = [s[2] for s in tl["nodes"]["2"]["segments"]]
    assert n2 == ["follower", "standby", "candidate", "coordinator"]
    assert tl["faults"] == [{"at_s": pytest.approx(5.1), "fault": "crash", "nodes": [1]}]
