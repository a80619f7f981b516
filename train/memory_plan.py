"""What one training step holds in memory per GPU (`atom-train sft|grpo --dry-run`), before any
weights are loaded: the model is built on the meta device from its config (a Hub id, a local folder
or `tiny`), so parameter counts are exact; activations are estimated from the configured batch and
sequence lengths.

Per GPU, for `world` processes (FSDP divides the first three by `world`, plus the two largest
units gathered at once; DDP keeps a bucket copy of the gradients):
- parameters: every weight in its dtype (fp32 master weights; bf16 is autocast or FSDP's policy);
- gradients: trainable elements in fp32;
- optimizer states: AdamW's two moments, fp32 (8 bytes a trainable element) or 8-bit (2 bytes);
- activations: what backward needs, per layer of the parts that pass gradients (LM and vision tower
  unless frozen, action head), the full-vocabulary logits of the subtask loss, and the hidden states
  the head reads. Gradient checkpointing keeps one input per layer plus one layer's worth.
- reserve: 10% of the GPU for the CUDA context, allocator fragmentation and pinned buffers.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
from torch import nn

from atomvla.errors import UserError
from atomvla.train.config import SFTConfig
from atomvla.train.loop import uses_fsdp

GB = 1e9
RESERVE = 0.1  # of the GPU: CUDA context, allocator fragmentation, the data loader's pinned buffers
PATCH, MERGE = 16, 2  # Qwen-VL's patch side and spatial merge


class PlanError(UserError, ValueError):
    pass


@dataclass(frozen=True)
class MemoryPlan:
    world: int
    gpu_memory_gb: float
    rows: dict[str, float]  # bytes per GPU
    counts: dict[str, int]  # parameter elements
    assumptions: list[str] = field(default_factory=list)

    @property
    def total(self) -> float:
        return sum(self.rows.values())

    @property
    def fits(self) -> bool:
        return self.total <= self.gpu_memory_gb * GB

    def table(self) -> str:
        lines = [f"memory plan per GPU, {self.world} process(es):"]
        lines += [f"  {k:<18s} {v / GB:8.2f} GB" for k, v in self.rows.items()]
        lines.append(f"  {'total':<18s} {self.total / GB:8.2f} GB of {self.gpu_memory_gb:g} GB: "
                     + ("fits" if self.fits else "DOES NOT FIT"))
        lines.append("  parameters: " + ", ".join(f"{k} {v / 1e6:,.1f} M" for k, v in self.counts.items()))
        lines += [f"  assuming {a}" for a in self.assumptions]
        return "\n".join(lines)


def build_on_meta(config: SFTConfig, state_dim: int = 32, action_dim: int = 32, n_skills: int = 8) -> nn.Module:
    """The policy of `config` with no storage behind its weights (its architecture, not its values)."""
    from atomvla.train.models.backbone import load_tokenizer
    from atomvla.train.models.vla import VLA

    config = dataclasses.replace(config, backbone=dataclasses.replace(config.backbone, init="random"))
    try:
        tokenizer = load_tokenizer(config.backbone)
    except OSError as exc:
        raise PlanError(f"{config.backbone.model}: cannot read its tokenizer/config offline ({exc}); "
                        "pass backbone.model=LOCAL_FOLDER") from exc
    with torch.device("meta"):
        return VLA(config, tokenizer, state_dim, action_dim, n_skills)


def plan_sft(config: SFTConfig, world: int = 1, gpu_memory_gb: float = 80.0, cameras: int | None = None,
             text_tokens: int = 64, cuda: bool = True, model: nn.Module | None = None, lm_loss: bool = True,
             head_copies: int = 1, reference: bool = False) -> MemoryPlan:
    """The plan of one SFT step of `config` on `world` processes (`cuda`: bf16 activations when asked).
    GRPO's step is the same with `head_copies` (group x denoising steps) candidates through the head,
    no subtask loss, and the frozen `reference`."""
    model = model if model is not None else build_on_meta(config)
    t = config.train
    cams = cameras or max(1, len(config.data.cameras))
    image_tokens = (config.data.image_size // PATCH) ** 2  # patches a camera, before merging
    seq = cams * (image_tokens // MERGE**2 + 2) + text_tokens
    b = t.batch_size
    act_bytes = 2 if (cuda and t.mixed_precision == "bf16") else 4
    fsdp = uses_fsdp(t, world)

    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    opt_bytes = {"adamw": 8, "adamw8bit": 2}[t.optimizer] * trainable
    grad_bytes = 4 * trainable
    rows = {}
    if fsdp:
        units = _unit_sizes(model)
        gathered = sum(sorted(units, reverse=True)[:2]) * act_bytes
        rows["parameters"] = weight_bytes / world + gathered
        rows["gradients"] = grad_bytes / world
        rows["optimizer states"] = opt_bytes / world
    else:
        rows["parameters"] = weight_bytes
        rows["gradients"] = grad_bytes * (2 if world > 1 else 1)  # DDP's buckets
        rows["optimizer states"] = opt_bytes
    rows["activations"] = _activations(model, config, b, seq, cams, image_tokens, act_bytes, lm_loss, head_copies)
    if reference:  # GRPO's frozen SFT policy: sharded like the policy under FSDP
        rows["reference policy"] = weight_bytes / (world if fsdp else 1)
    if cuda:
        rows["reserve"] = RESERVE * gpu_memory_gb * GB

    backbone = getattr(model, "backbone", model)
    visual = _visual(backbone)
    counts = {"total": sum(p.numel() for p in model.parameters()), "trainable": trainable,
              "vision": sum(p.numel() for p in visual.parameters()) if visual is not None else 0,
              "head": sum(p.numel() for p in model.head.parameters())}
    assumptions = [
        f"batch {b} a process, {cams} camera(s) of {config.data.image_size}px ({image_tokens} patches each), "
        f"{seq} tokens a sample ({text_tokens} of text)",
        f"{'FSDP' if fsdp else 'DDP' if world > 1 else 'one process'}, activations in {'bf16' if act_bytes == 2 else 'fp32'}, "
        f"optimizer {t.optimizer}, gradient checkpointing {'on' if config.backbone.gradient_checkpointing else 'off'}",
    ]
    return MemoryPlan(world, gpu_memory_gb, rows, counts, assumptions)


def _visual(backbone: nn.Module) -> nn.Module | None:
    for name, module in backbone.named_modules():
        if name.endswith("visual"):
            return module
    return None


def _unit_sizes(model: nn.Module) -> list[int]:
    blocks = {n for m in model.modules() for n in (getattr(m, "_no_split_modules", None) or ())}
    return [sum(p.numel() for p in m.parameters()) for m in model.modules() if type(m).__name__ in blocks]


def _activations(model: nn.Module, config: SFTConfig, b: int, seq: int, cams: int, patches: int, e: int,
                 lm_loss: bool, head_copies: int) -> float:
    """Bytes backward needs at once (see the module doc), for a batch of `b` samples of `seq` tokens."""
    text = model.backbone.config.get_text_config()
    d, m, layers, heads = text.hidden_size, text.intermediate_size, text.num_hidden_layers, text.num_attention_heads
    kv = text.num_key_value_heads * getattr(text, "head_dim", d // heads)
    vocab = text.vocab_size
    grads_through_lm = any(p.requires_grad for p in model.backbone.parameters())
    checkpointing = config.backbone.gradient_checkpointing and grads_through_lm

    # One decoder layer saves for backward: two RMSNorms' inputs and outputs (4d), q/k/v (d + 2kv), their
    # q/k norms and rotary embeddings (4(d + kv)), k/v repeated to every head (2d), the attention output
    # and o_proj's input (2d), SwiGLU's gate, up, activation and product (4m), and the attention weights
    # (b·heads·seq² in fp32: the masks are explicit, so no fused kernel). A frozen VLM runs without
    # grad: one layer's worth is alive at a time.
    layer = e * b * seq * (13 * d + 6 * kv + 4 * m) + 4 * b * heads * seq * seq
    hidden = e * b * seq * d * (layers + 1)  # every layer's output: the head reads several
    if not grads_through_lm:
        lm = hidden + layer
    elif checkpointing:
        lm = hidden + layer
    else:
        lm = hidden + layers * layer
    logits = (e + 8 if grads_through_lm else e + 4) * b * seq * vocab if lm_loss else 0  # logits, fp32 copy, log-softmax

    visual = _visual(model.backbone)
    vision = 0.0
    if visual is not None and any(p.requires_grad for p in visual.parameters()):
        vc = model.backbone.config.vision_config
        dv, mv, depth = vc.hidden_size, vc.intermediate_size, vc.depth
        n = b * cams * patches
        per = e * n * (8 * dv + 2 * mv) + 4 * b * cams * vc.num_heads * patches * patches  # attention within an image
        vision = (depth * e * n * dv + per) if checkpointing else depth * per

    h = config.head
    hd, tokens = h.hidden_size, config.data.horizon + 1
    ctx_layers = len(getattr(model, "context_layers", [1]))
    head = h.depth * e * b * head_copies * (tokens * (10 * hd + 2 * int(h.mlp_ratio * hd)) + 4 * h.heads * tokens * seq)
    head += e * b * seq * (ctx_layers * (d + hd) + 2 * hd * h.depth)  # context norm/projection, cross-attn k/v
    return lm + logits + vision + head


def plan_grpo(config, policy: SFTConfig, world: int = 1, gpu_memory_gb: float = 80.0) -> MemoryPlan:
    """GRPO's step: the policy's plan with group x denoising-step candidates a state through the head
    (all steps batched), no subtask loss, and the frozen reference policy."""
    sft = dataclasses.replace(policy, train=config.train)
    return plan_sft(sft, world, gpu_memory_gb, lm_loss=False, head_copies=config.group_size * config.denoise_steps,
                    reference=True)


__all__ = ["MemoryPlan", "PlanError", "build_on_meta", "plan_grpo", "plan_sft"]
