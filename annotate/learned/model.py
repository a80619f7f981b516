"""The boundary network (MS-TCN family) and its weights file.

Each stage is a stack of dilated residual temporal convolutions (kernel 3) (non-causal: a boundary
depends on what follows it), ending in per-frame heads: a boundary logit, the skill of the
segment the frame belongs to and (`offsets`) the signed distance to the nearest boundary in grid
frames (ActionFormer's regression: decoding refines each chosen peak with it). Later stages refine the previous stage's probabilities, as MS-TCN's
do. Weights are one safetensors file whose metadata holds the model spec, the feature layout,
the hash of the training data and, for a fine-tuned profile, the robot layout it was fitted on;
a fine-tuned profile also keeps its exemplars (see align.py): their alignment features as tensors
`exemplar.<k>` and their boundaries in the metadata.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from jaxtyping import Float
from safetensors.torch import load as load_bytes
from safetensors.torch import save as save_bytes
from torch import Tensor, nn

from atomvla.annotate.learned.align import ALIGN_CHANNELS, Exemplar
from atomvla.schemas import SKILLS

N_SKILLS = len(SKILLS)
TARGET_SIGMA = 1.0  # grid frames: the width of the training targets' bump at each boundary
FORMAT = "atomvla-learned-boundaries/1"


class WeightsError(ValueError):
    """A weights file that is missing, damaged or of another format (the caller words the error)."""


@dataclass(frozen=True)
class ModelSpec:
    """Architecture and the features it reads."""

    channels: tuple[str, ...]  # the feature layout (see features.layout)
    hidden: int = 32
    layers: int = 8  # dilations 1, 2, ..., 2**(layers-1) grid frames
    stages: int = 2
    dropout: float = 0.1
    # the boundary-offset head (the last output of each stage). Off: on the development split its
    # refinement left F1 unchanged and doubled the matched boundaries' mean error (0.72 vs 0.39
    # frames; the targets' boundaries are whole grid frames, and the peak is already on them)
    offsets: bool = False


@dataclass(frozen=True)
class WeightsInfo:
    """What the metadata of a weights file says about where the weights came from."""

    data_hash: str = ""  # sha256 of the training samples (see data.samples_hash)
    trained_on: str = ""  # sources and task count, for people
    robot_layout: str | None = None  # set by fine-tuning: the layout of the episodes it was fitted on
    count_from_plan: bool = True  # decode as many subtasks as the instruction's plan has (plus plan_offset)
    plan_offset: int = 0  # a team's convention may add (or merge) subtasks: e.g. a handover's release of its own
    # decoding adds this times the heuristic's proposed boundaries to the network's probability: the
    # rules decide where the network is unsure (a task unlike any it was trained on), it overrules them
    # where it is confident
    heuristic_prior: float = 0.0
    # set by few-shot fine-tuning: grid frames added to the i-th decoded boundary, a team's timing
    # convention the fine-tuned network still misses (see train.convention_shift)
    boundary_shift: tuple[float, ...] = ()
    # set by few-shot fine-tuning: decoding adds this times the exemplars' alignment prior (see
    # align.alignment_prior, train.kept_alignment); 0 where the team's exemplars do not align
    alignment_prior: float = 0.0
    extra: dict[str, str] = field(default_factory=dict)


def _shift(x: Float[Tensor, "b t h"], d: int) -> Float[Tensor, "b t h"]:
    """x[t - d] (zeros where that is outside), for d of either sign."""
    if d == 0:
        return x
    out = torch.zeros_like(x)
    if d > 0:
        out[:, d:] = x[:, :-d]
    else:
        out[:, :d] = x[:, -d:]
    return out


class _Residual(nn.Module):
    """A dilated temporal convolution (kernel 3) written as one matrix product over the three
    shifted copies: CPU convolution kernels for dilated 1-d input are many times slower."""

    def __init__(self, hidden: int, dilation: int, dropout: float):
        super().__init__()
        self.dilation = dilation
        self.conv = nn.Linear(3 * hidden, hidden)
        self.mix = nn.Linear(hidden, hidden)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Float[Tensor, "b t h"]) -> Float[Tensor, "b t h"]:
        d = self.dilation
        taps = torch.cat([_shift(x, d), x, _shift(x, -d)], dim=2)
        return x + self.drop(self.mix(torch.relu(self.conv(taps))))


class _Stage(nn.Module):
    def __init__(self, c_in: int, spec: ModelSpec):
        super().__init__()
        self.inp = nn.Linear(c_in, spec.hidden)
        self.layers = nn.ModuleList(_Residual(spec.hidden, 2**i, spec.dropout) for i in range(spec.layers))
        self.out = nn.Linear(spec.hidden, outputs(spec))

    def forward(self, x: Float[Tensor, "b t c"], mask: Float[Tensor, "b t 1"]) -> Float[Tensor, "b t k"]:
        h = self.inp(x)
        for layer in self.layers:
            h = layer(h) * mask
        return self.out(h) * mask


def outputs(spec: ModelSpec) -> int:
    """Per-frame outputs of a stage: boundary logit, skill logits, then the offset when the spec has one."""
    return 1 + N_SKILLS + int(spec.offsets)


class BoundaryNet(nn.Module):
    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.spec = spec
        c = len(spec.channels)
        self.stages = nn.ModuleList([_Stage(c, spec), *(_Stage(c + 1 + N_SKILLS, spec) for _ in range(spec.stages - 1))])

    def forward(self, x: Float[Tensor, "b t c"], mask: Float[Tensor, "b t 1"]) -> list[Float[Tensor, "b t k"]]:
        """Every stage's output (boundary logit, skill logits, offset), the last one refined most."""
        outs = [self.stages[0](x, mask)]
        for stage in self.stages[1:]:
            outs.append(stage(torch.cat([x, _probabilities(outs[-1]).detach()], dim=2), mask))
        return outs


