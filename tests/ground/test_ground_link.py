"""The ground link is a link: frames to the ground (address 0) and from it
run the `ground` link model (or a `pairs` entry naming 0), in both
directions, with every copy's fate in the trace; an unimpaired ground link
delivers at once, as it always did."""

from ground import run, scenario, trace

MS = 1_000_000

TEXT = """\
name: ground-link
seed: 2
duration_s: 60
election_timeout_ms: 2000
clusters:
  - {id: 1, nodes: [1, 2, 3]}
links:
  intra_cluster: {delay_ms: 100}
  ground: {delay_ms: 500, loss: 0.5}
  pairs:
    - {src: 1, dst: 0, delay_ms: 3000}
market: {electors: [1, 2, 3], units: [1, 1, 1, 1, 1, 1, 1, 1], slot_ms: 24000}
faults:
  - {at_s: 30, intent: {growth_permille: 700}}
gates:
  market_rounds_complete: off
"""


def _ground_fates(path):
    _, events, _ = trace.read(path)
    sent = {e["id"]: e for e in events if e["kind"] == "frame" and e["fate"] == "sent"}
    fates = [e for e in events if e["kind"] == "frame" and e["fate"] != "sent"]
    return sent, fates


def test_frames_to_and_from_the_ground_are_delayed_and_lost_like_any_link(tmp_path):
    sc = scenario.load_text(TEXT, "g.yaml")
    res = run.run(sc, str(tmp_path / "g"))
    assert res.status == "ok" and not res.failures, res.failures
    sent, fates = _ground_fates(str(tmp_path / "g" / "trace.jsonl"))
    up = [e for e in fates if e["to"] == 0]
    by_src = {}
    for e in up:
        by_src.setdefault(sent[e["id"]]["src"], []).append(e)
    # node 1 -> ground: the pairs entry (3 s, no loss)
    assert {e["delay_ns"] for e in by_src[1] if e["fate"] == "delivered"} == {3000 * MS}
    assert not [e for e in by_src[1] if e["fate"] == "dropped" and e["reason"] != "run_end"]
    # nodes 2, 3 -> ground: the ground model (500 ms, half lost)
    for n in (2, 3):
        got = [e for e in by_src[n] if e["reason" if e["fate"] == "dropped" else "fate"] in ("delivered", "loss")]
        delivered = [e for e in got if e["fate"] == "delivered"]
        assert {e["delay_ns"] for e in delivered} == {500 * MS}
        assert 0.2 < 1 - len(delivered) / len(got) < 0.8, (n, len(delivered), len(got))
    # ground -> nodes: the intent, over the ground link (500 ms or lost)
    (intent,) = [e for e in sent.values() if e["type"] == "intent"]
    down = [e for e in fates if e["id"] == intent["id"]]
    assert {e["to"] for e in down} == {1, 2, 3}
    assert all((e["fate"], e.get("delay_ns", 500 * MS), e.get("reason", "loss")) in
               (("delivered", 500 * MS, "loss"), ("dropped", 500 * MS, "loss")) for e in down), down


def test_an_unimpaired_ground_link_delivers_at_once(tmp_path):
    text = TEXT.replace("  ground: {delay_ms: 500, loss: 0.5}\n  pairs:\n    - {src: 1, dst: 0, delay_ms: 3000}\n", "")
    res = run.run(scenario.load_text(text, "g.yaml"), str(tmp_path / "g"))
    assert res.status == "ok"
    sent, fates = _ground_fates(str(tmp_path / "g" / "trace.jsonl"))
    up = [e for e in fates if e["to"] == 0]
    assert up and {(e["fate"], e["delay_ns"]) for e in up} == {("delivered", 0)}
    (intent,) = [e for e in sent.values() if e["type"] == "intent"]
    assert {(e["to"], e["fate"], e["delay_ns"]) for e in fates if e["id"] == intent["id"]} == {
        (n, "delivered", 0) for n in (1, 2, 3)}


