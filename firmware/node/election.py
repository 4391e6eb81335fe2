# Coordinator election: roles and every transition in one table.
#
# Raft's election with pre-vote (Ongaro's thesis, 9.6) and a hot standby:
#  - Terms only grow; a node votes at most once per term and persists
#    (term, voted_for) before its vote leaves (Node.take_persist), so a restart
#    cannot make it vote twice: never two coordinators in one term.
#  - PRECANDIDATE asks "would you vote for me in term+1?" without changing
#    anyone's term, so a node that was cut off cannot disrupt a healthy cluster
#    when it comes back.
#  - Voters ignore requests while they heard the coordinator within sticky_ms.
#  - The coordinator names a standby; the standby's election timeout is the
#    minimum T, everyone else's is drawn from [2T, 3T], so the standby takes
#    over first and alone when the coordinator goes quiet.
#  - A coordinator that has not heard a majority within quorum_ms steps down,
#    so a coordinator cut off in a minority yields before the majority elects.
# Standby is not a role here: it is a follower the coordinator has named.

from micropython import const


FOLLOWER = const(0)
PRECANDIDATE = const(1)
CANDIDATE = const(2)
COORDINATOR = const(3)
ROLE_NAMES = ("follower", "precandidate", "candidate", "coordinator")

EV_TIMEOUT = const(0)  # election deadline passed
EV_PREVOTES = const(1)  # a majority would vote for us
EV_VOTES = const(2)  # a majority voted for us
EV_HIGHER_TERM = const(3)  # saw a term above ours
EV_COORDINATOR = const(4)  # heard the coordinator of our term
EV_QUORUM_LOST = const(5)  # coordinator heard no majority within quorum_ms
EVENT_NAMES = ("timeout", "prevotes", "votes", "higher_term", "coordinator", "quorum_lost")

# (role, event) -> next role. Anything missing is a bug in the caller.
_TABLE = {
    (FOLLOWER, EV_TIMEOUT): PRECANDIDATE,
    (FOLLOWER, EV_HIGHER_TERM): FOLLOWER,
    (FOLLOWER, EV_COORDINATOR): FOLLOWER,
    (PRECANDIDATE, EV_TIMEOUT): PRECANDIDATE,  # nobody answered: ask again
    (PRECANDIDATE, EV_PREVOTES): CANDIDATE,
    (PRECANDIDATE, EV_HIGHER_TERM): FOLLOWER,
    (PRECANDIDATE, EV_COORDINATOR): FOLLOWER,
    (CANDIDATE, EV_TIMEOUT): PRECANDIDATE,  # split vote: back to asking first
    (CANDIDATE, EV_VOTES): COORDINATOR,
    (CANDIDATE, EV_HIGHER_TERM): FOLLOWER,
    (CANDIDATE, EV_COORDINATOR): FOLLOWER,  # another won our term
    (COORDINATOR, EV_HIGHER_TERM): FOLLOWER,
    (COORDINATOR, EV_QUORUM_LOST): FOLLOWER,
    # (COORDINATOR, EV_COORDINATOR) is deliberately absent: a second
    # coordinator in our own term is a safety violation, not a transition.
}


class ElectionError(Exception):
    """Local bug: an event with no transition from the current role."""


def next_role(role, event):
    try:
        return _TABLE[(role, event)]
    except KeyError:
        raise ElectionError("no transition from %s on %s" % (ROLE_NAMES[role], EVENT_NAMES[event]))
