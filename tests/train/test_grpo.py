"""`atom-train grpo`: exact denoising log-probs, GRPO's objective, reward rises, exact resume, bad inputs."""

from __future__ import annotations

import math
import shutil

import pytest
import torch

from atomvla.train.assemble import load_trained
from atomvla.train.config import get_config
from atomvla.train.data.episodes import open_dataset
from atomvla.train.grpo import config as _grpo_configs  # noqa: F401  (registers the grpo configs)
from atomvla.train.grpo import sde
from atomvla.train.grpo.objective import group_advantages, grpo_loss
from atomvla.train.grpo.train import GRPOTrainer, train_grpo
from atomvla.train.latents import LatentCache
from atomvla.train.worldmodel.data import load_latent_episodes
from atomvla.train.worldmodel.train import open_latents
from atomvla.train.worldmodel.world_model import WorldModel, WorldModelError
from tests.train.stage2 import GRPO_FAST, sft_policy, trained_world_model


def test_a_chunks_log_prob_is_the_gaussian_density_of_its_denoising_steps():
    torch.manual_seed(0)
    w = torch.randn(4, 4) * 0.3
    velocity = lambda x, s: x @ w + s[:, None, None]  # noqa: E731  (any deterministic velocity)
    steps, eta = 5, 0.7
    traj = sde.sample(velocity, torch.randn(3, 4, 4), steps, eta, torch.Generator().manual_seed(1))
    total = torch.zeros(3)
    for k in range(steps):
        x, s, ds = traj.xs[k], k / steps, 1 / steps
        sigma = eta * math.sqrt((1 - max(s, ds)) / max(s, ds))  # σ at s = 0 taken at the first step's s
        v = velocity(x, torch.full((3,), s))
        mean = x + (v - sigma**2 / (2 * (1 - s)) * (x - s * v)) * ds
        total += torch.distributions.Normal(mean, sigma * math.sqrt(ds)).log_prob(traj.xs[k + 1]).sum((1, 2))
    torch.testing.assert_close(traj.log_probs.sum(0), total)
    torch.testing.assert_close(sde.log_probs(velocity, traj.xs, steps, eta), traj.log_probs)


def test_advantages_have_zero_mean_and_unit_spread_per_group():
    r = torch.randn(4, 8, generator=torch.Generator().manual_seed(0)) * torch.tensor([[0.1], [1], [10], [100]]) + 3
    a = group_advantages(r)
    torch.testing.assert_close(a.mean(1), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(a.std(1), torch.ones(4), atol=2e-3, rtol=0)  # 1e-4 in the denominator
    assert torch.all(group_advantages(torch.full((1, 8), 2.0)) == 0)  # equal rewards: no signal, no NaN


def test_clipped_ratio_and_k3():
    logp = torch.log(torch.tensor([[1.5, 0.5]]))
    parts = grpo_loss(logp, torch.zeros(1, 2), logp, torch.tensor([1.0, 1.0]), clip=0.2, beta=0.0)
    torch.testing.assert_close(parts.loss, torch.tensor(-(1.2 + 0.5) / 2))  # gains above 1+ε are clipped
    d = torch.tensor(0.3)
    k3 = grpo_loss(torch.zeros(1, 1), torch.zeros(1, 1), d.view(1, 1), torch.zeros(1), 0.2, 1.0).kl
    torch.testing.assert_close(k3, torch.exp(d) - d - 1)


@pytest.fixture(scope="module")
def parts(export_dir):
    policy = sft_policy(str(export_dir))
    wm_dir, latents, _ = trained_world_model(str(export_dir))
    return policy, wm_dir, latents


def _trainer(export_dir, policy, wm_dir, latents, overrides=()):
    config = get_config("tiny-cpu", GRPO_FAST + tuple(overrides), kind="grpo")
    wm = WorldModel.load(wm_dir)
    episodes = load_latent_episodes(open_dataset(export_dir), LatentCache(latents, wm.config.encoder.spec()))
    tuned = load_trained(policy)
    return GRPOTrainer(config, tuned, load_trained(policy).model, wm, episodes, torch.device("cpu"))


def test_ratio_is_one_and_kl_zero_at_the_first_update(export_dir, parts):
    trainer = _trainer(export_dir, *parts)
    batch = trainer.batch([0, 40])
    rollout = trainer.rollout(trainer.model, batch, torch.Generator().manual_seed(0))
    assert rollout.trajectory.log_probs.shape == (4, 2 * 4)
    loss = trainer.loss(trainer.model, batch, rollout)
    assert loss.ratio.item() == pytest.approx(1.0, abs=1e-5) and loss.kl.item() == pytest.approx(0.0, abs=1e-5)
    loss.loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainer.model.vla.head.parameters())


