"""One scripted long-horizon episode: pick-and-place moves executed in a Scene, recorded per step.

Phases (frames at 20 Hz): "pick up the X" = approach above X, descend, close; "place the X in/on
the Y" = lift, carry above Y, descend, open, retreat; "close the D" = approach the handle, push
along the slide, back off (a drawer), or approach the open door's face and push it round its
hinge, then rise (a door); "open the D" = turn the hand to point into the drawer, pinch its handle,
pull along the slide, let go, back off; "turn on the K" = grasp the knob's ridge, twist, let go, rise. Subtask
boundaries are the frames where those phases start, so the ground truth is exact by construction.

Where a pick ends follows the Meta-World fixture, the ground truth all our sets agree with: there
the gripper closes while the hand holds still, and the first step that moves the object (lifting
and carrying at once) is the first frame of "place ...". So the object's first motion, here the
lift, starts the place.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass

import numpy as np
from atomvla.schemas import Subtask, check_subtasks
from atomvla.train.sim.libero import FPS

from benchmarks.humanlike_gt.teleop import Operator

from .motion import GRIP_CLOSED, GRIP_OPEN, Motion, axis_angle_matrix, execute, follow, steps_for
from .scene import Scene
from .templates import CloseDoor, CloseDrawer, Move, OpenDrawer, Template, TurnOn, subtasks_of

log = logging.getLogger(__name__)

APPROACH_CLEARANCE_M = 0.08  # above an object's top before descending onto it
LIFT_M = 0.12
RETREAT_M = 0.10
GRIP_STEPS = 10  # the Panda fingers need about half a second to close on an object
# Panda gripper geometry relative to its grip site (LIBERO's eef position).
HAND_ABOVE_GRIP_M = 0.018
FINGERTIP_BELOW_GRIP_M = 0.014
FINGER_HALF_THICKNESS_M = 0.012
MIN_LIFT_M = 0.04  # an object that rose less than this after the lift was not grasped
FINGERS_OPEN_M = 0.08  # the Panda fingers' spread, open (scales the operator's view of the opening)
MAX_GRIP_SPAN_M = 0.07  # the open Panda fingers are 8 cm apart: anything wider is gripped by its rim
RIM_IN_M = 0.006  # a bowl's wall centre, in from its outer edge
RIM_DEPTH_M = 0.01  # the grip site below the rim's top: the fingertips close 2.4 cm down the wall
# Release height of the held object's bottom above the receptacle's top: inside a container's
# rim, just above a plate.
RELEASE_ABOVE_TOP_M = {"in": -0.03, "on": 0.015}
QUARTER_TURN = axis_angle_matrix(np.array([0.0, 0.0, np.pi / 2]))  # about the world vertical
KNOB_GRIP_BELOW_TOP_M = 0.02  # the fingertips pinch a knob's ridge just above the dial under it
KNOB_ON_RAD = 1.1  # LIBERO's stove is on from 0.5 rad (of 2.1): twist to well inside that
DOOR_PUSH_AT = 0.7  # of the door's width out from the hinge: leverage, and clear of its edge
DOOR_STANDOFF_M = 0.03  # the grip site behind the door's face while pushing it
DOOR_OVERSHOOT_RAD = 0.15  # push past shut: the door stops at its limit
# The finger pads reach from 1.2 cm behind the grip site to 0.5 cm past it: the grip site this far
# past the handle bar's middle centres them on the bar (the fingertips stay clear of the drawer's face).
PADS_PAST_GRIP_M = 0.005
HANDLE_STANDOFF_M = 0.06  # in front of a drawer's handle before moving the open fingers onto it
DRAWER_OVERPULL_M = 0.03  # pull past the open limit (the drawer stops there): a slow hand lags its goal


@dataclass(frozen=True)
class Rollout:
    """Per-step record; frame t shows the state before action t is applied."""

    states: np.ndarray  # (n, 8) as the rollout adapter observes them (atomvla.train.sim.libero)
    actions: np.ndarray  # (n, 7) OSC deltas xyz, rpy, gripper (-1 open, +1 close)
    sim_states: np.ndarray  # (n, sim_dim) flattened MuJoCo state, to render the kept frames
    subtasks: tuple[Subtask, ...]


class StepFailed(RuntimeError):
    """The scripted policy did not achieve a step (grasp, placement, drawer); the episode is discarded."""


class Recorder:
    """Steps the scene and keeps the observation, action, simulator state and subtask of every step.

    With an `operator` (benchmarks/humanlike_gt's simulated teleoperator) each scripted action goes
    through it: it slows and shakes the translation and the grip and inserts its own steps (pauses,
    re-grasps, corrections), which belong to the subtask already running; the script's own step
    carries the subtask the script is in (`phase`). A subtask starts at the script's first step of it.
    """

    def __init__(self, scene: Scene, operator: Operator | None = None) -> None:
        self.scene = scene
        self.operator = operator
        self.phase = 0  # the subtask the script is executing, set by `run`
        self.states: list[np.ndarray] = []
        self.actions: list[np.ndarray] = []
        self.sim_states: list[np.ndarray] = []
        self.labels: list[int] = []

    @property
    def eef_pos(self) -> np.ndarray:
        return self.scene.eef_pos

    @property
    def eef_rot(self) -> np.ndarray:
        return self.scene.eef_rot

    @property
    def n_frames(self) -> int:
        return len(self.actions)

    def step(self, action_7: np.ndarray) -> None:
        if self.operator is None:
            self._record(action_7, self.phase)
            return
        running = max(self.labels, default=0)
        while True:  # the operator's own steps first, then the script's
            fingers = self.scene.gripper_qpos
            opening = float(fingers[0] - fingers[1]) / FINGERS_OPEN_M
            xyz_grip, own = self.operator.act(np.r_[action_7[:3], action_7[6]], self.phase, running, opening)
            turn = action_7[3:6] if own else np.zeros(3)
            self._record(np.r_[xyz_grip[:3], turn, xyz_grip[3]], self.phase if own else running)
            if own:
                return

    def _record(self, action_7: np.ndarray, label: int) -> None:
        s = self.scene
        self.states.append(s.state(self.states[-1] if self.states else None))
        self.sim_states.append(s.env.sim.get_state().flatten())
        self.actions.append(np.asarray(action_7, dtype=np.float64))
        self.labels.append(label)
        s.step(action_7)


def _reach(rec: Recorder, goal: np.ndarray, rot: np.ndarray, speed_m_s: float, grip: float, minimum: int) -> None:
    distance = float(np.linalg.norm(goal - rec.eef_pos))
    execute(rec, Motion(goal, rot, steps_for(distance, speed_m_s, FPS, minimum), grip))


def _pick(rec: Recorder, move: Move, rot: np.ndarray, pace: float) -> np.ndarray:
    """Approach and grasp; returns the gripper orientation (3, 3) used, for the place to keep."""
    box = rec.scene.box(move.obj)
    if min(box.size[:2]) > MAX_GRIP_SPAN_M:
        # Too wide for the open fingers (a bowl): pinch the wall of its rim nearest the robot's
        # right, which runs along x, so the fingers closing along world y straddle it.
        grasp = np.array([box.center[0], box.lo[1] + RIM_IN_M, box.hi[2] - RIM_DEPTH_M])
    else:
        # LIBERO's top-down gripper closes along world y; turn it a quarter when the object is
        # narrower along x (a can lying along y, a box turned sideways).
        if box.size[0] < box.size[1]:
            rot = QUARTER_TURN @ rot
        # Open, the Panda's fingers clear a soup can by about a millimetre a side: aim at the centre.
        # The fingers reach just past the hand: grip a tall object right below its top without the
        # hand touching it, and a flat one as low as the fingertips clear the surface it rests on.
        grasp = np.array([*box.center[:2], max(box.hi[2] - HAND_ABOVE_GRIP_M, box.lo[2] + FINGERTIP_BELOW_GRIP_M)])
    above = np.array([*grasp[:2], box.hi[2] + APPROACH_CLEARANCE_M])
    _reach(rec, above, rot, 0.22 * pace, GRIP_OPEN, 15)
    _reach(rec, grasp, rot, 0.12 * pace, GRIP_OPEN, 10)
    execute(rec, Motion(grasp, rot, GRIP_STEPS, GRIP_CLOSED))
    return rot


def _lift(rec: Recorder, move: Move, rot: np.ndarray, pace: float) -> None:
    """Raise the grasped object; it must rise with the hand, or the grasp failed."""
    start_z = rec.scene.position(move.obj)[2]
    _reach(rec, rec.eef_pos + [0, 0, LIFT_M], rot, 0.15 * pace, GRIP_CLOSED, 10)
    rise = rec.scene.position(move.obj)[2] - start_z
    if rise < MIN_LIFT_M:
        raise StepFailed(f"{move.obj} rose {rise * 100:.1f} cm after the lift")


def _place(rec: Recorder, move: Move, rot: np.ndarray, rng: np.random.Generator, pace: float) -> None:
    scene = rec.scene
    held, target = scene.box(move.obj), scene.box(move.target)
    eef = rec.eef_pos
    # Aim the held object's centre (not the gripper's) at the receptacle's centre.
    offset_xy = held.center[:2] - eef[:2]
    bottom_below_eef = eef[2] - held.lo[2]
    release = np.array(
        [
            *(target.center[:2] - offset_xy + rng.normal(0, 0.005, 2)),
            target.hi[2] + RELEASE_ABOVE_TOP_M[move.relation] + bottom_below_eef,
        ]
    )
    above = np.array([*release[:2], max(release[2] + APPROACH_CLEARANCE_M, eef[2])])
    _reach(rec, above, rot, 0.22 * pace, GRIP_CLOSED, 15)
    _reach(rec, release, rot, 0.12 * pace, GRIP_CLOSED, 8)
    execute(rec, Motion(release, rot, GRIP_STEPS, GRIP_OPEN))
    _reach(rec, release + [0, 0, RETREAT_M], rot, 0.15 * pace, GRIP_OPEN, 10)


def _close_drawer(rec: Recorder, step: CloseDrawer, rot: np.ndarray, pace: float) -> None:
    """Push the drawer's front-most part (its handle) along the slide axis until it is shut."""
    qpos, axis, limits = rec.scene.slide_joint(step.joint)
    closed = float(limits[1])
    push = axis * np.sign(closed - qpos)  # world direction that closes the drawer
    handle = max(rec.scene.geom_boxes(step.drawer), key=lambda b: float(-push @ b.center))
    # Turned a quarter about the vertical, the fingers span the handle and the hand stays in
    # front of the cabinet's face; the push starts 2 cm before contact and ends at the limit.
    turned = QUARTER_TURN @ rot
    depth = float(np.abs(push) @ handle.size) / 2 + FINGER_HALF_THICKNESS_M
    contact = handle.center - push * depth
    start = contact - push * 0.02
    travel = closed - qpos + 0.02
    _reach(rec, start + [0, 0, APPROACH_CLEARANCE_M], turned, 0.22 * pace, GRIP_CLOSED, 20)
    _reach(rec, start, turned, 0.12 * pace, GRIP_CLOSED, 10)
    _reach(rec, contact + push * travel, turned, 0.10 * pace, GRIP_CLOSED, 15)
    _reach(rec, rec.eef_pos - push * RETREAT_M + [0, 0, 0.05], turned, 0.15 * pace, GRIP_CLOSED, 10)


def _open_drawer(rec: Recorder, step: OpenDrawer, rot: np.ndarray, pace: float) -> None:
    """Side grasp: turn the hand to point into the drawer with the fingers closing vertically, pinch
    the handle's bar top and bottom, pull it along the slide to the open limit, let go, back off
    and turn top-down again while rising."""
    qpos, axis, limits = rec.scene.slide_joint(step.joint)
    pull = axis * np.sign(limits[0] - qpos)  # world direction that opens the drawer
    handle = max(rec.scene.geom_boxes(step.drawer), key=lambda b: float(pull @ b.center))
    if abs(pull[1]) < abs(pull[0]):  # the top-down fingers close along world y: along the pull first
        rot = QUARTER_TURN @ rot
    # Tip the fingers from pointing down to pointing along -pull, about the horizontal across it: the
    # closing axis (along the pull) turns vertical.
    across = np.cross([0.0, 0.0, 1.0], pull)
    side = axis_angle_matrix(across / np.linalg.norm(across) * np.pi / 2) @ rot
    grasp = handle.center - pull * PADS_PAST_GRIP_M
    start = grasp + pull * HANDLE_STANDOFF_M
    travel = abs(qpos - limits[0]) + DRAWER_OVERPULL_M
    _reach(rec, start + [0, 0, APPROACH_CLEARANCE_M], side, 0.22 * pace, GRIP_OPEN, 30)
    _reach(rec, start, side, 0.12 * pace, GRIP_OPEN, 10)
    _reach(rec, grasp, side, 0.08 * pace, GRIP_OPEN, 10)
    execute(rec, Motion(grasp, side, GRIP_STEPS, GRIP_CLOSED))
    _reach(rec, grasp + pull * travel, side, 0.10 * pace, GRIP_CLOSED, 20)
    # Let go while backing off along the pull: a hand that wavers into the drawer as the fingers
    # open pushes it partly shut again.
    execute(rec, Motion(rec.eef_pos + pull * RETREAT_M / 2, side, GRIP_STEPS, GRIP_OPEN))
    _reach(rec, rec.eef_pos + [0, 0, RETREAT_M], rot, 0.15 * pace, GRIP_OPEN, 20)


def _turn_on(rec: Recorder, step: TurnOn, rot: np.ndarray, pace: float) -> None:
    """Pinch the knob's ridge across its narrow side, twist it about its axis to KNOB_ON_RAD, let go."""
    scene = rec.scene
    qpos, anchor, _, _ = scene.hinge_joint(step.joint)
    knob = scene.box(step.knob)
    # The ridge: the knob's parts standing above the dial's middle height.
    ridge = [b for b in scene.geom_boxes(step.knob) if b.hi[2] > knob.center[2]]
    size = np.max([b.hi for b in ridge], axis=0) - np.min([b.lo for b in ridge], axis=0)
    if size[0] < size[1]:  # the fingers close along world y: turn them across a ridge along y
        rot = QUARTER_TURN @ rot
    grasp = np.array([*anchor[:2], knob.hi[2] - KNOB_GRIP_BELOW_TOP_M])
    _reach(rec, grasp + [0, 0, APPROACH_CLEARANCE_M], rot, 0.22 * pace, GRIP_OPEN, 15)
    _reach(rec, grasp, rot, 0.12 * pace, GRIP_OPEN, 10)
    execute(rec, Motion(grasp, rot, GRIP_STEPS, GRIP_CLOSED))
    twisted = axis_angle_matrix(np.array([0.0, 0.0, KNOB_ON_RAD - qpos])) @ rot
    execute(rec, Motion(grasp, twisted, round(30 / pace), GRIP_CLOSED))
    execute(rec, Motion(grasp, twisted, GRIP_STEPS, GRIP_OPEN))
    _reach(rec, grasp + [0, 0, RETREAT_M], twisted, 0.15 * pace, GRIP_OPEN, 10)


def _close_door(rec: Recorder, step: CloseDoor, rot: np.ndarray, pace: float) -> None:
    """Push the open door's outer face round its hinge to shut, the closed fingers kept on an arc
    DOOR_PUSH_AT of its width out, then rise."""
    scene = rec.scene
    qpos, anchor, axis, limits = scene.hinge_joint(step.joint)
    closed = float(limits[np.argmin(np.abs(limits))])
    sign = float(np.sign(closed - qpos))  # the door closes turning this way about the (vertical) axis
    door = scene.box(step.door)
    radial = (door.center - anchor)[:2]
    radial /= np.linalg.norm(radial)
    corners = np.array([[x, y] for b in scene.geom_boxes(step.door) for x in (b.lo[0], b.hi[0]) for y in (b.lo[1], b.hi[1])])
    reach = DOOR_PUSH_AT * float(np.max(np.linalg.norm(corners - anchor[:2], axis=1)))
    height = door.center[2]

    def at(angle: float, standoff: float) -> np.ndarray:
        """The grip site behind the door's face when the door is turned `angle` from now."""
        c, s = np.cos(angle * axis[2]), np.sin(angle * axis[2])
        out = np.array([c * radial[0] - s * radial[1], s * radial[0] + c * radial[1]])
        moving = sign * axis[2] * np.array([-out[1], out[0]])  # where that point of the door moves as it closes
        return np.array([*(anchor[:2] + out * reach - moving * standoff), height])

    turned = QUARTER_TURN @ rot
    start = at(0.0, DOOR_STANDOFF_M + 0.02)
    _reach(rec, start + [0, 0, APPROACH_CLEARANCE_M], turned, 0.22 * pace, GRIP_CLOSED, 20)
    _reach(rec, start, turned, 0.12 * pace, GRIP_CLOSED, 10)
    sweep = closed - qpos + sign * DOOR_OVERSHOOT_RAD
    follow(rec, lambda s: at(sweep * s, DOOR_STANDOFF_M), turned, round(40 / pace), GRIP_CLOSED)
    _reach(rec, rec.eef_pos + [0, 0, RETREAT_M], turned, 0.15 * pace, GRIP_CLOSED, 10)


def run(scene: Scene, tmpl: Template, init_state: np.ndarray, seed: int, operator: Operator | None = None) -> Rollout:
    """Execute every step of `tmpl` from `init_state` (through `operator` if given: see Recorder);
    raises StepFailed when one fails."""
    rng = np.random.default_rng(seed)
    scene.reset(init_state)
    rec = Recorder(scene, operator)
    rot = scene.eef_rot  # LIBERO starts top-down; keep that orientation for grasps
    pace = float(rng.uniform(0.85, 1.15))  # demonstrators differ in speed
    plan = subtasks_of(tmpl)  # (instruction, skill) of each subtask, in order
    phases = itertools.count()  # the subtask each step begins: rec.phase = next(phases)

    # The goal each step leaves, by what it is about (the moved object, the drawer or appliance): a
    # later step on the same thing (a drawer opened, then closed) replaces it.
    goals: dict[str, tuple[str, ...]] = {}
    for step in tmpl.steps:
        if isinstance(step, Move):
            rec.phase = next(phases)
            grasp_rot = _pick(rec, step, rot, pace)
            rec.phase = next(phases)
            _lift(rec, step, grasp_rot, pace)
            _place(rec, step, grasp_rot, rng, pace)
            goal: tuple[str, ...] = (step.relation, step.obj, step.region)
        elif isinstance(step, CloseDrawer):
            rec.phase = next(phases)
            _close_drawer(rec, step, rot, pace)
            goal = ("close", step.region)
        elif isinstance(step, OpenDrawer):
            rec.phase = next(phases)
            _open_drawer(rec, step, rot, pace)
            goal = ("open", step.region)
        elif isinstance(step, CloseDoor):
            rec.phase = next(phases)
            _close_door(rec, step, rot, pace)
            goal = ("close", step.appliance)
        else:
            rec.phase = next(phases)
            _turn_on(rec, step, rot, pace)
            goal = ("turnon", step.appliance)
        if not scene.holds(goal):
            raise StepFailed(f"{' '.join(goal)} does not hold after its step")
        goals[goal[1]] = goal
    for goal in goals.values():  # a later step may have undone an earlier one
        if not scene.holds(goal):
            raise StepFailed(f"{' '.join(goal)} no longer holds at the end")
    # Subtask i starts at the first frame labelled i (labels never go back: see Recorder).
    first = [rec.labels.index(i) for i in range(len(plan))]
    ends = [*first[1:], rec.n_frames]
    subtasks = tuple(
        Subtask(start_frame=start, end_frame=end, instruction=instruction, skill=skill)
        for start, end, (instruction, skill) in zip(first, ends, plan)
    )
    if problems := check_subtasks(subtasks, rec.n_frames):
        raise ValueError(f"{tmpl.name} seed {seed}: bad ground truth: {'; '.join(problems)}")
    return Rollout(
        states=np.asarray(rec.states),
        actions=np.asarray(rec.actions),
        sim_states=np.asarray(rec.sim_states),
        subtasks=subtasks,
    )
