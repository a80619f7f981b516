"""Per-task ground truth: the subtasks of each Meta-World task and which one runs at each step.

Each phase function re-evaluates the branch conditions of the task's scripted policy
(`metaworld/policies/sawyer_<task>_policy.py`, `_desired_pos` and `_grab_effort`) on the same
parsed observation the policy sees, and returns the index of the subtask that branch belongs to.
The next subtask starts at the first step the policy commands the motion that achieves it (see
`record.segment`).

Subtasks are semantic, 2 per task here: what the task instruction asks for, with the approach or
the grasp it needs. Controller details are merged into the subtask they serve: "move above",
"descend" and "wait for the gripper to close" belong to "pick up the X"; lifting, carrying and
lining the object up belong to the subtask that takes it to its goal (place, insert, hit, drop).

Where a pick ends, for every task (the fixture's convention, which wins): at the grasp. The pick
covers the approach, the descent and the closing of the gripper; the first step that moves the
grasped object, whether up, sideways or both, starts the next subtask. In the fixture's
pick-place the gripper closes while the hand holds still and the first "move to goal" step
(action dz = 1: it lifts and carries at once) is the first frame of "place the puck at the goal",
so "pick up the puck" holds no upward motion at all; its sweep-into and coffee-push end "grasp
the X" at the bottom of the descent, where the push starts. Hence:
- basketball: the straight lift to the hoop's height starts "drop the ball into the basket";
- peg-insert-side: lifting the peg and lining it up with the hole are part of "insert the peg"
  (the instruction names no alignment step; lining up is how an insertion is done);
- hammer: raising the hammer to the nail's plane is part of "hit the nail with the hammer";
- assembly: lifting the ring and carrying it above the peg are part of placing it on the peg.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from atomvla.schemas import Skill

Obs = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class TaskSpec:
    metaworld_task: str
    instruction: str
    subtasks: tuple[tuple[str, Skill], ...]  # (instruction, skill) in execution order
    phase: Callable[[Obs], int]  # parsed observation -> index into `subtasks`
    # The phase is read from the object's own motion, not the policy's branch: a later subtask is
    # seen to start once the object has already moved (so nothing can be inserted before it).
    by_object_motion: bool = False


def _xy_far(a: np.ndarray, b: np.ndarray, tol: float) -> bool:
    return bool(np.linalg.norm(a[:2] - b[:2]) > tol)


def _z_far(a: np.ndarray, b: np.ndarray, tol: float) -> bool:
    return bool(abs(a[2] - b[2]) > tol)


def _at(a: np.ndarray, b: np.ndarray, xy_tol: float, z_tol: float) -> bool:
    """The policies' usual "hand above the target, then lowered onto it" test."""
    return not _xy_far(a, b, xy_tol) and not _z_far(a, b, z_tol)


def _pick_place(o: Obs) -> int:
    puck = o["puck_pos"] + np.array([-0.005, 0.0, 0.0])
    hand = o["hand_pos"]
    if _xy_far(hand, puck, 0.02) or (_z_far(hand, puck, 0.05) and puck[2] < 0.04):
        return 0
    return 0 if o["gripper_distance_apart"] > 0.73 else 1  # waits for the grip before moving


def _drawer_open(o: Obs) -> int:
    return int(_at(o["hand_pos"], o["drwr_pos"] + np.array([0.0, 0.0, -0.02]), 0.06, 0.04))


def _drawer_close(o: Obs) -> int:
    drawer = o["drwr_pos"] + np.array([0.0, 0.0, -0.02])
    hand = o["hand_pos"]
    return int(hand[1] <= drawer[1] and not _z_far(hand, drawer, 0.04))


def _button_press(o: Obs) -> int:
    button = o["button_pos"] + np.array([0.0, 0.0, -0.07])
    return int(np.all(np.isclose(o["hand_pos"][[0, 2]], button[[0, 2]], atol=0.02)))


def _door_open(o: Obs) -> int:
    return int(_at(o["hand_pos"], o["door_pos"] - np.array([0.05, 0.0, 0.0]), 0.12, 0.04))


def _sweep_into(o: Obs) -> int:
    return int(_at(o["hand_pos"], o["cube_pos"] + np.array([-0.005, 0.0, 0.01]), 0.04, 0.04))


