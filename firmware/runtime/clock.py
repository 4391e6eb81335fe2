# Mission time from the board's millisecond tick.
#
#     mission_ms = wall_ms_since_boot * time_scale_milli // 1000
#
# time_scale_milli is mission milliseconds per wall second: 1000 runs mission
# time at wall speed, 60000 runs 60 mission seconds per wall second, 0 stops
# it (nothing in the core is then ever due). When the ground's CONFIG frame
# changes the scale, mission time carries on from where it is (it is rebased,
# never jumps back), so it stays monotonic for the core.
#
# Wall time is kept by adding time.ticks_diff() steps, so the 2**30 ms wrap
# of ticks_ms is harmless as long as now_ms() is called more often than every
# 2**29 ms; the shell never waits longer than MAX_WAIT_MS.

import time

MAX_WAIT_MS = 60000


class MissionClock:
    def __init__(self, scale_milli=1000, ticks_ms=None, ticks_diff=None):
        # ticks_ms/ticks_diff: injected by tests; time.ticks_* on a board.
        self._ticks_ms = ticks_ms or time.ticks_ms
        self._ticks_diff = ticks_diff or time.ticks_diff
        self._last = self._ticks_ms()
        self.wall_ms = 0  # wall ms since this clock started (boot)
        self._base_wall = 0
        self._base_mission = 0
        self.scale_milli = scale_milli

    def tick(self):
        """Advance wall time to now; returns wall ms since boot."""
        t = self._ticks_ms()
        self.wall_ms += self._ticks_diff(t, self._last)
        self._last = t
        return self.wall_ms

    def now_ms(self):
        """Mission ms now."""
        w = self.tick()
        return self._base_mission + (w - self._base_wall) * self.scale_milli // 1000

    def set_scale(self, scale_milli):
        """Change the scale from now on; mission time continues from here."""
        self._base_mission = self.now_ms()
        self._base_wall = self.wall_ms
        self.scale_milli = scale_milli

    def wall_wait_ms(self, mission_ms):
        """Wall ms until `mission_ms` mission ms have passed (rounded up so
        waking finds the deadline due), or None when time is stopped."""
        if mission_ms <= 0:
            return 0
        s = self.scale_milli
        if s <= 0:
            return None
        return (mission_ms * 1000 + s - 1) // s
