"""`--add-skill`: a LoRA on the language model, the new experts and only the new router row train; the old
skills' head outputs stay identical bit for bit; a skill the head has no expert for goes to the shared expert."""

import logging
import re

import pytest
import torch

from atomvla.train.assemble import load_trained
from atomvla.train.checkpoint import CheckpointError
from atomvla.train.config import get_config
from atomvla.train.data.episodes import DatasetError
from atomvla.train.models.action_head import SkillMoE
from atomvla.train.models.processor import SHARED
from atomvla.train.sft import train_sft


def _base_name(name: str) -> str:
    """Where a backbone weight lives once peft wraps the model in LoRA adapters."""
    name = name.replace("backbone.", "backbone.base_model.model.", 1)
    return re.sub(r"\.(q_proj|k_proj|v_proj|o_proj)\.", r".\1.base_layer.", name)


@pytest.fixture(scope="module")
def runs(store_of, fast, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("add-skill")
    moe = (*fast, "head.moe=true", "train.max_steps=2", "train.save_every=2", "train.batch_size=2")
    first = train_sft(get_config("tiny-cpu", moe), store_of(tmp / "a.sqlite", [2, 3]), tmp / "first")
    more = store_of(tmp / "b.sqlite", [2, 3, 4, 5])  # brings "press"
    added = train_sft(get_config("tiny-cpu"), more, tmp / "added", add_skill="press", from_checkpoint=first.checkpoint)
    return first, added, more, tmp


def test_a_skill_needs_an_expert_and_a_policy_with_experts(runs, fast):
    first, _, more, tmp = runs
    with pytest.raises(DatasetError, match="skills press have no expert .* nor --add-skill"):
        train_sft(get_config("tiny-cpu"), more, tmp / "x", from_checkpoint=first.checkpoint, add_skill="pull")
    with pytest.raises(DatasetError, match="skills press have no expert .*; add one with --add-skill"):
        train_sft(get_config("tiny-cpu"), more, tmp / "y", from_checkpoint=first.checkpoint)
    with pytest.raises(CheckpointError, match="--add-skill needs --from"):
        train_sft(get_config("tiny-cpu", fast), more, tmp / "z", add_skill="press")


def test_only_the_lora_the_new_experts_and_the_new_router_row_change(runs):
    first, added, _, _ = runs
    old, new = load_trained(first.checkpoint), load_trained(added.checkpoint)
    assert old.skills == ("reach", "open") and new.skills == ("reach", "open", "press")
    assert new.config.backbone.train == "lora"
    before, after = old.model.state_dict(), new.model.state_dict()
    for k, v in before.items():
        if k.endswith("ffn.router"):
            assert torch.equal(after[k][:2, :2], v)  # old rows: bit for bit
            assert (after[k][:2, 2] == -1e4).all()  # and they never pick the new expert
            assert not torch.equal(after[k][2], torch.tensor([0.0, 0.0, 4.0]))  # the new row trained
        elif k.startswith("backbone."):
            assert torch.equal(after[_base_name(k)], v), k
        else:
            assert torch.equal(after[k], v), k
    lora = [k for k in after if "lora_B" in k]
    assert lora and any(after[k].abs().sum() > 0 for k in lora)  # B starts at zero: the adapters trained
    new_expert = [k for k in after if ".experts.2." in k]
    assert new_expert and any(not torch.equal(after[k], after[k.replace(".experts.2.", ".shared.")]) for k in new_expert)


def test_old_skills_act_identically_bit_for_bit_given_the_same_context(runs):
    first, added, _, _ = runs
    old, new = load_trained(first.checkpoint).model.eval(), load_trained(added.checkpoint).model.eval()
    g = torch.Generator().manual_seed(0)
    b, head = 6, old.head
    x = torch.randn(b, head.horizon, head.action_dim, generator=g)
    s = torch.rand(b, generator=g)
    state = torch.randn(b, head.state_in.in_features, generator=g)
    ctx = torch.randn(b, len(old.context_layers), 30, head.context_norm.normalized_shape[0], generator=g)
    mask = torch.ones(b, 30, dtype=torch.bool)
    skills = torch.tensor([0, 1, 0, 1, SHARED, SHARED])
    with torch.no_grad():
        assert torch.equal(old.head.velocity(x, s, state, ctx, mask, skills), new.head.velocity(x, s, state, ctx, mask, skills))
        press = torch.full((b,), 2)
        assert not torch.equal(new.head.velocity(x, s, state, ctx, mask, press),
                               new.head.velocity(x, s, state, ctx, mask, skills))


def test_an_unknown_or_unnamed_skill_is_logged_and_goes_to_the_shared_expert(runs, caplog):
    _, added, _, _ = runs
    trained = load_trained(added.checkpoint)
    proc = trained.processor
    with caplog.at_level(logging.WARNING):
        assert proc.skill_id("turn") == SHARED
    assert "skill 'turn' has no expert (skills: reach, open, press): the shared expert acts" in caplog.text
    layer = next(m for m in trained.model.modules() if isinstance(m, SkillMoE))
    x = torch.randn(2, 5, layer.shared[0].in_features)
    with torch.no_grad():
        assert torch.equal(layer(x, torch.tensor([SHARED, SHARED])), layer.shared(x))
    from atomvla.train.policy import Policy

    policy = Policy(trained)
    with caplog.at_level(logging.WARNING):
        assert policy.decode(proc.tokenizer.encode("wiggle it", add_special_tokens=False)) == (None, "wiggle it")
    assert "generated subtask 'wiggle it' names no skill (the reported skill is None): the shared expert acts" in caplog.text
