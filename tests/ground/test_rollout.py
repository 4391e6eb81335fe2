"""Rollouts (ground/rollout.py, ground/rollout_run.py) and in-process
installs (ground/update_sim.py): plans refused at load with file:line, the
real update agent installing, reverting and refusing in-process, a node
that joins mid-rollout getting its cluster's version."""

import hashlib

import pytest

from ground import firmware, flim, run, scenario, trace
from ground.update_sim import SimUpdates
from ground.yamlfile import ConfigError

U = pytest.importorskip("node.update")

BASE = """
name: t
duration_s: 4000
election_timeout_ms: 2000
clusters:
  - {id: 1, nodes: [1, 2, 3]}
  - {id: 2, nodes: [4, 5, 6], firmware: "2.0"}
  - {id: 3, nodes: [7, 8, 9], firmware: "3.0"}
gates: {split_brain: {max: 0}}
"""


def _load(extra):
    return scenario.load_text(BASE + extra, "plan.yaml")


def test_a_plan_that_would_run_four_majors_is_refused_at_its_line():
    with pytest.raises(ConfigError) as e:
        _load("rollout:\n  images:\n    - {version: '3.1'}\n    - {version: '4.0'}\n")
    assert str(e.value).startswith("plan.yaml:13:") and "4 firmware majors" in str(e.value)
    assert _load("rollout:\n  images:\n    - {version: '3.1'}\n").rollout.images[0].version == (3, 1)


@pytest.mark.parametrize("extra, words", [
    ("rollout:\n  images:\n    - {version: '1.1', defects: {crash_on_coordinator: true}}\n", "not a test build"),
    ("rollout:\n  images:\n    - {version: '1.1', test_build: true, defects: {eat_homework: true}}\n", "unknown"),
    ("rollout:\n  canary_percent: 20\n  images:\n    - {version: '1.1'}\n", "canary_percent"),
    ("rollout:\n  canaries: [9]\n  images:\n    - {version: '1.1'}\n", "rollout.canaries"),
    ("rollout:\n  checks: {latency: {}}\n  images:\n    - {version: '1.1'}\n", "'latency' unknown"),
    ("faults:\n  - {at_s: 5, rollout: pause}\n", "no rollout: section"),
    ("rollout:\n  images:\n    - {version: '1.1'}\nfaults:\n  - {at_s: 5, rollout: stop}\n", "pause or resume"),
])
def test_bad_rollout_input_is_refused_with_file_and_line(extra, words):
    with pytest.raises(ConfigError) as e:
        _load(extra)
    assert str(e.value).startswith("plan.yaml:") and words in str(e.value)


# ---- in-process installs: the agent and SimUpdates, frame by frame ------------------


class _Node:
    """Just what the agent reads of a node: its send(), version and records."""

    def __init__(self, version=(1, 0)):
        self.update = None
        self.sent = []
        self._send = lambda dst, t, payload: self.sent.append((t, bytes(payload)))
        self.cfg = firmware.config.Config(cluster=1, members=(1,), fw_version=version)
        self.records = firmware.core.Node(1, self.cfg, 1).records
        self.id = 1


def _transfer(sim, node, blob, version, flags=0):
    agent = U.agent(node)
    digest = hashlib.sha256(blob).digest()
    n = (len(blob) + 199) // 200
    offer = firmware.msgs.pack(firmware.msgs.UPD_OFFER, 7, digest, len(blob), n, 200, version[0], version[1], 0, flags)
    agent.receive(0, firmware.msgs.UPD_OFFER, offer, node)
    for i in range(n):
        agent.receive(0, firmware.msgs.UPD_CHUNK, U.pack_chunk(7, i, blob[i * 200:(i + 1) * 200]), node)
    return sim.after_poll(node, 0), agent


