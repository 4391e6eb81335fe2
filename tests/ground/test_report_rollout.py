"""The rollout timeline (rollout.png, ground/report_rollout.py): drawn in
the run folder beside the other reports when a run has a rollout, not with
--no-plot, not for a run without one; its data, from what the nodes said,
shows the bad build's canary cluster on it and then back."""

import os

from ground import cli, trace
from ground.report_rollout import rollout_series

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SC = os.path.join(ROOT, "scenarios", "rollout-boards.yaml")


def test_a_rollout_run_draws_clusters_by_version_and_the_canary_goes_to_the_bad_build_and_back(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["run", SC, "--sim", "--out", str(out), "-q"]) == 0, capsys.readouterr()
    png = out / "rollout.png"
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    header, events, _ = trace.read(str(out / "trace.jsonl"))
    series = rollout_series(header, events)
    (bad_start,) = [e for e in events if e["kind"] == "rollout" and e["event"] == "start" and e["image"] == "1.2"]
    (canary,) = bad_start["canaries"]
    labels = [label for _, _, label in series["clusters"][canary]]
    assert labels[0] == "1.0" and labels[-1] == "1.1"
    on_bad = [i for i, label in enumerate(labels) if "1.2" in label.split("+")]
    assert on_bad and labels[on_bad[-1] + 1:] and all("1.2" not in x for x in labels[on_bad[-1] + 1:])
    first_bad = series["clusters"][canary][on_bad[0]][0]
    assert first_bad >= bad_start["mission_ns"] / 1e9
    for c, segs in series["clusters"].items():  # the other clusters never ran it; all end on 1.1
        assert segs[-1][2] == "1.1"
        if c != canary:
            assert not [s for s in segs if "1.2" in s[2]], (c, segs)
    # Segments tile the run: each starts where the last ended.
    for segs in series["clusters"].values():
        assert all(a[1] == b[0] for a, b in zip(segs, segs[1:]))
    # `ground metrics TRACE --out DIR` draws it again from the trace file.
    again = tmp_path / "again"
    assert cli.main(["metrics", str(out / "trace.jsonl"), "--out", str(again)]) == 0
    assert (again / "rollout.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The counts panel: at the end every cluster runs 1.1.
    assert series["counts"][-1][1] == {"1.1": 3}
    assert any(cnt.get("1.2", 0) + sum(n for v, n in cnt.items() if "1.2" in v.split("+")) for _, cnt in series["counts"])


def test_no_plot_and_a_run_without_a_rollout_draw_no_rollout_png(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["run", SC, "--sim", "--out", str(out), "-q"]) == 0
    assert (out / "rollout.png").exists()
    assert cli.main(["run", SC, "--sim", "--out", str(out), "--force", "--no-plot", "-q"]) == 0
    assert not (out / "rollout.png").exists()  # not left from the earlier run either
    plain = tmp_path / "plain"
    assert cli.main(["run", os.path.join(ROOT, "scenarios", "light-delay.yaml"), "--sim", "--out", str(plain), "-q"]) == 0
    assert (plain / "timeline.png").exists() and not (plain / "rollout.png").exists()
