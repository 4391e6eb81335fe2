"""Benchmarks: each prints figures and the machine it ran on. None of them is a test."""
