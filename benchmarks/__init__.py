"""Benchmark definitions and dataset formats (import name: decafbench.benchmarks)."""
