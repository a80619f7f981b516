"""`load_policy().infer`: the policy generates its subtask then acts, re-deciding every K chunks with one
VLM pass per chunk (the action pass reads the generation's own context), and `atom-train eval` scores it."""

import logging

import numpy as np
import pytest
import torch

from atomvla.schemas import SKILLS
from atomvla.train.config import get_config
from atomvla.train.data.episodes import open_dataset
from atomvla.train.data.samples import ChunkDataset
from atomvla.train.eval import evaluate
from atomvla.train.policy import load_policy
from atomvla.train.sft import train_sft

CAMERA = "observation.images.corner"


@pytest.fixture(scope="module")
def run(export_dir, fast, tmp_path_factory):
    """A few steps with two episodes held out, delta actions and padding on (the whole outputs chain)."""
    out = tmp_path_factory.mktemp("policy") / "run"
    overrides = (*fast, "train.max_steps=4", "train.save_every=4", "data.val_fraction=0.2",
                 "data.delta_action_dims=[0,1,2]", "data.max_action_dim=6")
    train_sft(get_config("tiny-cpu", overrides), export_dir, out)
    return out


def _observation(policy, export_dir, i=10):
    data = ChunkDataset(open_dataset(export_dir), policy.trained.config.data, policy.stats, policy.trained.cameras)
    s = data.raw(i)
    return {"images": {CAMERA: s.images[0]}, "state": s.state, "task": s.task}


def test_the_policy_generates_its_subtask_then_acts_on_one_vlm_pass_a_chunk(run, export_dir):
    policy = load_policy(run)
    observation = _observation(policy, export_dir)
    result = policy.infer(observation)
    assert result.actions.shape == (4, 4) and np.isfinite(result.actions).all()  # padding dropped
    assert isinstance(result.subtask, str)
    # Re-deciding every K chunks: generation on chunks 0, K, 2K, ...; the chunks between run one VLM
    # forward over the kept subtask; a re-deciding chunk none beyond the generation itself.
    calls = {"generate": 0, "context": 0}
    for name, attr in (("generate", "generate_subtask"), ("context", "context")):
        real = getattr(policy.model, attr)
        setattr(policy.model, attr, lambda *a, _real=real, _name=name, **kw: calls.__setitem__(_name, calls[_name] + 1) or _real(*a, **kw))
    policy.redecide_every = 3
    policy.reset()
    for _ in range(7):
        policy.infer(observation)
    assert calls == {"generate": 3, "context": 4}  # chunks 0, 3, 6 generate; 1, 2, 4, 5 encode once


def test_the_generation_pass_leaves_the_context_a_second_forward_would_compute(run, export_dir):
    policy = load_policy(run)
    samples = [policy.observation_sample(_observation(policy, export_dir, i)) for i in (5, 60, 200)]
    ids, generated = policy.generate(samples, max_new_tokens=12)
    batch = policy._batch(samples, ids)
    with torch.no_grad():
        ctx, mask = policy.model.context(batch)
    for b, row in enumerate(ids):
        reused = generated.context[b][:, generated.context_mask[b]]
        again = ctx[b][:, mask[b]]
        assert reused.shape == again.shape and reused.shape[1] == int(mask[b].sum())
        torch.testing.assert_close(reused, again, atol=1e-4, rtol=1e-4)
    # Same noise, same context: the chunk from the reused context is the chunk of the second forward.
    policy.generator.manual_seed(1)
    reused_chunk = policy.act(samples, generated, [None] * 3)
    policy.generator.manual_seed(1)
    np.testing.assert_allclose(reused_chunk, policy.predict_actions(samples, ids, [None] * 3), atol=1e-4)


def test_a_head_without_experts_never_mentions_them_in_its_warnings(run, export_dir, caplog):
    policy = load_policy(run)
    assert not policy.trained.config.head.moe
    lacked = next(s for s in SKILLS if s not in policy.trained.skills)
    ids = policy.processor.tokenizer.encode("wiggle it", add_special_tokens=False)
    samples = [policy.observation_sample(_observation(policy, export_dir))]
    chunks = []
    with caplog.at_level(logging.WARNING):
        assert policy.decode(ids) == (None, "wiggle it")
        # What the messages claim: with the same noise, naming no skill, a known one or one the training
        # data lacked gives the same chunk.
        for skill in (None, policy.trained.skills[0], lacked):
            policy.generator.manual_seed(1)
            chunks.append(policy.predict_actions(samples, [ids], [skill]))
    effect = "this head reads no skill, so the actions do not depend on it"
    assert f"generated subtask 'wiggle it' names no skill (the reported skill is None): {effect}" in caplog.text
    assert (f"skill {lacked!r} was not in the training data (skills: {', '.join(policy.trained.skills)}): {effect}"
            in caplog.text)
    assert "expert" not in caplog.text
    np.testing.assert_array_equal(chunks[0], chunks[1])
    np.testing.assert_array_equal(chunks[0], chunks[2])


def test_a_skill_the_training_data_lacked_is_warned_about_once_per_policy_not_every_chunk(run, export_dir, caplog):
    policies = (load_policy(run), load_policy(run))
    lacked = next(s for s in SKILLS if s not in policies[0].trained.skills)
    samples = [policies[0].observation_sample(_observation(policies[0], export_dir))]
    ids = policies[0].processor.tokenizer.encode("wiggle it", add_special_tokens=False)
    with caplog.at_level(logging.WARNING):
        for policy in policies:
            for _ in range(3):
                policy.predict_actions(samples, [ids], [lacked])
    warned = [r for r in caplog.records if r.getMessage().startswith(f"skill {lacked!r} was not in the training data")]
    assert len(warned) == 2  # once for each policy, for three chunks each


def test_eval_scores_held_out_episodes(run, store_file, tmp_path):
    progress = []  # the CLI's progress bar: it showed nothing while every sample's subtask was generated
    report = evaluate(run, None, tmp_path / "eval", max_samples=8, batch_size=3,
                      progress=lambda done, total: progress.append((done, total)))
    assert progress == [(3, 8), (6, 8), (8, 8)]
    assert report["held_out"] and report["episodes"] == 2 and report["samples"] == 8
    assert 0 <= report["subtask_match_rate"] <= 1 and report["action_mse"] > 0
    assert sum(b["samples"] for b in report["match_by_boundary_distance"].values()) == 8
    assert set(report["per_skill"]) and set(report["per_subtask"])
    assert (tmp_path / "eval" / "chunks.png").stat().st_size > 10_000
    assert (tmp_path / "eval" / "report.json").is_file()
    # The store the export came from holds the same episodes: the same ones are held out, with the same scores.
    again = evaluate(run, str(store_file), tmp_path / "eval-store", max_samples=8, batch_size=3)
    assert again["held_out"] and again["per_subtask"] == report["per_subtask"]
