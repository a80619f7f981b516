"""Adding a skill to a trained policy (`atom-train sft --add-skill`) without changing the old skills.

What the deployed policy needs to use a new skill: the VLM must *name* it (it generates
`"{skill}: {instruction}"`, and the name routes the head), and the action head needs an expert for it
and a router row that picks that expert. So an added skill trains:
- a LoRA on the language model's attention (the base weights stay frozen), with the LM and flow losses;
- each MoE layer's new expert and only the new row of its router: the old rows' gradients are masked,
  and since decoupled weight decay would still shrink them, they are restored after every optimizer step.
Everything else is frozen. The new expert's column in the old rows is -1e4, so its softmax weight for an
old skill is exactly 0 and `SkillMoE` adds it last: old skills' head outputs stay identical bit for bit
(given the same VLM context; the LoRA does change the context).
"""

from __future__ import annotations

import dataclasses

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook
from torch import nn

from atomvla.train.config import SFTConfig
from atomvla.train.models.action_head import SkillMoE

_HOOK = None  # one optimizer step post-hook for every router with frozen rows


def add_skill_config(config: SFTConfig) -> SFTConfig:
    """The config an added skill trains and is saved with: a LoRA on the language model."""
    return dataclasses.replace(config, backbone=dataclasses.replace(config.backbone, train="lora"))


def prepare_add_skill(model: nn.Module, config: SFTConfig, grow: bool) -> None:
    """Freeze `model` (a `VLA`) but what an added skill trains; `grow`: add the experts first (a fresh
    `--add-skill`; a resumed one has them already)."""
    model.requires_grad_(False)
    layers = [m for m in model.modules() if isinstance(m, SkillMoE)]
    if not layers:
        raise ValueError("the action head has no experts (head.moe=false); cannot add a skill")
    for layer in layers:
        if grow:
            layer.add_expert()
        layer.experts[-1].requires_grad_(True)
        train_last_row_only(layer)
    if not hasattr(model.backbone, "get_base_model"):  # not yet a peft model
        from peft import LoraConfig, get_peft_model

        b = config.backbone
        model.backbone = get_peft_model(model.backbone, LoraConfig(
            r=b.lora_rank, lora_alpha=b.lora_alpha, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
    for name, p in model.backbone.named_parameters():
        if "lora_" in name:
            p.requires_grad_(True)


def train_last_row_only(layer: SkillMoE) -> None:
    """The router trains its last row (the new skill) only; the rows above keep their values exactly."""
    router = layer.router
    router.requires_grad_(True)
    mask = torch.zeros_like(router)
    mask[-1] = 1
    router.register_hook(lambda grad: grad * mask.to(grad.device))
    router.frozen_rows = router.detach()[:-1].clone()
    _restore_after_every_step()


def _restore_after_every_step() -> None:
    global _HOOK
    if _HOOK is None:
        _HOOK = register_optimizer_step_post_hook(_restore)


@torch.no_grad()
def _restore(optimizer: torch.optim.Optimizer, args, kwargs) -> None:
    for group in optimizer.param_groups:
        for p in group["params"]:
            rows = getattr(p, "frozen_rows", None)
            if rows is not None:
                p[: len(rows)] = rows
