"""An action-conditioned latent predictor in the style of V-JEPA 2-AC.

Per time step k the sequence holds one token for the action chunk applied from step k, one for the
state at step k, and the frame's patch latents. Attention is full within a step and causal across
steps (block-causal mask), so the patch outputs of step k predict the latents one chunk later.
The output is a change added to the step's input latents, zero at initialisation: an untrained
predictor is exactly the copy-the-current-latent baseline it is evaluated against.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from torch import Tensor, nn


@dataclass(frozen=True)
class PredictorDims:
    """Sizes fixed by the data (stored in the checkpoint with the weights)."""

    latent_dim: int
    n_patches: int
    action_dim: int  # one action; the chunk token sees chunk * action_dim values
    state_dim: int
    chunk: int


def block_causal_mask(steps: int, per_step: int, device: torch.device | None = None) -> Bool[Tensor, "l l"]:
    """True where attention is NOT allowed: a token sees its own step and earlier ones."""
    step = torch.arange(steps * per_step, device=device) // per_step
    return step[None, :] > step[:, None]


class ACPredictor(nn.Module):
    _no_split_modules = ["TransformerEncoderLayer"]  # FSDP's units (`train.loop.shard`)

    def __init__(self, dims: PredictorDims, hidden: int, depth: int, heads: int, max_steps: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.dims = dims
        self.max_steps = max_steps
        self.latent_in = nn.Linear(dims.latent_dim, hidden)
        self.action_in = nn.Linear(dims.chunk * dims.action_dim, hidden)
        self.state_in = nn.Linear(dims.state_dim, hidden)
        self.patch_pos = nn.Parameter(torch.randn(dims.n_patches, hidden) * 0.02)
        self.step_pos = nn.Parameter(torch.randn(max_steps, hidden) * 0.02)
        layer = nn.TransformerEncoderLayer(
            hidden, heads, int(hidden * mlp_ratio), dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(hidden)
        self.out = nn.Linear(hidden, dims.latent_dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(
        self,
        latents: Float[Tensor, "b t n d"],
        chunks: Float[Tensor, "b t h a"],
        states: Float[Tensor, "b t s"],
    ) -> Float[Tensor, "b t n d"]:
        """Prediction of the latents one chunk after each step, from that step and earlier ones."""
        b, t, n, _ = latents.shape
        if t > self.max_steps:
            raise ValueError(f"{t} steps given, the predictor was built for at most {self.max_steps}")
        z = self.latent_in(latents) + self.patch_pos
        a = self.action_in(chunks.flatten(2)).unsqueeze(2)
        s = self.state_in(states).unsqueeze(2)
        x = torch.cat([a, s, z], dim=2) + self.step_pos[:t, None, :]  # (b, t, 2 + n, hidden)
        per_step = n + 2
        x = self.blocks(x.reshape(b, t * per_step, -1), mask=block_causal_mask(t, per_step, x.device))
        x = self.out(self.norm(x)).reshape(b, t, per_step, -1)
        return latents + x[:, :, 2:]

    def rollout(
        self,
        first: Float[Tensor, "b n d"],
        chunks: Float[Tensor, "b k h a"],
        states: Float[Tensor, "b k s"],
    ) -> Float[Tensor, "b k n d"]:
        """Autoregressive predictions: each predicted latent becomes the next step's input."""
        seq = [first]
        for k in range(chunks.shape[1]):
            pred = self(torch.stack(seq, 1), chunks[:, : k + 1], states[:, : k + 1])[:, -1]
            seq.append(pred)
        return torch.stack(seq[1:], 1)


def normalise_latents(latents: Float[Tensor, "... d"]) -> Float[Tensor, "... d"]:
    """Layer norm without parameters over the feature dim: the space predictions and targets live in."""
    return F.layer_norm(latents, latents.shape[-1:])
