"""Exemplar alignment: time warping carries an accepted episode's boundaries to an episode of
another pace, what a profile stores of its exemplars, and the input it refuses."""

import json
from dataclasses import replace

import numpy as np
import pytest
from synthetic import Phase, meta, pick_place, scripted
from test_learned import TASK, TINY, episode

from atomvla.annotate.learned import align, fine_tune, learned_backend
from atomvla.annotate.learned.align import ALIGN_CHANNELS, AlignmentError, Exemplar, alignment_prior, carry, exemplar, leave_one_out
from atomvla.annotate.learned.data import features_for, make_sample
from atomvla.annotate.learned.decode import priors
from atomvla.annotate.learned.model import LearnedModel, WeightsError, WeightsInfo
from atomvla.annotate.learned.train import ALIGNMENT_WEIGHT_AHEAD, TrainConfig, pretrain
from atomvla.curate.episode import Episode
from atomvla.schemas import Subtask


def naive_dtw(q: np.ndarray, e: np.ndarray) -> np.ndarray:
    """The textbook recurrence, cell by cell."""
    cost = np.abs(q[:, None] - e[None]).sum(-1)
    d = np.full((len(q) + 1, len(e) + 1), np.inf)
    d[0, 0] = 0.0
    for i in range(len(q)):
        for j in range(len(e)):
            d[i + 1, j + 1] = cost[i, j] + min(d[i, j], d[i, j + 1], d[i + 1, j])
    return d[1:, 1:]


def test_the_row_by_row_running_minimum_is_the_textbook_recurrence_for_exemplars_of_any_length():
    rng = np.random.default_rng(0)
    q = rng.normal(size=(23, 3)).astype(np.float32)
    a, b = rng.normal(size=(31, 3)).astype(np.float32), rng.normal(size=(17, 3)).astype(np.float32)
    padded = np.zeros((2, 31, 3), np.float32)
    padded[0], padded[1, :17] = a, b
    d = align._accumulated(q, padded)
    assert np.allclose(d[0], naive_dtw(q, a), rtol=1e-5)
    assert np.allclose(d[1, :, :17], naive_dtw(q, b), rtol=1e-5)


def paced(events: list[tuple[int, int]], n: int, d: int = len(ALIGN_CHANNELS)) -> np.ndarray:
    """(n, d) alignment features: channel k steps up at frame events[k][0] and back at events[k][1]."""
    x = np.zeros((n, d), np.float32)
    for k, (a, b) in enumerate(events):
        x[a:b, k] = 1.0
    return x


def test_a_boundary_at_an_event_is_carried_to_the_same_event_in_an_episode_of_another_pace():
    # the exemplar: three steps, its boundary where the second begins; the episode: slower, with a pause
    ex = Exemplar(paced([(5, 20), (25, 40), (45, 60)], 70), (25,))
    q = paced([(10, 40), (62, 80), (90, 110)], 120)
    assert carry(q, [ex]) == [[pytest.approx(62, abs=0.5)]]
    prior = alignment_prior(q, [ex, ex], 0.7)
    assert int(np.argmax(prior)) == 62 and prior.max() == pytest.approx(0.7, abs=0.01)
    assert alignment_prior(q, [], 1.0) is None and alignment_prior(q, [ex], 0.0) is None


def test_leave_one_out_scores_each_exemplar_from_the_others():
    a = Exemplar(paced([(5, 20), (25, 40)], 50), (25,))
    b = Exemplar(paced([(8, 30), (40, 60)], 70), (40,))
    assert leave_one_out([a, b], 2) == 1.0
    wrong = Exemplar(b.x, (10,))  # a team that put the boundary elsewhere in one of them
    assert leave_one_out([a, wrong], 2) == 0.0
    assert leave_one_out([a], 2) is None


def test_exemplars_of_another_layout_or_with_boundaries_outside_the_episode_are_refused():
    x = features_for(TINY.channels, episode(1)[0]).x
    with pytest.raises(AlignmentError, match="no speed, motion_up"):
        exemplar(x[:, 3:], TINY.channels[3:], (10,))
    with pytest.raises(AlignmentError, match="do not match a layout of"):
        exemplar(x, TINY.channels[1:], (10,))
    with pytest.raises(AlignmentError, match=r"boundaries \[0\] do not lie inside an episode"):
        exemplar(x, TINY.channels, (0,))
    ex = exemplar(x, TINY.channels, (10,))
    with pytest.raises(AlignmentError, match="exemplar features of width"):
        carry(np.zeros((30, 4), np.float32), [ex])


def test_a_profile_keeps_its_exemplars_and_weights_without_them_still_load():
    x = features_for(TINY.channels, episode(1)[0]).x
    model = LearnedModel.new(TINY)
    model.exemplars = (exemplar(x, TINY.channels, (20,)), exemplar(x[:50], TINY.channels, (10, 30)))
    again = LearnedModel.from_bytes(model.to_bytes())
    assert [e.boundaries for e in again.exemplars] == [(20,), (10, 30)]
    assert all(np.array_equal(a.x, b.x) for a, b in zip(again.exemplars, model.exemplars))
    assert again.digest() == model.digest() != LearnedModel(model.net, model.info).digest()
    plain = LearnedModel.from_bytes(LearnedModel(model.net, model.info).to_bytes())  # a profile of before exemplars
    assert plain.exemplars == () and plain.info.alignment_prior == 0.0


