# The firmware version when the board has no /version.json. The flashing tool
# either writes /version.json (preferred: see docs/BOARD_SHELL.md) or rewrites
# these two constants when it builds the image. (major, minor) go on the wire
# in HELLO and heartbeats; the label is only reported (LOG frame, REPL).
VERSION = (0, 0)
LABEL = "0.0-unversioned"
