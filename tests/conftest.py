"""Settings every test process needs before any simulator loads."""

import os

# MuJoCo picks its GL backend once, at its first import: a test module that imports Meta-World at
# collection would otherwise leave GLFW (no display here) for the LIBERO scenes rendered later.
os.environ.setdefault("MUJOCO_GL", "egl")
