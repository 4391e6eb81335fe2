# The hardware watchdog: fed by every loop iteration, stopped on Ctrl-C.
#
# machine.WDT cannot be stopped once started, so a person who interrupts the
# loop would have the board reset under them a few seconds later, and
# mpremote could not work. stop() therefore switches it off: on rp2 by
# clearing WATCHDOG CTRL.ENABLE through the register's atomic clear alias
# (base + 0x3000), exactly what the Pico SDK's watchdog_disable() does;
# bases from the RP2040 / RP2350 datasheets. Elsewhere (the emulated board's
# stand-in WDT) it calls deinit() when there is one. This is the only
# register write in the shell.

import sys

_RP2040_WATCHDOG = 0x40058000
_RP2350_WATCHDOG = 0x400D8000
_CLR_ALIAS = 0x3000
_CTRL_ENABLE = 1 << 30


class Watchdog:
    def __init__(self, timeout_ms):
        self.timeout_ms = timeout_ms  # 0: none
        self._wdt = None
        self.running = False

    def start(self):
        """Start it (if configured); False when this board has no WDT."""
        if not self.timeout_ms:
            return True
        try:
            import machine

            self._wdt = machine.WDT(timeout=self.timeout_ms)
        except (ImportError, AttributeError, ValueError, OSError):
            return False
        self.running = True
        return True

    def feed_every_ms(self):
        """The longest the loop may sleep between feeds, or None."""
        return self.timeout_ms // 4 if self.running else None

    def feed(self):
        if self._wdt is not None:
            self._wdt.feed()

    def stop(self):
        """Switch it off for the REPL; False if it could not be."""
        if not self.running:
            return True
        if sys.platform == "rp2":
            import machine

            chip = getattr(sys.implementation, "_machine", "")
            base = _RP2350_WATCHDOG if "RP2350" in chip else _RP2040_WATCHDOG
            machine.mem32[base + _CLR_ALIAS] = _CTRL_ENABLE
        else:
            deinit = getattr(self._wdt, "deinit", None)
            if deinit is None:
                return False
            deinit()
        self.running = False
        return True
