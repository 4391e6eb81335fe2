"""machine: a stand-in for the rp2 port's machine module on the emulated Pico.

It is a stand-in because no physical Pico exists here: the MicroPython unix
port runs the firmware, and this module gives it the few parts of machine that
the fleetloop firmware touches. _emuboot imports it before the board folder
becomes "/", so ``import machine`` finds it in sys.modules.

Modelled: Pin (levels only; OUT writes are reported to the supervisor, see
EmulatedBoard.pins), UART (construct, nothing attached), WDT (the supervisor
resets the board when it is not fed in time; deinit() stands in for the
register write that disables it), unique_id (8 bytes, stable per
board folder), reset, soft_reset, reset_cause, freq, idle, lightsleep, RTC.

Not modelled: real pins or electrical levels (an IN pin reads its pull: 1 with
PULL_UP, else 0, and never changes), pin IRQs (irq() accepts a handler and
never calls it), ADC, PWM, I2C, SPI, Timer, PIO (rp2), deepsleep, bootloader,
mem8/mem16/mem32, clock speed (freq() only stores the number), sleep current.
"""

import time
from micropython import const

PWRON_RESET = const(1)
WDT_RESET = const(3)
_WDT_MAX_MS = const(8388)  # RP2040 watchdog: 24-bit count of 1 us ticks, x0.5 (errata RP2040-E1)
_LED_GPIO = const(25)  # Raspberry Pi Pico (not Pico W): the LED is on GPIO25

_ctl = None  # write end of the control pipe to the supervisor
_uid = None  # set by _attach, else derived from the cwd on first use
_cause = PWRON_RESET
_freq_hz = 125_000_000
_rtc_offset_s = 0
_levels = {}  # GPIO output register: gpio -> 0/1


def _attach(ctl, uid, cause, levels):
    # Called once by _emuboot at boot; levels: "25=1,3=0" or "" (cold boot).
    global _ctl, _uid, _cause
    _ctl, _uid, _cause = ctl, uid, cause
    for item in levels.split(","):
        if item:
            gpio, level = item.split("=")
            _levels[int(gpio)] = int(level)


def _send(message):
    if _ctl is not None:
        _ctl.write(message)


def unique_id():
    global _uid
    if _uid is None:
        # Imported without _emuboot (a bare unix port, cwd = board folder):
        # the id EmulatedBoard derives from that folder.
        import hashlib, os

        _uid = hashlib.sha256(b"fleetloop emulated pico " + os.getcwd().encode()).digest()[:8]
    return _uid


def reset():
    # The supervisor kills this interpreter and boots a new one (a hard reset:
    # main.py runs, reset_cause() is WDT_RESET as on rp2, which resets through
    # the watchdog). Wait here so nothing after reset() runs.
    _send(b"R\n")
    while True:
        time.sleep(1)


def soft_reset():
    raise SystemExit


def reset_cause():
    return _cause


def freq(hz=None):
    global _freq_hz
    if hz is None:
        return _freq_hz
    _freq_hz = hz


def idle():
    time.sleep_ms(1)


def lightsleep(time_ms=None):
    time.sleep_ms(1 if time_ms is None else time_ms)


def disable_irq():
    return 0


def enable_irq(state=0):
    pass


