"""The lean path decodes a frame once for all its recipients, its payload's
values too (ground/shard.py `_decoded`, Node.receive_decoded, Frame.values):
every node ends as it does when each recipient decodes the bytes itself (the
board's way, and the --sim path's), down to its error counters, with auth, a
byzantine coordinator, corrupted copies (they stay on the bytes path), a
skewed clock and a crash in the run."""

from ground import firmware, fleetrun, scenario
from ground.shard import Shard

SCENARIO = """\
name: decode-once
seed: 9
duration_s: 40
election_timeout_ms: 3000
auth_key: "00112233445566778899aabbccddeeff"
clusters:
  - {id: 1, nodes: [1, 2, 3, 4, 5]}
  - {id: 2, nodes: [6, 7, 8, 9, 10]}
links:
  intra_cluster: {delay_ms: 200, jitter_ms: 30, loss: 0.02, duplicate: 0.05}
  inter_cluster: {delay_ms: 400}
faults:
  - {at_s: 8, byzantine: coordinator, cluster: 1, duration_s: 10}
  - {at_s: 10, corruption_burst: 7, duration_s: 10, bitflip: 0.004}
  - {at_s: 12, skew: 9, factor: 1.02}
  - {at_s: 20, crash: 3, duration_s: 6}
"""


def _run(sc, once, monkeypatch):
    calls = {"bytes": 0, "decoded": 0, "inside": False}
    node_cls = firmware.core.Node
    receive, receive_decoded = node_cls.receive, node_cls.receive_decoded

    def counted_receive(self, line, now_ms):
        calls["bytes"] += 1
        calls["inside"] = True  # receive() ends in receive_decoded(): not counted as the shortcut
        try:
            return receive(self, line, now_ms)
        finally:
            calls["inside"] = False

    def counted_decoded(self, frame, now_ms):
        calls["decoded"] += not calls["inside"]
        return receive_decoded(self, frame, now_ms)

    monkeypatch.setattr(node_cls, "receive", counted_receive)
    monkeypatch.setattr(node_cls, "receive_decoded", counted_decoded)
    sh = Shard(sc, sc.seed, 0, sorted(sc.clusters), fleetrun.units_of(sc))
    if not once:
        sh._key = None  # every recipient decodes the bytes itself
    sh.advance(int(sc.duration_s * 1e9), last=True)
    counters = sh.finish()
    monkeypatch.undo()  # the next run wraps the core's own methods again
    counters.pop("cpu_s")
    nodes = {nid: (list(link.node.errors), link.node.frames_in, link.node.ignored, link.node.conflicts,
                   link.node.term, link.node.role, link.node.coordinator, link.node.records.digest())
             for nid, link in sh.links.items()}
    return counters, nodes, calls


def test_decoding_once_leaves_every_node_as_decoding_per_recipient(monkeypatch):
    sc = scenario.load_text(SCENARIO, "decode-once.yaml")
    ref_counters, ref_nodes, ref_calls = _run(sc, False, monkeypatch)
    counters, nodes, calls = _run(sc, True, monkeypatch)
    assert nodes == ref_nodes
    assert counters == ref_counters
    # the shortcut was taken for most deliveries, and refused copies still went as bytes
    assert ref_calls["bytes"] == calls["bytes"] + calls["decoded"] > 1000
    assert calls["decoded"] > 4 * calls["bytes"] > 0
    errors = [sum(n[0][code] for n in nodes.values()) for code in (firmware.wire.ERR_CRC, firmware.wire.ERR_TAG)]
    assert sum(errors) > 5, errors  # corrupted copies were refused, each by its own recipient
