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
from transformers import Cache, DynamicCache

from atomvla.train.config import SFTConfig
from atomvla.train.models.action_head import ActionHead
from atomvla.train.models.backbone import build_backbone

# Batch keys that feed the action head or the loss; every other tensor of a batch is a VLM input
# (the processor's: Qwen-VL's patches and grids, or another model's own image inputs).
NOT_VLM_KEYS = ("labels", "state", "actions", "action_mask", "skill", "meta", "suffix_mask", "visible")


def vlm_inputs(batch: dict) -> dict:
    return {k: v for k, v in batch.items() if k not in NOT_VLM_KEYS}


@dataclass
class Losses:
    total: Tensor
    flow: Tensor
    lm: Tensor


@dataclass
class Generated:
    """Greedy subtask tokens, and the action head's context read off the same pass (no second encoding)."""

    tokens: Int[Tensor, "b n"]
    context: Float[Tensor, "b k l c"]
    context_mask: Bool[Tensor, "b l"]


def attention_allowed(real: Bool[Tensor, "b l"], suffix: Bool[Tensor, "b l"], prefix_lm: bool) -> Bool[Tensor, "b 1 l l"]:
    """Which key each query may attend to. Prefix-LM (openpi's): the prefix (images + prompt) attends both
    ways within itself, each suffix (subtask) token to the prefix and the suffix up to itself; causal:
    every token to those before it. Keys must be `real` (not padding, not a masked-out camera); each
    token always sees itself, so no row is empty."""
    n = real.shape[1]
    group = suffix.long().cumsum(-1) if prefix_lm else torch.arange(n, device=real.device).expand_as(real)
    allowed = (group[:, None, :] <= group[:, :, None]) & real[:, None, :]
    return (allowed | torch.eye(n, dtype=torch.bool, device=real.device))[:, None]


