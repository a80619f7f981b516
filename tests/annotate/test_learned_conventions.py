"""The truth conventions the learned backend is evaluated on: the two-arm handover whose giving arm's
release is its own subtask, and how fine-tuning reads a count convention from accepted episodes."""

import numpy as np

from atomvla.annotate.learned.train import plan_convention
from atomvla.curate.exports.lerobot_v3 import EpisodeRecording
from atomvla.schemas import Subtask, check_subtasks
from benchmarks.aloha_gt.generate import NAMES, release_convention


def test_release_convention_ends_the_transfer_when_the_receiving_gripper_has_closed():
    n = 120
    action = np.zeros((n, len(NAMES)), np.float32)
    left = NAMES.index("left_gripper")
    action[:, left] = 1.0  # open
    action[80:, left] = np.linspace(1.0, 0.0, 10).tolist() + [0.0] * (n - 90)  # closes over 80..89
    recording = EpisodeRecording(task="pick up the cube with the right arm and transfer it to the left arm", frames={},
                                 arrays={"observation.state": action, "action": action})
    truth = (Subtask(start_frame=0, end_frame=40, instruction="pick up the cube", skill="pick"),
             Subtask(start_frame=40, end_frame=n, instruction="transfer the cube to the left arm", skill="place"))
    released = release_convention(recording, truth)
    assert [(s.start_frame, s.end_frame) for s in released] == [(0, 40), (40, 89), (89, n)]
    assert released[-1].instruction == "release the cube with the right arm"
    assert not check_subtasks(released, n)
    # the instruction plans 2 steps: a team accepting these has the plan's count + 1
    assert plan_convention([recording.task] * 2, [released, released]) == (True, 1)
