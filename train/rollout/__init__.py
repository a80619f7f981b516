"""`atom-train rollout`: a policy in closed loop in a simulator, episodes in parallel processes.

`run.rollout(spec)` checks the tasks and the policy's layout against the env, runs the episodes
not yet done in `--out` (`episode.run_episode`, one MP4 each), and writes `results.json` and the
success plot (`report`).
"""
