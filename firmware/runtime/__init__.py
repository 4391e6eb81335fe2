# The board shell: everything that knows `machine`, flash, the serial line and
# the clock. The coordination core (firmware/node/) never imports from here.
# See docs/BOARD_SHELL.md.