def test_exemplars_align_only_with_episodes_of_their_own_instruction():
    """A team's profile of one task, used on a store of several, must not carry that task's
    boundaries into episodes of another."""
    features = features_for(TINY.channels, episode(1)[0])
    model = LearnedModel(LearnedModel.new(TINY).net, WeightsInfo(alignment_prior=0.5))
    model.exemplars = (exemplar(features.x, TINY.channels, (20,), "put the cube in the bowl"),)
    again = LearnedModel.from_bytes(model.to_bytes())
    assert again.exemplars[0].instruction == "put the cube in the bowl"
    assert priors(again, features, "open the drawer") is None  # no heuristic prior and no exemplar of this task
    own = priors(again, features, "put the cube in the bowl")
    assert own is not None and int(np.argmax(own)) == 20 and own.max() == pytest.approx(0.5)
    # saved before exemplars kept their instruction: they match no episode
    old = {"channels": list(ALIGN_CHANNELS), "boundaries": [[20]]}
    before = LearnedModel.from_bytes(damaged(again.to_bytes(), {"exemplars": json.dumps(old)}))
    assert before.exemplars[0].instruction == "" and priors(before, features, "put the cube in the bowl") is None


def damaged(data: bytes, meta_update: dict) -> bytes:
    """`data` (safetensors bytes) with its metadata updated."""
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + size])
    header["__metadata__"] |= meta_update
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return len(raw).to_bytes(8, "little") + raw + data[8 + size :]


def test_exemplars_the_weights_cannot_use_are_refused_in_one_line():
    x = features_for(TINY.channels, episode(1)[0]).x
    model = LearnedModel.new(TINY)
    model.exemplars = (exemplar(x, TINY.channels, (20,)),)
    data = model.to_bytes()
    other = damaged(data, {"exemplars": json.dumps({"channels": ["speed"], "boundaries": [[20]]})})
    with pytest.raises(WeightsError, match=r"exemplars aligned on channels \['speed'\]; this version aligns on"):
        LearnedModel.from_bytes(other)
    missing = damaged(data, {"exemplars": json.dumps({"channels": ALIGN_CHANNELS, "boundaries": [[20], [30]]})})
    with pytest.raises(WeightsError, match="2 exemplars in the metadata but tensors"):
        LearnedModel.from_bytes(missing)
    outside = damaged(data, {"exemplars": json.dumps({"channels": ALIGN_CHANNELS, "boundaries": [[len(x) + 5]]})})
    with pytest.raises(WeightsError, match="exemplar 0: features of shape"):
        LearnedModel.from_bytes(outside)


def paused_carry(seed: int, pause: int) -> tuple[Episode, list[Subtask]]:
    """A scripted pick-and-place that holds the lifted object `pause` frames before the carry, for a
    team whose pick ends when the carry starts: an event neither the heuristic nor a network trained
    on the grasp convention marks."""
    rng = np.random.default_rng(seed)
    phases = pick_place((float(rng.uniform(-0.1, 0.1)), 0.5), (float(rng.uniform(0.2, 0.35)), 0.6))
    lift = replace(phases[3], subtask_start=False)
    phases[3:5] = [lift, Phase(lift.pose, grip=1.0, hold=pause), replace(phases[4], subtask_start=True)]
    state, action, (boundary,) = scripted(phases, seed=seed)
    m = meta(TASK, len(state)).model_copy(update={"episode_id": f"paused/{seed}", "episode_index": seed})
    ep = Episode(m)
    ep.__dict__["_arrays"] = {"observation.state": state, "action": action}
    return ep, [Subtask(start_frame=0, end_frame=boundary, instruction="pick", skill="pick"),
                Subtask(start_frame=boundary, end_frame=len(state), instruction="place", skill="place")]


def test_a_boundary_the_network_does_not_mark_is_learned_from_two_episodes_by_alignment_and_found_at_another_pace():
    samples = [make_sample(features_for(TINY.channels, e), t) for e, t in (episode(s) for s in range(4))]
    base = pretrain(TINY, samples, TrainConfig(steps=60, batch=8, lr=3e-3), heuristic_prior=0.3)  # the grasp convention
    shots = [paused_carry(s, 5) for s in (20, 21)]
    # a short fine-tune: the network has only begun to move to the team's event and is unsure there,
    # which is where the alignment prior decides
    tuned = fine_tune(base, [e for e, _ in shots], [t for _, t in shots], TrainConfig(steps=20, batch=2, lr=1e-3))
    # the exemplars find each other's boundaries, the starting network (the grasp) does not: the higher weight
    assert tuned.info.extra["alignment_f1"] == "1.00" and float(tuned.info.extra["alignment_network_f1"]) < 1.0
    assert tuned.info.alignment_prior == ALIGNMENT_WEIGHT_AHEAD
    again = LearnedModel.from_bytes(tuned.to_bytes())
    without = LearnedModel(tuned.net, replace(tuned.info, alignment_prior=0.0))
    found = {"aligned": 0, "not": 0}
    for seed in (30, 31, 32):
        ep, truth = paused_carry(seed, 40)  # a pause eight times as long
        carry_start, grasp = truth[1].start_frame, episode(seed)[1][1].start_frame
        assert carry_start - grasp > 40, "the team's boundary is another event than the grasp"
        found["aligned"] += abs(learned_backend(again).propose(ep).boundaries[0] - carry_start) <= 2
        found["not"] += abs(learned_backend(without).propose(ep).boundaries[0] - carry_start) <= 2
    assert found["aligned"] >= 2 and found["not"] == 0, found
