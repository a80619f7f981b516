"""Two-arm ground truth from gym-aloha's end-effector scenes (see generate.py)."""
