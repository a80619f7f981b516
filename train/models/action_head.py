"""The action head: a Diffusion Transformer trained with flow matching.

Tokens are [state, noisy action chunk]; each block does self-attention over them, cross-attention
to the VLM's hidden states, and a feed-forward layer, modulated by the flow time (adaLN-Zero).
The feed-forward layer is a plain MLP, or (`moe`) AtomicVLA's skill-guided mixture of experts: a
shared expert plus one expert per skill, mixed by a router that reads the skill id.

Flow convention: x_s = s·actions + (1 − s)·noise, velocity = actions − noise; sampling integrates
from s = 0 (noise) to s = 1 with Euler steps.
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from atomvla.train.config import HeadConfig

_ROUTER_INIT = 4.0  # router logit of a skill's own expert at creation: mostly its own expert


def _mlp(d: int, ratio: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d, int(d * ratio)), nn.GELU(approximate="tanh"), nn.Linear(int(d * ratio), d))


class SkillMoE(nn.Module):
    """shared(x) + Σ_e softmax(router[skill])_e · expert_e(x); skill `SHARED` (-1): shared(x) alone.

    The experts are summed in order, so an expert added later whose weight is exactly 0 for the old
    skills (router logit -1e4) leaves their outputs identical bit for bit."""

    def __init__(self, d: int, ratio: float, n_skills: int):
        super().__init__()
        self.shared = _mlp(d, ratio)
        self.experts = nn.ModuleList(_mlp(d, ratio) for _ in range(n_skills))
        self.router = nn.Parameter(torch.eye(n_skills) * _ROUTER_INIT)  # (skill, expert) logits

    def forward(self, x: Float[Tensor, "b n d"], skill: Int[Tensor, " b"]) -> Float[Tensor, "b n d"]:
        known = skill >= 0
        weights = self.router[skill.clamp(min=0)].softmax(-1) * known[:, None]  # (b, e)
        out = self.shared(x)
        mixed = None
        for e, expert in enumerate(self.experts):
            term = weights[:, e, None, None].to(x.dtype) * expert(x)
            mixed = term if mixed is None else mixed + term
        return out + mixed

    @torch.no_grad()
    def add_expert(self) -> None:
        """One more skill: a new expert, and the router grown by a row (the new skill) and a column
        (the new expert); old skills keep their routing (their logit for the new expert is very low)."""
        n = len(self.experts)
        d = self.shared[0].in_features
        ratio = self.shared[0].out_features / d
        new = _mlp(d, ratio).to(self.router.device, self.router.dtype)
        new.load_state_dict(self.shared.state_dict())  # start from the shared expert
        self.experts.append(new)
        router = torch.full((n + 1, n + 1), -1e4, dtype=self.router.dtype, device=self.router.device)
        router[:n, :n] = self.router
        router[n, n] = _ROUTER_INIT
        router[n, :n] = 0.0
        self.router = nn.Parameter(router)


class DiTBlock(nn.Module):
    def __init__(self, cfg: HeadConfig, n_skills: int):
        super().__init__()
        d = cfg.hidden_size
        self.norm1 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.self_attn = nn.MultiheadAttention(d, cfg.heads, batch_first=True)
        self.norm2 = nn.LayerNorm(d, eps=1e-6)
        self.cross_attn = nn.MultiheadAttention(d, cfg.heads, batch_first=True)
        self.norm3 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.ffn = SkillMoE(d, cfg.mlp_ratio, n_skills) if cfg.moe else _mlp(d, cfg.mlp_ratio)
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))
        nn.init.zeros_(self.modulation[1].weight)  # adaLN-Zero: each block starts as the identity
        nn.init.zeros_(self.modulation[1].bias)

    def forward(
        self,
        x: Float[Tensor, "b n d"],
        c: Float[Tensor, "b d"],
        ctx: Float[Tensor, "b l d"],
        ctx_pad: Bool[Tensor, "b l"],
        skill: Int[Tensor, " b"],
    ) -> Float[Tensor, "b n d"]:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(c).unsqueeze(1).chunk(6, dim=-1)
        h = self.norm1(x) * (1 + scale1) + shift1
        x = x + gate1 * self.self_attn(h, h, h, need_weights=False)[0]
        x = x + self.cross_attn(self.norm2(x), ctx, ctx, key_padding_mask=ctx_pad, need_weights=False)[0]
        h = self.norm3(x) * (1 + scale2) + shift2
        h = self.ffn(h, skill) if isinstance(self.ffn, SkillMoE) else self.ffn(h)
        return x + gate2 * h


def time_embedding(s: Float[Tensor, " b"], dim: int) -> Float[Tensor, "b dim"]:
    half = dim // 2
    freqs = torch.exp(-math.log(10_000) * torch.arange(half, device=s.device, dtype=torch.float32) / half)
    angles = (s.float() * 1000)[:, None] * freqs[None]
    return torch.cat([angles.cos(), angles.sin()], dim=-1)


class ActionHead(nn.Module):
    def __init__(self, cfg: HeadConfig, context_dim: int, state_dim: int, action_dim: int, horizon: int,
                 n_skills: int):
        super().__init__()
        d = cfg.hidden_size
        self.cfg, self.horizon, self.action_dim = cfg, horizon, action_dim
        # The VLM's intermediate layers are not normed like its last: one norm for every layer read.
        self.context_norm = nn.LayerNorm(context_dim, eps=1e-6)
        self.context_proj = nn.Linear(context_dim, d)
        self.state_in = nn.Linear(state_dim, d)
        self.action_in = nn.Linear(action_dim, d)
        self.position = nn.Parameter(torch.randn(1, horizon + 1, d) * 0.02)
        self.time_mlp = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.blocks = nn.ModuleList(DiTBlock(cfg, n_skills) for _ in range(cfg.depth))
        self.norm_out = nn.LayerNorm(d, eps=1e-6)
        self.action_out = nn.Linear(d, action_dim)

    def velocity(
        self,
        x: Float[Tensor, "b h a"],
        s: Float[Tensor, " b"],
        state: Float[Tensor, "b sd"],
        ctx: Float[Tensor, "b k l c"],
        ctx_mask: Bool[Tensor, "b l"],
        skill: Int[Tensor, " b"],
    ) -> Float[Tensor, "b h a"]:
        """The flow's velocity at chunk `x` and time `s` (0 = noise, 1 = actions); block i cross-attends
        to context layer i (or the only one)."""
        tokens = torch.cat([self.state_in(state)[:, None], self.action_in(x)], dim=1) + self.position
        c = self.time_mlp(time_embedding(s, tokens.shape[-1]).to(tokens.dtype))
        kv = self.context_proj(self.context_norm(ctx))
        for i, block in enumerate(self.blocks):
            tokens = block(tokens, c, kv[:, min(i, kv.shape[1] - 1)], ~ctx_mask, skill)
        return self.action_out(self.norm_out(tokens[:, 1:]))

    def flow_loss(
        self,
        actions: Float[Tensor, "b h a"],
        mask: Bool[Tensor, "b h"],
        state: Float[Tensor, "b sd"],
        ctx: Float[Tensor, "b k l c"],
        ctx_mask: Bool[Tensor, "b l"],
        skill: Int[Tensor, " b"],
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Flow-matching loss over the real (unpadded) steps of each chunk."""
        noise = torch.randn(actions.shape, generator=generator, device=actions.device, dtype=actions.dtype)
        s = self.flow_time(actions.shape[0], generator, actions.device, actions.dtype)
        x = s[:, None, None] * actions + (1 - s[:, None, None]) * noise
        err = (self.velocity(x, s, state, ctx, ctx_mask, skill) - (actions - noise)).pow(2).mean(-1)
        m = mask.to(err.dtype)
        return (err * m).sum() / m.sum().clamp(min=1)

    def flow_time(self, n: int, generator: torch.Generator | None, device, dtype) -> Float[Tensor, " n"]:
        """Training times s (0 = noise): uniform, or pi0's: noise level 1 − s ~ Beta(1.5, 1) in [0.001, 1],
        drawn by inverting its CDF u ↦ u^(2/3) (torch's Beta sampler takes no generator)."""
        u = torch.rand(n, generator=generator, device=device, dtype=dtype)
        if self.cfg.time_sampling == "uniform":
            return u
        return 1 - (u.pow(2 / 3) * 0.999 + 0.001)

    @torch.no_grad()
    def sample(
        self,
        state: Float[Tensor, "b sd"],
        ctx: Float[Tensor, "b k l c"],
        ctx_mask: Bool[Tensor, "b l"],
        skill: Int[Tensor, " b"],
        steps: int | None = None,
        noise: Float[Tensor, "b h a"] | None = None,
    ) -> Float[Tensor, "b h a"]:
        """An action chunk by `steps` Euler steps of the flow from `noise`."""
        steps = steps or self.cfg.sample_steps
        x = noise if noise is not None else torch.randn(
            state.shape[0], self.horizon, self.action_dim, device=state.device, dtype=state.dtype
        )
        for i in range(steps):
            s = torch.full((x.shape[0],), i / steps, device=x.device, dtype=x.dtype)
            x = x + self.velocity(x, s, state, ctx, ctx_mask, skill) / steps
        return x