def _probabilities(out: Float[Tensor, "... t k"]) -> Float[Tensor, "... t p"]:
    """A stage's boundary and skill probabilities: what the next stage refines."""
    return torch.cat([torch.sigmoid(out[..., :1]), torch.softmax(out[..., 1 : 1 + N_SKILLS], dim=-1)], dim=-1)


def _infer(net: BoundaryNet, x: Float[Tensor, "t c"]) -> Float[Tensor, "t k"]:
    """The last stage's output for one episode: `net.forward` in eval mode (the same products of the
    same operands, so the same bits; tested), without batch, mask or dropout, each buffer allocated
    once and written in place. On one episode's small tensors forward's module calls, shifted copies
    and allocations took more time than its matrix products."""
    spec, t = net.spec, x.shape[0]
    pad = 2 ** (spec.layers - 1)  # the widest dilation: zero rows either side of the hidden state
    padded = torch.zeros(t + 2 * pad, spec.hidden)
    h = padded[pad : pad + t]
    taps, inner, mixed = torch.empty(t, 3 * spec.hidden), torch.empty(t, spec.hidden), torch.empty(t, spec.hidden)
    out = None
    for stage in net.stages:
        inp = x if out is None else torch.cat([x, _probabilities(out)], dim=1)
        torch.addmm(stage.inp.bias, inp, stage.inp.weight.t(), out=h)
        for layer in stage.layers:
            d = layer.dilation
            torch.cat([padded[pad - d : pad - d + t], h, padded[pad + d : pad + d + t]], dim=1, out=taps)
            torch.addmm(layer.conv.bias, taps, layer.conv.weight.t(), out=inner).relu_()
            h.add_(torch.addmm(layer.mix.bias, inner, layer.mix.weight.t(), out=mixed))
        out = torch.addmm(stage.out.bias, h, stage.out.weight.t())
    return out


