"""Offline tools: evaluation, benchmarks and experiments, run from the command line.

Never imported by the gateway (``app/``): ``nerve eval`` loads ``tools.evaluation`` only when it
runs, and tests/test_layering.py keeps it so.
"""
