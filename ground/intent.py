"""Tier-3 intent steps: the ground's strategy, sent to nodes over the ground link.

A scenario step `{at_s: 600, intent: {...}, cluster: 2}` makes the ground
send one INTENT frame (firmware/node/strategy.py, docs/MARKET.md) to the
fleet (broadcast) or to one cluster's address, through the ground link
model (its delay and loss apply). The ground never commands a single node:
strategy.py refuses an INTENT addressed to one, so a step has no node target.

    intent:
      phase: growth | consolidate          # default growth
      growth_permille: 300                 # share of output that builds daughters, 0..1000
      cover_permille: 1000                 # share of each need pre-allocated for autonomy, 500..1000
      preapproved: [launch]                # discretionary actions allowed in conservative mode
      campaign: {start_s: 3600, end_s: 7200}   # manoeuvre window: no logistics slot inside
      seq: 3                               # optional; default: one more than the step before

Values are checked at load with the firmware's own rules (Intent.check), so
a step a node would refuse is refused here, with its file:line.
"""

from ground import firmware  # noqa: F401  (puts firmware/ on sys.path)
from ground.yamlfile import check_keys
from node import refusal, strategy  # noqa: E402

_KEYS = {"phase", "growth_permille", "cover_permille", "preapproved", "campaign", "seq"}
_ACTIONS = {"launch": strategy.ACT_LAUNCH}
_REASONS = {"shape": "a value out of range", "horizon": "the campaign ends before it starts or lasts over 60 days"}


def parse(f, last_seq):
    """The INTENT fields (a tuple in msgs order) of step `f` (a Located)."""
    spec = f["intent"]
    if spec is None:
        spec = {}
    if not isinstance(spec, dict):
        raise f.error("intent", "step intent: a mapping of %s" % ", ".join(sorted(_KEYS)))
    if spec:
        check_keys(spec, _KEYS, "intent")

    def integer(key, default, lo, hi):
        v = spec.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise f.error("intent", "step intent.%s: an integer in %d..%d, got %r" % (key, lo, hi, v))
        return v

    phase_name = spec.get("phase", strategy.PHASE_NAMES[0])
    if phase_name not in strategy.PHASE_NAMES:
        raise f.error("intent", "step intent.phase: %r unknown (known: %s)" % (phase_name, ", ".join(strategy.PHASE_NAMES)))
    phase = strategy.PHASE_NAMES.index(phase_name)
    growth = integer("growth_permille", 300, 0, 1000)
    cover = integer("cover_permille", 1000, strategy.MIN_COVER, 1000)
    pre = spec.get("preapproved", [])
    if not isinstance(pre, list) or any(a not in _ACTIONS for a in pre):
        raise f.error("intent", "step intent.preapproved: a list of %s, got %r" % (", ".join(_ACTIONS), pre))
    mask = 0
    for a in pre:
        mask |= _ACTIONS[a]
    camp = spec.get("campaign", {"start_s": 0, "end_s": 0})
    if not isinstance(camp, dict) or set(camp) != {"start_s", "end_s"}:
        raise f.error("intent", "step intent.campaign: {start_s: mission s, end_s: mission s}, got %r" % (camp,))
    for k in ("start_s", "end_s"):
        if isinstance(camp[k], bool) or not isinstance(camp[k], int) or not 0 <= camp[k] <= 0xFFFFFFFF:
            raise f.error("intent", "step intent.campaign.%s: whole mission seconds >= 0, got %r" % (k, camp[k]))
    seq = integer("seq", last_seq + 1, 1, 0xFFFFFFFF)
    fields = (seq, camp["start_s"], camp["end_s"], growth, cover, phase, mask)
    held = strategy.Intent()
    held.seq = last_seq
    why = held.check(*fields)
    if why == refusal.REPLAY:
        raise f.error("intent", "step intent.seq %d: not above the step before (%d); nodes would refuse it as a replay"
                      % (seq, last_seq))
    if why:
        name = refusal.NAMES[why]
        raise f.error("intent", "step intent: nodes would refuse it (%s: %s)" % (name, _REASONS.get(name, name)))
    return fields
