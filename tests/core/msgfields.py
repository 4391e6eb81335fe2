# Message payloads by field name, through the firmware's own msgs layer, for
# the golden vectors (tools/make_golden.py, tests/core/test_golden.py) and the
# MicroPython codec peer (tests/ground/mpy_codec_peer.py). Runs under CPython
# and the MicroPython unix port.
#
# Fields are by the names of msgs.layout(type, version); the variable layouts
# as JSON-ready data: STATE entries as {node, version, data}, JOURNAL entries
# as {kind, t_ms, arg}, LOG as {"text": ...}, CATCHUP entries as {node, parent}.

from node import msgs
from node import update as U
from node.catchup import CATCHUP


def payload_of(type, fields, version=1):
    """The firmware's payload bytes for a message given by field name."""
    if type == msgs.STATE:
        entries = [(e["node"], e["version"], e["data"]) for e in fields["entries"]]
        return msgs.pack_state(fields["term"], fields["digest"], fields["first"], fields["total"], entries)
    if type == msgs.LOG:
        return fields["text"].encode()
    if type == msgs.JOURNAL:
        return msgs.pack_journal(fields["first"], [(e["kind"], e["t_ms"], e["arg"]) for e in fields["entries"]])
    if type == CATCHUP:
        from node import catchup

        head = tuple(fields[n] for n in msgs.layout(type)[2][:7])
        return catchup.pack_fields(head, [(e["node"], e["parent"]) for e in fields["entries"]])
    if type == msgs.UPD_CHUNK:
        return U.pack_chunk(fields["upd_id"], fields["index"], _unhex(fields["data"]))
    if type == msgs.UPD_ACK:
        f = fields
        return U.pack_ack(f["upd_id"], f["state"], f["reason"], f["have"], f["base"], f["fw_major"], f["fw_minor"],
                             _unhex(f["bitmap"]))
    if type == msgs.UPD_OFFER:
        fields = dict(fields)
        fields["digest"] = _unhex(fields["digest"])
    return msgs.pack(type, *[fields[n] for n in msgs.layout(type, version)[2]], version=version)


def _unhex(text):
    import binascii

    return binascii.unhexlify(text)


def _hex(data):
    import binascii

    return binascii.hexlify(bytes(data)).decode()


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
    if type == CATCHUP:
        from node import catchup

        values = catchup.unpack(payload)
        out = dict(zip(msgs.layout(type)[2][:7], values[:7]))
        out["entries"] = [{"node": n, "parent": p} for n, p in values[7]]
        return out
    if type == msgs.UPD_CHUNK:
        upd_id, index, data = U.unpack_chunk(payload)
        return {"upd_id": upd_id, "index": index, "data": _hex(data)}
    if type == msgs.UPD_ACK:
        values = U.unpack_ack(payload)
        out = dict(zip(msgs.layout(type, version)[2], values))
        out["bitmap"] = _hex(out["bitmap"])
        return out
    values = msgs.unpack(type, payload, version)
    if type == msgs.UPD_OFFER:
        out = dict(zip(msgs.layout(type, version)[2], values))
        out["digest"] = _hex(out["digest"])
        return out
    return dict(zip(msgs.layout(type, version)[2], values))
