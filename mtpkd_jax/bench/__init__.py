"""Benchmarks: harnesses and reports that the ``experiments/bench_*`` apps run."""
