"""Backbones outside the Qwen-VL family: any image-text-to-text model of transformers, fed by its own
processor (`AutoProcessor`; without torchvision transformers picks the PIL image processor).

The sequence is the model's image placeholder once per camera, then the prompt before `{subtask}`,
which the model's processor tokenises and expands into its image tokens (its BOS included); then
the subtask text and the tokenizer's EOS, which are the language-model labels as on the Qwen path.
The model's own image size applies (`data.image_size` sizes Qwen-VL's patches only).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from torch import Tensor

from atomvla.train.config import BackboneConfig
from atomvla.train.models.backbone import TINY
from atomvla.train.models.processor import VLAProcessor
from atomvla.train.models.vla import NOT_VLM_KEYS

# Model types that take the hand-built Qwen-VL path (`backbone.py`, `VLAProcessor`).
QWEN_VL_TYPES = frozenset({"qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe"})


@lru_cache(maxsize=8)
def _model_type(model: str) -> str:
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(model).model_type


def is_qwen_vl(cfg: BackboneConfig) -> bool:
    """Whether `cfg.model` is the tiny Qwen3-VL or a Qwen-VL model (checked from its config)."""
    return cfg.model == TINY or _model_type(cfg.model) in QWEN_VL_TYPES


@dataclass
class HFVLAProcessor(VLAProcessor):
    """`VLAProcessor` for any image-text-to-text model: images and image tokens from `hf_processor`."""

    hf_processor: Any  # the model's own `AutoProcessor`

    def special_tokens(self) -> None:
        self.placeholder = self.hf_processor.image_token  # the text marking where an image goes
        self.image_token = self.tokenizer.convert_tokens_to_ids(self.placeholder)
        if self.tokenizer.eos_token_id is None:
            raise ValueError(f"tokenizer {type(self.tokenizer).__name__} has no EOS token to end a subtask with")
        self.end = self.tokenizer.eos_token_id
        self.pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.end

    def vlm_item(self, images: np.ndarray, task: str, suffix: Sequence[int]) -> dict[str, Any]:
        text = self.placeholder * len(images) + self._before.format(task=task)
        out = self.hf_processor(text=[text], images=[list(images)], return_tensors="pt")
        ids = out["input_ids"]
        item: dict[str, Any] = {"input_ids": torch.cat([ids[0], torch.tensor(list(suffix), dtype=ids.dtype)])}
        for key, value in out.items():
            if key == "attention_mask":
                continue
            if value.shape == ids.shape:  # per-token (e.g. Gemma 3's token_type_ids): 0 on the appended text
                value = torch.cat([value[0], value.new_zeros(len(suffix))])
            item.setdefault(key, value)
        return item

    def collate_vision(self, items: Sequence[dict[str, Any]], ids: Tensor, left_pad: bool) -> dict[str, Tensor]:
        """Per-image inputs (patches, their masks and sizes) concatenated along their first axis;
        per-token inputs (1-D in an item) padded with 0 like the ids."""
        out: dict[str, Tensor] = {}
        for key in [k for k in items[0] if k != "input_ids" and k not in NOT_VLM_KEYS]:
            if items[0][key].dim() == 1:
                out[key] = torch.zeros_like(ids)
                for b, it in enumerate(items):
                    k = len(it[key])
                    out[key][b, slice(ids.shape[1] - k, None) if left_pad else slice(0, k)] = it[key]
            else:
                out[key] = torch.cat([it[key] for it in items])
        return out


def load_hf_processor(cfg: BackboneConfig):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(cfg.model)
