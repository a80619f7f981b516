"""Finer decompositions (3 subtasks) of some tasks, for experiments that need more than two subtasks.

`tasks.py` cuts every task into its two semantic halves; here the approach is split off as its own
subtask where the scripted policy has a distinct approach branch. In pick-place: "move the gripper
above the puck" while the hand is more than 2 cm off the puck in the plane (the policy's first
branch), then the descent and the grasp, then carrying the puck to the goal (as in `tasks.py`).
"""

from __future__ import annotations

import numpy as np

from benchmarks.metaworld_gt.tasks import TASKS, Obs, TaskSpec, _pick_place, _xy_far


def _pick_place_fine(o: Obs) -> int:
    if _xy_far(o["hand_pos"], o["puck_pos"] + np.array([-0.005, 0.0, 0.0]), 0.02):
        return 0
    return 1 + _pick_place(o)


FINE_TASKS: dict[str, TaskSpec] = {
    "pick-place-v3": TaskSpec(
        "pick-place-v3", TASKS["pick-place-v3"].instruction,
        (("move the gripper above the puck", "reach"), ("grasp the puck", "pick"), ("place the puck at the goal", "place")),
        _pick_place_fine,
    ),
}
