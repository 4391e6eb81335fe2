# Lineage B's election timing, written from docs/CONTAINMENT.md "Election
# timing" alone (lineage A's is in node/elect.py): the waits as a table of
# windows, sticky as the instant the coordinator stops counting as heard,
# each decision as a list of refusals. Imported only by a lineage-B node.

from micropython import const

# Windows in units of T: (start, width). Width 0: a fixed wait, no draw.
_COLD = (1, 1)  # [T, 2T]
_STANDBY = (1, 0)  # exactly T
_FOLLOWER = (2, 1)  # [2T, 3T]
_NEVER = const(-1)  # "heard until": nobody to stand by


def _wait(rng, t, window):
    start, width = window
    lo = start * t
    if width == 0:
        return lo
    span = width * t + 1  # both ends included
    return lo + rng.next32() % span


def cold_ms(rng, t):
    return _wait(rng, t, _COLD)


def follower_ms(rng, t, standby):
    return _wait(rng, t, _STANDBY if standby else _FOLLOWER)


def quiet(leading, known, heard_ms, now_ms, sticky_ms):
    if leading:
        return False
    until = _NEVER
    if known and heard_ms is not None:
        until = heard_ms + sticky_ms  # the first instant it no longer counts
    return until == _NEVER or now_ms >= until


def step_down(held_ms, quorum_ms, heard, majority):
    if held_ms < quorum_ms:
        return False  # too early to judge
    missing = majority - heard
    return missing > 0


def prevote(term, my_term, is_quiet, electable):
    if not electable:
        return False
    if not is_quiet:
        return False
    if my_term >= term:
        return False
    return True
