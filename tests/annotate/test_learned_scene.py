"""Scene channels of the learned model: state that is not the robot's (leftover state dims, LeRobot's
environment state) read as scene points; zeros without it; bad scene input named."""

import numpy as np
import pytest
from synthetic import ACTION_NAMES, STATE_NAMES, meta, pick_place, scripted

from atomvla.annotate.backends.base import SetupError
from atomvla.annotate.backends.learned import LearnedBackend, LearnedConfig
from atomvla.annotate.kinematics import KinematicsError
from atomvla.annotate.learned import learned_backend
from atomvla.annotate.learned.data import record_sample, with_sceneless_copies, without_scene
from atomvla.annotate.learned.features import (
    ENVIRONMENT_STATE, KINEMATIC_CHANNELS, SCENE_CHANNELS, episode_features, layout, robot_state_dims, scene_groups,
)
from atomvla.annotate.learned.model import LearnedModel, ModelSpec
from atomvla.curate.episode import Episode

TASK = "pick up the red block and place it in the bin"
CHANNELS = layout(events=True, pixels=False)
SCENE = slice(CHANNELS.index(SCENE_CHANNELS[0]), CHANNELS.index(SCENE_CHANNELS[-1]) + 1)
ROBOT = slice(0, len(KINEMATIC_CHANNELS))


def pick_and_place() -> tuple[np.ndarray, np.ndarray, int, np.ndarray, np.ndarray]:
    """state (n, 7), action, the grasp frame, and a block that rests until the grasp and then rides
    with the hand (n, 3), and a still goal (n, 3)."""
    state, action, truth = scripted(pick_place((0.05, 0.5), (0.3, 0.6)), seed=0)
    grasp = truth[0]
    block = np.repeat(state[grasp : grasp + 1, :3], len(state), axis=0)
    block[grasp:] = state[grasp:, :3]
    goal = np.tile([0.3, 0.6, 0.0], (len(state), 1))
    return state, action, grasp, block, goal


def features(state: np.ndarray, action: np.ndarray, names: list[str], extra: dict | None = None, extra_names=None):
    feature_names = {"observation.state": names, "action": ACTION_NAMES, **(extra_names or {})}
    m = meta(TASK, len(state), feature_names)
    return episode_features(m, {"observation.state": state, "action": action, **(extra or {})}, events=True)


def test_state_dims_no_arm_uses_are_the_scene():
    assert robot_state_dims([*STATE_NAMES, "block_x", "block_y", "block_z"]) == set(range(7))
    two_arms = ["left_waist", "left_gripper", "right_waist", "right_gripper", "cube_x", "cube_y", "cube_z"]
    assert robot_state_dims(two_arms) == {0, 1, 2, 3}  # joints of each arm (no end effector named)
    assert robot_state_dims(["q0", "q1", "q2"]) == {0, 1, 2}  # unnamed: joints, no scene
    assert scene_groups(["block_x", "block_y", "block_z", "door_angle", "lid_qx", "lid_qy", "lid_qz"]) == [
        [0, 1, 2], [3], [4], [5], [6]]


def test_a_block_carried_from_the_grasp_reads_as_scene_motion_from_there_and_a_still_goal_adds_nothing():
    state, action, grasp, block, goal = pick_and_place()
    names = [*STATE_NAMES, "block_x", "block_y", "block_z"]
    with_block = features(np.concatenate([state, block], 1), action, names)
    scene = dict(zip(SCENE_CHANNELS, with_block.x[:, SCENE].T))
    g = with_block.to_grid(grasp)
    assert (scene["scene"] == 1).all()
    assert scene["scene_moved"][: g - 1].max() < 1e-6 < scene["scene_moved"][-1]
    assert scene["scene_speed"][: g - 1].max() < 1e-6 and scene["scene_speed"][g + 2 :].max() > 0.5
    assert abs(int(np.argmax(scene["scene_onset"])) - g) <= 1
    assert scene["scene_near"][0] == pytest.approx(1.0) and scene["scene_near"][g] < 0.05  # the hand reached it
    # the goal never moves: motion channels unchanged; only the nearest point can change
    both = features(np.concatenate([state, block, goal], 1), action, [*names, "goal_x", "goal_y", "goal_z"])
    np.testing.assert_allclose(both.x[:, SCENE][:, :4], with_block.x[:, SCENE][:, :4], atol=1e-6)
    # the robot's channels do not depend on the scene
    np.testing.assert_allclose(both.x[:, ROBOT], with_block.x[:, ROBOT], atol=1e-6)


