# A node's configuration: plain data, validated once here at the edge.
#
# Times are mission milliseconds. The election timeout T is the unit the
# failover benchmark reports in; the other timers derive from it unless given.


class Config:
    def __init__(
        self,
        cluster=1,
        members=(),
        election_timeout_ms=1000,
        heartbeat_ms=None,
        telemetry_ms=None,
        state_ms=None,
        suspect_ms=None,
        dead_ms=None,
        hw_gen=1,
        fw_version=(1, 0),
        lineage=0,
        auth_key=None,
        require_auth=False,
    ):
        if not members:
            raise ValueError("config: members must list the cluster's node ids")
        if election_timeout_ms < 4:
            raise ValueError("config: election_timeout_ms must be >= 4")
        self.cluster = cluster
        self.members = tuple(sorted(members))
        t = election_timeout_ms
        self.election_timeout_ms = t
        self.heartbeat_ms = heartbeat_ms or t // 4
        self.telemetry_ms = telemetry_ms or t
        self.state_ms = state_ms or t
        self.suspect_ms = suspect_ms or 3 * self.heartbeat_ms
        self.dead_ms = dead_ms or 2 * t
        # The coordinator steps down when it has not heard a majority for this
        # long: 3 heartbeat intervals, so one lost heartbeat is not a reason,
        # yet under T so it yields before the standby can win (no overlap).
        self.quorum_ms = 3 * t // 4
        # A voter refuses to help unseat a coordinator it heard this recently.
        self.sticky_ms = t // 2
        self.hw_gen = hw_gen
        self.fw_version = tuple(fw_version)
        self.lineage = lineage
        self.auth_key = auth_key
        self.require_auth = require_auth
        if self.heartbeat_ms * 2 > t:
            raise ValueError("config: heartbeat_ms must be at most half the election timeout")
