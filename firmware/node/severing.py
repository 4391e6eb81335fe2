# Severing known to the core (docs/CONTAINMENT.md "Severing a federation"):
# the ground's SEVER order tells an elector of another region that region R
# is severed (or, severed 0, reinstated); from then on it refuses whatever
# names region R (its prices, its accusations, witnesses and reinstatements),
# counted as refusal.SEVERED, whoever carries it: the router's cut is the
# ground's, this one is the node's own. Only the ground may order it
# (refusal.FORGED otherwise); an order naming the elector's own region is
# refused (refusal.REGION: a severed region's nodes are not told).
#
# Loaded only when a SEVER arrives or a region is severed (node/region.py).

from node import msgs, refusal, wire

_REGION_FIELD = {msgs.PRICES: 4, msgs.ACCUSE: 3, msgs.WITNESS: 0, msgs.REINSTATE: 0}  # type -> its region field


def order(region, src, f):
    """SEVER from src: region f[0] severed (f[1] 1) or reinstated (f[1] 0)."""
    if src != wire.ADDR_GROUND:
        region.refused[refusal.FORGED] += 1
        return
    r = f[0]
    if r == region.cfg.region:
        region.refused[refusal.REGION] += 1
        return
    s = [x for x in region.severed if x != r]
    if f[1]:
        s.append(r)
    region.severed = tuple(s)


def refuses(region, t, f):
    """True (counted) if frame type t with fields f names a severed region."""
    i = _REGION_FIELD.get(t)
    if i is not None and f[i] in region.severed:
        region.refused[refusal.SEVERED] += 1
        return True
    return False
