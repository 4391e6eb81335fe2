"""Radio airtime: a link stage for LoRa-class radios, where what limits a
node is its time on air and its duty cycle, not only delay and loss.

Three parts, pure and sans-IO like ground/stages.py (virtual time in
integer nanoseconds in, outcomes out; nothing reads a clock):

  Radio        one radio's settings (SF, bandwidth, coding rate, preamble,
               header, CRC, low data rate optimisation, duty-cycle budget,
               dwell limit), checked against the SX127x's range, and the
               time on air of a payload (Semtech's formula, below).
  Transmitter  one node's transmitter: busy for a frame's time on air
               (frames queue behind it: delay), a duty-cycle budget over a
               sliding window (an hour by default: frames over it wait or
               are dropped, reason `duty_cycle`), a dwell limit per frame
               (reason `dwell`), and its airtime accounting. One per node
               and radio settings, shared by every link out of that node
               that names those settings (Radios): a radio is a broadcast
               medium, so a frame to a cluster is ONE transmission, whatever
               the number of recipients (the frame id says which frame).
  Airtime      the Stage a link's Pipeline runs: asks the link's
               Transmitter. ground/pipeline.py puts it first (the sender's
               line), when a link spec has `radio:`.

Time on air (Semtech AN1200.13, "LoRa Modem Designer's Guide"; SX1276
datasheet 4.1.1.7):
    T_sym      = 2^SF / BW
    T_preamble = (n_preamble + 4.25) T_sym
    n_payload  = 8 + max(ceil((8 PL - 4 SF + 28 + 16 CRC - 20 IH) / (4 (SF - 2 DE))) (CR + 4), 0)
    T_packet   = T_preamble + n_payload T_sym
with PL the payload bytes, CRC 1 when the payload CRC is on, IH 1 for an
implicit header, DE 1 with low data rate optimisation (by default on when
T_sym >= 16 ms, as the SX127x datasheet asks: SF11 and SF12 at 125 kHz,
and SF12 at 250 kHz, whose symbol is 16.384 ms), CR 1..4 for coding rates 4/5..4/8. T_sym is a whole number
of ns for every SF 7-12 and BW 125/250/500 kHz (2^SF x 8000 ns at 125
kHz), so time on air is exact in integer ns.

A frame's payload on the air is its line frame without the 0x00 delimiter
(LoRa delimits packets itself), as the first of its recipients' links hands
it over (a frame down-converted for an older recipient is shorter or longer
on that link only: the one transmission has the first length). Over 255
bytes a frame does not fit an SX127x packet and is dropped, reason
`oversize`. Duty cycle is counted as ETSI EN 300 220 counts it, by
transmission: a frame may start at s when the airtime of the frames that
started in (s - window, s], itself included, is at most duty_cycle x window.
"""

import collections

from ground.stages import Stage

NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000

# Drop reasons (docs/TRACE.md's words).
DUTY_CYCLE = "duty_cycle"
DWELL = "dwell"
OVERSIZE = "oversize"

SF_RANGE = (7, 12)
BW_KHZ = (125, 250, 500)
CR_RANGE = (5, 8)  # coding rate 4/5 .. 4/8, given as its denominator
PREAMBLE_RANGE = (6, 65535)  # SX127x RegPreambleMsb/Lsb
MAX_PAYLOAD = 255  # SX127x RegPayloadLength is one byte
OVER_BUDGET = ("wait", "drop")
KEYS = ("sf", "bw_khz", "cr", "preamble", "explicit_header", "crc", "ldro", "duty_cycle", "window_s", "dwell_ms",
        "over_budget")
_LDRO_AUTO_NS = 16 * NS_PER_MS  # T_sym from which low data rate optimisation is on by default


class RadioError(ValueError):
    """A bad radio setting; `key` is the setting's name (for its file:line),
    None when the fault is radio: itself."""

    def __init__(self, key, message):
        super().__init__("radio%s: %s" % ("" if key is None else "." + key, message))
        self.key = key


def _int_in(d, key, lo, hi, default=None):
    v = d.get(key, default)
    if v is None:
        raise RadioError(key, "required (an integer %d..%d)" % (lo, hi))
    if v.__class__ is not int or not lo <= v <= hi:
        raise RadioError(key, "must be an integer %d..%d, got %r" % (lo, hi, v))
    return v


def _flag(d, key, default):
    v = d.get(key, default)
    if v.__class__ is not bool:
        raise RadioError(key, "must be true or false, got %r" % (v,))
    return v


def _positive(d, key, unit, default=None):
    v = d.get(key, default)
    if v is None:
        return None
    if v.__class__ is bool or not isinstance(v, (int, float)) or not 0 < v < float("inf"):
        raise RadioError(key, "must be a positive number of %s, got %r" % (unit, v))
    return v


