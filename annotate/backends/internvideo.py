"""`internvideo`: InternVideo2.5-Chat-8B in process through transformers, for a GPU.

The frames, prompt, parsing and repair are the shared VLM path (`atomvla.annotate.vlm`); this
module runs the model the way its card does: `AutoModel.from_pretrained(..., trust_remote_code=True)`
in bf16, each frame resized to 448 px as ONE tile (`num_patches_list` of ones), the prompt's
frames written `Frame37: <image>`, and `model.chat(tokenizer, pixel_values, question,
generation_config, num_patches_list=..., history=...)`; a repair request is the next turn of the
same chat, with the same frames. About 17 GB of weights; 64 frames fit a 24 GB card.
"""

from __future__ import annotations

import asyncio
import re
import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from jaxtyping import Float, UInt8
from pydantic import Field

from atomvla.annotate.backends.base import BackendError, SetupError, register
from atomvla.annotate.backends.vlm_backend import VLMBackend, VLMConfig
from atomvla.annotate.client.pricing import Usage
from atomvla.annotate.vlm import Message, flatten
from atomvla.curate.episode import Episode
from atomvla.schemas import Decomposition

IMAGE = "<image>"
# InternVL's preprocessing: ImageNet statistics.
MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])
_FRAME = re.compile(r"Frame (\d+):\n" + re.escape(IMAGE))


class InternVideoConfig(VLMConfig):
    model: str = Field("OpenGVLab/InternVideo2_5_Chat_8B", description="Hub id or local folder of the model")
    image_size: int = Field(448, ge=28, description="side each frame is resized to (one tile per frame)")
    max_new_tokens: int = Field(512, ge=1, description="longest answer generated")


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    device: str
    lock: threading.Lock  # one chat at a time: the model's `system_message` is per call


_LOADING = threading.Lock()  # episodes run concurrently: the first load must happen once, not per thread


def load_model(model_id: str) -> LoadedModel | OSError:
    with _LOADING:
        return _load(model_id)


@lru_cache(maxsize=1)
def _load(model_id: str) -> LoadedModel | OSError:
    """The model and tokenizer, once per process: bf16 on a GPU (fp32 on a CPU, for small models).

    A model that cannot be loaded (no such folder, offline, no access) is returned as its error,
    also once: every episode then fails at once with the reason instead of retrying the load.
    """
    import torch
    from transformers import AutoModel, AutoTokenizer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    try:
        model = AutoModel.from_pretrained(model_id, trust_remote_code=True, dtype=dtype).eval().to(device)
        tokenizer = AutoTokenizer.from_pretrained(model_id, trust_remote_code=True)
    except OSError as exc:
        return exc
    return LoadedModel(model, tokenizer, device, threading.Lock())


def pixel_values(frames: UInt8[np.ndarray, "k h w 3"], size: int) -> Float[np.ndarray, "k 3 size size"]:
    """Each frame as one tile: resized to size x size (bicubic), scaled to [0, 1], normalised."""
    from PIL import Image

    tiles = np.stack(
        [np.asarray(Image.fromarray(f).resize((size, size), Image.Resampling.BICUBIC)) for f in frames]
    ).astype(np.float32) / 255.0
    return ((tiles - MEAN) / STD).transpose(0, 3, 1, 2).astype(np.float32)


def chat_turns(messages: list[Message]) -> tuple[str, list[tuple[str, str]], str]:
    """(system message, history of (question, answer) pairs, question) in InternVL's chat format,
    frames written `Frame37: <image>`."""
    turns = [(role, _FRAME.sub(r"Frame\1: " + IMAGE, text)) for role, text in flatten(messages, IMAGE)]
    system = turns.pop(0)[1] if turns and turns[0][0] == "system" else ""
    if not turns or turns[-1][0] != "user":
        raise ValueError("a chat request must end with a user message")
    pairs = turns[:-1]
    if [r for r, _ in pairs] != ["user", "assistant"] * (len(pairs) // 2):
        raise ValueError(f"expected alternating user/assistant turns, got {[r for r, _ in pairs]}")
    history = [(pairs[i][1], pairs[i + 1][1]) for i in range(0, len(pairs), 2)]
    return system, history, turns[-1][1]


@register
class InternVideoBackend(VLMBackend):
    """InternVideo2.5-Chat (or another InternVL-style chat model) on the local GPU."""

    name = "internvideo"
    Config = InternVideoConfig

    @property
    def model(self) -> str:
        return self.config.model  # type: ignore[attr-defined]

    def prepare(self) -> None:
        loaded = load_model(self.model)
        if isinstance(loaded, OSError):
            first = str(loaded).strip().splitlines()[0] if str(loaded).strip() else type(loaded).__name__
            raise SetupError(f"internvideo: cannot load model {self.model!r} ({first})")

    async def apropose(self, episode: Episode) -> tuple[Decomposition, Usage]:
        loaded = await asyncio.to_thread(load_model, self.config.model)  # type: ignore[attr-defined]
        if isinstance(loaded, OSError):
            raise BackendError(self.name, episode.meta, f"cannot load model {self.model!r}: {loaded}")
        return await super().apropose(episode)

    def generate(self, messages: list[Message], frames: np.ndarray) -> tuple[str, Usage]:
        import torch

        cfg: InternVideoConfig = self.config  # type: ignore[assignment]
        loaded = load_model(cfg.model)
        assert isinstance(loaded, LoadedModel), "apropose checked the load"
        system, history, question = chat_turns(messages)
        n_images = sum(q.count(IMAGE) for q, _ in history) + question.count(IMAGE)
        if n_images != len(frames):
            raise ValueError(f"the prompt has {n_images} {IMAGE} placeholders for {len(frames)} frames")
        model, tokenizer = loaded.model, loaded.tokenizer
        pixels = torch.from_numpy(pixel_values(frames, cfg.image_size)).to(loaded.device, model.dtype)
        generation_config = {"do_sample": False, "num_beams": 1, "max_new_tokens": cfg.max_new_tokens}
        with loaded.lock, torch.inference_mode():
            model.system_message = system
            answer = model.chat(
                tokenizer, pixels, question, generation_config,
                num_patches_list=[1] * len(frames), history=history or None, return_history=False,
            )
        text_in = system + "".join(q + a for q, a in history) + question
        usage = Usage(
            input_tokens=len(tokenizer(text_in).input_ids) + n_images * int(getattr(model, "num_image_token", 0)),
            output_tokens=len(tokenizer(answer).input_ids),
            requests=1,
        )
        return answer, usage