class VLA(nn.Module):
    def __init__(self, config: SFTConfig, tokenizer, state_dim: int, action_dim: int, n_skills: int):
        super().__init__()
        self.config = config
        self.backbone = build_backbone(config.backbone, tokenizer)
        text = self.backbone.config.get_text_config()
        d = config.head.depth
        # Which hidden state (1..L: after that layer) conditions each of the head's blocks.
        self.context_layers = (
            [max(1, round((i + 1) * text.num_hidden_layers / d)) for i in range(d)]
            if config.head.context_layers == "layers" else [text.num_hidden_layers]
        )
        self.head = ActionHead(config.head, text.hidden_size, state_dim, action_dim, config.data.horizon, n_skills)
        # FSDP's auto-wrap shards each of these blocks on its own (accelerate reads this attribute).
        self._no_split_modules = [*(getattr(self.backbone, "_no_split_modules", None) or []), "DiTBlock"]

    @property
    def backbone_trainable(self) -> bool:
        return any(p.requires_grad for p in self.backbone.parameters())

    def _base(self):
        """The transformers model under a peft wrapper, if any."""
        return self.backbone.get_base_model() if hasattr(self.backbone, "get_base_model") else self.backbone

    def _mask(self, allowed: Bool[Tensor, "b 1 q k"]) -> Tensor:
        """The 4-D mask in the form the attention implementation takes (transformers passes it through)."""
        if self.backbone.config.get_text_config()._attn_implementation in ("sdpa", "flex_attention"):
            return allowed
        return torch.zeros(allowed.shape, device=allowed.device).masked_fill(~allowed, torch.finfo(torch.float32).min)

    def positions(self, batch: dict) -> Tensor:
        """Position ids of the (padded) sequences: Qwen-VL's 3-D m-RoPE ids, else 0, 1, ... over real tokens.
        Computed here because the model would read them off a 2-D mask, and it gets a 4-D one."""
        pad = batch["attention_mask"]
        core = getattr(self._base(), "model", None)
        if hasattr(core, "get_rope_index"):
            pos, _ = core.get_rope_index(batch["input_ids"], mm_token_type_ids=batch["mm_token_type_ids"],
                                         image_grid_thw=batch["image_grid_thw"], attention_mask=pad)
            return pos
        return (pad.long().cumsum(-1) - 1).clamp(min=0)

    def vlm(self, batch: dict, labels: bool = True, cache: Cache | None = None):
        inputs = vlm_inputs(batch)
        real = batch["attention_mask"].bool() & batch["visible"]
        inputs["attention_mask"] = self._mask(
            attention_allowed(real, batch["suffix_mask"], self.config.backbone.attention == "prefix"))
        inputs["position_ids"] = self.positions(batch)
        if labels:
            inputs["labels"] = batch["labels"]
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.backbone_trainable):
            return self.backbone(**inputs, output_hidden_states=True, use_cache=cache is not None, cache=cache)

    def layers_of(self, hidden_states: tuple[Tensor, ...]) -> Float[Tensor, "b k l c"]:
        return torch.stack([hidden_states[i] for i in self.context_layers], 1)

    def context(self, batch: dict) -> tuple[Float[Tensor, "b k l c"], Bool[Tensor, "b l"]]:
        """The VLM's hidden states (the layers the head reads) over images + prompt + subtask, and which
        are real tokens."""
        out = self.vlm(batch, labels=False)
        return self.layers_of(out.hidden_states), batch["attention_mask"].bool() & batch["visible"]

    def forward(self, batch: dict, generator: torch.Generator | None = None) -> Losses:
        out = self.vlm(batch)
        flow = self.head.flow_loss(
            batch["actions"], batch["action_mask"], batch["state"], self.layers_of(out.hidden_states),
            batch["attention_mask"].bool() & batch["visible"], batch["skill"], generator,
        )
        lm = out.loss
        return Losses(flow + self.config.train.lm_loss_weight * lm, flow.detach(), lm.detach())

    @torch.no_grad()
    def generate_subtask(self, batch: dict, eos_id: int, pad_id: int, max_new_tokens: int = 48) -> Generated:
        """Greedy subtask tokens after the (left-padded) prompts in `batch`, up to `eos_id` (forced after
        `max_new_tokens`), with the head's
        context: the prompt's hidden states from the prefill and each generated token's from the step that
        reads it (the end token included), under the training's attention pattern. So the action pass
        needs no second VLM forward."""
        # A plain cache keeps every key: the one 4-D mask covers all layers, sliding-window ones included
        # (Gemma 3's), as in training.
        prefill = self.vlm(batch, labels=False, cache=DynamicCache())
        cache, logits = prefill.cache, prefill.logits[:, -1]
        keys = batch["attention_mask"].bool() & batch["visible"]
        context, real = [self.layers_of(prefill.hidden_states)], [keys]
        position = self.positions(batch)[..., -1:] + 1  # prompts are left-padded: the last token is real
        per_token = [k for k, v in vlm_inputs(batch).items()
                     if torch.is_tensor(v) and v.shape == batch["input_ids"].shape and k not in ("input_ids", "attention_mask")]
        done = torch.zeros(len(keys), dtype=torch.bool, device=keys.device)
        tokens = []
        for step in range(max_new_tokens + 1):
            # Past `max_new_tokens` the end token is forced: the context always ends as in training.
            token = torch.where(done, pad_id, logits.argmax(-1) if step < max_new_tokens else torch.full_like(done, eos_id, dtype=torch.long))
            tokens.append(token)
            keys = torch.cat([keys, ~done[:, None]], 1)
            out = self.backbone(
                input_ids=token[:, None], attention_mask=self._mask(keys[:, None, None, :]),
                position_ids=position, cache=cache, use_cache=True, output_hidden_states=True,
                **{k: torch.zeros_like(token[:, None]) for k in per_token},
            )
            context.append(self.layers_of(out.hidden_states))
            real.append(~done[:, None])
            cache, logits, position = out.cache, out.logits[:, -1], position + 1
            done = done | (token == eos_id)
            if done.all():
                break
        return Generated(torch.stack(tokens, 1), torch.cat(context, 2), torch.cat(real, 1))
