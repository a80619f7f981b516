"""Named, frozen training configs in one registry, with `key=value` overrides.

Every config has a `kind` (`sft`, `wm`, `grpo`, ...) so each loop registers its own configs here
with `register`; `get_config(name, overrides)` returns a copy with dotted overrides applied
(`head.depth=4`, `train.lr=3e-4`, `data.cameras=[a,b]`).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from atomvla.errors import UserError
from atomvla.registry import Registry

# One registry per kind: each loop may have its own `tiny-cpu`. The wm and grpo configs live
# beside their loops and are imported on the first lookup.
CONFIGS: dict[str, Registry[Any]] = {
    "sft": Registry("sft config", plugins=["atomvla.train.sim.configs"]),
    "wm": Registry("wm config", plugins=["atomvla.train.worldmodel.config"]),
    "grpo": Registry("grpo config", plugins=["atomvla.train.grpo.config"]),
}


class ConfigError(UserError, ValueError):
    """A config name or override that cannot be applied; the message says what to do."""


def register(config: Any) -> Any:
    try:
        return CONFIGS[config.kind].register(config, config.name)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def get_config(name: str, overrides: list[str] | tuple[str, ...] = (), kind: str = "sft") -> Any:
    """The registered `kind` config `name` with `key=value` overrides applied."""
    pool = CONFIGS[kind]
    if name not in pool:
        raise ConfigError(pool.unknown(name))
    return apply_overrides(pool[name], overrides)


def apply_overrides(config: Any, overrides: list[str] | tuple[str, ...]) -> Any:
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r} is not key=value")
        config = _set(config, key.strip().split("."), raw.strip(), key)
    return config


def _set(obj: Any, path: list[str], raw: str, full: str) -> Any:
    names = {f.name: f for f in dataclasses.fields(obj)}
    head = path[0]
    if head not in names:
        close = difflib.get_close_matches(head, list(names), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"override {full!r}: {type(obj).__name__} has no field {head!r}{hint}")
    current = getattr(obj, head)
    if len(path) > 1:
        if not dataclasses.is_dataclass(current):
            raise ConfigError(f"override {full!r}: {head!r} is a value, not a section")
        return dataclasses.replace(obj, **{head: _set(current, path[1:], raw, full)})
    value = _parse(raw, typing.get_type_hints(type(obj))[head], full)
    try:
        return dataclasses.replace(obj, **{head: value})
    except ConfigError as exc:  # a value the config's own checks refuse
        raise ConfigError(f"override {full!r}: {exc}") from None


def _parse(raw: str, annotation: Any, full: str) -> Any:
    """`raw` as a value of `annotation` (bool, int, float, str, Literal, tuple, optional)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if raw.lower() in ("none", "null") and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _parse(raw, inner, full)
    if origin is Literal:
        if raw not in args:
            raise ConfigError(f"override {full!r}: choose one of {', '.join(map(str, args))}")
        return raw
    if origin is tuple:
        items = [s.strip() for s in raw.strip("[]()").split(",") if s.strip()]
        return tuple(_parse(s, args[0], full) for s in items)
    try:
        if annotation is bool:
            if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(raw)
            return raw.lower() in ("true", "1", "yes")
        if annotation in (int, float, str):
            return annotation(raw)
    except ValueError:
        kind = {bool: "true or false", int: "an integer", float: "a number"}.get(annotation, annotation.__name__)
        raise ConfigError(f"override {full!r}: {raw!r} is not {kind}") from None
    raise ConfigError(f"override {full!r}: cannot set a field of type {annotation}")


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Rebuild a (nested) config dataclass from `to_dict` output, e.g. read from a checkpoint."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value, hint = data[f.name], hints[f.name]
        if dataclasses.is_dataclass(hint):
            value = from_dict(hint, value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[f.name] = value
    return cls(**kwargs)


# --- SFT -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataConfig:
    """What a sample holds and how it is built from a curated dataset."""

    cameras: tuple[str, ...] = ()  # empty: every camera of the dataset, in its order
    state_key: str = "observation.state"
    action_key: str = "action"
    horizon: int = 4  # H: actions t..t+H-1 per sample
    prompt: str = "Task: {task}\nCurrent subtask: {subtask}"  # `{subtask}` last: the VLM generates it
    image_size: int = 64  # square side the cameras are resized to (a multiple of patch*merge)
    # openpi's ingredients (`atomvla.train.data.transforms`); defaults as openpi's pi0 configs.
    resize: Literal["pad", "stretch"] = "pad"  # pad: keep the aspect ratio, black bars (openpi's resize_with_pad)
    augment: bool = True  # training only: random crop, small rotation, colour jitter (openpi's)
    delta_action_dims: tuple[int, ...] = ()  # action dims made relative to the same state dim (openpi: per robot)
    camera_dropout: float = 0.0  # training only: chance a camera is masked out (robust to missing cameras)
    max_state_dim: int = 0  # pad state to this many dims for mixed robots (openpi: 32); 0: the dataset's
    max_action_dim: int = 0  # pad actions likewise (the head learns zeros there, as in openpi); 0: the dataset's
    val_fraction: float = 0.2  # held-out episodes for `atom-train eval`
    status: Literal["accepted", "any"] = "accepted"  # store sources: which latest revisions count
    num_workers: int = 0
    prefetch_factor: int = 2


@dataclass(frozen=True)
class BackboneConfig:
    """The VLM: `tiny` builds a random Qwen3-VL from the sizes below; otherwise a Hub id."""

    model: str = "tiny"
    init: Literal["pretrained", "random"] = "pretrained"  # random: the model's architecture, fresh weights
    train: Literal["freeze", "lora", "full"] = "full"
    # prefix: images + prompt attend both ways, the subtask causally (openpi's prefix-LM); causal: all causal
    attention: Literal["prefix", "causal"] = "prefix"
    lora_rank: int = 16
    lora_alpha: int = 32
    gradient_checkpointing: bool = False
    # sizes of the tiny model (ignored for Hub models)
    hidden_size: int = 64
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    vision_hidden_size: int = 32
    vision_depth: int = 2


@dataclass(frozen=True)
class HeadConfig:
    """The DiT action head: self-attention over [state, noisy chunk], cross-attention to the VLM."""

    hidden_size: int = 64
    depth: int = 2
    heads: int = 4
    mlp_ratio: float = 2.0
    moe: bool = False  # skill-guided mixture of experts in the feed-forward layers
    sample_steps: int = 10  # Euler steps at inference
    # layers: block i of D cross-attends to VLM layer round((i+1)·L/D) (pi0's layer-to-layer coupling);
    # last: every block to the last layer only
    context_layers: Literal["layers", "last"] = "layers"
    # beta: flow time with pi0's Beta(1.5, 1) over the noise level (more weight on noisy inputs); uniform
    time_sampling: Literal["beta", "uniform"] = "beta"


@dataclass(frozen=True)
class TrainConfig:
    batch_size: int = 8  # per process
    max_steps: int = 100
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 10
    grad_clip: float = 1.0
    # Weight of the subtask-generation loss against flow matching. On the tiny config, 1.0 took the
    # LM loss to 0.02 in 300 steps with flow loss unchanged; 0.1 left it at 1.1 after 400.
    lm_loss_weight: float = 1.0
    mixed_precision: Literal["no", "bf16"] = "no"
    fsdp: bool | None = None  # FSDP2 (fully_shard) over the processes; None: on when there are several
    optimizer: Literal["adamw", "adamw8bit"] = "adamw"  # adamw8bit: bitsandbytes, 2 bytes of state a parameter
    schedule: Literal["cosine", "constant"] = "cosine"  # after the linear warmup
    save_every: int = 50
    keep_last: int = 0  # checkpoints kept (the newest); 0 keeps all
    log_every: int = 10
    seed: int = 0

    def __post_init__(self):
        # Caught here, not deep in the loop: batch_size=0 divided by zero, max_steps=0 trained nothing, silently.
        for name, least in (("batch_size", 1), ("max_steps", 1), ("save_every", 1), ("log_every", 1),
                            ("warmup_steps", 0), ("keep_last", 0)):
            if getattr(self, name) < least:
                raise ConfigError(f"train.{name} must be at least {least}, not {getattr(self, name)}")
        if not self.lr > 0:
            raise ConfigError(f"train.lr must be above 0, not {self.lr}")


@dataclass(frozen=True)
class SFTConfig:
    name: str
    kind: Literal["sft"] = "sft"
    data: DataConfig = field(default_factory=DataConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    redecide_every: int = 1  # at inference, regenerate the subtask every K chunks


# openpi's ingredients on, but no image augmentation: on a fixed simulated camera it only slowed fitting
# (benchmarks/vla_ablations.py: held-out action MSE 0.097 with, 0.075 without, at 400 steps).
register(SFTConfig(name="tiny-cpu", data=DataConfig(augment=False)))
# One 80 GB GPU (by `atom-train sft --dry-run`): LoRA on the language model, vision tower and base
# weights frozen, the action head trained in full with fp32 AdamW states.
QWEN3VL_4B = SFTConfig(
    name="qwen3vl-4b",
    data=DataConfig(image_size=224, num_workers=8, prefetch_factor=4),
    backbone=BackboneConfig(model="Qwen/Qwen3-VL-4B-Instruct", train="lora", gradient_checkpointing=True),
    head=HeadConfig(hidden_size=1024, depth=6, heads=16, mlp_ratio=4.0),
    train=TrainConfig(
        batch_size=16, max_steps=20000, lr=5e-5, warmup_steps=500, mixed_precision="bf16",
        save_every=2000, keep_last=2, log_every=20, lm_loss_weight=0.1,
    ),
)
register(QWEN3VL_4B)
# Full fine-tuning, FSDP-sharded over several GPUs: 2 or more 80 GB GPUs by its plan (one does not fit).
register(dataclasses.replace(
    QWEN3VL_4B, name="qwen3vl-4b-full",
    backbone=dataclasses.replace(QWEN3VL_4B.backbone, train="full"),
    train=dataclasses.replace(QWEN3VL_4B.train, fsdp=True),
))


def config_to_json(config: Any) -> str:
    return json.dumps(to_dict(config), indent=2)
