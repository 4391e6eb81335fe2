# The bench suite runs through fleetloop's pytest plugin (hil/pytest_plugin.py).
#
# An installed fleetloop registers the plugin as a pytest11 entry point
# (pyproject.toml), which imports it before any conftest: then there is
# nothing to do here. Otherwise this conftest *is* the plugin for tests/bench.
# Not `pytest_plugins = ["hil.pytest_plugin"]`: pytest (8+) refuses that in
# a conftest below the rootdir when the whole suite runs (`pytest` from the
# root loads this file after configuration), and with the entry point also
# present it would register the plugin twice. Loaded this way, the plugin's
# --rig/--hil-out options exist when pytest is pointed at tests/bench (this
# conftest is then an initial one); from the root, the defaults apply.
import sys

if "hil.pytest_plugin" not in sys.modules:
    from hil.pytest_plugin import *  # noqa: F401,F403  (hooks and fixtures)