def test_a_boards_journal_is_not_mission_traffic_and_crosses_at_once():
    """JOURNAL frames are the harness's record of a board (exact frame
    replay), read off its serial line: a lossy ground link must not eat them."""
    from ground.clock import VirtualClock
    from ground.router import Router, msgs, wire

    text = TEXT.replace("ground: {delay_ms: 500, loss: 0.5}", "ground: {delay_ms: 500, loss: 1.0}")
    sc = scenario.load_text(text, "g.yaml")
    events = []
    r = Router(sc, VirtualClock(), events.append, seed=1)
    journal = wire.encode(msgs.JOURNAL, 2, wire.ADDR_GROUND, msgs.pack_journal(0, []), 1)[:-1]
    hello = wire.encode(msgs.HELLO, 2, wire.ADDR_GROUND, msgs.pack(msgs.HELLO, 1, 1, 0, 0, 1, 1, 1), 2)[:-1]
    r.from_node(2, journal)
    r.from_node(2, hello)
    fates = [(e["id"], e["fate"], e.get("reason"), e.get("delay_ns")) for e in events
             if e["kind"] == "frame" and e["fate"] != "sent"]
    assert fates == [(1, "delivered", None, 0), (2, "dropped", "loss", None)]


def test_the_grounds_counter_moves_past_a_rebooted_nodes_floor_and_runs_on_boards_start_from_the_clock(tmp_path):
    # Nodes keep a replay ceiling for the ground (firmware/node/replay.py,
    # blocks of wire.GROUND_BLOCK): after node 2 says HELLO again, the
    # ground's next counter is past the block of the last one node 2 took.
    from ground import protocol as P
    from ground.router import ground_counter_base, wire

    text = TEXT.replace("faults:\n", 'auth_key: "00112233445566778899aabbccddeeff"\nfaults:\n'
                        "  - {at_s: 20, intent: {growth_permille: 600}}\n"
                        "  - {at_s: 25, power_cut: 2}\n  - {at_s: 27, power_on: 2}\n")
    res = run.run(scenario.load_text(text, "g.yaml"), str(tmp_path / "g"))
    assert res.status == "ok", res.failures
    sent, _ = _ground_fates(str(tmp_path / "g" / "trace.jsonl"))
    key = bytes.fromhex("00112233445566778899aabbccddeeff")
    counters = [(e["msg"]["growth_permille"], P.parse_line(bytes.fromhex(e["hex"]), key=key).counter)
                for e in sorted(sent.values(), key=lambda e: e["id"]) if e["type"] == "intent"]
    assert counters[0] == (600, 0)  # in-process: from 0, the same trace every run
    assert counters[1][0] == 700 and counters[1][1] == wire.GROUND_BLOCK  # node 2's HELLO moved it one block on
    # On boards: a fresh block each wall second, so a run clears the floors the last one left.
    t = 1_764_000_000
    assert ground_counter_base(t) % wire.GROUND_BLOCK == 0
    assert ground_counter_base(t + 1) == ground_counter_base(t) + wire.GROUND_BLOCK == ground_counter_base(t + 0.9) + 16
    last_of_a_run = ground_counter_base(t) + wire.GROUND_BLOCK - 1  # a run that sent a whole block in its first second
    assert ground_counter_base(t + 1) > last_of_a_run


def test_a_boards_soft_reboot_banner_is_a_reboot_not_a_bad_frame():
    """MicroPython prints "MPY: soft reboot" between two frames when a board
    soft-resets (an update's install or rollback): the router records a
    `rebooted` node event, not a bad frame; other text still is one."""
    from ground.clock import VirtualClock
    from ground.router import Router

    sc = scenario.load_text(TEXT, "g.yaml")
    events = []
    r = Router(sc, VirtualClock(), events.append, seed=1)
    r.from_node(2, b"MPY: soft reboot\r\n")
    assert r.bad_frames == 0
    assert [(e["node"], e["event"]) for e in events if e["kind"] == "node"] == [(2, "rebooted")]
    r.from_node(2, b"Traceback (most recent call last):\r\n")
    assert r.bad_frames == 1
    assert [e["event"] for e in events if e["kind"] == "node"] == ["rebooted", "bad_frame"]
