# The coordinator election's machine, run for one Node: its timers, pre-vote
# and vote, the standby, the coordinator's tick, following, and the
# election frames (heartbeat, (pre)vote requests and answers, claims).
#
# Module functions over the node (node.py's Node calls them; the state they
# read and write is the node's: role, term, voted_for, _grants, _deadline_ms,
# ...). The roles and every transition are node/election.py's table; the
# timing rules (docs/CONTAINMENT.md "Election timing") are this module's
# cold_ms .. prevote for lineage A, node/timing_b.py's for lineage B
# (Node.timing is the one the node's lineage runs).

from node import election as el
from node import msgs
from node.membership import ALIVE

# ---- lineage A's timing (docs/CONTAINMENT.md "Election timing") ---------


def cold_ms(rng, t):
    """A timeout drawn from [T, 2T]: at boot, as a (pre)candidate, after a
    vote, stepping down, or while quarantined."""
    return rng.between(t, 2 * t)


def follower_ms(rng, t, standby):
    """A follower that just heard its coordinator: the standby waits T, with
    no draw; any other follower a draw from [2T, 3T]."""
    if standby:
        return t
    return rng.between(2 * t, 3 * t)


def quiet(leading, known, heard_ms, now_ms, sticky_ms):
    """No coordinator to stand by: not one itself, and none known or none
    heard within sticky_ms."""
    if leading:
        return False
    return not known or heard_ms is None or now_ms - heard_ms >= sticky_ms


def step_down(held_ms, quorum_ms, heard, majority):
    """A coordinator that has held quorum_ms and heard fewer than a majority
    (itself included) within the last quorum_ms steps down."""
    return held_ms >= quorum_ms and heard < majority


def prevote(term, my_term, is_quiet, electable):
    """Grant a pre-vote for `term`: above ours, no coordinator heard, and the
    asker may be elected."""
    return term > my_term and is_quiet and electable


# ---- the machine ---------------------------------------------------------


def adopt_term(node, term, now_ms):
    """Saw a higher term: follow it, with no vote cast yet."""
    node.term = term
    node.voted_for = msgs.NO_NODE
    node._dirty = True
    node.coordinator = msgs.NO_NODE  # a new term's coordinator is not known yet
    node.standby = msgs.NO_NODE
    node._become(el.EV_HIGHER_TERM, now_ms)
    if node._booted and node.role == el.FOLLOWER:
        node._deadline_ms = max(node._deadline_ms, now_ms + node._cold_timeout_ms())


def election_timeout(node, now_ms):
    if node.role == el.FOLLOWER and node.coordinator != msgs.NO_NODE:
        node.coordinator = msgs.NO_NODE  # it went quiet
    if node.may_lead is not None and not node.may_lead(now_ms):
        node._deadline_ms = now_ms + node._cold_timeout_ms()  # quarantined: not a candidate
        return
    node._become(el.EV_TIMEOUT, now_ms)
    node._grants = [node.id]
    node._deadline_ms = now_ms + node._cold_timeout_ms()
    if len(node._grants) >= node.members.majority:
        _won_prevote(node, now_ms)
    else:
        node._send(node.cluster_dst, msgs.PREVOTE_REQUEST, msgs.pack(msgs.PREVOTE_REQUEST, node.term + 1))


def _won_prevote(node, now_ms):
    node._become(el.EV_PREVOTES, now_ms)
    node.term += 1
    node.voted_for = node.id
    node._dirty = True
    node._grants = [node.id]
    node._deadline_ms = now_ms + node._cold_timeout_ms()
    if len(node._grants) >= node.members.majority:
        _won_vote(node, now_ms)
    else:
        node._send(node.cluster_dst, msgs.VOTE_REQUEST, msgs.pack(msgs.VOTE_REQUEST, node.term))


def _won_vote(node, now_ms):
    node._become(el.EV_VOTES, now_ms)
    node.coordinator = node.id
    node._coord_since_ms = now_ms
    node.standby = pick_standby(node, now_ms)
    node._send(node.cluster_dst, msgs.COORDINATOR, msgs.pack(msgs.COORDINATOR, node.term, node.standby))
    node._next_hb_ms = now_ms  # heartbeat at once
    node._send_state(now_ms)


def pick_standby(node, now_ms):
    """An alive member, preferring another software lineage (fault
    isolation: a lineage defect should not take out both), then the one
    that hears the most members (its last heartbeat's `alive`: it will
    win the election that makes it coordinator; a version-1 member does
    not say, and ranks as hearing nobody), then the lowest id. NO_NODE
    if nobody else is alive."""
    best = msgs.NO_NODE
    best_key = None
    members = node.members
    lineage = node.cfg.lineage
    for m in members.members:
        if m == node.id or members.status(m, now_ms) != ALIVE or not electable(node, m, now_ms):
            continue
        same = 1 if members.lineage.get(m, -1) == lineage else 0
        key = (same, -members.reach.get(m, msgs.ALIVE_UNKNOWN), m)
        if best_key is None or key < best_key:
            best, best_key = m, key
    return best


