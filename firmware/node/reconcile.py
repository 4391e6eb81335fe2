# Coming back from an autonomy window: release, report, wait for the ack.
#
# When a node in CONSERVATIVE mode hears its regional coordinator again it
# (1) releases the future occurrences of the spot leases it no longer needs
#     (its stock will not run short within the lookahead without them, or
#     they are logistics windows inside a manoeuvre campaign): RELEASE names
#     the lease exactly, so the ledger frees those slots and no others;
# (2) reports what the window cost (RECONCILE): how long it was out, units
#     produced and lost, time paused, lease occurrences used and unused, and
#     the discretionary actions it deferred;
# and stays RECONCILING, bidding for nothing, until RECONCILE_ACK, so nothing
# it does while reconnecting can conflict with what the ledger says. The
# report is sent again (new sequence number) every 2 lead_ms until acked.
# Pre-allocations are kept: the node still wants them for the next window.
# Functions of the Trader (`tr`), like node/needs.py.

from node import msgs, needs
from node.ledger import last_slot
from node.needs import L_COUNT, L_COVER, L_FIRST, L_GROUP, L_PERIOD, L_RES, L_SPAN, G_LOGISTICS


def start(tr, now_ms):
    rnd, on_sale = tr._round_for(now_ms)
    keep = []
    for lease in tr.leases:
        if last_slot(lease[L_FIRST], lease[L_SPAN], lease[L_PERIOD], lease[L_COUNT]) < on_sale:
            keep.append(lease)
            continue
        if lease[L_COVER] or not unneeded(tr, lease, now_ms):
            keep.append(lease)
            continue
        seq = tr._next_seq(now_ms)
        tr.send(tr.coord, msgs.RELEASE, msgs.pack(msgs.RELEASE, seq, lease[L_FIRST], on_sale, lease[L_RES], tr.id,
                                                  lease[L_SPAN], lease[L_PERIOD], lease[L_COUNT]))
        tr.released += lease[L_COUNT]
        tr.gave_up = (tr.gave_up + [(lease[L_RES], lease[L_FIRST])])[-4:]
    tr.leases = keep
    report(tr, now_ms)


def unneeded(tr, lease, now_ms):
    """A spot lease the node can do without: its group will not run short
    within the lookahead without it, or it is a logistics window inside a
    campaign (unusable)."""
    if lease[L_GROUP] == G_LOGISTICS and needs.slot_blocked(tr, lease[L_FIRST], lease[L_SPAN]):
        return True
    return needs.short_in(tr, lease[L_GROUP], now_ms // tr.cfg.slot_ms, lease)[0] < 0


def report(tr, now_ms):
    t0, produced0, lost0, paused0, used0, unused0, deferred0 = tr._snap
    p = tr.prod
    tr._rec_seq = tr._next_seq(now_ms)
    # Clamped at 0: a node's clock can step back (a clock-skew fault changes
    # its rate), and a report field is unsigned.
    tr.send(tr.coord, msgs.RECONCILE, msgs.pack(
        msgs.RECONCILE, tr._rec_seq, _s(now_ms - t0) // 1000, _s(p.produced - produced0) // 1000,
        _s(p.lost() - lost0) // 1000, _s(p.paused_total_ms() - paused0) // 1000, min(_s(tr.used - used0), 0xFFFF),
        min(_s(tr.unused - unused0), 0xFFFF), min(_s(tr.deferred_bids + tr.deferred_launches - deferred0), 0xFFFF)))
    tr._rec_retry_ms = now_ms + 2 * tr.cfg.lead_ms


def _s(n):
    return n if n > 0 else 0
