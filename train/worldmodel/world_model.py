"""A trained world model: predictor, state/action statistics and the encoder it was trained on."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from safetensors.torch import load_file, save_file
from torch import Tensor

from atomvla.errors import UserError
from atomvla.train.config import from_dict
from atomvla.train.latents import LatentCache
from atomvla.train.worldmodel.config import WMConfig
from atomvla.train.worldmodel.data import Normaliser
from atomvla.train.worldmodel.model import ACPredictor, PredictorDims

WEIGHTS = "world_model.safetensors"


class WorldModelError(UserError, ValueError):
    """A world model that cannot be used here (missing, another encoder, other action sizes)."""


@dataclass
class WorldModel:
    config: WMConfig
    predictor: ACPredictor
    norm: Normaliser
    encoder_key: str
    encoder_identity: dict[str, Any]
    latents_dir: str

    @classmethod
    def build(cls, config: WMConfig, dims: PredictorDims, norm: Normaliser, cache: LatentCache) -> WorldModel:
        p = config.predictor
        predictor = ACPredictor(dims, p.hidden_size, p.depth, p.heads, max_steps=p.steps + 1, mlp_ratio=p.mlp_ratio)
        return cls(config, predictor, norm, cache.key, cache.identity, str(cache.root))

    @torch.no_grad()
    def predict(
        self, latent: Float[Tensor, "b n d"], state: Float[Tensor, "b s"], chunk: Float[Tensor, "b h a"]
    ) -> Float[Tensor, "b n d"]:
        """The (layer-normed) latent one chunk later, from the current one, the raw state and raw chunk."""
        return self.predictor(latent[:, None], self.norm.action(chunk)[:, None], self.norm.state(state)[:, None])[:, 0]

    @torch.no_grad()
    def rollout(
        self, latent: Float[Tensor, "b n d"], states: Float[Tensor, "b k s"], chunks: Float[Tensor, "b k h a"]
    ) -> Float[Tensor, "b k n d"]:
        """The latents after each of k chunks applied in turn (raw states and chunks; one step: `predict`)."""
        return self.predictor.rollout(latent, self.norm.action(chunks), self.norm.state(states))

    def check_latents(self, cache: LatentCache, where: str) -> None:
        """Refuse latents from another encoder or preprocessing than the ones trained on."""
        if cache.key != self.encoder_key:
            raise WorldModelError(
                f"{where}: the world model was trained on latents of encoder {self.encoder_identity.get('encoder')!r} "
                f"(cache key {self.encoder_key}), these latents come from {cache.identity.get('encoder')!r} "
                f"(cache key {cache.key}); use the world model's encoder config or retrain it"
            )

    def save(self, out: str | Path) -> Path:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        meta = {
            "config": json.dumps(asdict(self.config)),
            "dims": json.dumps(asdict(self.predictor.dims)),
            "encoder_key": self.encoder_key,
            "encoder_identity": json.dumps(self.encoder_identity),
            "latents_dir": self.latents_dir,
        }
        tensors = {f"predictor.{k}": v.detach().cpu().contiguous() for k, v in self.predictor.state_dict().items()}
        tensors |= {k: v.contiguous() for k, v in self.norm.tensors().items()}
        path = out / WEIGHTS
        tmp = path.with_suffix(".tmp")
        save_file(tensors, str(tmp), metadata=meta)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> WorldModel:
        from safetensors import safe_open

        path = Path(path)
        file = path / WEIGHTS if path.is_dir() else path
        if not file.is_file():
            raise WorldModelError(f"{file}: no world model here (train one with `atom-train wm`)")
        with safe_open(str(file), framework="pt") as f:
            meta = f.metadata() or {}
        if "encoder_key" not in meta:
            raise WorldModelError(f"{file}: not an atomvla world model (no encoder key in its metadata)")
        tensors = {k: v.to(device) for k, v in load_file(str(file)).items()}
        config = from_dict(WMConfig, json.loads(meta["config"]))
        dims = PredictorDims(**json.loads(meta["dims"]))
        p = config.predictor
        predictor = ACPredictor(dims, p.hidden_size, p.depth, p.heads, max_steps=p.steps + 1, mlp_ratio=p.mlp_ratio)
        predictor.load_state_dict({k.removeprefix("predictor."): v for k, v in tensors.items() if k.startswith("predictor.")})
        norm = Normaliser.from_tensors(tensors)
        return cls(
            config, predictor.to(device).eval(), norm, meta["encoder_key"], json.loads(meta["encoder_identity"]), meta["latents_dir"]
        )
