"""The trace writer's line (ground/trace.py `line`) is json.dumps(event,
separators=(",", ":"), sort_keys=True) byte for byte: its format string for a
plain `delivered` fate and a `sent` frame, the encoder for everything else, on made-up
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


def _sent(**over):
    e = {"fate": "sent", "id": 17, "src": 3, "dst": 61441, "type": "heartbeat", "seq": 9, "len": 31, "hex": "0a1b2c",
         "msg": {"term": 4, "role": 2, "coordinator": 3, "entries": [[1, 2]], "text": "x"}, "kind": "frame",
         "mission_ns": 12_000_000_001, "wall_ns": 12_000_000_001}
    e.update(over)
    return e


CASES = [
    _sent(),
    _sent(msg={}, hex="", seq=2**40, dst=0),
    _sent(msg={"text": 'say "hi"\\ \u00e9 \x01', "f": 1.5, "n": None, "b": True}),  # the encoder's escapes inside msg
    _sent(msg={2: 1, 10: [True]}),  # int keys: json writes them as strings
    _sent(type='he"llo'),  # a quote, a backslash, a control char, non-ASCII: escaped by json
    _sent(type="a\\b"),
    _sent(hex="\x7f"),
    _sent(type="h\u00e9"),
    _sent(hex=b"00"),  # bytes: the encoder refuses them (below)
    _sent(src=True),
    _sent(len=31.0),
    _sent(msg=[1, 2]),
    _sent(bad="crc"),  # a thirteenth key
    {k: v for k, v in _sent().items() if k != "seq"},
    _sent(fate="dropped"),
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
    try:
        want = _dumps(event)
    except TypeError:
        with pytest.raises(TypeError):  # what json cannot write, line() does not write either
            trace.line(event)
        return
    assert trace.line(event) == want


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