def _coffee_push(o: Obs) -> int:
    return int(_at(o["hand_pos"], o["mug_pos"] + np.array([0.01, 0.0, 0.05]), 0.06, 0.02))


def _window_open(o: Obs) -> int:
    return int(_at(o["hand_pos"], o["wndw_pos"] + np.array([-0.03, -0.03, -0.08]), 0.04, 0.02))


def _faucet_open(o: Obs) -> int:
    return int(_at(o["hand_pos"], o["faucet_pos"] + np.array([-0.04, 0.0, 0.03]), 0.04, 0.04))


def _handle_press(o: Obs) -> int:
    return int(not _xy_far(o["hand_pos"], o["handle_pos"] + np.array([0.0, -0.02, 0.0]), 0.02))


def _peg_insert_side(o: Obs) -> int:
    # approach and descend to the peg; then lift, line up with the hole and push in
    return int(_at(o["hand_pos"], o["peg_pos"], 0.04, 0.025))


def _basketball(o: Obs) -> int:
    # approach and descend to the ball; then lift to the hoop's height and carry over it
    return int(_at(o["hand_pos"], o["ball_pos"] + np.array([0.0, 0.0, 0.01]), 0.04, 0.025))


def _hammer(o: Obs) -> int:
    # approach and descend to the handle; then raise the hammer to the nail's plane and swing
    hammer = o["hammer_pos"] + np.array([-0.04, 0.0, -0.01])
    hand = o["hand_pos"]
    return int(not (_xy_far(hand, hammer, 0.04) or (_z_far(hand, hammer, 0.05) and hammer[2] < 0.03)))


def _assembly(o: Obs) -> int:
    wrench = o["wrench_pos"] + np.array([-0.02, 0.0, 0.0])
    above_peg = o["peg_pos"] + np.array([0.12, 0.0, 0.14])
    hand = o["hand_pos"]
    # the policy's own branch order: approach, lower onto the peg, descend to the ring, lift, carry
    if _xy_far(hand, wrench, 0.02):
        return 0
    if not _xy_far(hand, above_peg, 0.02):
        return 1
    return int(not _z_far(hand, wrench, 0.05))


def _window_close(o: Obs) -> int:
    return int(_at(o["hand_pos"], o["wndw_pos"] + np.array([0.03, -0.03, -0.08]), 0.04, 0.02))


def _faucet_close(o: Obs) -> int:
    return int(_at(o["hand_pos"], o["faucet_pos"] + np.array([0.04, 0.0, 0.03]), 0.04, 0.04))


def _button_press_topdown(o: Obs) -> int:
    return int(not _xy_far(o["hand_pos"], o["button_pos"], 0.04))


def _coffee_button(o: Obs) -> int:
    button = o["button_pos"] + np.array([0.0, 0.0, -0.07])
    return int(np.linalg.norm(o["hand_pos"][[0, 2]] - button[[0, 2]]) <= 0.02)


def _plate_slide(o: Obs) -> int:
    return int(_at(o["hand_pos"], o["puck_pos"] + np.array([0.0, -0.055, 0.03]), 0.03, 0.04))


def _handle_press_side(o: Obs) -> int:
    return int(not _xy_far(o["hand_pos"], o["handle_pos"], 0.02))


def _push(o: Obs) -> int:
    # approach, descend and close on the puck; the first step commanded toward the goal pushes it
    return int(_at(o["hand_pos"], o["puck_pos"] + np.array([-0.005, 0.0, 0.0]), 0.02, 0.04))


def _button_press_topdown_wall(o: Obs) -> int:
    return int(not _xy_far(o["hand_pos"], o["button_pos"] + np.array([0.0, -0.06, 0.0]), 0.04))


def _button_press_wall(o: Obs) -> int:
    # up over the wall, across, down in front of the button; then the push (the gripper opens)
    button = o["button_pos"] + np.array([0.0, 0.0, 0.04])
    hand = o["hand_pos"]
    return int(abs(hand[0] - button[0]) <= 0.02 and button[1] - hand[1] <= 0.09 and abs(hand[2] - button[2]) <= 0.02)


def _dial_turn(o: Obs) -> int:
    return int(_at(o["hand_pos"], o["dial_pos"] + np.array([0.05, 0.02, 0.09]), 0.02, 0.02))


