"""The trace writer's line (ground/trace.py `line`) is json.dumps(event,
separators=(",", ":"), sort_keys=True) byte for byte: its format string for a
plain `delivered` fate, and the encoder for everything else, on made-up
events that sit on either side of the fast path's conditions and on every
line of a real run's trace."""

import json

import pytest

from bench.bench_fleet import fleet_text
from ground import run, scenario, trace


def _dumps(e):
    return json.dumps(e, separators=(",", ":"), sort_keys=True) + "\n"


def _delivered(**over):
    e = {"fate": "delivered", "id": 17, "to": 4, "copy": 0, "delay_ns": 500_123_456, "kind": "frame",
         "mission_ns": 12_000_000_001, "wall_ns": 12_000_000_001}
    e.update(over)
    return e


CASES = [
    _delivered(),
    _delivered(copy=2, id=2**70, to=65535, delay_ns=-5, mission_ns=0, wall_ns=1),  # big, negative, zero
    _delivered(copy=True),  # a bool is an int to %d but `true` to json
    _delivered(to=False),
    _delivered(delay_ns=1.5),  # a float
    _delivered(to=None),  # null
    _delivered(id="17"),  # a string where a number goes
    _delivered(fate="dropped"),
    _delivered(kind="link"),
    _delivered(hex="00ff"),  # a ninth key (an altered copy's bytes)
    {k: v for k, v in _delivered().items() if k != "copy"},  # seven keys
    {"fate": "dropped", "id": 3, "to": 5, "copy": 0, "reason": "loss", "kind": "frame", "mission_ns": 7, "wall_ns": 7},
    {"kind": "fault", "fault": "crash", "node": 3, "mission_ns": 1, "wall_ns": 1, "detail": {"b": [1, "é"], "a": None}},
]


@pytest.mark.parametrize("event", CASES, ids=range(len(CASES)))
def test_line_is_json_dumps(event):
    assert trace.line(event) == _dumps(event)


def test_line_reencodes_every_line_of_a_run(tmp_path):
    sc = scenario.load_text(fleet_text(nodes=20, duration_s=8), "<trace_line>")
    run.run(sc, str(tmp_path), plot=False)
    raw = open(tmp_path / "trace.jsonl", encoding="utf-8").read().splitlines(keepends=True)
    kinds = {}
    for text in raw:
        e = json.loads(text)
        assert trace.line(e) == text
        key = (e["kind"], e.get("fate"))
        kinds[key] = kinds.get(key, 0) + 1
    assert kinds[("frame", "delivered")] > 100 and kinds[("frame", "sent")] > 10  # both paths were taken
