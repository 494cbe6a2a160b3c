"""Benchmarks of keras_mha's layers against their Keras and keras_hub peers.

Run them with `make bench` (or `python -m benchmarks.run`); figures and commands
in docs/performance.md.
"""
