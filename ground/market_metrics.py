"""The market tier's metrics now live in ground/metrics/market.py (one family
of the streaming metrics); this name stays for the code that imports it."""

from ground.metrics.market import FLAT, MarketTally  # noqa: F401
