"""Performance benchmark of pre-training (``bench perf``): the engine's full training step
against the machine's measured matmul peak and against a straightforward implementation.

- :mod:`bench.perf.peak`: matmul peak per precision.
- :mod:`bench.perf.reference`: the straightforward implementation (fp32, explicit attention,
  per-sample masks and views).
- :mod:`bench.perf.measure`: one configuration timed in a fresh process.
- :mod:`bench.perf.suite`: the benchmark, its scaling sweep, the paper-preset projection,
  tables and files.
"""
