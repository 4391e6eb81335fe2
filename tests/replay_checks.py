"""Shared checks for frame-replay tests (tests/ground/test_replay.py on
in-process runs, tests/hil/test_journal_replay.py on emulated-board runs):
a deliberately changed core and what the replay must report about it."""

from ground import firmware


def change_heartbeat_lineage(monkeypatch, after):
    """From the (after+1)-th HEARTBEAT the core packs on, its lineage field is
    off by one: a changed core whose first differing frame is known."""
    msgs = firmware.msgs
    real_pack = msgs.pack
    count = [0]

    def pack(type, *values, **kw):
        if type == msgs.HEARTBEAT:
            count[0] += 1
            if count[0] > after:
                values = list(values)
                values[4] = (values[4] + 1) & 0xFF  # lineage
        return real_pack(type, *values, **kw)

    monkeypatch.setattr(msgs, "pack", pack)


def assert_caught_at_heartbeat(r, nth):
    """Result r of replaying with change_heartbeat_lineage(after=nth): it
    differs first at the node's nth (0-based) heartbeat, everything before is
    the same bytes, and the report shows both heartbeats decoded."""
    msgs, wire = firmware.msgs, firmware.wire
    assert not r.identical and r.diff.what == "bytes"
    rec = r.diff.recorded
    beats = [i for i, (_, d) in enumerate(rec) if wire.decode(d).type == msgs.HEARTBEAT]
    assert r.diff.index == beats[nth]
    assert [d for _, d in r.replayed[:beats[nth]]] == [d for _, d in rec[:beats[nth]]]
    text = r.report()
    assert "frame #%d" % (beats[nth] + 1) in text
    lineage = msgs.unpack(msgs.HEARTBEAT, wire.decode(rec[beats[nth]][1]).payload)[4]
    rec_line, rep_line = [x for x in text.splitlines() if x.strip().startswith(("recorded:", "replayed:"))]
    assert "heartbeat" in rec_line and "lineage=%d " % lineage in rec_line
    assert "heartbeat" in rep_line and "lineage=%d " % (lineage + 1) in rep_line
