# fleetloop board entry point: runs the node core on this board.
#
# Reads board.json (and version.json) from flash, restores the node's saved
# term and vote, and runs runtime.shell.Shell until Ctrl-C. Nothing but
# frames goes to stdout once the loop runs (on USB, stdout is the data
# channel).
#
# Never a crash loop: a bad or missing config prints ONE line naming the file
# and key, blinks the LED error pattern and returns to the REPL, without
# starting the watchdog. This script never calls sys.exit(): in main.py a
# SystemExit makes the board soft-reset, which would run it again. Ctrl-C (or
# mpremote) stops the loop with KeyboardInterrupt and switches the watchdog
# off so the REPL stays usable; any other exception is a bug: it is written
# to crash.txt, the watchdog is switched off, and the traceback is printed on
# the console (the REPL's), where the ground's `silent` node event picks it up
# (ground/run.py). The next boot sends its last lines as a LOG note and moves
# the file to crash.old.txt. Running out of heap is not a crash: the shell
# drops the line being handled, counts it and goes on (runtime/shell.py);
# only a loop that finished no iteration for 5 s, every one out of heap, is
# (without a watchdog: with one, those iterations do not feed it).
#
# Under the unix port (emulated board, tests) the same file runs with the
# board folder as the current directory: the paths below are relative to it,
# as they are to / on a board.
#
# The boot itself is runtime/start.py: rp2 compiles main.py from source on
# the heap at every boot, a module comes as .mpy bytecode and can be dropped
# once it ran (docs/HEAP.md).

import gc
import sys

from runtime.start import CRASH_FILE, BootError  # (a class without methods: keeps no code of runtime.start)

BOARD_FILE = "board.json"

shell = None  # the running Shell, for inspection at the REPL after Ctrl-C
_error_timer = None  # keeps the LED error pattern's Timer alive at the REPL


def build(*args, **kwargs):
    """The Shell for this board, not yet running; BootError if it cannot be
    (runtime/start.py build: board_file, version_file, state_dir, link,
    clock). The boot's code is dropped once it ran: only the running board's
    modules stay on the heap (docs/HEAP.md)."""
    from runtime import start

    try:
        return start.build(*args, **kwargs)
    finally:
        start.forget("runtime.start")
        del start
        gc.collect()


def _stop(sh):
    """Leave the board safe for the REPL: watchdog off, LED off. A second
    Ctrl-C (mpremote sends two) must not cut this short."""
    for _ in range(3):
        try:
            stopped = sh.watchdog.stop() if sh.watchdog is not None else True
            if sh.led is not None:
                sh.led.off()
            return stopped
        except KeyboardInterrupt:
            pass
    return False


def _revert_trial(e):
    """A trial image that crashes or cannot start: reset now, and boot.py
    goes back to the previous image (docs/UPDATES.md)."""
    import bootinfo

    if bootinfo.boot_state == "trial":
        if e is not None:
            _record_crash(e)
        import machine

        machine.reset()


def _record_crash(e):
    try:
        with open(CRASH_FILE, "w") as f:
            sys.print_exception(e, f)
    except OSError:
        pass


def main():
    global shell, _error_timer
    try:
        sh = build()
    except Exception as e:
        _revert_trial(e)
        if not isinstance(e, BootError):
            raise
        print("fleetloop: %s -- loop not started" % e)
        from runtime import boardcfg, led

        _error_timer = led.blink_error(boardcfg.led_pin_hint(BOARD_FILE))
        return None
    shell = sh
    gc.collect()
    if sh.watchdog is not None and not sh.watchdog.start():
        sh.note("watchdog: machine.WDT unavailable, running without")
    try:
        sh.run()
    except KeyboardInterrupt:
        if not _stop(sh):
            print("fleetloop: watchdog still running: the board resets in %d ms" % sh.watchdog.timeout_ms)
        raise
    except Exception as e:
        _stop(sh)
        _record_crash(e)
        _revert_trial(None)
        raise
    _stop(sh)  # end of input (unix port): leave quietly
    return sh


if __name__ == "__main__":
    main()
