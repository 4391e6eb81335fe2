# Seeded randomness passed into the core: xorshift32, integers only.
#
# Not `random`: the same seed must give the same sequence under MicroPython
# (whose float is single precision on a Pico) and CPython, so replaying a
# node's inputs reproduces its outputs on either.


class Rng:
    def __init__(self, seed):
        self._x = (seed * 2654435761 + 0x9E3779B9) & 0xFFFFFFFF or 0x6D2B79F5

    def next32(self):
        x = self._x
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self._x = x
        return x

    def below(self, n):
        """An integer in [0, n)."""
        return self.next32() % n

    def between(self, lo, hi):
        """An integer in [lo, hi]."""
        return lo + self.below(hi - lo + 1)
