"""CPython stand-in for MicroPython's `micropython` module.

Only what the firmware's pure core uses on the host: `const()` (a
compile-time constant on MicroPython, the identity here). Put this folder on
sys.path before importing firmware code under CPython (tests/conftest.py and
ground.firmware do).
"""


def const(x):
    return x
