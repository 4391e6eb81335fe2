"""A cluster of emulated Picos, each running the real firmware/main.py under
the MicroPython unix port, routed by the ground harness over their ptys."""

from ground import run, scenario, trace

SCENARIO = """\
name: emulated-cluster
seed: 5
duration_s: 90
time_scale: 10
election_timeout_ms: 4000
clusters:
  - {id: 1, nodes: [1, 2, 3, 4], lineages: [0, 1]}
links:
  intra_cluster: {delay_ms: 300, jitter: uniform, jitter_ms: 20}
faults:
  - {at_s: 40, crash: coordinator, cluster: 1}
gates:
  split_brain: {max: 0}
  unfated_frames: {max: 0}
"""


def test_emulated_boards_elect_and_fail_over_over_serial(tmp_path):
    from ground import emulated_run

    sc = scenario.load_text(SCENARIO, "emulated.yaml")
    farm = emulated_run.start_farm(sc, str(tmp_path / "boards"))
    try:
        res = run.run(sc, str(tmp_path / "run"), mode="emulated", boards=farm.devices())
    finally:
        farm.stop()
    assert res.ok, res.failures
    header, events, torn = trace.read(str(tmp_path / "run" / "trace.jsonl"))
    hellos = {e["node"] for e in events if e["kind"] == "node" and e["event"] == "hello"}
    assert hellos == {1, 2, 3, 4}
    fo = res.metrics["clusters"]["1"]["failover"]
    assert fo["count"] == 1 and not fo["incomplete"]
    # Each board persisted its term and vote to its own flash folder.
    for nid in (1, 2, 3, 4):
        assert (tmp_path / "boards" / ("node%d" % nid) / "state" / ("node%d" % nid)).exists()
