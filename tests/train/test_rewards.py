"""World-model rewards: the expert's chunk beats random chunks; each term on its own; bad states."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from atomvla.train.data.episodes import open_dataset
from atomvla.train.latents import LatentCache
from atomvla.train.rewards import TERMS, RewardConfig, RewardError, States, score
from atomvla.train.worldmodel.data import load_latent_episodes
from atomvla.train.worldmodel.world_model import WorldModel
from tests.train.stage2 import trained_world_model


@pytest.fixture(scope="module")
def scored(export_dir):
    wm_dir, latents, _ = trained_world_model(str(export_dir))
    wm = WorldModel.load(wm_dir)
    episodes = load_latent_episodes(open_dataset(export_dir), LatentCache(latents, wm.config.encoder.spec()))
    picks = [(e, t) for e in episodes for t in range(0, e.n_frames - 4, 3)]
    states = States.gather(picks, wm.config.horizon)
    g = torch.Generator().manual_seed(0)
    random = wm.norm.action_mean + wm.norm.action_std * torch.randn(len(picks), 8, 4, 4, generator=g)
    chunks = torch.cat([states.expert[:, None], random], 1)  # candidate 0 is the expert's chunk
    return wm, episodes, states, chunks


def test_the_expert_chunk_scores_better_than_random_chunks_on_most_states(scored):
    wm, _, states, chunks = scored
    for weights, most in ((RewardConfig(1, 0, 0), 0.75), (RewardConfig(1, 1, 0), 0.65)):
        r = score(wm, states, chunks, weights)["total"]
        assert (r[:, 0] > r[:, 1:].mean(1)).float().mean() > most


def test_each_term_is_reported_and_weighted(scored):
    wm, _, states, chunks = scored
    terms = score(wm, states, chunks, RewardConfig(subgoal=2.0, final=0.0, deviation=0.5))
    assert set(terms) == {*TERMS, "total"}
    torch.testing.assert_close(terms["total"], 2.0 * terms["subgoal"] + 0.5 * terms["deviation"])
    assert torch.all(terms["deviation"][:, 0] == 0)  # the expert does not deviate from itself
    assert torch.all(terms["deviation"][:, 1:] < 0)


def test_the_subgoal_is_the_current_subtasks_boundary_frame(scored):
    _, episodes, _, _ = scored
    e = episodes[0]
    first, second = e.source.subtasks[:2]
    assert e.subgoal_frame(first.start_frame) == e.subgoal_frame(first.end_frame - 1) == first.end_frame
    assert e.subgoal_frame(first.end_frame) == min(second.end_frame, e.n_frames - 1)


def test_states_without_subtasks_are_refused(scored):
    _, episodes, _, _ = scored
    bare = dataclasses.replace(episodes[0], source=dataclasses.replace(episodes[0].source, subtasks=()))
    with pytest.raises(RewardError, match=r"episode .*: no subtasks"):
        States.gather([(bare, 0)], 4)
    with pytest.raises(RewardError, match="outside"):
        States.gather([(episodes[0], episodes[0].n_frames)], 4)


def test_rewards_over_a_horizon_of_several_chunks(scored):
    """H chunks: the candidate, then the expert's next H-1 chunks, rolled out; energies averaged over
    the H predicted latents. H = 1 is one prediction."""
    wm, episodes, states, chunks = scored
    one = score(wm, states, chunks, RewardConfig(1, 1, 0))
    pred = wm.predict(states.latent, states.state, chunks[:, 0])  # candidate 0 of every state
    torch.testing.assert_close(one["subgoal"][:, 0], -(pred - states.subgoal).abs().mean((1, 2)))

    picks = [(e, t) for e in episodes for t in range(0, e.n_frames - 4, 3)]
    longer = States.gather(picks, wm.config.horizon, chunks=3)
    assert longer.next_chunks.shape == (len(picks), 2, 4, 4) and longer.next_states.shape[1] == 2
    three = score(wm, longer, chunks, RewardConfig(1, 1, 0, horizon=3))
    seq = torch.cat([chunks[:, :1], longer.next_chunks], 1)
    steps = wm.rollout(longer.latent, torch.cat([longer.state[:, None], longer.next_states], 1), seq)
    expected = -(steps - longer.subgoal[:, None]).abs().mean((1, 2, 3))
    torch.testing.assert_close(three["subgoal"][:, 0], expected)
    assert not torch.allclose(three["subgoal"], one["subgoal"])
    r = three["total"]
    assert (r[:, 0] > r[:, 1:].mean(1)).float().mean() > 0.6  # the expert's chunk still ranks first mostly
    with pytest.raises(RewardError, match="no expert chunks after the first"):
        score(wm, states, chunks, RewardConfig(horizon=3))
    too_far = wm.predictor.max_steps + 1
    with pytest.raises(RewardError, match="rolls out at most"):
        score(wm, States.gather(picks[:2], 4, chunks=too_far), chunks[:2], RewardConfig(horizon=too_far))
