"""Teleoperation-like variant of the scripted Meta-World ground truth (see generate.py)."""
