"""Benchmarks: ``python -m bench.run_all`` (``make bench``). See ``bench/README.md``."""
