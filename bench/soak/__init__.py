"""Soak test: a steady mix of reads and writes against a real `ctxgraph serve` (run.py)."""
