"""Model transforms: a `Sample` -> token ids, labels and image patches for the VLM; batches; and
the prompt prefix the VLM completes with the subtask at inference ("think, then act").

The sequence is `[<vision_start> <image_pad>*n <vision_end>] per camera + prompt + subtask + <im_end>`
with the prompt template's text before `{subtask}`; the language-model labels are the subtask text
`"{skill}: {instruction}"` and `<im_end>`, so a generated subtask also names the skill that routes
the mixture-of-experts head.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from atomvla.schemas import SKILLS
from atomvla.train.data.samples import Sample

IGNORE = -100
SHARED = -1  # the skill id that routes to the shared expert alone

log = logging.getLogger(__name__)


def subtask_text(skill: str, instruction: str) -> str:
    return f"{skill}: {instruction}"


def parse_subtask_text(text: str) -> tuple[str | None, str]:
    """(skill or None, instruction) from a generated subtask text."""
    head, sep, rest = text.partition(":")
    if sep and head.strip() in SKILLS:
        return head.strip(), rest.strip()
    return None, text.strip()


@dataclass
class VLAProcessor:
    tokenizer: Any
    image_processor: Any
    prompt: str  # template with `{task}` and, last, `{subtask}`
    skills: tuple[str, ...]  # skill id = position here (the training data's skills; the MoE head's experts)
    moe: bool  # the action head routes skills to experts (`head.moe`); a plain head reads no skill

    def __post_init__(self):
        before, sep, after = self.prompt.partition("{subtask}")
        if not sep or after.strip():
            raise ValueError(f"prompt template {self.prompt!r} must end with {{subtask}}")
        self._before = before
        self._warned: set[str] = set()  # skills outside `skills` already warned about: once each, not per chunk
        self.special_tokens()

    def special_tokens(self) -> None:
        """Ids of the image, end-of-subtask and padding tokens."""
        ids = self.tokenizer.convert_tokens_to_ids
        self.image_token = ids("<|image_pad|>")
        self.vision_start, self.vision_end = ids("<|vision_start|>"), ids("<|vision_end|>")
        self.end = ids("<|im_end|>")
        self.pad = self.tokenizer.pad_token_id

    @property
    def no_skill_effect(self) -> str:
        """What a skill outside `skills`, or none, means for this head's actions: one wording, which the
        policy's warning about a generated subtask naming no skill says too."""
        return "the shared expert acts" if self.moe else "this head reads no skill, so the actions do not depend on it"

    def skill_id(self, skill: str | None) -> int:
        """Position of `skill` among `skills`; `SHARED` for none or an unknown one (e.g. a generated
        subtask naming a skill the training data lacked): the MoE head's shared expert acts alone."""
        if skill in self.skills:
            return self.skills.index(skill)
        if skill is not None and skill not in self._warned:  # None: the policy logs unparseable subtasks itself
            self._warned.add(skill)
            lacks = "has no expert" if self.moe else "was not in the training data"
            log.warning("skill %r %s (skills: %s): %s", skill, lacks, ", ".join(self.skills), self.no_skill_effect)
        return SHARED

    def images(self, images: np.ndarray) -> tuple[Tensor, Tensor]:
        """(patches, dim) pixel values and (cam, 3) grids for one sample's cameras."""
        out = self.image_processor(images=list(images), return_tensors="pt")
        return out["pixel_values"], out["image_grid_thw"]

    def prefix_ids(self, grids: Tensor, task: str) -> list[int]:
        merge = self.image_processor.merge_size**2
        ids: list[int] = []
        for grid in grids:
            ids += [self.vision_start] + [self.image_token] * (int(grid.prod()) // merge) + [self.vision_end]
        return ids + self.tokenizer.encode(self._before.format(task=task), add_special_tokens=False)

    def subtask_ids(self, skill: str, instruction: str) -> list[int]:
        return self.tokenizer.encode(subtask_text(skill, instruction), add_special_tokens=False) + [self.end]

    def prompt_item(self, images: np.ndarray, task: str, suffix: Sequence[int] = (),
                    image_mask: np.ndarray | None = None) -> dict[str, Any]:
        """The VLM inputs of one sample's cameras and prompt, then `suffix` tokens (e.g. a subtask), with
        which tokens are the suffix (attended causally under prefix-LM attention) and which are visible
        (not the image tokens of a masked-out camera)."""
        item = self.vlm_item(images, task, suffix)
        ids = item["input_ids"]
        suffix_mask = torch.zeros(len(ids), dtype=torch.bool)
        suffix_mask[len(ids) - len(suffix):] = True
        visible = torch.ones(len(ids), dtype=torch.bool)
        if image_mask is not None and not image_mask.all():
            # The c-th run of image tokens shows camera c.
            is_image = ids == self.image_token
            starts = torch.nonzero(is_image & ~torch.cat([torch.tensor([False]), is_image[:-1]])).flatten().tolist()
            for cam, start in enumerate(starts):
                if not image_mask[cam]:
                    end = start
                    while end < len(ids) and is_image[end]:
                        end += 1
                    visible[start:end] = False
        return {**item, "suffix_mask": suffix_mask, "visible": visible}

    def vlm_item(self, images: np.ndarray, task: str, suffix: Sequence[int]) -> dict[str, Any]:
        pixels, grids = self.images(images)
        ids = self.prefix_ids(grids, task) + list(suffix)
        return {"input_ids": torch.tensor(ids), "pixel_values": pixels, "image_grid_thw": grids}

    def __call__(self, s: Sample) -> dict[str, Any]:
        target = self.subtask_ids(s.skill, s.subtask)
        item = self.prompt_item(s.images, s.task, target, s.image_mask)
        prefix = len(item["input_ids"]) - len(target)
        return {
            **item,
            "labels": torch.tensor([IGNORE] * prefix + target),
            "state": torch.from_numpy(s.state),
            "actions": torch.from_numpy(s.actions),
            "action_mask": torch.from_numpy(s.action_mask),
            "skill": torch.tensor(self.skill_id(s.skill)),
            "meta": {"episode_id": s.episode_id, "frame": s.frame, "subtask": s.subtask, "skill": s.skill,
                     "subtask_index": s.subtask_index, "boundary_distance": s.boundary_distance, "task": s.task},
        }

    def collate(self, items: Sequence[dict[str, Any]], left_pad: bool = False) -> dict[str, Any]:
        """A batch; sequences right-padded (left-padded for generation)."""
        n = max(len(it["input_ids"]) for it in items)
        ids = torch.full((len(items), n), self.pad, dtype=torch.long)
        labels = torch.full((len(items), n), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(items), n), dtype=torch.long)
        suffix = torch.zeros((len(items), n), dtype=torch.bool)
        visible = torch.zeros((len(items), n), dtype=torch.bool)
        for b, it in enumerate(items):
            k = len(it["input_ids"])
            sl = slice(n - k, n) if left_pad else slice(0, k)
            ids[b, sl], mask[b, sl] = it["input_ids"], 1
            suffix[b, sl], visible[b, sl] = it["suffix_mask"], it["visible"]
            if "labels" in it:
                labels[b, sl] = it["labels"]
        batch = {
            "input_ids": ids,
            "attention_mask": mask,
            "suffix_mask": suffix,
            "visible": visible,
            "labels": labels,
            **self.collate_vision(items, ids, left_pad),
            "meta": [it.get("meta") for it in items],
        }
        for key in ("state", "actions", "action_mask", "skill"):
            if key in items[0]:
                batch[key] = torch.stack([it[key] for it in items])
        return batch

    def collate_vision(self, items: Sequence[dict[str, Any]], ids: Tensor, left_pad: bool) -> dict[str, Tensor]:
        """The batch's image inputs: patches and grids of every camera, and which tokens are image tokens."""
        return {
            "mm_token_type_ids": (ids == self.image_token).int(),
            "pixel_values": torch.cat([it["pixel_values"] for it in items]),
            "image_grid_thw": torch.cat([it["image_grid_thw"] for it in items]),
        }
