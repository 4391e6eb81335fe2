# Runs before main.py at every reset. Deliberately almost empty: nothing here
# touches hardware or can fail, so the REPL and mpremote always get in.
# The emergency buffer lets an exception in the LED error-pattern timer
# callback be reported.
import micropython

_alloc = getattr(micropython, "alloc_emergency_exception_buf", None)
if _alloc is not None:
    _alloc(100)
del _alloc

# Which image this boot runs (bootslot.py): a trial is marked before anything
# else can fail, a failed trial is reverted, the slot goes first on sys.path.
try:
    import bootslot

    bootslot.select()
except Exception as _e:  # never stop the board booting: the root image runs
    print("fleetloop: boot slot:", _e)
import sys

sys.modules.pop("bootslot", None)  # what it decided is in bootinfo; its code need not stay on the heap
globals().pop("bootslot", None)
