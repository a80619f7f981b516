"""Meta-World scripted demonstrations with exact subtask ground truth (see benchmarks/README.md)."""