class Radio:
    """One radio's settings, checked (RadioError naming the key), and its
    time on air. Two Radios with the same settings are equal (`key`).

    sf 7..12, bw_khz 125|250|500, cr 5..8 (4/5..4/8; "4/5" also accepted),
    preamble 6..65535 symbols (8), explicit_header (true), crc (true),
    ldro "auto" (on when T_sym >= 16 ms) | true | false, duty_cycle (a
    fraction in (0, 1]; null: no budget), window_s (3600), dwell_ms (null:
    no limit), over_budget "wait" | "drop" (wait).
    """

    __slots__ = ("sf", "bw_khz", "cr", "preamble", "explicit_header", "crc", "ldro", "duty_cycle", "window_s",
                 "dwell_ms", "over_budget", "sym_ns", "de", "window_ns", "budget_ns", "dwell_ns", "key", "_toa")

    def __init__(self, spec):
        if not isinstance(spec, dict):
            raise RadioError(None, "must be a mapping with keys %s, got %r" % (", ".join(KEYS), spec))
        for k in spec:
            if k not in KEYS:
                raise RadioError(k, "unknown radio key (known: %s)" % ", ".join(KEYS))
        d = {k: v for k, v in spec.items() if v is not None}
        self.sf = _int_in(d, "sf", *SF_RANGE)
        bw = d.get("bw_khz", 125)
        if bw.__class__ is bool or bw not in BW_KHZ:
            raise RadioError("bw_khz", "must be one of 125, 250, 500 (kHz), got %r" % (bw,))
        self.bw_khz = int(bw)
        cr = d.get("cr", 5)
        if isinstance(cr, str) and cr.startswith("4/") and cr[2:].isdigit():
            cr = int(cr[2:])
        if cr.__class__ is not int or not CR_RANGE[0] <= cr <= CR_RANGE[1]:
            raise RadioError("cr", "must be a coding rate 4/5..4/8, given as 5..8 or \"4/5\"..\"4/8\", got %r"
                             % (d.get("cr"),))
        self.cr = cr
        self.preamble = _int_in(d, "preamble", *PREAMBLE_RANGE, default=8)
        self.explicit_header = _flag(d, "explicit_header", True)
        self.crc = _flag(d, "crc", True)
        self.sym_ns = (1 << self.sf) * 1_000_000 // self.bw_khz  # exact: bw_khz divides 10^6 x 2^7
        ldro = d.get("ldro", "auto")
        if ldro == "auto" and ldro.__class__ is str:
            self.de = 1 if self.sym_ns >= _LDRO_AUTO_NS else 0
        elif ldro.__class__ is bool:
            self.de = int(ldro)
        else:
            raise RadioError("ldro", "must be auto, true or false, got %r" % (ldro,))
        self.ldro = ldro
        dc = d.get("duty_cycle")
        if dc is not None and (dc.__class__ is bool or not isinstance(dc, (int, float)) or not 0 < dc <= 1):
            raise RadioError("duty_cycle", "must be a fraction in (0, 1] (0.01 is 1 %%), got %r" % (dc,))
        self.duty_cycle = dc
        self.window_s = _positive(d, "window_s", "seconds", 3600)
        self.dwell_ms = _positive(d, "dwell_ms", "milliseconds")
        ob = d.get("over_budget", "wait")
        if ob not in OVER_BUDGET:
            raise RadioError("over_budget", "must be wait or drop, got %r" % (ob,))
        if dc is None and "over_budget" in d:
            raise RadioError("over_budget", "given without duty_cycle (there is no budget to be over)")
        self.over_budget = ob
        self.window_ns = int(round(self.window_s * NS_PER_S))
        self.budget_ns = None if dc is None else int(dc * self.window_ns)
        self.dwell_ns = None if self.dwell_ms is None else int(round(self.dwell_ms * NS_PER_MS))
        self.key = (self.sf, self.bw_khz, self.cr, self.preamble, self.explicit_header, self.crc, self.de,
                    self.budget_ns, self.window_ns, self.dwell_ns, self.over_budget)
        self._toa = {}

    def payload_symbols(self, nbytes):
        """n_payload of the formula for a payload of nbytes."""
        num = 8 * nbytes - 4 * self.sf + 28 + 16 * self.crc - 20 * (not self.explicit_header)
        den = 4 * (self.sf - 2 * self.de)
        return 8 + max(-(-num // den) * self.cr, 0)  # cr is CR + 4

    def time_on_air_ns(self, nbytes):
        """Time on air of a packet with an nbytes payload, in ns (exact)."""
        t = self._toa.get(nbytes)
        if t is None:
            # (n_preamble + 4.25) T_sym = (4 n_preamble + 17) T_sym / 4; T_sym is a multiple of 4 ns
            t = (4 * self.preamble + 17) * self.sym_ns // 4 + self.payload_symbols(nbytes) * self.sym_ns
            if len(self._toa) < 512:
                self._toa[nbytes] = t
        return t

    def __eq__(self, other):
        return isinstance(other, Radio) and other.key == self.key

    def __hash__(self):
        return hash(self.key)

    def __repr__(self):
        return "Radio(sf=%d, bw_khz=%d, cr=4/%d, preamble=%d, de=%d, duty_cycle=%r, dwell_ms=%r, over_budget=%s)" % (
            self.sf, self.bw_khz, self.cr, self.preamble, self.de, self.duty_cycle, self.dwell_ms, self.over_budget)


class Transmitter:
    """One node's transmitter with one Radio's settings.

    transmit(frame_id, nbytes, t_ns) -> the ns the frame's last symbol is
    out (an int), or a drop reason (DWELL, OVERSIZE, DUTY_CYCLE). Asked
    again for the same frame id (the next recipient of a broadcast) it
    gives the same answer and sends nothing more. Calls come in
    non-decreasing t_ns (the router's clock).

    A frame starts when the transmitter is free (the frames before it are
    out) and, with a duty_cycle, when the budget allows; over_budget "drop"
    drops a frame the budget does not allow at the time it would start
    (it takes no airtime). A frame longer than the whole budget or over the
    dwell limit can never go: dropped whatever over_budget says.

    take(frame_id) -> (start_ns, airtime_ns, nbytes) once for a frame that
    went on the air (for the trace's `radio` event), else None.
    State: the transmissions of the last window (the duty-cycle log) and
    running totals; nothing per frame beyond the window.
    """

    def __init__(self, radio):
        self.radio = radio
        self._busy = 0  # free from this ns on
        self._log = collections.deque()  # (start_ns, airtime_ns) of the transmissions in the window
        self._used = 0  # their airtime
        self._last_id = None
        self._last = None
        self._taken = True
        self._last_tx = None
        self.frames = 0  # transmissions
        self.airtime_ns = 0
        self.dropped = {}  # reason -> frames

    def transmit(self, frame_id, nbytes, t):
        if frame_id is not None and frame_id == self._last_id:
            return self._last
        self._last_id = frame_id
        self._taken = False
        r = self._transmit(nbytes, t)
        if r.__class__ is str:
            self.dropped[r] = self.dropped.get(r, 0) + 1
            self._taken = True
        self._last = r
        return r

    def _transmit(self, nbytes, t):
        radio = self.radio
        if nbytes > MAX_PAYLOAD:
            return OVERSIZE
        a = radio.time_on_air_ns(nbytes)
        if radio.dwell_ns is not None and a > radio.dwell_ns:
            return DWELL
        start = t if t > self._busy else self._busy
        budget = radio.budget_ns
        if budget is not None:
            if a > budget:
                return DUTY_CYCLE
            log = self._log
            w = radio.window_ns
            while log and log[0][0] <= start - w:
                self._used -= log.popleft()[1]
            if self._used + a > budget:
                if radio.over_budget == "drop":
                    return DUTY_CYCLE
                # wait until enough of the oldest transmissions leave the window
                used = self._used
                for s, x in log:
                    used -= x
                    if used + a <= budget:
                        start = s + w
                        break
                while log and log[0][0] <= start - w:
                    self._used -= log.popleft()[1]
            log.append((start, a))
            self._used += a
        end = start + a
        self._busy = end
        self.frames += 1
        self.airtime_ns += a
        self._last_tx = (start, a, nbytes)
        return end

    def take(self, frame_id):
        if self._taken or frame_id != self._last_id:
            return None
        self._taken = True
        return self._last_tx

    def __repr__(self):
        return "Transmitter(%r, frames=%d, airtime_ns=%d)" % (self.radio, self.frames, self.airtime_ns)


class Radios:
    """The transmitters of a run: one per (node, radio settings), made on
    first use. `of(node)` lists a node's transmitters."""

    def __init__(self):
        self._by_key = {}
        self._by_node = {}
        self.any = False

    def transmitter(self, node, radio):
        k = (node, radio.key)
        tx = self._by_key.get(k)
        if tx is None:
            tx = self._by_key[k] = Transmitter(radio)
            self._by_node.setdefault(node, []).append(tx)
            self.any = True
        return tx

    def of(self, node):
        return self._by_node.get(node, ())

    def aired(self, node, frame_id, type_name):
        """The fields of a `radio` event for frame frame_id (a type_name
        message) from node, once per transmitter of node's that put it on
        the air (taken: once per frame, however many recipients it reached)."""
        for tx in self.of(node):
            got = tx.take(frame_id)
            if got is not None:
                start, airtime_ns, nbytes = got
                yield {"node": node, "id": frame_id, "type": type_name, "len": nbytes, "start_ns": start,
                       "airtime_ns": airtime_ns}


class Airtime(Stage):
    """The link stage: a frame goes when its Transmitter has sent it
    (released at the end of its time on air) or is dropped with the
    transmitter's reason. Deterministic (draws nothing)."""

    fans_out = False

    def __init__(self, transmitter):
        if not isinstance(transmitter, Transmitter):
            raise TypeError("Airtime needs a Transmitter, got %r" % (transmitter,))
        self.tx = transmitter

    def process(self, pkt, t):
        return self.tx.transmit(pkt.frame_id, len(pkt.data), t)

    def __repr__(self):
        return "Airtime(%r)" % (self.tx.radio,)
