"""Benchmark scripts: each writes benchmarks/NAME.result.json; `python -m benchmarks.results_md` renders them."""
