"""Benchmarks: netlab's figures beside a baseline measured in the same run.

- :mod:`netlab.bench.figures`: what is measured, as data, and the one timing loop.
- :mod:`netlab.bench.baseline`: the stdlib baselines and their plain-socket peers.
- :mod:`netlab.bench.measure`: the command service under test, and the rows.

``netlab bench`` and the throughput and concurrency experiments use them;
nothing here prints.
"""
