"""MLLM adapters (import name: decafbench.adapters)."""
