"""fleetloop's ground harness (the engine): scenarios, clocks, links, router, runs, traces, metrics, reports."""

__version__ = "0.1.0"  # the one version: pyproject.toml reads it ([tool.setuptools.dynamic])
