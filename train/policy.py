"""Inference: `load_policy(checkpoint).infer(observation) -> Inference(actions, subtask)`.

The same transforms as training run on the observation (normalise the state, resize and patchify
the cameras, tokenise the prompt); the VLM generates the current subtask ("think"), re-deciding
every `redecide_every` chunks, and the action head samples a chunk conditioned on it ("act");
actions are un-normalised on the way out. The entry point for evaluation, rollouts and a robot.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from jaxtyping import Float

from atomvla.train.assemble import Trained, load_trained
from atomvla.train.data.samples import Sample
from atomvla.train.models.processor import parse_subtask_text


@dataclass(frozen=True)
class Inference:
    actions: Float[np.ndarray, "horizon a"]
    subtask: str  # the generated instruction the chunk was conditioned on
    skill: str | None


class Policy:
    def __init__(self, trained: Trained, device: str | torch.device = "cpu", seed: int = 0):
        self.trained = trained
        self.device = torch.device(device)
        self.model = trained.model.to(self.device).eval()
        self.processor = trained.processor
        self.stats = trained.stats
        self.redecide_every = trained.config.redecide_every
        self.generator = torch.Generator(self.device).manual_seed(seed)
        # As in training: bf16 autocast over fp32 weights on a GPU when the config trains in bf16.
        self._bf16 = self.device.type == "cuda" and trained.config.train.mixed_precision == "bf16"
        self.reset()

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self._bf16)

    def reset(self) -> None:
        """Forget the current subtask (a new episode begins)."""
        self._subtask_ids: list[int] | None = None
        self._chunks = 0

    def _items(self, samples: Sequence[Sample], suffixes: Sequence[list[int]] | None) -> list[dict]:
        items = []
        for i, s in enumerate(samples):
            item = self.processor.prompt_item(s.images, s.task, suffixes[i] if suffixes else ())
            items.append({**item, "state": torch.from_numpy(s.state), "skill": torch.tensor(0)})
        return items

    def _to(self, batch: dict) -> dict:
        return {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in batch.items()}

    @torch.no_grad()
    def generate_subtasks(self, samples: Sequence[Sample], max_new_tokens: int = 48) -> list[list[int]]:
        """Per sample, the generated subtask tokens ending with `<|im_end|>`."""
        batch = self._to(self.processor.collate(self._items(samples, None), left_pad=True))
        end = self.processor.end
        with self._autocast():
            out = self.model.generate_subtask(batch, end, self.processor.pad, max_new_tokens).tolist()
        return [(row[: row.index(end)] if end in row else row) + [end] for row in out]

    def decode(self, subtask_ids: list[int]) -> tuple[str | None, str]:
        """(skill, instruction) of generated subtask tokens."""
        return parse_subtask_text(self.processor.tokenizer.decode(subtask_ids, skip_special_tokens=True))

    @torch.no_grad()
    def predict_actions(
        self, samples: Sequence[Sample], subtask_ids: Sequence[list[int]], skills: Sequence[str | None]
    ) -> Float[np.ndarray, "b horizon a"]:
        """Un-normalised action chunks, conditioned on the given subtask tokens and skills."""
        items = self._items(samples, subtask_ids)
        for it, skill in zip(items, skills):
            it["skill"] = torch.tensor(self.processor.skill_id(skill))
        batch = self._to(self.processor.collate(items))
        head = self.model.head
        noise = torch.randn(len(samples), head.horizon, head.action_dim, generator=self.generator, device=self.device)
        with self._autocast():
            ctx, mask = self.model.context(batch)
            chunk = head.sample(batch["state"], ctx, mask, batch["skill"], noise=noise)
        return self.stats.action.unnormalize(chunk.float().cpu().numpy())

    def observation_sample(self, observation: Mapping) -> Sample:
        """A `Sample` from `{"images": {camera: (H, W, 3) uint8}, "state": (S,), "task": str}`."""
        images = observation["images"]
        missing = [c for c in self.trained.cameras if c not in images]
        if missing:
            raise KeyError(f"observation has no camera {missing[0]!r} (the policy uses {', '.join(self.trained.cameras)})")
        state = np.asarray(observation["state"], np.float32).reshape(-1)
        if state.shape[0] != len(self.stats.state.names):
            raise ValueError(f"observation state has {state.shape[0]} values, the policy expects {len(self.stats.state.names)}")
        h = self.model.head.horizon
        return Sample(
            images=np.stack([np.asarray(images[c], np.uint8) for c in self.trained.cameras]),
            state=self.stats.state.normalize(state).astype(np.float32),
            actions=np.zeros((h, self.model.head.action_dim), np.float32), action_mask=np.ones(h, bool),
            task=str(observation["task"]), subtask="", skill="other", episode_id="", frame=0, subtask_index=0,
            boundary_distance=0,
        )

    def infer(self, observation: Mapping) -> Inference:
        sample = self.observation_sample(observation)
        if self._subtask_ids is None or self._chunks % self.redecide_every == 0:
            self._subtask_ids = self.generate_subtasks([sample])[0]
        self._chunks += 1
        skill, instruction = self.decode(self._subtask_ids)
        actions = self.predict_actions([sample], [self._subtask_ids], [skill])[0]
        return Inference(actions, instruction, skill)


def load_policy(checkpoint: str | Path, device: str | torch.device = "cpu", seed: int = 0) -> Policy:
    return Policy(load_trained(Path(checkpoint)), device, seed)