def test_the_environment_state_reads_like_leftover_state_dims():
    state, action, _, block, _ = pick_and_place()
    in_state = features(np.concatenate([state, block], 1), action, [*STATE_NAMES, "block_x", "block_y", "block_z"])
    in_env = features(state, action, STATE_NAMES, {ENVIRONMENT_STATE: block},
                      {ENVIRONMENT_STATE: ["block_x", "block_y", "block_z"]})
    np.testing.assert_allclose(in_env.x, in_state.x, atol=1e-6)


def test_an_episode_without_scene_state_gets_zeros_and_the_flag_off():
    state, action, _, block, _ = pick_and_place()
    without = features(state, action, STATE_NAMES)
    assert np.abs(without.x[:, SCENE]).max() == 0
    with_block = features(np.concatenate([state, block], 1), action, [*STATE_NAMES, "block_x", "block_y", "block_z"])
    np.testing.assert_allclose(without.x[:, ROBOT], with_block.x[:, ROBOT], atol=1e-6)


def test_a_record_copied_without_its_scene_keeps_the_robot_and_gives_the_same_robot_channels():
    state, action, grasp, block, _ = pick_and_place()
    n = len(state)
    record = {"source": "toy", "task": "t", "instruction": TASK, "fps": 20.0, "state": np.concatenate([state, block], 1),
              "action": action, "feature_names": {"observation.state": [*STATE_NAMES, "block_x", "block_y", "block_z"],
                                                  "action": ACTION_NAMES},
              "subtasks": [{"start_frame": 0, "end_frame": grasp, "instruction": "pick", "skill": "pick"},
                           {"start_frame": grasp, "end_frame": n, "instruction": "place", "skill": "place"}]}
    copy = without_scene(record)
    assert copy["feature_names"]["observation.state"] == STATE_NAMES and copy["state"].shape == (n, 7)
    assert without_scene(copy) is None
    assert len(with_sceneless_copies([record, copy])) == 3
    a, b = record_sample(record, CHANNELS), record_sample(copy, CHANNELS)
    np.testing.assert_allclose(a.features.x[:, ROBOT], b.features.x[:, ROBOT], atol=1e-6)
    assert b.features.x[:, SCENE].max() == 0 and a.boundaries == b.boundaries


def _episode(extra: dict, extra_names: dict) -> Episode:
    state, action, *_ = pick_and_place()
    m = meta(TASK, len(state), {"observation.state": STATE_NAMES, "action": ACTION_NAMES, **extra_names})
    ep = Episode(m.model_copy(update={"episode_id": "synthetic/7"}))
    ep.__dict__["_arrays"] = {"observation.state": state, "action": action, **extra}
    return ep


def test_a_scene_of_the_wrong_length_or_with_nan_is_named_and_the_backend_falls_back_to_the_heuristic():
    state, *_ = pick_and_place()
    short = _episode({ENVIRONMENT_STATE: np.zeros((len(state) - 5, 3))}, {})
    nan = np.zeros((len(state), 2))
    nan[10, 1] = np.nan
    broken = _episode({ENVIRONMENT_STATE: nan}, {ENVIRONMENT_STATE: ["lid_angle", "knob_angle"]})
    with pytest.raises(KinematicsError, match=rf"synthetic/7: {ENVIRONMENT_STATE} has {len(state) - 5} frames; the episode has {len(state)}"):
        episode_features(short.meta, short.arrays, events=True)
    with pytest.raises(KinematicsError, match="synthetic/7: scene state knob_angle has NaN or inf values"):
        episode_features(broken.meta, broken.arrays, events=True)
    backend = learned_backend(LearnedModel.new(ModelSpec(CHANNELS, hidden=8, layers=2, stages=1)))
    for ep, why in ((short, "frames; the episode has"), (broken, "NaN or inf")):
        dec = backend.propose(ep)
        assert dec.provenance.model == "heuristic (fallback)" and why in dec.note and len(dec.subtasks) == 2


def test_weights_of_the_layout_before_scene_channels_are_refused_in_one_line(tmp_path):
    old = tuple(c for c in CHANNELS if c not in SCENE_CHANNELS)
    path = tmp_path / "old.safetensors"
    LearnedModel.new(ModelSpec(old, hidden=8, layers=2, stages=1)).save(path)
    with pytest.raises(SetupError, match="weights for feature layout .*; this version computes .*scene,scene_speed") as err:
        LearnedBackend(LearnedConfig(weights=str(path))).prepare()
    assert "\n" not in str(err.value)
