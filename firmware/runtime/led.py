# The status LED: the node's role at a glance, or an error pattern.
#
#   coordinator  on
#   standby      slow blink, 500 ms on / 500 ms off
#   candidate    fast blink, 100 ms on / 100 ms off (an election is running)
#   follower     off
#   bad config   three short flashes every two seconds, driven by a
#                machine.Timer so it keeps going at the REPL
#
# show() returns the wall ms until the LED next changes, so the shell can
# bound its sleep; nothing here allocates per call.

from micropython import const

from node import msgs

_SLOW_MS = const(500)
_FAST_MS = const(100)
_ERR_STEP_MS = const(150)
_ERR_STEPS = const(14)  # 2100 ms: on/off x3, then a pause


def open_pin(spec):
    """machine.Pin(spec) as an output, or None (no LED, or no such pin)."""
    if spec is None:
        return None
    try:
        import machine

        return machine.Pin(spec, machine.Pin.OUT)
    except (ImportError, AttributeError, ValueError, TypeError, OSError):
        return None


class StatusLed:
    def __init__(self, pin):
        self._pin = pin  # machine.Pin or None
        self._lit = -1  # unknown

    def _set(self, lit):
        if lit != self._lit and self._pin is not None:
            self._pin.value(lit)
        self._lit = lit

    def show(self, role, wall_ms):
        """Set the LED for `role` (msgs.ROLE_*); wall ms until it next changes,
        or None when it stays as it is."""
        if role == msgs.ROLE_COORDINATOR:
            self._set(1)
            return None
        if role == msgs.ROLE_FOLLOWER:
            self._set(0)
            return None
        half = _SLOW_MS if role == msgs.ROLE_STANDBY else _FAST_MS
        self._set((wall_ms // half) & 1 ^ 1)
        return half - wall_ms % half

    def off(self):
        self._set(0)


class _ErrorBlink:
    def __init__(self, pin):
        self.pin = pin
        self.step = 0

    def __call__(self, _timer):
        # Timer callback: integer work only (may run as a soft interrupt).
        s = self.step
        self.pin.value(1 if s < 6 and not s & 1 else 0)
        self.step = s + 1 if s + 1 < _ERR_STEPS else 0


def blink_error(spec):
    """Start the error pattern on the LED; returns the Timer (keep it) or None
    where there is no LED or no machine.Timer (then the LED is just lit)."""
    pin = open_pin(spec)
    if pin is None:
        return None
    try:
        import machine

        timer = machine.Timer(-1, period=_ERR_STEP_MS, mode=machine.Timer.PERIODIC, callback=_ErrorBlink(pin))
        return timer
    except (AttributeError, ValueError, TypeError, OSError):
        pin.value(1)
        return None
