"""Inference: `load_policy(checkpoint).infer(observation) -> Inference(actions, subtask, skill)`.

The observation is repacked into a `Sample` and run through the training's inputs chain
(`atomvla.train.data.transforms`: normalise, pad, resize; then the model's processor); the VLM generates
the current subtask ("think"), re-deciding every `redecide_every` chunks, and the action head samples a
chunk conditioned on it ("act"); the outputs chain turns the chunk back into the robot's actions.
When the subtask is re-decided, the action head reads its context off the generation pass itself (its
KV cache and hidden states), so the context is encoded once per chunk. The entry point for evaluation,
rollouts and a robot.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from jaxtyping import Float

from atomvla.train.assemble import Trained, load_trained
from atomvla.train.data.samples import Sample
from atomvla.train.data.transforms import ActionOutputs, input_chain
from atomvla.train.models.processor import parse_subtask_text
from atomvla.train.models.vla import Generated

log = logging.getLogger(__name__)


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
        self.chain = input_chain(trained.config.data, trained.stats)  # inference: no random transforms
        self.outputs = ActionOutputs.of(trained.config.data, trained.stats)
        self.redecide_every = trained.config.redecide_every
        self.generator = torch.Generator(self.device).manual_seed(seed)
        self._skill_less: set[str] = set()  # generated subtasks already warned about (once each, not per chunk)
        # As in training: bf16 autocast over fp32 weights on a GPU when the config trains in bf16.
        self._bf16 = self.device.type == "cuda" and trained.config.train.mixed_precision == "bf16"
        self.reset()

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self._bf16)

    def reset(self) -> None:
        """Forget the current subtask (a new episode begins)."""
        self._subtask_ids: list[int] | None = None
        self._decided: tuple[str | None, str] = (None, "")
        self._chunks = 0

    def _batch(self, samples: Sequence[Sample], suffixes: Sequence[list[int]] | None, skills=None) -> dict:
        """`samples` (repacked, in the dataset's units) through the inputs chain and the processor."""
        items = []
        for i, raw in enumerate(samples):
            s = self.chain(raw)
            item = self.processor.prompt_item(s.images, s.task, suffixes[i] if suffixes else (), s.image_mask)
            skill = self.processor.skill_id(skills[i]) if skills is not None else -1
            items.append({**item, "state": torch.from_numpy(s.state), "skill": torch.tensor(skill)})
        batch = self.processor.collate(items, left_pad=suffixes is None)
        return {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in batch.items()}

    @torch.no_grad()
    def generate(self, samples: Sequence[Sample], max_new_tokens: int = 48) -> tuple[list[list[int]], Generated]:
        """Per sample, the generated subtask tokens ending with the end token, and the head's context."""
        batch = self._batch(samples, None)
        end = self.processor.end
        with self._autocast():
            gen = self.model.generate_subtask(batch, end, self.processor.pad, max_new_tokens)
        rows = gen.tokens.tolist()
        return [(row[: row.index(end)] if end in row else row) + [end] for row in rows], gen

    def generate_subtasks(self, samples: Sequence[Sample], max_new_tokens: int = 48) -> list[list[int]]:
        return self.generate(samples, max_new_tokens)[0]

    def decode(self, subtask_ids: list[int]) -> tuple[str | None, str]:
        """(skill, instruction) of generated subtask tokens; the skill is None when the text names none."""
        skill, instruction = parse_subtask_text(self.processor.tokenizer.decode(subtask_ids, skip_special_tokens=True))
        if skill is None and instruction not in self._skill_less:
            self._skill_less.add(instruction)
            log.warning("generated subtask %r names no skill (the reported skill is None): %s", instruction,
                        self.processor.no_skill_effect)
        return skill, instruction

    @torch.no_grad()
    def predict_actions(
        self, samples: Sequence[Sample], subtask_ids: Sequence[list[int]], skills: Sequence[str | None]
    ) -> Float[np.ndarray, "b horizon a"]:
        """Action chunks in the robot's units, conditioned on the given subtask tokens and skills (one VLM
        forward over images + prompt + subtask)."""
        batch = self._batch(samples, subtask_ids, skills)
        with self._autocast():
            ctx, mask = self.model.context(batch)
        return self._act(samples, batch, ctx, mask)

    @torch.no_grad()
    def act(self, samples: Sequence[Sample], generated: Generated, skills: Sequence[str | None]) -> Float[np.ndarray, "b horizon a"]:
        """Action chunks conditioned on the context the generation pass left (no second VLM forward)."""
        batch = self._batch(samples, None, skills)
        return self._act(samples, batch, generated.context, generated.context_mask)

    def _act(self, samples: Sequence[Sample], batch: dict, ctx, mask) -> Float[np.ndarray, "b horizon a"]:
        head = self.model.head
        noise = torch.randn(len(samples), head.horizon, head.action_dim, generator=self.generator, device=self.device)
        with self._autocast():
            chunk = head.sample(batch["state"], ctx, mask, batch["skill"], noise=noise)
        return self.outputs(chunk.float().cpu().numpy(), np.stack([s.state for s in samples]))

    def observation_sample(self, observation: Mapping) -> Sample:
        """A `Sample` in the robot's units from `{"images": {camera: (H, W, 3) uint8}, "state": (S,), "task": str}`.
        A camera may be missing if the policy was trained with camera dropout: it is masked out."""
        images = observation["images"]
        cams = self.trained.cameras
        present = np.array([c in images for c in cams])
        if not present.all() and (self.trained.config.data.camera_dropout <= 0 or not present.any()):
            missing = cams[int(np.argmin(present))]
            raise KeyError(f"observation has no camera {missing!r} (the policy uses {', '.join(cams)}"
                           + ("" if present.any() else "; at least one is needed") + ")")
        state = np.asarray(observation["state"], np.float32).reshape(-1)
        if state.shape[0] != len(self.stats.state.names):
            raise ValueError(f"observation state has {state.shape[0]} values, the policy expects {len(self.stats.state.names)}")
        shape = np.asarray(images[cams[int(np.argmax(present))]]).shape
        frames = np.stack([np.asarray(images[c], np.uint8) if c in images else np.zeros(shape, np.uint8) for c in cams])
        h, a = self.model.head.horizon, len(self.stats.action.names)
        return Sample(
            images=frames, state=state, actions=np.zeros((h, a), np.float32), action_mask=np.ones(h, bool),
            task=str(observation["task"]), subtask="", skill="other", episode_id="", frame=0, subtask_index=0,
            boundary_distance=0, image_mask=present,
        )

    def infer(self, observation: Mapping) -> Inference:
        sample = self.observation_sample(observation)
        if self._subtask_ids is None or self._chunks % self.redecide_every == 0:
            ids, generated = self.generate([sample])
            self._subtask_ids, self._decided = ids[0], self.decode(ids[0])
            actions = self.act([sample], generated, [self._decided[0]])[0]
        else:
            actions = self.predict_actions([sample], [self._subtask_ids], [self._decided[0]])[0]
        skill, instruction = self._decided
        self._chunks += 1
        return Inference(actions, instruction, skill)


def load_policy(checkpoint: str | Path, device: str | torch.device = "cpu", seed: int = 0) -> Policy:
    return Policy(load_trained(Path(checkpoint)), device, seed)
