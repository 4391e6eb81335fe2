"""What frame replay reads from a run trace: one node's recorded inputs and
outputs in trace order (NodeStream), the scenario the header recorded, and
ReplayError, the error of every replay (ground/replay.py has the overview)."""

from ground.pcap import PcapError, read_trace

MS = 1_000_000


class ReplayError(ValueError):
    """A trace that cannot be replayed as asked: names the file (and line)."""



# ---- what a node sent and received, from the trace ---------------------------


class NodeStream:
    """One node's recorded inputs and outputs, in trace order.

    items: list of (line, kind, event, data) with kind in
      "in"    a frame delivered to the node (data: the bytes, no delimiter)
      "out"   a frame the node sent (data: the bytes as the node sent them)
      "fault" a fault on the node
      "end"   the end of the run
    """

    def __init__(self, path, node, header, items, torn):
        self.path = path
        self.node = node
        self.header = header
        self.items = items
        self.torn = torn

    @property
    def outputs(self):
        return [(ev["mission_ns"], data) for _, kind, ev, data in self.items if kind == "out"]

    @property
    def inputs(self):
        return [(ev["mission_ns"], data) for _, kind, ev, data in self.items if kind == "in"]


def node_stream(path, node, allow_torn=False):
    try:
        header, events, torn = read_trace(path, allow_torn=allow_torn)
    except PcapError as e:
        raise ReplayError(str(e)) from None
    nodes = header.get("nodes") or {}
    if str(node) not in nodes:
        added = any(e.get("kind") == "node" and e.get("event") == "node_added" and e.get("node") == node
                    for _, e in events)
        raise ReplayError("%s: node %s is %s (nodes: %s)"
                          % (path, node, "a daughter the run added (node_added): frame replay of a node added"
                             " during a run is not supported" if added else "not in this trace",
                             ", ".join(sorted(nodes, key=int)) or "none"))
    sent = {}
    items = []
    corrupted = set()
    unrecorded = []  # frames the router corrupted without recording the bytes delivered
    for line, ev in events:
        kind = ev["kind"]
        if kind == "frame":
            fate = ev["fate"]
            if fate == "corrupted" and ev.get("to") == node:
                corrupted.add(ev["id"])
            elif fate == "sent":
                data = bytes.fromhex(ev.get("hex", ""))
                sent[ev["id"]] = data
                if ev.get("src") == node:
                    orig = ev.get("orig_hex")
                    items.append((line, "out", ev, bytes.fromhex(orig) if orig else data))
            elif fate == "delivered" and ev.get("to") == node:
                data = bytes.fromhex(ev["hex"]) if "hex" in ev else sent[ev["id"]]
                if "hex" not in ev and ev["id"] in corrupted:
                    unrecorded.append(line)
                items.append((line, "in", ev, data))
        elif kind == "fault" and ev.get("node") == node:
            items.append((line, "fault", ev, None))
        elif kind == "end":
            items.append((line, "end", ev, None))
    stream = NodeStream(path, node, header, items, torn)
    stream.unrecorded = unrecorded
    return stream


def scenario_of(header, path):
    """The Scenario recorded in a trace header (scenario_text)."""
    from ground import scenario as scenario_mod
    from ground.yamlfile import ConfigError

    text = header.get("scenario_text")
    if not text:
        raise ReplayError("%s:1: the header has no scenario_text: this trace cannot be replayed" % path)
    try:
        return scenario_mod.load_text(text, header.get("scenario_path") or "%s (scenario_text)" % path)
    except ConfigError as e:
        raise ReplayError("%s:1: the recorded scenario does not load any more: %s" % (path, e)) from None