def test_an_in_process_install_boots_the_new_version_as_a_trial_and_a_reset_reverts_it():
    sim = SimUpdates(1, (1, 0), key=b"k")
    assert sim.boot() == (1, 0)
    node = _Node()
    what, agent = _transfer(sim, node, flim.pack([], (1, 1), b"k"), (1, 1))
    assert what is None and agent.state == U.VERIFIED
    agent.receive(0, firmware.msgs.UPD_CMD, firmware.msgs.pack(firmware.msgs.UPD_CMD, 7, U.CMD_INSTALL), node)
    assert sim.after_poll(node, 0) == "reset"
    assert sim.boot() == (1, 1) and sim.boot_state == "trial"
    node2 = _Node((1, 1))
    sim.attach(node2)
    assert node2.update.state == U.TRIAL
    assert sim.boot() == (1, 0) and sim.boot_state == "reverted"  # reset before it confirmed


def test_an_in_process_image_under_another_key_is_refused_and_nothing_installed():
    sim = SimUpdates(1, (1, 0), key=b"k")
    sim.boot()
    node = _Node()
    what, agent = _transfer(sim, node, flim.pack([], (1, 1), b"other"), (1, 1))
    assert agent.state == U.IDLE and agent.refused[U.R_TAG] == 1 and "tag" in sim.last_error
    assert set(sim.manifests) == {""} and sim.boot() == (1, 0)


def test_a_test_builds_defect_crashes_the_in_process_node_when_it_coordinates():
    sim = SimUpdates(1, (1, 0))
    sim.boot()
    node = _Node()
    _, agent = _transfer(sim, node, flim.pack([], (1, 2), None, test_build=True,
                                              defects={"crash_on_coordinator": True}), (1, 2), flags=3)
    agent.receive(0, firmware.msgs.UPD_CMD, firmware.msgs.pack(firmware.msgs.UPD_CMD, 7, U.CMD_INSTALL), node)
    assert sim.after_poll(node, 0) == "reset" and sim.boot() == (1, 2)
    node2 = _Node((1, 2))
    sim.attach(node2)
    node2.coordinator = 2
    assert sim.after_poll(node2, 0) is None
    node2.coordinator = 1  # itself
    assert sim.after_poll(node2, 0) == "crash" and "coordinator" in sim.crash


# ---- a run ----------------------------------------------------------------------------


def test_a_node_that_joins_mid_rollout_gets_its_clusters_version(tmp_path):
    sc = scenario.load_text("""
name: join
duration_s: 1500
election_timeout_ms: 2000
clusters:
  - {id: 1, nodes: [1, 2, 3]}
  - {id: 2, nodes: [4, 5, 6]}
rollout:
  start_s: 20
  window_s: 300
  canaries: [1]
  step_percent: 50
  confirm_after_s: 10
  deploy_timeout_s: 100
  images: [{version: "1.1"}]
faults:
  - {at_s: 5, power_cut: 6}
  - {at_s: 900, power_on: 6}
gates: {rollout_completed: {min: 1}}
""", "join.yaml")
    res = run.run(sc, str(tmp_path / "r"), plot=False)
    assert res.ok, res.failures
    _, events, _ = trace.read(str(tmp_path / "r" / "trace.jsonl"))
    hellos = [(e["mission_ns"], e["src"], (e["msg"]["fw_major"], e["msg"]["fw_minor"])) for e in events
              if e["kind"] == "frame" and e.get("fate") == "sent" and e["type"] == "hello"]
    assert {n for _, n, v in hellos if v == (1, 1)} == {1, 2, 3, 4, 5, 6}
    assert [v for t, n, v in hellos if n == 6][0] == (1, 0)  # it came back on its old image, then got 1.1
    joins = [e for e in events if e["kind"] == "rollout" and e["event"] == "join"]
    assert [j["node"] for j in joins] == [6]
    assert res.metrics["flat"]["rollout_joins"] == 1


def test_the_lean_path_takes_a_rollout_across_protocol_ranges():
    from ground import fleetrun

    sc = _load("rollout:\n  images:\n    - {version: '3.1'}\n")  # the fleet speaks 1..1, 1..2 and 1..3
    assert fleetrun.lean_refusal(sc) is None  # each shard's version table follows the HELLOs (shard_skew.py)