class Pin:
    """A GPIO that holds a level. Stand-in: no electrical pin exists; see the
    module docstring for what is not modelled. Output levels live in _levels,
    the stand-in for the GPIO output register, which the supervisor carries
    across soft reboots (as the RP2040 keeps its GPIO state)."""

    IN = const(0)
    OUT = const(1)
    OPEN_DRAIN = const(2)
    ALT = const(3)
    PULL_UP = const(1)
    PULL_DOWN = const(2)
    IRQ_FALLING = const(4)
    IRQ_RISING = const(8)

    def __init__(self, id, mode=-1, pull=-1, *, value=None, **kwargs):
        if id == "LED":
            id = _LED_GPIO
        if not isinstance(id, int) or not 0 <= id <= 29:
            raise ValueError("invalid pin")
        self._id = id
        self._mode = Pin.IN
        self._pull = None
        self.init(mode, pull, value=value)

    def init(self, mode=-1, pull=-1, *, value=None, **kwargs):
        if mode != -1:
            self._mode = mode
        if pull != -1:
            self._pull = pull
        if value is not None:
            _levels[self._id] = 1 if value else 0
        if self._mode != Pin.IN:
            _send(b"P%d=%d\n" % (self._id, _levels.get(self._id, 0)))

    def value(self, level=None):
        if level is None:
            if self._mode == Pin.IN:
                return 1 if self._pull == Pin.PULL_UP else 0
            return _levels.get(self._id, 0)
        level = 1 if level else 0
        if _levels.get(self._id, 0) != level:
            _levels[self._id] = level  # an IN pin keeps it for when it turns OUT
            if self._mode != Pin.IN:
                _send(b"P%d=%d\n" % (self._id, level))  # only changes: a blinking LED is cheap

    def __call__(self, level=None):
        return self.value(level)

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)

    high = on
    low = off

    def toggle(self):
        self.value(1 - _levels.get(self._id, 0))

    def irq(self, handler=None, trigger=IRQ_FALLING | IRQ_RISING, hard=False):
        self._irq = handler  # never called: nothing drives an input pin

    def __repr__(self):
        return "Pin(GPIO%d, mode=%d)" % (self._id, self._mode)


class UART:
    """A UART with nothing attached to its pins. Stand-in: write() discards
    the bytes and returns their count; read(), readline() and readinto()
    return None (no data, as a real UART with an idle line); any() is 0.
    Not modelled: baud timing, flow control, break, loopback, irq()."""

    def __init__(self, id, baudrate=115200, **kwargs):
        if id not in (0, 1):
            raise ValueError("UART(%d) doesn't exist" % id)
        self._id = id
        self.init(baudrate, **kwargs)

    def init(self, baudrate=115200, **kwargs):
        self._baudrate = baudrate

    def deinit(self):
        pass

    def any(self):
        return 0

    def read(self, nbytes=-1):
        return None

    def readline(self):
        return None

    def readinto(self, buf, nbytes=-1):
        return None

    def write(self, buf):
        return len(buf)

    def flush(self):
        pass

    def txdone(self):
        return True

    def __repr__(self):
        return "UART(%d, baudrate=%d)" % (self._id, self._baudrate)


class WDT:
    """The watchdog: once created it cannot be stopped; if feed() is not
    called within timeout ms, the supervisor hard-resets the board (main.py
    runs, reset_cause() is WDT_RESET). Like the RP2040's, it keeps running
    across a soft reset. Stand-in: the reset comes no earlier than timeout and
    at most about timeout/16 plus scheduling delay later, because feeds reach
    the supervisor at most once per timeout/16 ms (so feeding in a tight loop
    costs no system call per feed)."""

    def __init__(self, id=0, timeout=5000):
        if id != 0:
            raise ValueError("WDT(%d) doesn't exist" % id)
        if not 1 <= timeout <= _WDT_MAX_MS:
            raise ValueError("timeout exceeds %d" % _WDT_MAX_MS)
        self._timeout_ms = timeout
        self._sent_ms = time.ticks_ms()
        _send(b"W%d\n" % timeout)

    def feed(self):
        now = time.ticks_ms()
        if time.ticks_diff(now, self._sent_ms) >= self._timeout_ms >> 4:
            self._sent_ms = now
            _send(b"F\n")

    def deinit(self):
        # Not in rp2's machine.WDT: it stands in for clearing the watchdog's
        # CTRL.ENABLE bit (the Pico SDK's watchdog_disable()), which firmware
        # does with machine.mem32 on a real RP2040 (firmware/runtime/watchdog.py).
        _send(b"D\n")


class RTC:
    """The real-time clock, kept as an offset from the host's clock.
    Stand-in: no alarm, no calibration; tuples as on rp2:
    (year, month, day, weekday, hours, minutes, seconds, subseconds)."""

    def datetime(self, datetimetuple=None):
        global _rtc_offset_s
        if datetimetuple is None:
            t = time.localtime(time.time() + _rtc_offset_s)
            return (t[0], t[1], t[2], t[6], t[3], t[4], t[5], 0)
        y, mo, d, wd, h, mi, s = datetimetuple[:7]
        _rtc_offset_s = time.mktime((y, mo, d, h, mi, s, wd, 0)) - time.time()
