"""The heuristic backend on scripted episodes with known phases, and on inputs it cannot use."""

from typing import ClassVar

import numpy as np
import pytest
from synthetic import ACTION_NAMES, FPS, Phase, meta, pick_place, scripted, write_video

from atomvla.annotate.backends import BACKENDS, Backend, BackendConfig, BackendError, get_backend
from atomvla.annotate.backends.heuristic import ARRIVAL, HeuristicBackend, HeuristicConfig, decompose, motion_scores
from atomvla.annotate.kinematics import KinematicsError, extract, roles_from_names
from atomvla.annotate.segmentation import change_scores, contact_scores, grasp_boundaries, gripper_events
from atomvla.curate.episode import Episode
from atomvla.curate.sources import open_source

TOLERANCE = 2  # frames

BOTH = pytest.mark.parametrize("signals", ["action+state", "state"], ids=["command", "measured"])


def segment(task, phases, signals="action+state", names=None, config=None):
    config = config or HeuristicConfig()
    state, action, truth = scripted(phases)
    arrays = {"observation.state": state, "action": action} if signals == "action+state" else {"observation.state": state}
    m = meta(task, len(state), names)
    subtasks, confidence = decompose(extract(m, arrays, config.ee_dims, config.gripper_dim), task, len(state), FPS, config)
    assert 0.0 <= confidence <= 1.0
    return subtasks, truth


def assert_boundaries(subtasks, truth):
    predicted = [s.start_frame for s in subtasks[1:]]
    assert len(predicted) == len(truth), (predicted, truth)
    assert all(abs(p - t) <= TOLERANCE for p, t in zip(predicted, truth)), (predicted, truth)


@BOTH
def test_pick_and_place_splits_after_the_grasp(signals):
    subtasks, truth = segment(
        "pick up the red block and place it on the green plate", pick_place((0.1, 0.6), (-0.1, 0.7)), signals
    )
    assert_boundaries(subtasks, truth)
    assert [(s.skill, s.instruction) for s in subtasks] == [
        ("pick", "pick up the red block"),
        ("place", "place the red block on the green plate"),
    ]


@BOTH
def test_two_pick_and_places_make_four_subtasks(signals):
    phases = pick_place((0.1, 0.6), (-0.1, 0.7)) + pick_place((0.15, 0.45), (-0.1, 0.4), first=False)
    subtasks, truth = segment("put the bowl on the plate and the mug in the basket", phases, signals)
    assert_boundaries(subtasks, truth)
    assert [s.skill for s in subtasks] == ["pick", "place", "pick", "place"]
    assert [s.instruction for s in subtasks][2:] == ["pick up the mug", "place the mug in the basket"]


@BOTH
def test_push_without_gripper_events_splits_where_the_push_starts(signals):
    # Reach behind the block, then push it along +x; the gripper never moves.
    phases = [Phase((0.0, 0.62, 0.05, 0.0)), Phase((0.25, 0.62, 0.05, 0.0), subtask_start=True)]
    subtasks, truth = segment("push the block to the goal", phases, signals)
    assert_boundaries(subtasks, truth)
    assert [s.skill for s in subtasks] == ["reach", "push"]


@BOTH
def test_rotation_phase_is_found_from_the_rotation_dims(signals):
    # Reach the faucet, then turn in place: only the yaw moves after the boundary.
    phases = [Phase((0.05, 0.6, 0.1, 0.0)), Phase((0.05, 0.6, 0.1, 1.5), subtask_start=True)]
    subtasks, truth = segment("turn the faucet", phases, signals)
    assert_boundaries(subtasks, truth)
    assert [(s.skill, s.instruction) for s in subtasks] == [("reach", "reach the faucet"), ("turn", "turn the faucet")]


def test_approach_ending_in_a_grasp_is_named_a_grasp():
    # "sweep" acts in place, but the robot grasps first: the approach becomes "grasp the cube".
    phases = pick_place((0.1, 0.6), (-0.1, 0.7))[:5]
    subtasks, truth = segment("sweep the cube into the hole", phases)
    assert_boundaries(subtasks, truth)
    assert [(s.skill, s.instruction) for s in subtasks] == [
        ("pick", "grasp the cube"), ("push", "sweep the cube into the hole"),
    ]


def test_without_a_plan_the_kinematics_set_the_count():
    subtasks, truth = segment("do the thing", pick_place((0.1, 0.6), (-0.1, 0.7)))
    assert 2 <= len(subtasks) <= 5
    [pick] = [s for s in subtasks if s.skill == "pick"]  # the segment that ends with the transport
    assert abs(pick.end_frame - truth[0]) <= TOLERANCE