# Meta-World observations hold the previous step's hand and objects too: the first object's previous
# position sits 15 values after its current one's start (obs[4:7] now, obs[22:25] before).
PREVIOUS_OBJECT = slice(15, 18)  # within the policies' parsed obs[7:...] entry


def _object_step(o: Obs, now: str, rest: str) -> np.ndarray:
    """(3,) how far the first object moved during the last step."""
    return o[now] - o[rest][PREVIOUS_OBJECT]


def _door_close(o: Obs) -> int:
    # By the door's own motion: the policy heads for the goal from the start and sweeps the door
    # shut on the way, so its branches do not mark the contact. The door, left open at reset,
    # also swings a little by itself at first; the push is the door moving (> 5 mm a step) with the
    # hand at its panel (the panel runs from the hinge, 0.2 m before and 0.2 m beside the goal, to the handle).
    handle, hand = o["door_pos"], o["hand_pos"]
    hinge = o["goal_pos"] + np.array([-0.2, 0.2, 0.0])
    panel = handle[:2] - hinge[:2]
    along = np.clip((hand[:2] - hinge[:2]) @ panel / (panel @ panel), 0.0, 1.0)
    near = np.linalg.norm(hand[:2] - hinge[:2] - along * panel) <= 0.1
    return int(near and np.linalg.norm(_object_step(o, "door_pos", "unused_2")) > 0.005)


def _door_lock(o: Obs) -> int:
    # By the lock's motion: the policy pushes the lock down while still descending onto it (its
    # "push" branch rarely runs), so the turn starts when the lock starts going down.
    return int(-_object_step(o, "lock_pos", "unused_info")[2] > 0.001)


def _door_unlock(o: Obs) -> int:
    # the policy sweeps sideways as soon as it is beside the lock, whatever its height
    return int(not _xy_far(o["hand_pos"], o["lock_pos"] + np.array([-0.04, -0.02, -0.03]), 0.02))


def _hand_insert(o: Obs) -> int:
    # approach, descend and close on the block; the first step toward the hole moves it
    return int(_at(o["hand_pos"], o["obj_pos"], 0.02, 0.05))


def _handle_pull_side(o: Obs) -> int:
    return int(_at(o["hand_pos"], o["handle_pos"], 0.04, 0.03))


def _handle_pull(o: Obs) -> int:
    return int(_at(o["hand_pos"], o["handle_pos"] + np.array([0.0, -0.04, 0.0]), 0.02, 0.02))


# The lever turns about a pivot LEVER_RADIUS below the goal (lever-pull's `_target_pos`): at rest it
# points toward the robot, pulled up it points up at the goal.
LEVER_RADIUS = 0.2
LEVER_MOVED_RAD = np.deg2rad(2.0)


def _lever_pull(o: Obs) -> int:
    # By the lever's own motion: the policy lifts the lever while it still alternates between its
    # approach branches, so its "pull" branch does not mark where the pull starts.
    goal = o["unused_info"][-3:]
    pivot = goal - np.array([0.0, 0.0, LEVER_RADIUS])
    lever = o["lever_pos"]
    return int(np.arctan2(lever[2] - pivot[2], pivot[1] - lever[1]) > LEVER_MOVED_RAD)


def _plate_slide_back(o: Obs) -> int:
    return int(_at(o["hand_pos"], o["puck_pos"] + np.array([0.0, -0.065, 0.025]), 0.01, 0.04))


def _plate_slide_back_side(o: Obs) -> int:
    return int(_at(o["hand_pos"], o["puck_pos"] + np.array([0.023, 0.0, 0.025]), 0.01, 0.04))


def _plate_slide_side(o: Obs) -> int:
    return int(_at(o["hand_pos"], o["puck_pos"] + np.array([0.07, 0.0, -0.005]), 0.04, 0.04))


def _reach(o: Obs) -> int:
    # one straight, slowing reach: it is done once the hand is within the task's success radius
    # (reach-v3: 5 cm); what follows is the hand settling on the goal
    return int(np.linalg.norm(o["hand_pos"] - o["goal_pos"]) <= 0.05)


def _reach_wall(o: Obs) -> int:
    hand = o["hand_pos"]
    return int(not (-0.1 <= hand[0] <= 0.3 and 0.60 <= hand[1] <= 0.80 and hand[2] < 0.25))


