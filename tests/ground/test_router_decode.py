"""The --sim path decodes a frame once for its in-process recipients
(ground/router.py `decode_once`, SimLink.deliver_shared, Node.receive_decoded),
one decode per decode key: the run's trace is the one it writes when every
recipient decodes the bytes itself, as a board does, with auth, a byzantine
coordinator, corrupted and duplicated copies, a skewed clock and a crash in
the run; and the shortcut is really taken."""

import json

from ground import firmware, run, scenario
from ground.router import Router

from tests.ground.test_shard_decode import SCENARIO


def _trace(tmp_path, name, once, monkeypatch):
    calls = {"bytes": 0}
    receive = firmware.core.Node.receive

    def counted(self, line, now_ms):
        calls["bytes"] += 1
        return receive(self, line, now_ms)

    monkeypatch.setattr(firmware.core.Node, "receive", counted)
    monkeypatch.setattr(Router, "decode_once", once)
    sc = scenario.load_text(SCENARIO, "<decode-once>")
    out = str(tmp_path / name)
    run.run(sc, out)
    monkeypatch.undo()
    with open(out + "/trace.jsonl") as f:
        events = [json.loads(line) for line in f]
    for e in events:
        e.pop("wall_ns", None)
    return events, calls["bytes"]


def test_decoding_once_writes_the_trace_decoding_per_recipient_writes(tmp_path, monkeypatch):
    once, bytes_once = _trace(tmp_path, "once", True, monkeypatch)
    each, bytes_each = _trace(tmp_path, "each", False, monkeypatch)
    delivered = sum(1 for e in each if e.get("fate") == "delivered")
    assert once == each
    assert any(e.get("fate") == "corrupted" for e in each) and any(e.get("fate") == "duplicated" for e in each)
    assert bytes_each > delivered / 2 > 0  # (a copy delivered to a node that is down reaches no core)
    assert bytes_once < bytes_each / 4  # only altered copies go through the bytes


def test_one_frame_decoded_under_two_keys_gives_each_node_what_its_own_decode_gives():
    # An unsigned frame to a node that requires auth and to one that does not: the shared decode keeps one result
    # per decode key, so the first refuses it (its error counter, as receive(bytes) counts it) and the second takes it.
    from ground.links import SimLink

    wire, Config, Node = firmware.wire, firmware.config.Config, firmware.core.Node
    key = bytes.fromhex("00112233445566778899aabbccddeeff")
    strict = Config(cluster=1, members=[1, 2, 3], auth_key=key, require_auth=True)
    lax = Config(cluster=1, members=[1, 2, 3])
    line = bytes(wire.encode(firmware.msgs.HEARTBEAT, 1, wire.cluster_addr(1), b"", 1))  # with its 0x00
    got = {}
    for how in ("bytes", "shared"):
        decoded = {}
        links = [SimLink(2, lambda *a: Node(2, strict, 7)), SimLink(3, lambda *a: Node(3, lax, 8))]
        for link in links:
            if how == "bytes":
                link.deliver(line, 10)
            else:
                link.deliver_shared(line, 10, decoded)
        got[how] = [(list(link.node.errors), link.node.frames_in) for link in links]
        if how == "shared":
            assert len(decoded) == 2
    assert got["shared"] == got["bytes"]
    assert got["bytes"][0][0][wire.ERR_NO_AUTH] == 1 and got["bytes"][1][0][wire.ERR_NO_AUTH] == 0
