"""The learned backend: a tiny network fitted on scripted episodes, its weights file, and the inputs
it must refuse or fall back on."""

import numpy as np
import pytest
import torch
from rich.console import Console
from synthetic import ACTION_NAMES, STATE_NAMES, meta, pick_place, scripted

from atomvla.annotate.backends import BackendError, get_backend
from atomvla.annotate.backends.base import SetupError
from atomvla.annotate.backends.learned import LearnedBackend, LearnedConfig
from atomvla.annotate.jobs.progress import failures_table
from atomvla.annotate.learned import fine_tune, learned_backend, load_pretrained
from atomvla.annotate.learned.decode import best_boundaries, predicted_count
from atomvla.annotate.learned.features import episode_features, layout
from atomvla.annotate.learned.model import LearnedModel, ModelSpec
from atomvla.annotate.learned.train import TrainConfig
from atomvla.curate.episode import Episode
from atomvla.schemas import Subtask

TASK = "pick up the red block and place it in the bin"
TINY = ModelSpec(layout(events=True, pixels=False), hidden=16, layers=5, stages=1, dropout=0.0)
QUICK = TrainConfig(steps=60, batch=8, lr=3e-3)


def episode(seed: int, task: str = TASK, names: dict | None = None, skills=("pick", "place")) -> tuple[Episode, list[Subtask]]:
    """A scripted pick-and-place (object and goal vary with the seed) and its true subtasks."""
    rng = np.random.default_rng(seed)
    phases = pick_place((float(rng.uniform(-0.1, 0.1)), 0.5), (float(rng.uniform(0.2, 0.35)), 0.6))
    state, action, truth = scripted(phases, seed=seed)
    m = meta(task, len(state), names).model_copy(update={"episode_id": f"synthetic/{seed}", "episode_index": seed})
    ep = Episode(m)
    ep.__dict__["_arrays"] = {"observation.state": state, "action": action}  # in memory: nothing to load
    edges = [0, *truth, len(state)]
    return ep, [Subtask(start_frame=a, end_frame=b, instruction=k, skill=k) for a, b, k in zip(edges, edges[1:], skills)]


@pytest.fixture(scope="module")
def tuned() -> LearnedModel:
    pairs = [episode(s) for s in range(4)]
    return fine_tune(LearnedModel.new(TINY), [e for e, _ in pairs], [t for _, t in pairs], QUICK)


def test_fine_tuned_model_finds_held_out_boundaries_named_from_the_plan(tuned):
    backend = learned_backend(tuned)
    for seed in (10, 11):
        ep, truth = episode(seed)
        dec = backend.propose(ep)
        assert len(dec.subtasks) == 2
        assert abs(dec.subtasks[1].start_frame - truth[1].start_frame) <= 3, (dec.boundaries, truth)
        assert [s.instruction for s in dec.subtasks] == ["pick up the red block", "place the red block in the bin"]
        assert dec.provenance.backend == "learned" and dec.provenance.model.startswith("learned:")
        assert dec.note is None


def test_fine_tuning_leaves_the_base_model_unchanged_and_records_the_robot(tuned):
    base = LearnedModel.new(TINY)
    before = base.digest()
    ep, truth = episode(3)
    assert fine_tune(base, [ep], [truth], TrainConfig(steps=2, batch=1)).digest() != before
    assert base.digest() == before
    assert tuned.info.robot_layout == f"observation.state[{','.join(STATE_NAMES)}] action[{','.join(ACTION_NAMES)}]"
    assert tuned.info.count_from_plan


def test_weights_round_trip_through_bytes_and_files(tuned, tmp_path):
    again = LearnedModel.from_bytes(tuned.to_bytes())
    assert again.spec == tuned.spec and again.info == tuned.info
    ep, _ = episode(12)
    assert learned_backend(again).propose(ep).subtasks == learned_backend(tuned).propose(ep).subtasks
    path = tmp_path / "w.safetensors"
    tuned.save(path)
    backend = get_backend("learned")(LearnedConfig(weights=str(path)))
    backend.prepare()
    assert backend.propose(ep).subtasks == learned_backend(tuned).propose(ep).subtasks


def test_missing_or_damaged_weights_stop_before_any_work(tuned, tmp_path):
    with pytest.raises(SetupError, match=r"missing\.safetensors: no such file"):
        LearnedBackend(LearnedConfig(weights=str(tmp_path / "missing.safetensors"))).prepare()
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(tuned.to_bytes()[:500])
    with pytest.raises(SetupError, match="damaged weights") as err:
        LearnedBackend(LearnedConfig(weights=str(damaged))).prepare()
    assert "\n" not in str(err.value)