def test_a_few_grpo_steps_raise_the_mean_reward(export_dir, parts, tmp_path):
    policy, wm_dir, latents = parts
    # The fixed-state reward moves by ±0.02 from one step to the next (measured at steps 4-24: −0.688,
    # −0.702, −0.656, −0.656, −0.673, −0.682 from −0.696); 12 steps is past the early dip.
    overrides = ("train.max_steps=12", "kl_beta=0.0", "rewards.deviation=1.0", "train.batch_size=4")
    result = train_grpo(get_config("tiny-cpu", GRPO_FAST + overrides, kind="grpo"), tmp_path / "g", policy, wm_dir)

    def mean_reward(trainer: GRPOTrainer) -> float:
        batch = trainer.batch(list(range(0, 880, 40)))
        return trainer.rollout(trainer.model, batch, torch.Generator().manual_seed(0)).rewards["total"].mean().item()

    before = mean_reward(_trainer(export_dir, policy, wm_dir, latents))
    after = mean_reward(_trainer(export_dir, result.checkpoint, wm_dir, latents))
    assert after > before
    assert {"reward_subgoal", "reward_final", "reward_deviation", "kl"} <= set(result.metrics[0])


def test_resume_is_exact(export_dir, parts, tmp_path):
    policy, wm_dir, _ = parts
    config = get_config("tiny-cpu", GRPO_FAST + ("train.max_steps=4", "train.save_every=2"), kind="grpo")
    straight = train_grpo(config, tmp_path / "a", policy, wm_dir).metrics
    shutil.rmtree(tmp_path / "a" / "step-000004")
    resumed = train_grpo(config, tmp_path / "a", resume=True).metrics
    assert [m["step"] for m in resumed] == [3, 4]
    for a, b in zip(straight[2:], resumed):
        assert a == pytest.approx(b, rel=1e-5, abs=1e-7)


def test_latents_of_another_encoder_are_refused(export_dir, parts, tmp_path):
    policy, wm_dir, _ = parts
    wm = WorldModel.load(wm_dir)
    other = get_config("tiny-cpu", ("encoder.seed=7",), kind="wm")
    open_latents(other, open_dataset(export_dir)[:1], tmp_path / "other")
    config = get_config("tiny-cpu", GRPO_FAST, kind="grpo")
    with pytest.raises(WorldModelError, match=r"not come from the encoder the world model was trained with"):
        train_grpo(config, tmp_path / "g", policy, wm_dir, latents=tmp_path / "other")
    assert wm.encoder_key != LatentCache(tmp_path / "other", other.encoder.spec()).key


def test_atom_train_grpo_end_to_end_and_a_missing_world_model(parts, tmp_path):
    from typer.testing import CliRunner

    from atomvla.train.cli import app

    policy, wm_dir, _ = parts
    common = ["grpo", "--policy", str(policy), *GRPO_FAST, "train.max_steps=1"]
    run = CliRunner().invoke(app, [*common, "--out", str(tmp_path / "g"), "--world-model", str(wm_dir), "rewards.final=0"])
    assert run.exit_code == 0, run.output
    assert "subgoal" in run.output and (tmp_path / "g" / "step-000001" / "grpo_config.json").is_file()
    missing = CliRunner().invoke(app, [*common, "--out", str(tmp_path / "h"), "--world-model", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and "no world model here" in missing.output


def test_two_cpu_processes_tune_identical_weights_under_fsdp(parts, tmp_path):
    """FSDP on two gloo ranks: the policy and the frozen reference are both sharded (no rank holds a
    whole fp32 copy of either), sampling goes through the sharded module, and the sharded checkpoint
    loads in one process."""
    import re
    from pathlib import Path

    from safetensors.torch import load_file

    from tests.train.test_sft import torchrun

    policy, wm_dir, _ = parts
    log = torchrun("grpo_worker.py", str(policy), str(wm_dir), str(tmp_path), *GRPO_FAST, "train.max_steps=2",
                   "train.save_every=2")
    held = re.findall(r"fsdp: rank (\d) holds (\d+) of (\d+) parameter elements", log)
    assert sorted(r for r, _, _ in held) == ["0", "0", "1", "1"]  # the policy and the reference, on each rank
    assert all(int(n) < int(m) for _, n, m in held)
    w0, w1 = load_file(tmp_path / "rank0.safetensors"), load_file(tmp_path / "rank1.safetensors")
    start = load_file(Path(policy) / "model.safetensors")
    assert all(torch.equal(w0[k], w1[k]) for k in w0)
    assert any(not torch.equal(w0[k], start[k]) for k in w0)
    saved = load_trained(tmp_path / "run" / "step-000002").model.state_dict()
    assert all(torch.equal(saved[k], w0[k]) for k in w0)
