# Runs before main.py at every reset. Deliberately almost empty: nothing here
# touches hardware or can fail, so the REPL and mpremote always get in.
# The emergency buffer lets an exception in the LED error-pattern timer
# callback be reported.
import micropython

_alloc = getattr(micropython, "alloc_emergency_exception_buf", None)
if _alloc is not None:
    _alloc(100)
del _alloc
