"""Few-shot adaptation of the learned backend: a team's timing convention learned from two accepted
episodes, the heuristic prior kept only for a team whose boundaries the heuristic finds, the
boundary-offset head refining each chosen frame, and the accepted input it refuses."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from synthetic import pick_place, scripted
from test_learned import TASK, TINY, episode

from atomvla.annotate.learned import fine_tune, learned_backend
from atomvla.annotate.learned.data import features_for, make_sample
from atomvla.annotate.learned.decode import decode, refine
from atomvla.annotate.learned.features import Features
from atomvla.annotate.learned.model import LearnedModel
from atomvla.annotate.learned.train import ALIGNMENT_WEIGHT, KEPT_START, TrainConfig, convention_shift, pretrain
from atomvla.schemas import Subtask

SKILLS = np.full((60, 11), 1 / 11)


def shifted(truth: list[Subtask], k: int) -> list[Subtask]:
    """The same subtasks with every boundary k frames later (a team that ends each subtask later)."""
    starts = [0, *(s.start_frame + k for s in truth[1:])]
    ends = [*starts[1:], truth[-1].end_frame]
    return [s.model_copy(update={"start_frame": a, "end_frame": b}) for s, a, b in zip(truth, starts, ends)]


def test_refine_moves_a_chosen_frame_to_where_its_neighbours_offsets_point():
    prob = np.zeros(60)
    prob[[30, 31]] = 0.5  # two equal frames: the boundary lies between them
    offset = np.zeros(60)
    offset[30], offset[31] = 0.5, -0.5
    assert refine([30], prob, offset) == pytest.approx([30.5])
    offset[:] = 9.0  # never further than the vote's reach
    assert refine([30], prob, offset) == [32.0]


def test_decode_adds_the_learned_shift_and_keeps_the_chosen_frames_where_it_breaks_the_gap():
    feats = Features(np.zeros((60, 3), np.float32), 120, 2.0)  # 40 fps episode, 20 fps grid
    prob = np.zeros(60)
    prob[20] = 1.0
    assert [s.start_frame for s in decode(prob, SKILLS, feats, TASK, True, 4)[0]] == [0, 40]
    assert [s.start_frame for s in decode(prob, SKILLS, feats, TASK, True, 4, shift=(2.5,))[0]] == [0, 45]
    # moved past the last allowed frame: the chosen frame stays
    assert [s.start_frame for s in decode(prob, SKILLS, feats, TASK, True, 4, shift=(39.0,))[0]] == [0, 40]


def test_a_shift_is_only_learned_where_every_episode_agrees():
    assert convention_shift([[3.0, 0.2], [5.0, -0.4], [4.0, 1.0]]) == (4.0, 0.0)
    assert convention_shift([[3.0], [-2.0]]) == ()
    assert convention_shift([[0.2], [0.3]]) == ()


def test_fine_tuning_refuses_accepted_subtasks_that_do_not_fit_their_episode():
    model = LearnedModel.new(TINY)
    ep, truth = episode(1)
    with pytest.raises(ValueError, match="2 episodes but 1 accepted decompositions"):
        fine_tune(model, [ep, ep], [truth])
    short = [truth[0], truth[1].model_copy(update={"end_frame": truth[1].end_frame - 5})]
    with pytest.raises(ValueError, match=r"episode synthetic/1: its accepted subtasks cannot be learned from: subtask 2 ends"):
        fine_tune(model, [ep], [short])


K = 5  # frames (20 fps: grid frames too) later than the truth the model was trained on


@pytest.fixture(scope="module")
def base() -> LearnedModel:
    """A tiny model trained on the synthetic pick-and-places with their own truth."""
    pairs = [episode(s) for s in range(4)]
    samples = [make_sample(features_for(TINY.channels, e), t) for e, t in pairs]
    return pretrain(TINY, samples, TrainConfig(steps=60, batch=8, lr=3e-3))


def test_a_convention_shifted_by_k_frames_is_learned_from_one_or_two_accepted_episodes(base):
    accepted = [episode(s) for s in (20, 21)]
    # one step: the network itself hardly moves, so what corrects the others is the learned shift or the alignment
    quick = TrainConfig(steps=1, batch=2, lr=1e-4)
    # one accepted episode: nothing to align it with; the network's remaining error becomes the shift
    one = fine_tune(base, [accepted[0][0]], [shifted(accepted[0][1], K)], quick)
    assert one.info.alignment_prior == 0.0 and one.info.boundary_shift and abs(one.info.boundary_shift[0] - K) <= 1.0
    # two: each is found from the other by alignment, which carries the convention itself: no shift is left
    two = fine_tune(base, [e for e, _ in accepted], [shifted(t, K) for _, t in accepted], quick)
    assert two.info.alignment_prior > 0 and two.info.boundary_shift == () and len(two.exemplars) == 2
    for tuned in (one, two):
        again = LearnedModel.from_bytes(tuned.to_bytes())  # what a profile stores keeps it
        assert again.info.boundary_shift == tuned.info.boundary_shift and len(again.exemplars) == len(tuned.exemplars)
        for seed in (30, 31, 32):
            ep, truth = episode(seed)
            before = learned_backend(base).propose(ep).boundaries[0]
            after = learned_backend(again).propose(ep).boundaries[0]
            assert abs(before - truth[1].start_frame) <= 1, "the base model finds the truth it was trained on"
            assert abs(after - (truth[1].start_frame + K)) <= 1, (after, truth[1].start_frame + K)


def test_fine_tuning_on_the_convention_the_model_already_has_learns_at_most_its_rounding(base):
    accepted = [episode(s) for s in (20, 21)]
    tuned = fine_tune(base, [e for e, _ in accepted], [t for _, t in accepted], TrainConfig(steps=1, batch=2, lr=1e-4))
    assert all(abs(s) <= 1.0 for s in tuned.info.boundary_shift), tuned.info.boundary_shift
    # the network finds these boundaries as well as the exemplars find each other's: alignment at the lower weight
    assert tuned.info.extra["alignment_f1"] == tuned.info.extra["alignment_network_f1"] == "1.00"
    assert tuned.info.alignment_prior == ALIGNMENT_WEIGHT


def _same_weights(a: LearnedModel, b: LearnedModel) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.net.state_dict().values(), b.net.state_dict().values()))


def test_a_team_whose_boundaries_the_starting_model_already_proposes_keeps_its_network(base):
    accepted = [episode(s) for s in (20, 21)]
    eps = [e for e, _ in accepted]
    kept = fine_tune(base, eps, [t for _, t in accepted])
    assert kept.info.extra[KEPT_START] == "yes" and _same_weights(kept, base) and len(kept.exemplars) == 2
    assert LearnedModel.from_bytes(kept.to_bytes()).info.extra[KEPT_START] == "yes"  # a profile keeps the decision
    one = fine_tune(base, eps[:1], [accepted[0][1]])  # one episode found is too little evidence: fitted
    assert KEPT_START not in one.info.extra and not _same_weights(one, base)
    # K frames later than the starting model puts them: fitted, and the decision is not inherited from a kept profile
    later = fine_tune(kept, eps, [shifted(t, K) for _, t in accepted])
    assert KEPT_START not in later.info.extra and not _same_weights(later, base)


def carry_convention(seed: int) -> list[Subtask]:
    """episode(seed)'s subtasks for a team whose pick ends when the carry to the bin starts, after
    the lift: another event than the grasp the heuristic (and `base`'s truth) ends it at."""
    rng = np.random.default_rng(seed)  # the same draws as episode(seed): the same motion
    phases = pick_place((float(rng.uniform(-0.1, 0.1)), 0.5), (float(rng.uniform(0.2, 0.35)), 0.6))
    phases[3], phases[4] = replace(phases[3], subtask_start=False), replace(phases[4], subtask_start=True)
    state, _, (boundary,) = scripted(phases, seed=seed)
    return [Subtask(start_frame=0, end_frame=boundary, instruction="pick", skill="pick"),
            Subtask(start_frame=boundary, end_frame=len(state), instruction="place", skill="place")]


@pytest.fixture(scope="module")
def carry_base() -> LearnedModel:
    """A tiny model trained with the carry convention, decoding with a heuristic prior."""
    samples = [make_sample(features_for(TINY.channels, episode(s)[0]), carry_convention(s)) for s in range(4)]
    return pretrain(TINY, samples, TrainConfig(steps=60, batch=8, lr=3e-3), heuristic_prior=0.3)


def test_the_heuristic_prior_is_kept_where_the_heuristic_finds_the_teams_boundaries_and_dropped_where_it_does_not(base, carry_base):
    accepted = [episode(s) for s in (20, 21)]
    eps = [e for e, _ in accepted]
    # a team that ends the pick at the grasp, as the heuristic does: kept
    same = fine_tune(LearnedModel(base.net, replace(base.info, heuristic_prior=0.3)), eps, [t for _, t in accepted])
    assert same.info.heuristic_prior == 0.3 and same.info.extra["prior_heuristic_f1"] == "1.00"
    # a team that ends it when the carry starts: its network finds that, the heuristic does not: dropped
    other = fine_tune(carry_base, eps, [carry_convention(s) for s in (20, 21)])
    assert (other.info.extra["prior_heuristic_f1"], other.info.extra["prior_network_f1"]) == ("0.00", "1.00")
    again = LearnedModel.from_bytes(other.to_bytes())  # what a profile stores keeps the decision
    assert again.info.heuristic_prior == 0.0
    for seed in (30, 31, 32):
        ep, grasp = episode(seed)
        carry = carry_convention(seed)[1].start_frame
        assert carry - grasp[1].start_frame > 20, "the team's boundary is another event than the heuristic's"
        assert abs(learned_backend(again).propose(ep).boundaries[0] - carry) <= 3
        assert abs(learned_backend(same).propose(ep).boundaries[0] - grasp[1].start_frame) <= 3