def test_dims_given_explicitly_replace_unreadable_names():
    names = {"observation.state": [f"s{i}" for i in range(7)], "action": ACTION_NAMES}
    config = HeuristicConfig(ee_dims=(0, 1, 2), gripper_dim=6)
    phases = pick_place((0.1, 0.6), (-0.1, 0.7))
    subtasks, truth = segment("pick up the block and place it in the bin", phases, "state", names, config)
    assert_boundaries(subtasks, truth)
    with pytest.raises(KinematicsError, match="dimension 9 is out of range: observation.state has 7 dims"):
        segment("pick up the block", phases, "state", names, HeuristicConfig(ee_dims=(0, 1, 9)))


def test_names_are_read_across_conventions():
    r = roles_from_names(("hand_x", "hand_y", "hand_z", "gripper"))
    assert (r.position, r.rotation, r.gripper) == ((0, 1, 2), (), (3,))
    r = roles_from_names(("ee_x", "ee_y", "ee_z", "ee_roll", "ee_pitch", "ee_yaw", "gripper_0", "gripper_1"))
    assert (r.position, r.rotation, r.gripper) == ((0, 1, 2), (3, 4, 5), (6, 7))
    r = roles_from_names(("ee_x", "ee_y", "ee_z", "ee_ax", "ee_ay", "ee_az", "gripper_0", "gripper_1"))  # LIBERO HDF5
    assert (r.position, r.rotation, r.gripper) == ((0, 1, 2), (3, 4, 5), (6, 7))
    r = roles_from_names(("eef_pos_x", "eef_pos_y", "eef_pos_z", "ee_qx", "ee_qy", "ee_qz", "ee_qw"))
    assert (r.position, r.rotation, r.gripper) == ((0, 1, 2), (3, 4, 5, 6), ())
    r = roles_from_names(("dx", "dy", "dz", "grip"))
    assert (r.position, r.gripper) == ((0, 1, 2), (3,))


def test_absolute_position_actions_are_not_taken_for_commands():
    state, action, _ = scripted([Phase((0.1, 0.6, 0.1, 0.0)), Phase((0.3, 0.6, 0.1, 0.0))])
    targets = np.concatenate([state[1:], state[-1:]])  # the next pose: an absolute target action
    kin = extract(meta("reach the cup", len(state)), {"observation.state": state, "action": targets})
    assert kin.motion_source.startswith("state")
    kin = extract(meta("reach the cup", len(state)), {"observation.state": state, "action": action})
    assert kin.motion_source.startswith("action")


def test_bad_arrays_are_named():
    m = meta("open the drawer", 50)
    with pytest.raises(KinematicsError, match=r"no `action` or `observation.state` array \(arrays: none\)"):
        extract(m, {})
    with pytest.raises(KinematicsError, match=r"action has shape \(40, 7\); expected \(50, d\)"):
        extract(m, {"action": np.zeros((40, 7))})
    short = meta("open the drawer", 6)
    with pytest.raises(KinematicsError, match="6 frames is too short"):
        decompose(extract(short, {"action": np.zeros((6, 7))}), short.task, 6, FPS, HeuristicConfig())


class VideoOnly(Backend):
    """A backend that reads only video, to check that the heuristic's error points to it."""

    name: ClassVar[str] = "video-only"
    Config: ClassVar[type[BackendConfig]] = BackendConfig

    @classmethod
    def can_handle(cls, meta):
        return bool(meta.cameras)

    def segment(self, episode):
        raise NotImplementedError


def test_episode_without_kinematics_names_the_backends_that_can(tmp_path, monkeypatch):
    write_video(tmp_path / "episode_0.mp4", 30)
    (tmp_path / "task.txt").write_text("open the drawer")
    [m] = list(open_source(str(tmp_path)).scan())
    for name in [n for n in BACKENDS if n != HeuristicBackend.name]:  # other backends may read video
        monkeypatch.delitem(BACKENDS, name)
    with pytest.raises(BackendError, match="no other registered backend can handle it"):
        HeuristicBackend().propose(Episode(m))
    monkeypatch.setitem(BACKENDS, VideoOnly.name, VideoOnly)
    with pytest.raises(BackendError) as err:
        HeuristicBackend().propose(Episode(m))
    assert str(err.value).startswith(f"episode {m.episode_id}: no `action` or `observation.state` array")
    assert "backends that can handle it: video-only" in str(err.value)