def test_weights_of_another_feature_layout_are_refused_naming_both(tuned, tmp_path):
    other = LearnedModel.new(ModelSpec(("speed", "motion", "something_else"), hidden=8, layers=2, stages=1))
    path = tmp_path / "other.safetensors"
    other.save(path)
    with pytest.raises(SetupError, match="weights for feature layout speed,motion,something_else; this version computes"):
        LearnedBackend(LearnedConfig(weights=str(path))).prepare()


def test_a_profile_from_another_robot_is_refused_naming_both_layouts(tuned):
    names = {"observation.state": ["hand_x", "hand_y", "hand_z", "a", "b", "c", "gripper"], "action": ["dx", "dy", "dz", "r", "p", "y", "grip"]}
    ep, _ = episode(13, names=names)
    with pytest.raises(BackendError) as err:
        learned_backend(tuned).propose(ep)
    message = str(err.value)
    assert "fine-tuned on observation.state[ee_x,ee_y,ee_z" in message and "this episode has observation.state[hand_x" in message
    # what to do instead: the learned backend itself can propose it
    assert "propose it without --profile" in message and "cannot handle it" not in message
    # and `atom-annotate run` prints both layouts, brackets and names as they are (not read as markup)
    console = Console(width=400, record=True)
    console.print(failures_table([(ep.meta.episode_id, message)]))
    printed = console.export_text()
    assert "observation.state[ee_x,ee_y,ee_z" in printed and "observation.state[hand_x,hand_y,hand_z" in printed


def test_an_episode_the_features_cannot_be_built_for_falls_back_to_the_heuristic_with_the_reason():
    pixel_model = LearnedModel.new(ModelSpec(layout(events=True, pixels=True), hidden=8, layers=2, stages=1))
    ep, _ = episode(14)  # no camera: the pixel channels cannot be had
    dec = learned_backend(pixel_model).propose(ep)
    assert dec.provenance.model == "heuristic (fallback)"
    assert "fell back to the heuristic" in dec.note and "no camera" in dec.note
    assert len(dec.subtasks) == 2


def test_the_count_comes_from_the_plan_else_from_the_model(tuned):
    ep, _ = episode(15, task="xyz")  # no plan
    dec = learned_backend(tuned).propose(ep)
    assert 2 <= len(dec.subtasks) <= 5
    prob = np.zeros(100)
    prob[[20, 21, 19]] = [1.0, 0.6, 0.6]
    prob[[60, 61, 59]] = [1.0, 0.6, 0.6]
    assert predicted_count(prob) == 3
    assert predicted_count(np.zeros(100)) == 2


def test_best_boundaries_keep_the_minimum_gap_and_the_count():
    prob = np.zeros(100)
    prob[[10, 12, 50, 80]] = [0.9, 0.8, 0.7, 0.95]
    assert best_boundaries(prob, 3, 5) == [10, 80]
    assert best_boundaries(prob, 4, 5) == [10, 50, 80]
    chosen = best_boundaries(prob, 5, 5)
    assert len(chosen) == 4 and all(b - a >= 5 for a, b in zip([0, *chosen], [*chosen, 100]))
    assert best_boundaries(prob, 5, 30) == []  # too short for 5 segments of 30


def test_the_packaged_weights_load_and_match_this_feature_layout():
    model = load_pretrained()
    assert model.spec.channels == layout(events=True, pixels=False)
    assert len(model.info.data_hash) == 64 and model.info.trained_on
    ep, _ = episode(16)
    LearnedBackend().prepare()
    assert len(LearnedBackend().propose(ep).subtasks) == 2


def test_an_episode_without_state_or_action_is_refused_with_the_reason(tmp_path):
    from synthetic import write_video

    from atomvla.curate.sources import open_source

    write_video(tmp_path / "episode_0.mp4", 30)
    (tmp_path / "task.txt").write_text("open the drawer")
    [m] = list(open_source(str(tmp_path)).scan())
    assert not LearnedBackend.can_handle(m)
    with pytest.raises(BackendError, match="no `action` or `observation.state` array.*the learned backend cannot handle it"):
        learned_backend(LearnedModel.new(TINY)).propose(Episode(m))


def test_a_team_that_adds_a_subtask_to_the_plan_gets_that_many():
    from atomvla.annotate.learned.decode import decode
    from atomvla.annotate.learned.features import Features
    from atomvla.annotate.learned.train import plan_convention

    three = [Subtask(start_frame=a, end_frame=b, instruction="x", skill="place") for a, b in ((0, 10), (10, 20), (20, 30))]
    two = three[:1] + [three[1].model_copy(update={"end_frame": 30})]
    assert plan_convention([TASK, TASK], [three, three]) == (True, 1)
    assert plan_convention([TASK, TASK], [two, two]) == (True, 0)
    assert plan_convention([TASK, TASK, TASK], [two, three, three[:1] + three[1:]]) == (True, 1)
    assert plan_convention(["xyz"], [three]) == (True, 0)  # no usable plan: nothing to learn
    prob = np.zeros(60)
    prob[[20, 40]] = 1.0
    feats = Features(np.zeros((60, 1), np.float32), 60, 1.0)
    subtasks, _ = decode(prob, np.full((60, 11), 1 / 11), feats, TASK, True, 2, plan_offset=1)
    assert [s.start_frame for s in subtasks] == [0, 20, 40]