@dataclass
class LearnedModel:
    """A boundary network with its spec and provenance; what the backend runs and fine-tuning returns."""

    net: BoundaryNet
    info: WeightsInfo
    exemplars: tuple[Exemplar, ...] = ()  # a fine-tuned profile's accepted episodes (see align.py)

    @property
    def spec(self) -> ModelSpec:
        return self.net.spec

    @classmethod
    def new(cls, spec: ModelSpec, seed: int = 0) -> LearnedModel:
        torch.manual_seed(seed)
        return cls(BoundaryNet(spec), WeightsInfo())

    @torch.inference_mode()
    def predict(self, x: Float[Tensor, "t c"]) -> tuple[Float[Tensor, "t"], Float[Tensor, "t s"], Float[Tensor, "t"] | None]:
        """Boundary probability, skill probabilities and (with the offset head) the signed distance to
        the nearest boundary, per grid frame of one episode."""
        out = _infer(self.net, x)
        offset = out[:, 1 + N_SKILLS] if self.spec.offsets else None
        return torch.sigmoid(out[:, 0]), torch.softmax(out[:, 1 : 1 + N_SKILLS], dim=1), offset

    def digest(self) -> str:
        """sha256 of the weights, spec and info (the file's bytes are not canonical: safetensors
        writes its metadata in no fixed order)."""
        h = hashlib.sha256(json.dumps({"spec": asdict(self.spec), "info": asdict(self.info)}, sort_keys=True).encode())
        for name, value in sorted(self.net.state_dict().items()):
            h.update(name.encode())
            h.update(value.detach().contiguous().numpy().tobytes())
        for e in self.exemplars:
            h.update(json.dumps([e.boundaries, e.instruction]).encode())
            h.update(e.x.tobytes())
        return h.hexdigest()

    def to_bytes(self) -> bytes:
        meta = {"format": FORMAT, "spec": json.dumps(asdict(self.spec)), "info": json.dumps(asdict(self.info))}
        state = {k: v.detach().contiguous() for k, v in self.net.state_dict().items()}
        if self.exemplars:
            meta["exemplars"] = json.dumps({"channels": ALIGN_CHANNELS, "boundaries": [e.boundaries for e in self.exemplars],
                                            "instructions": [e.instruction for e in self.exemplars]})
            state |= {f"{EXEMPLAR}{k}": torch.from_numpy(e.x) for k, e in enumerate(self.exemplars)}
        return save_bytes(state, metadata=meta)

    @classmethod
    def from_bytes(cls, data: bytes) -> LearnedModel:
        """Raises WeightsError when `data` is not a weights file of this format."""
        try:
            state = load_bytes(data)
            meta = _metadata(data)
            if meta.get("format") != FORMAT:
                raise WeightsError(f"not {FORMAT} weights (format {meta.get('format')!r})")
            spec_d = json.loads(meta["spec"])
            spec = ModelSpec(**{**spec_d, "channels": tuple(spec_d["channels"])})
            info_d = json.loads(meta["info"])
            info = WeightsInfo(**{**info_d, "boundary_shift": tuple(info_d.get("boundary_shift", ()))})
            exemplars = _exemplars(meta, {k: state.pop(k) for k in [k for k in state if k.startswith(EXEMPLAR)]})
            net = BoundaryNet(spec)
            net.load_state_dict(state)
        except WeightsError:
            raise
        except Exception as exc:  # safetensors, json and torch each raise their own on a damaged file
            raise WeightsError(f"damaged weights ({type(exc).__name__}: {str(exc)[:120]})") from exc
        return cls(net, info, exemplars)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".partial")
        tmp.write_bytes(self.to_bytes())
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> LearnedModel:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise WeightsError(f"cannot read {path}: {exc.strerror or exc}") from exc
        return cls.from_bytes(data)


EXEMPLAR = "exemplar."  # the tensor name prefix of a profile's exemplars


def _exemplars(meta: dict[str, str], tensors: dict[str, Tensor]) -> tuple[Exemplar, ...]:
    """A weights file's exemplars (none in weights saved without them); raises WeightsError for
    exemplars aligned on other channels than ALIGN_CHANNELS or whose tensors and boundaries disagree."""
    if "exemplars" not in meta:
        if tensors:
            raise WeightsError(f"{len(tensors)} exemplar tensors but no exemplar metadata")
        return ()
    info = json.loads(meta["exemplars"])
    if tuple(info["channels"]) != ALIGN_CHANNELS:
        raise WeightsError(f"exemplars aligned on channels {info['channels']}; this version aligns on {list(ALIGN_CHANNELS)}")
    boundaries = info["boundaries"]
    # saved before exemplars kept their instruction: "" matches no episode, so they are not used
    instructions = info.get("instructions") or [""] * len(boundaries)
    if sorted(tensors) != sorted(f"{EXEMPLAR}{k}" for k in range(len(boundaries))):
        raise WeightsError(f"{len(boundaries)} exemplars in the metadata but tensors {sorted(tensors)}")
    out = []
    for k, b in enumerate(boundaries):
        x = tensors[f"{EXEMPLAR}{k}"].numpy()
        if x.ndim != 2 or x.shape[1] != len(ALIGN_CHANNELS) or any(not 0 < f < len(x) for f in b):
            raise WeightsError(f"exemplar {k}: features of shape {tuple(x.shape)} with boundaries {b} do not fit")
        out.append(Exemplar(x, tuple(int(f) for f in b), str(instructions[k])))
    return tuple(out)


def _metadata(data: bytes) -> dict[str, str]:
    """The `__metadata__` of a safetensors byte string (its JSON header)."""
    size = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + size]).get("__metadata__") or {}
