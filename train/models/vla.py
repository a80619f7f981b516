"""The VLA: a VLM whose hidden states condition the DiT action head.

Training: one VLM forward over images + prompt + labelled subtask gives the language-model loss on
the subtask text and the context for the flow-matching loss. Inference: the VLM first generates
the subtask from images + prompt, then the same forward over the completed sequence gives the
context the action head samples from (`atomvla.train.policy`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from atomvla.train.config import SFTConfig
from atomvla.train.models.action_head import ActionHead
from atomvla.train.models.backbone import build_backbone

# Batch keys that feed the action head or the loss; every other tensor of a batch is a VLM input
# (the processor's: Qwen-VL's patches and grids, or another model's own image inputs).
NOT_VLM_KEYS = ("labels", "state", "actions", "action_mask", "skill", "meta")


def vlm_inputs(batch: dict) -> dict:
    return {k: v for k, v in batch.items() if k not in NOT_VLM_KEYS}


@dataclass
class Losses:
    total: Tensor
    flow: Tensor
    lm: Tensor


class VLA(nn.Module):
    def __init__(self, config: SFTConfig, tokenizer, state_dim: int, action_dim: int, n_skills: int):
        super().__init__()
        self.config = config
        self.backbone = build_backbone(config.backbone, tokenizer)
        text = self.backbone.config.get_text_config()
        self.head = ActionHead(config.head, text.hidden_size, state_dim, action_dim, config.data.horizon, n_skills)
        # FSDP's auto-wrap shards each of these blocks on its own (accelerate reads this attribute).
        self._no_split_modules = [*(getattr(self.backbone, "_no_split_modules", None) or []), "DiTBlock"]

    @property
    def backbone_trainable(self) -> bool:
        return any(p.requires_grad for p in self.backbone.parameters())

    def vlm(self, batch: dict, labels: bool = True):
        inputs = vlm_inputs(batch)
        if labels:
            inputs["labels"] = batch["labels"]
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.backbone_trainable):
            return self.backbone(**inputs, output_hidden_states=True, use_cache=False)

    def context(self, batch: dict) -> tuple[Float[Tensor, "b l c"], Bool[Tensor, "b l"]]:
        """The VLM's last hidden states over images + prompt + subtask, and which are real tokens."""
        out = self.vlm(batch, labels=False)
        return out.hidden_states[-1], batch["attention_mask"].bool()

    def forward(self, batch: dict, generator: torch.Generator | None = None) -> Losses:
        out = self.vlm(batch)
        ctx = out.hidden_states[-1]
        flow = self.head.flow_loss(
            batch["actions"], batch["action_mask"], batch["state"], ctx, batch["attention_mask"].bool(),
            batch["skill"], generator,
        )
        lm = out.loss
        return Losses(flow + self.config.train.lm_loss_weight * lm, flow.detach(), lm.detach())

    @torch.no_grad()
    def generate_subtask(self, batch: dict, eos_id: int, pad_id: int, max_new_tokens: int = 48) -> Int[Tensor, "b n"]:
        """Greedy subtask tokens after the (left-padded) prompts in `batch`, up to `eos_id`."""
        out = self.backbone.generate(
            **vlm_inputs(batch), max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=eos_id,
            pad_token_id=pad_id,
        )
        return out[:, batch["input_ids"].shape[1]:]
