"""Frame replay of a recorded emulated-board run into the in-process core.

Three emulated Picos (the real firmware/main.py under the MicroPython unix
port) run a lossy cluster with a coordinator crash and a power cut, each
board sending its core-call journal (board.json "journal": true, which
ground/board_json.py gives it). The replay drives the in-process core through
the same calls at the board's own mission ms and must send exactly the
board's frames; a deliberately changed core is caught at its first differing
frame, shown decoded on both sides.
"""

import json

import pytest

from ground import firmware, replay, run, scenario
from replay_checks import assert_caught_at_heartbeat, change_heartbeat_lineage

SCENARIO = """\
name: journal-replay
seed: 5
duration_s: 60
time_scale: 10
election_timeout_ms: 4000
clusters:
  - {id: 1, nodes: [1, 2, 3], lineages: [0, 1]}
links:
  intra_cluster: {delay_ms: 300, jitter: uniform, jitter_ms: 20, loss: 0.05}
faults:
  - {at_s: 20, crash: coordinator, cluster: 1, duration_s: 10}
  - {at_s: 35, power_cut: 2, duration_s: 5}
gates:
  split_brain: {max: 0}
"""


def _emulated_run(tmp, text):
    from hil import emulated_run

    sc = scenario.load_text(text, "journal.yaml")
    farm = emulated_run.start_farm(sc, str(tmp / "boards"))
    try:
        res = run.run(sc, str(tmp / "run"), mode="emulated", boards=farm.devices())
    finally:
        farm.stop()
    return res, str(tmp / "run" / "trace.jsonl")


@pytest.fixture(scope="module")
def board_trace(tmp_path_factory):
    res, path = _emulated_run(tmp_path_factory.mktemp("journal"), SCENARIO)
    assert res.ok, res.failures
    return path


@pytest.mark.parametrize("node", [1, 2, 3])
def test_every_board_replays_identically_into_the_core(board_trace, node):
    r = replay.replay_frames(board_trace, node)
    assert r.identical, r.report()
    assert len(r.replayed) > 30  # HELLO, heartbeats, telemetry, elections: a real stream
    assert "board journal" in r.report()


def test_the_run_had_reboots_and_losses_to_replay_through(board_trace):
    # Node 2 was power cut and the first coordinator crashed (a reboot on a
    # board): their journals hold two boots, the second from saved state.
    boots = {n: replay.JournalReplay(replay.node_stream(board_trace, n)).boots for n in (1, 2, 3)}
    assert boots[2] >= 2 and sum(boots.values()) == 5, boots  # 3 first boots, a crash and a power cut
    j = replay.JournalReplay(replay.node_stream(board_trace, 2))
    second = [i for i, e in enumerate(j.entries) if e[0] == firmware.msgs.J_BOOT][1]
    msgs = firmware.msgs
    assert j.entries[second][2] == 1  # restored from flash: seed, then term, vote, counter follow
    assert [k for k, _, _ in j.entries[second + 1:second + 5]] == [msgs.J_SEED, msgs.J_TERM, msgs.J_VOTE, msgs.J_COUNTER]
    assert j.entries[second + 2][2] >= 1  # a term was saved before the power cut
    from ground.board_json import board_config

    assert j.entries[1] == (msgs.J_SEED, 0, board_config(scenario.load_text(SCENARIO), 2)["seed"])


def test_the_seed_comes_from_the_journal(board_trace, monkeypatch):
    # A board without a seed in board.json derives one from its unique id,
    # which the ground cannot know: the journal's seed entry is what counts.
    from ground import board_json

    real = board_json.board_config
    monkeypatch.setattr(board_json, "board_config", lambda sc, nid: dict(real(sc, nid), seed=12345))
    r = replay.replay_frames(board_trace, 1)
    assert r.identical, r.report()


def test_a_changed_core_is_caught_at_its_first_differing_frame(board_trace, monkeypatch):
    change_heartbeat_lineage(monkeypatch, after=10)
    assert_caught_at_heartbeat(replay.replay_frames(board_trace, 3), 10)


def test_a_changed_timer_is_caught(board_trace, monkeypatch):
    # The board polls on its own loop, so a timer shifted by less than the
    # gap between its polls can leave every output as it was; a second's
    # shift of the follower timeout moves the failover election.
    Node = firmware.core.Node
    real = Node._follower_timeout_ms
    monkeypatch.setattr(Node, "_follower_timeout_ms", lambda self: real(self) + 1000)
    results = [replay.replay_frames(board_trace, n) for n in (1, 2, 3)]
    assert not all(r.identical for r in results)
    r = next(r for r in results if not r.identical)
    assert [d for _, d in r.replayed[:r.diff.index]] == [d for _, d in r.diff.recorded[:r.diff.index]]


def test_a_missing_journal_frame_is_refused_naming_the_line(board_trace, tmp_path):
    lines = open(board_trace).read().splitlines(keepends=True)
    events = [json.loads(x) for x in lines]
    journal = [i for i, e in enumerate(events)
               if e.get("type") == "journal" and e.get("src") == 3 and e.get("fate") == "sent"]
    assert len(journal) > 5
    fid = events[journal[3]]["id"]
    gone = [i for i, e in enumerate(events) if e.get("id") == fid]  # its sent and delivered lines
    assert len(gone) == 2
    bad = tmp_path / "gap.jsonl"
    bad.write_text("".join(x for i, x in enumerate(lines) if i not in gone))
    with pytest.raises(replay.ReplayError, match=r"gap\.jsonl:%d: node 3's journal jumps" % (journal[4] + 1 - 2)):
        replay.replay_frames(str(bad), 3)


def test_metrics_are_the_same_with_the_journal_left_out(board_trace):
    # The journal is the harness's instrumentation: listed by type, but in no
    # total or share, so a board run's figures do not depend on it.
    from ground import metrics, trace

    header, events, _ = trace.read(board_trace)
    journal_ids = {e["id"] for e in events if e.get("kind") == "frame" and e.get("type") == "journal"}
    assert journal_ids
    without = [e for e in events if e.get("id") not in journal_ids or e.get("kind") != "frame"]
    m_with, m_without = metrics.compute(header, events), metrics.compute(header, without)
    assert m_with["nodes"]["1"]["types"]["journal"]["messages"] > 0
    for key in ("messages_per_node_hour_max", "bytes_per_node_hour_max", "coordination_bytes_share"):
        assert m_with["flat"][key] == m_without["flat"][key] is not None, key
    for nid in ("1", "2", "3"):
        assert m_with["nodes"][nid]["bytes"] == m_without["nodes"][nid]["bytes"]