def test_the_heuristic_prior_decides_where_the_network_is_unsure_and_not_where_it_is_sure():
    from atomvla.annotate.learned.decode import decode, heuristic_prior
    from atomvla.annotate.learned.features import HEURISTIC_CHANNEL, Features

    channels = ("speed", HEURISTIC_CHANNEL)
    x = np.zeros((60, 2), np.float32)
    x[40, 1] = 1.0  # the heuristic proposes frame 40
    feats = Features(x, 60, 1.0)
    skills = np.full((60, 11), 1 / 11)
    unsure, sure = np.full(60, 0.05), np.full(60, 0.05)
    unsure[15], sure[15] = 0.2, 0.9
    prior = heuristic_prior(feats, channels, 0.3)
    assert heuristic_prior(feats, channels, 0.0) is None and heuristic_prior(feats, ("speed",), 0.3) is None
    assert [s.start_frame for s in decode(unsure, skills, feats, TASK, True, 2)[0]] == [0, 15]
    assert [s.start_frame for s in decode(unsure, skills, feats, TASK, True, 2, prior=prior)[0]] == [0, 40]
    chosen, confidence = decode(sure, skills, feats, TASK, True, 2, prior=prior)
    assert [s.start_frame for s in chosen] == [0, 15] and confidence == pytest.approx(0.9)


def test_stretching_moves_the_boundary_targets_with_the_features():
    from atomvla.annotate.learned.data import make_sample
    from atomvla.annotate.learned.features import episode_features
    from atomvla.annotate.learned.train import _stretched

    ep, truth = episode(5)
    sample = make_sample(episode_features(ep.meta, ep.arrays, True), truth)
    (b,) = sample.boundaries
    for factor in (0.7, 1.0, 1.4):
        x, heat, skills = _stretched(sample, factor)
        assert len(x) == len(heat) == len(skills) == round(len(sample.features.x) * factor)
        assert abs(int(np.argmax(heat)) - b * factor) <= 1.0
        assert abs(int(np.argmax(np.diff(skills) != 0)) + 1 - b * factor) <= 1.0
        np.testing.assert_allclose(x[[0, -1]], sample.features.x[[0, -1]], atol=1e-6)


@pytest.mark.parametrize("t", [1, 5, 9, 40])  # shorter and longer than the widest dilation (8)
def test_prediction_is_the_network_forward_in_eval_mode(t):
    """`predict` computes the layers its own way (in place, no batch): it must give what the
    modules' forward gives, on random weights, with the offset head and two stages, whatever the
    mode the network was left in (no dropout at inference)."""
    spec = ModelSpec(layout(events=True, pixels=False), hidden=8, layers=4, stages=2, dropout=0.5, offsets=True)
    model = LearnedModel.new(spec, seed=t)
    x = torch.randn(t, len(spec.channels), generator=torch.Generator().manual_seed(t))
    model.net.eval()
    with torch.no_grad():
        out = model.net(x[None], torch.ones(1, t, 1))[-1][0]
    model.net.train()
    prob, skills, offset = model.predict(x)
    torch.testing.assert_close(prob, torch.sigmoid(out[:, 0]), rtol=0, atol=1e-6)
    torch.testing.assert_close(skills, torch.softmax(out[:, 1:-1], dim=1), rtol=0, atol=1e-6)
    torch.testing.assert_close(offset, out[:, -1], rtol=0, atol=1e-6)


def test_a_scene_motion_onset_follows_a_quarter_second_of_stillness_and_not_a_shorter_pause():
    """scene_onset marks the frames where a scene dim starts moving after at least ONSET_REST_S of
    stillness: here it moves from frame 10, pauses 2 frames (0.1 s), moves on, pauses 10 frames
    (0.5 s) and moves again at frame 40."""
    state, action, _ = scripted(pick_place((0.1, 0.6), (-0.1, 0.7)))
    velocity = np.zeros(len(state))
    velocity[[*range(10, 20), *range(22, 30), *range(40, 45)]] = 1.0  # per frame, far above the hand's speed
    names = {"observation.state": [*STATE_NAMES, "lever"], "action": ACTION_NAMES}
    m = meta(TASK, len(state), names)
    x = episode_features(m, {"observation.state": np.c_[state, np.cumsum(velocity)], "action": action}, events=True).x
    onset = x[:, layout(events=True, pixels=False).index("scene_onset")]
    peaks = [t for t in range(1, len(onset) - 1) if onset[t] > 0.5 and onset[t] >= onset[t - 1] and onset[t] > onset[t + 1]]
    assert peaks == [10, 40]
    assert onset[22] < 1e-6