def coordinator_tick(node, now_ms):
    held_ms = now_ms - node._coord_since_ms
    quorum_ms = node.cfg.quorum_ms
    members = node.members
    if node.timing.step_down(held_ms, quorum_ms, members.heard_within(quorum_ms, now_ms), members.majority):
        resign(node, now_ms)
        return
    sb = node.standby
    if sb == msgs.NO_NODE or members.status(sb, now_ms) != ALIVE or not electable(node, sb, now_ms):
        standby = pick_standby(node, now_ms)
        if standby != node.standby:
            node.standby = standby
            node._send(node.cluster_dst, msgs.STANDBY, msgs.pack(msgs.STANDBY, node.term, standby))
    if now_ms >= node._next_state_ms:
        node._send_state(now_ms)


def electable(node, src, now_ms):
    return node.may_elect is None or node.may_elect(src, now_ms)


def resign(node, now_ms):
    """Stop coordinating (quorum lost, or quarantined: then may_lead keeps
    the node from running again)."""
    if node.role == el.COORDINATOR:
        node._become(el.EV_QUORUM_LOST, now_ms)
        node.coordinator = msgs.NO_NODE
        node.standby = msgs.NO_NODE
        node._deadline_ms = now_ms + node._cold_timeout_ms()


def coordinator_quiet(node, now_ms):
    return node.timing.quiet(node.role == el.COORDINATOR, node.coordinator != msgs.NO_NODE, node._coord_heard_ms,
                             now_ms, node.cfg.sticky_ms)


def _follow(node, coordinator, standby, now_ms):
    if node.role == el.COORDINATOR:
        # Another coordinator in our own term: must never happen.
        node.conflicts += 1
        return
    if node.role != el.FOLLOWER or node.coordinator != coordinator:
        node._become(el.EV_COORDINATOR, now_ms)
    node.coordinator = coordinator
    node.standby = standby
    node._coord_heard_ms = now_ms
    node._deadline_ms = now_ms + node._follower_timeout_ms()


# ---- receiving -------------------------------------------------------------


def receive(node, src, t, fields, now_ms):
    """One election frame from member `src`, parsed; False if `t` is not one."""
    if t == msgs.HEARTBEAT:
        term, coordinator, standby, role, lineage, rec_version, rec_data, digest, alive = fields
        node.members.lineage[src] = lineage
        node.members.reach[src] = alive
        node.records.put(src, rec_version, rec_data)
        claim = role == msgs.ROLE_COORDINATOR
    elif t == msgs.COORDINATOR or t == msgs.STANDBY:
        term, standby = fields
        claim = t == msgs.COORDINATOR
        if term == node.term and not claim and src == node.coordinator:
            _follow(node, src, standby, now_ms)  # the coordinator names a new standby
            return True
    elif t == msgs.PREVOTE_REQUEST:
        term = fields[0]
        granted = node.timing.prevote(term, node.term, coordinator_quiet(node, now_ms), electable(node, src, now_ms))
        node._send(src, msgs.PREVOTE, msgs.pack(msgs.PREVOTE, term, src, 1 if granted else 0))
        return True
    elif t == msgs.VOTE_REQUEST:
        term = fields[0]
        if not coordinator_quiet(node, now_ms) and src != node.coordinator:
            granted = False  # we still hear a coordinator: don't help unseat it
        else:
            if term > node.term:
                adopt_term(node, term, now_ms)
            granted = term == node.term and node.voted_for in (msgs.NO_NODE, src) and electable(node, src, now_ms)
            if granted and node.voted_for != src:
                node.voted_for = src
                node._dirty = True
            if granted:
                node._deadline_ms = now_ms + node._cold_timeout_ms()
        # Answer with our term when it is higher, so a stale candidate steps down.
        node._send(src, msgs.VOTE, msgs.pack(msgs.VOTE, node.term if node.term > term else term, src, 1 if granted else 0))
        return True
    elif t == msgs.PREVOTE or t == msgs.VOTE:
        term, candidate, granted = fields
        if t == msgs.VOTE and term > node.term:
            adopt_term(node, term, now_ms)
            return True
        if t == msgs.PREVOTE:
            ours = node.role == el.PRECANDIDATE and term == node.term + 1
        else:
            ours = node.role == el.CANDIDATE and term == node.term
        if ours and candidate == node.id and granted:
            if src not in node._grants:
                node._grants.append(src)
            if len(node._grants) >= node.members.majority:
                if t == msgs.PREVOTE:
                    _won_prevote(node, now_ms)
                else:
                    _won_vote(node, now_ms)
        return True
    else:
        return False
    # A heartbeat or a claim: a higher term is followed, our own term's
    # coordinator followed, a claim in a term we left is a stale claim.
    if term > node.term:
        adopt_term(node, term, now_ms)
    if claim and term == node.term:
        _follow(node, src, standby, now_ms)
    elif claim and term < node.term and node.region is not None and node.region.quarantine is not None:
        from node import audit  # only where containment is configured

        audit.stale_claim(node.region, src, term, node.term, node.cfg.election_timeout_ms, now_ms)
    return True
