"""Benchmarks: netlab's figures beside a baseline measured in the same run.

- :mod:`netlab.bench.figures`: what is measured, as data, and the one timing loop.
- :mod:`netlab.bench.baseline`: the stdlib baselines and their plain-socket peers.
- :mod:`netlab.bench.measure`: the command service under test, and the rows.
- :mod:`netlab.bench.pinning`: the client on one CPU, every child server on another.
- :mod:`netlab.bench.rounds`: alternating rounds, per-round ratios, their median and spread.
- :mod:`netlab.bench.peers`: pyzmq, grpcio and rpyc measured like netlab's echo.

``netlab bench`` and the throughput and concurrency experiments use them;
nothing here prints.
"""
