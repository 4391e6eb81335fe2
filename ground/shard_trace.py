"""A lean shard's part of the trace (ground/shard.py): JSON lines, buffered,
with the fields the Router writes; ground/fleetrun.py merges the parts by
mission time between the header and the end line."""

import json


class TracePart:
    """A shard's part of the trace: JSON lines, buffered (written at the end
    of each window and at the end), the same fields the Router writes."""

    def __init__(self, path, time_scale):
        self.path = path
        self.scale = time_scale
        self._f = open(path, "w", encoding="utf-8", buffering=1 << 20)
        self.count = 0

    def __call__(self, kind, now, **fields):
        fields["kind"] = kind
        fields["mission_ns"] = now
        fields["wall_ns"] = int(now / self.scale)
        self._f.write(json.dumps(fields, separators=(",", ":"), sort_keys=True))
        self._f.write("\n")
        self.count += 1

    def flush(self):
        if self._f is not None:
            self._f.flush()

    def close(self):
        if self._f is not None:
            self._f.close()
            self._f = None
