# Frame replay follows in-process installs (ground/replay_core.py, docs/UPDATES.md
# "In-process nodes"): in a rollout run every node gets images over its ground
# link, installs them (ground/update_sim.py restarts it with the new version),
# a test build crashes as coordinator and the watchdog restarts it into the
# previous image, the rolled-back nodes boot their last confirmed one. Replaying
# any node's recorded inputs gives back its recorded frames, bytes and mission
# ns, through all of it; a replay that ignores the boot pointer is caught at the
# first frame after the first install.
import os

import pytest

from ground import replay, trace, update_sim

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCENARIO = os.path.join(ROOT, "tests", "ground", "scenarios", "replay-rollout.yaml")


@pytest.fixture(scope="module")
def rollout_trace(scenario_runs):
    _, res, out = scenario_runs.get(SCENARIO)  # the run test_metrics_stream.py made (conftest.py), or one now
    assert res.status == "ok"
    return os.path.join(out, "trace.jsonl")


def _node_events(path, what):
    return [e for e in trace.read(path)[1] if e.get("kind") == "node" and e.get("event") == what]


def test_the_run_installs_crashes_and_rolls_back(rollout_trace):
    rebooted = _node_events(rollout_trace, "rebooted")
    trials = {e["node"] for e in rebooted if "runs 1.1 (trial)" in e["detail"]}
    assert trials == set(range(1, 13))  # every node installed the good build
    assert any("runs 1.2 (trial)" in e["detail"] for e in rebooted)  # some the bad one
    assert _node_events(rollout_trace, "crashed")  # which crashed as coordinator
    events = trace.read(rollout_trace)[1]
    ro = [e["event"] for e in events if e.get("kind") == "rollout"]
    assert "complete" in ro and "abort" in ro and "rolled_back" in ro


@pytest.mark.parametrize("node", range(1, 13))
def test_every_node_replays_identically_through_its_installs(rollout_trace, node):
    r = replay.replay_frames(rollout_trace, node)
    assert r.identical, r.report()
    assert r.replayed == r.stream.outputs and len(r.replayed) > 100
    # and the replayed node did run the installed build: its HELLOs say 1.1
    said = {(d["fw_major"], d["fw_minor"]) for d in (_hello(line) for _, line in r.replayed) if d}
    assert (1, 1) in said and (1, 0) in said


def _hello(line):
    from ground import protocol

    try:
        d = protocol.describe(line)
    except protocol.FrameError:
        return None
    return d if d["type"] == "hello" else None


def test_a_replay_that_does_not_follow_the_install_is_caught_after_it(rollout_trace, monkeypatch):
    first_install = min(e["mission_ns"] for e in _node_events(rollout_trace, "rebooted") if e["node"] == 1)
    root = update_sim.SimUpdates.boot

    def ignore_pointer(self):  # every boot runs the factory image, as replay did before it followed installs
        root(self)
        self.slot, self.boot_state = update_sim.ROOT, "confirmed"
        return tuple(self.manifests[update_sim.ROOT]["version"])

    monkeypatch.setattr(update_sim.SimUpdates, "boot", ignore_pointer)
    r = replay.replay_frames(rollout_trace, 1)
    assert not r.identical
    i = r.diff.index
    assert r.stream.outputs[i][0] >= first_install
    assert r.replayed[:i] == r.stream.outputs[:i]
