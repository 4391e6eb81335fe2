"""What counts as a node claiming to coordinate a term of its cluster: the one
definition the `split_brain` metric (ground/metrics/fleet.py, claims.py) and
the history checker's `one_coordinator` invariant (ground/history_election.py)
share, so the two can never disagree on a trace (docs/METRICS.md "Split brain").

A frame claims term T for its sender's cluster when all of these hold:

  - the sender said it: the router did not rewrite it in flight (a byzantine
    fault's stale-term rewrite carries `orig_hex` in the trace; what it says
    is the fault's, not the node's);
  - it is on the sender's own cluster, not a group it only sits in: its
    destination is the ground, a node, the broadcast address or the sender's
    cluster address (a regional seat's election traffic on the region's
    address claims the region, not the cluster: docs/MARKET.md);
  - it is a COORDINATOR of term T, or a HEARTBEAT or TELEMETRY whose role is
    coordinator and whose term is T.

Split brain is two or more different nodes of one cluster claiming the same
term (DESIGN.md: never two coordinators in one term). Two nodes claiming
different terms at the same time (an old coordinator cut off in a partition
while the majority elects a newer one) is not split brain: the metric
`overlap_count` / `overlap_s` measures that, and no gate should call it unsafe.

Pure functions; no state."""

from ground.protocol_frame import ADDR_BROADCAST as BROADCAST
from ground.protocol_frame import ADDR_CLUSTER as CLUSTER_BASE
from ground.protocol_frame import ADDR_GROUND as GROUND  # noqa: F401 (the checker's name for it)

ROLE_COORDINATOR = 2  # msgs.ROLE_COORDINATOR
CLAIM_TYPES = ("coordinator", "heartbeat", "telemetry")
REWRITTEN = "orig_hex"  # the trace field of a frame the router rewrote (ground/router.py)


def said_by_sender(event):
    """False for a frame the router rewrote in flight (a byzantine fault)."""
    return REWRITTEN not in event


def on_own_cluster(dst, own_cluster_addr):
    """dst is the ground, a node, the broadcast address or the sender's own
    cluster address: not another cluster's or a region's address."""
    return not (dst >= CLUSTER_BASE and dst != BROADCAST and dst != own_cluster_addr)


def claimed_term(type_, msg, role_coordinator=ROLE_COORDINATOR):
    """The term a frame of this type and decoded msg claims to coordinate,
    or None (not a claim, or no integer term)."""
    if type_ == "coordinator":
        term = msg.get("term")
    elif type_ in ("heartbeat", "telemetry") and msg.get("role") == role_coordinator:
        term = msg.get("term")
    else:
        return None
    return term if isinstance(term, int) and not isinstance(term, bool) else None
