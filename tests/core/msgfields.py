# Message payloads by field name, through the firmware's own msgs layer, for
# the golden vectors (tools/make_golden.py, tests/core/test_golden.py) and the
# MicroPython codec peer (tests/ground/mpy_codec_peer.py). Runs under CPython
# and the MicroPython unix port.
#
# Fields are by the names of msgs.layout(type, version); the variable layouts
# as JSON-ready data: STATE entries as {node, version, data}, JOURNAL entries
# as {kind, t_ms, arg}, LOG as {"text": ...}.

from node import msgs


def payload_of(type, fields, version=1):
    """The firmware's payload bytes for a message given by field name."""
    if type == msgs.STATE:
        entries = [(e["node"], e["version"], e["data"]) for e in fields["entries"]]
        return msgs.pack_state(fields["term"], fields["digest"], fields["first"], fields["total"], entries)
    if type == msgs.LOG:
        return fields["text"].encode()
    if type == msgs.JOURNAL:
        return msgs.pack_journal(fields["first"], [(e["kind"], e["t_ms"], e["arg"]) for e in fields["entries"]])
    return msgs.pack(type, *[fields[n] for n in msgs.layout(type, version)[2]], version=version)


def fields_of(type, payload, version=1):
    """The message's fields by name, decoded by the firmware (ProtocolError,
    ERR_TYPE for an unknown type, as msgs.unpack raises it)."""
    if type == msgs.STATE:
        term, digest, first, total, entries = msgs.unpack_state(payload)
        rows = [{"node": n, "version": v, "data": d} for n, v, d in entries]
        return {"term": term, "digest": digest, "first": first, "total": total, "entries": rows}
    if type == msgs.LOG:
        return {"text": msgs.unpack_log(payload)}
    if type == msgs.JOURNAL:
        first, entries = msgs.unpack_journal(payload)
        return {"first": first, "entries": [{"kind": k, "t_ms": t, "arg": a} for k, t, a in entries]}
    values = msgs.unpack(type, payload, version)
    return dict(zip(msgs.layout(type, version)[2], values))