def _soccer(o: Obs) -> int:
    # By the ball's motion: the policy's "drive into the ball" branch needs the hand within 1 cm of
    # the spot behind the ball, which it often never holds; it pushes the ball from its approach.
    # (Across the table only: the ball settles onto it during the first steps.)
    return int(np.linalg.norm(_object_step(o, "ball_pos", "unused_2")[:2]) > 0.001)


def _push_wall(o: Obs) -> int:
    return int(_at(o["hand_pos"], o["obj_pos"] + np.array([-0.005, 0.0, 0.0]), 0.02, 0.04))


def _sweep(o: Obs) -> int:
    # approach, descend and close on the cube; then carried to the table's edge and let go
    hand = o["hand_pos"]
    return int(hand[0] >= 0.2 or _at(hand, o["cube_pos"] + np.array([0.0, 0.0, 0.015]), 0.04, 0.04))


_SPECS = (
    # The fixture's six tasks, with the fixture truth's wording.
    TaskSpec("pick-place-v3", "pick up the puck and place it at the goal",
             (("pick up the puck", "pick"), ("place the puck at the goal", "place")), _pick_place),
    TaskSpec("drawer-open-v3", "open the drawer",
             (("reach the drawer handle", "reach"), ("pull the drawer open", "open")), _drawer_open),
    TaskSpec("button-press-v3", "press the button",
             (("move the gripper in front of the button", "reach"), ("press the button", "press")), _button_press),
    TaskSpec("door-open-v3", "open the door",
             (("reach the door handle", "reach"), ("pull the door open", "open")), _door_open),
    TaskSpec("sweep-into-v3", "sweep the cube into the hole",
             (("grasp the cube", "pick"), ("push the cube into the hole", "push")), _sweep_into),
    TaskSpec("coffee-push-v3", "push the mug under the coffee machine",
             (("grasp the mug", "pick"), ("push the mug under the coffee machine", "push")), _coffee_push),
    # Further tasks with clear phases. (Not lever-pull: its policy lifts the lever while it
    # alternates between its approach branches and never runs its "pull" branch.)
    TaskSpec("drawer-close-v3", "close the drawer",
             (("move the gripper in front of the drawer", "reach"), ("push the drawer closed", "close")), _drawer_close),
    TaskSpec("window-open-v3", "open the window",
             (("reach the window handle", "reach"), ("slide the window open", "open")), _window_open),
    TaskSpec("faucet-open-v3", "turn the faucet on",
             (("reach the faucet handle", "reach"), ("turn the faucet handle", "turn")), _faucet_open),
    TaskSpec("handle-press-v3", "press the handle down",
             (("move the gripper above the handle", "reach"), ("press the handle down", "press")), _handle_press),
    TaskSpec("peg-insert-side-v3", "insert the peg into the hole",
             (("pick up the peg", "pick"), ("insert the peg into the hole", "insert")), _peg_insert_side),
    TaskSpec("basketball-v3", "put the ball into the basket",
             (("pick up the ball", "pick"), ("drop the ball into the basket", "place")), _basketball),
    TaskSpec("hammer-v3", "hammer the nail in",
             (("pick up the hammer", "pick"), ("hit the nail with the hammer", "push")), _hammer),
    TaskSpec("assembly-v3", "put the ring onto the peg",
             (("pick up the ring", "pick"), ("place the ring onto the peg", "place")), _assembly),
    # Released by issue 15 (its list; the other Meta-World tasks stay held out): same truth rules,
    # each phase function the branch test of the task's policy.
    TaskSpec("window-close-v3", "close the window",
             (("reach the window handle", "reach"), ("slide the window closed", "close")), _window_close),
    TaskSpec("faucet-close-v3", "turn the faucet off",
             (("reach the faucet handle", "reach"), ("turn the faucet handle", "turn")), _faucet_close),
    TaskSpec("button-press-topdown-v3", "press the button down from the top",
             (("move the gripper above the button", "reach"), ("press the button down", "press")), _button_press_topdown),
    TaskSpec("coffee-button-v3", "press the button on the coffee machine",
             (("move the gripper in front of the button", "reach"), ("press the button", "press")), _coffee_button),
    TaskSpec("plate-slide-v3", "slide the plate into the goal",
             (("reach the plate", "reach"), ("slide the plate into the goal", "push")), _plate_slide),
    TaskSpec("handle-press-side-v3", "press the handle down from the side",
             (("move the gripper above the handle", "reach"), ("press the handle down", "press")), _handle_press_side),
    TaskSpec("push-v3", "push the puck to the goal",
             (("grasp the puck", "pick"), ("push the puck to the goal", "push")), _push),
    TaskSpec("button-press-topdown-wall-v3", "press the button behind the wall down from the top",
             (("move the gripper above the button", "reach"), ("press the button down", "press")), _button_press_topdown_wall),
    TaskSpec("button-press-wall-v3", "press the button behind the wall",
             (("move the gripper over the wall to the button", "reach"), ("press the button", "press")), _button_press_wall),
    TaskSpec("dial-turn-v3", "turn the dial",
             (("move the gripper onto the dial", "reach"), ("turn the dial", "turn")), _dial_turn),
    TaskSpec("door-close-v3", "close the door",
             (("move the gripper to the door handle", "reach"), ("push the door closed", "close")), _door_close, by_object_motion=True),
    TaskSpec("door-lock-v3", "lock the door",
             (("reach the door lock", "reach"), ("turn the lock down", "turn")), _door_lock, by_object_motion=True),
    TaskSpec("door-unlock-v3", "unlock the door",
             (("reach the door lock", "reach"), ("turn the lock to unlock the door", "turn")), _door_unlock),
    TaskSpec("hand-insert-v3", "put the block into the hole",
             (("pick up the block", "pick"), ("put the block into the hole", "insert")), _hand_insert),
    TaskSpec("handle-pull-side-v3", "pull the handle up from the side",
             (("grasp the handle from the side", "reach"), ("pull the handle up", "pull")), _handle_pull_side),
    TaskSpec("handle-pull-v3", "pull the handle up",
             (("move the gripper under the handle", "reach"), ("pull the handle up", "pull")), _handle_pull),
    TaskSpec("lever-pull-v3", "pull the lever up",
             (("reach under the lever", "reach"), ("pull the lever up", "pull")), _lever_pull, by_object_motion=True),
    TaskSpec("plate-slide-back-v3", "slide the plate back out of the goal",
             (("reach the plate", "reach"), ("slide the plate back out of the goal", "pull")), _plate_slide_back),
    TaskSpec("plate-slide-back-side-v3", "slide the plate sideways back out of the goal",
             (("reach the plate", "reach"), ("slide the plate sideways out of the goal", "pull")), _plate_slide_back_side),
    TaskSpec("plate-slide-side-v3", "slide the plate sideways into the goal",
             (("reach the plate", "reach"), ("slide the plate sideways into the goal", "push")), _plate_slide_side),
    TaskSpec("push-wall-v3", "push the puck around the wall to the goal",
             (("grasp the puck", "pick"), ("push the puck around the wall to the goal", "push")), _push_wall),
    TaskSpec("reach-v3", "reach the goal",
             (("move the gripper to the goal", "reach"), ("hold the gripper at the goal", "other")), _reach),
    TaskSpec("reach-wall-v3", "reach the goal behind the wall",
             (("raise the gripper over the wall", "reach"), ("move the gripper to the goal", "reach")), _reach_wall),
    TaskSpec("soccer-v3", "push the ball into the goal",
             (("move the gripper behind the ball", "reach"), ("push the ball into the goal", "push")), _soccer, by_object_motion=True),
    TaskSpec("sweep-v3", "sweep the cube off the table",
             (("grasp the cube", "pick"), ("sweep the cube off the table", "push")), _sweep),
)
RELEASED = (
    "window-close-v3", "faucet-close-v3", "button-press-topdown-v3", "coffee-button-v3", "plate-slide-v3",
    "handle-press-side-v3", "push-v3", "button-press-topdown-wall-v3", "button-press-wall-v3", "dial-turn-v3",
    "door-close-v3", "door-lock-v3", "door-unlock-v3", "hand-insert-v3", "handle-pull-side-v3", "handle-pull-v3",
    "lever-pull-v3", "plate-slide-back-v3", "plate-slide-back-side-v3", "plate-slide-side-v3", "push-wall-v3",
    "reach-v3", "reach-wall-v3", "soccer-v3", "sweep-v3",
)
TASKS: dict[str, TaskSpec] = {spec.metaworld_task: spec for spec in _SPECS}
