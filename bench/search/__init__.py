"""Similarity-search benchmark: `python -m bench.search --rows 100000` (see run.py)."""
