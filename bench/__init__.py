"""learngene-ea benchmarks: ``python -m bench`` (see bench/run.py)."""
