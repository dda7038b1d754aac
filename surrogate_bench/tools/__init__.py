"""Stand-alone helpers run with ``python -m surrogate_bench.tools.NAME`` (data preparation, outside references)."""
