"""fleetloop's hardware-in-the-loop side: boards (real or emulated) and the tools that drive them.

Nothing is imported here, so ``import hil`` starts no thread and touches no device;
see hil.emulated for the emulated Pico and hil.cli for the ``hil`` command.
"""
