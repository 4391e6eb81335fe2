"""One line describing the machine a benchmark ran on (printed by every bench):
ground.machine's, which `ground sweep` records too."""

from ground.machine import describe  # noqa: F401