def test_registry_lists_known_backends_for_an_unknown_name():
    assert get_backend("heuristic") is HeuristicBackend
    with pytest.raises(KeyError, match=r"unknown backend 'gpt9' \(known: .*heuristic"):
        get_backend("gpt9")


def test_settings_hash_follows_the_settings():
    assert HeuristicBackend().settings_hash == HeuristicBackend(HeuristicConfig()).settings_hash
    assert HeuristicBackend().settings_hash != HeuristicBackend(HeuristicConfig(window_s=0.5)).settings_hash


def test_gripper_events_call_the_first_change_closing():
    command = np.r_[np.full(20, -1.0), np.full(20, 1.0), np.full(20, -1.0)]  # robosuite: +1 closes
    assert gripper_events(command, 5) == [(20, "close"), (40, "open")]
    opening = 1 - 0.7 * np.clip((np.arange(60) - 20) / 10, 0, 1)  # Meta-World: the opening shrinks
    assert gripper_events(opening, 5) == [(21, "close")]  # where the closing sets off
    jitter = 0.99 + 0.005 * np.sin(np.arange(60))
    assert gripper_events(jitter, 5) == []


def test_motion_just_before_the_gripper_command_still_ends_the_grasp():
    score = np.zeros(60)
    score[[20, 40]] = [1.0, 0.8]
    speed = np.zeros(60)
    speed[17:24] = [0.0, 0.1, 0.5, 1.0, 1.0, 1.0, 1.0]  # accelerates from rest; peak score mid-ramp
    speed[40:] = 1.0  # a step from rest at 40: the step itself starts the motion
    [c] = grasp_boundaries(score, [20, 40], speed, [(21, "close")], w=6, bonus=2.0)
    assert (c.frame, c.kind, c.score) == (18, "close", 3.0)  # the frame after the last one at rest
    [c] = grasp_boundaries(score, [20, 40], speed, [(24, "close")], w=6, bonus=2.0)
    assert c.frame == 40  # 20 lies before the window: the transport after this grasp starts at 40


@BOTH
def test_an_approach_from_above_ends_where_the_sideways_work_starts(signals):
    # Up and over to above the handle, down onto it, then slide it along +x: the sharp turn at the
    # top of the approach is not the boundary; the change from descending to sliding is.
    phases = [
        Phase((-0.1, 0.55, 0.3, 0.0)),
        Phase((-0.1, 0.55, 0.08, 0.0)),
        Phase((0.15, 0.55, 0.08, 0.0), subtask_start=True),
    ]
    subtasks, truth = segment("open the window", phases, signals)
    assert_boundaries(subtasks, truth)


@BOTH
def test_tool_use_is_a_pick_then_the_work_from_the_first_motion_after_the_grasp(signals):
    # Grasp the hammer from above, then raise it and swing it sideways into the nail: raising the
    # tool already belongs to the work it serves, as lifting an object belongs to its place.
    phases = [
        Phase((0.1, 0.6, 0.15, 0.0)),
        Phase((0.1, 0.6, 0.03, 0.0)),
        Phase((0.1, 0.6, 0.03, 0.0), grip=1.0, hold=10),
        Phase((0.1, 0.6, 0.12, 0.0), grip=1.0, subtask_start=True),
        Phase((0.1, 0.8, 0.12, 0.0), grip=1.0),
    ]
    subtasks, truth = segment("hammer the nail in", phases, signals)
    assert_boundaries(subtasks, truth)
    assert [(s.skill, s.instruction) for s in subtasks] == [("pick", "pick up the hammer"), ("push", "hammer the nail in")]


def test_motion_scores_are_computed_once_per_kinematics_and_never_shared_with_a_subset():
    """The learned features read the scores decompose kept on the Kinematics; a subset of the frames
    (decompose cuts hesitations out) must get scores of its own frames, not the whole episode's."""
    state, action, _ = scripted(pick_place((0.1, 0.6), (-0.1, 0.7)))
    kin = extract(meta("pick up the block", len(state)), {"observation.state": state, "action": action})
    change, contact = motion_scores(kin, 6)
    assert motion_scores(kin, 6)[0] is change  # kept, not recomputed
    np.testing.assert_array_equal(change, change_scores(kin.motion, kin.speed, 6, ARRIVAL))
    np.testing.assert_array_equal(contact, contact_scores(kin.motion, kin.vertical, 6))
    part = kin.take(np.arange(0, len(state), 2))
    np.testing.assert_array_equal(motion_scores(part, 6)[0], change_scores(part.motion, part.speed, 6, ARRIVAL))
    assert len(motion_scores(part, 6)[0]) == len(part.motion) < len(change)
