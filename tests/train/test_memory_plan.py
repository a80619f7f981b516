"""`atom-train sft|grpo --dry-run`: the memory plan against the peak measured on a CPU, the 4B recipes
against one and several 80 GB GPUs, and the command line.

Measured how: one training step (forward, backward, AdamW) of a tiny-dimension policy runs under
torch.profiler with memory profiling; its memory timeline (every CPU allocation and free the
allocator reports, `export_memory_timeline`) gives the peak of tensor memory allocated during the
step, to which the weights and optimizer states that live across steps are added."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from atomvla.train.assemble import load_trained
from atomvla.train.cli import app
from atomvla.train.config import get_config
from atomvla.train.data.episodes import open_dataset
from atomvla.train.data.samples import ChunkDataset
from atomvla.train.loop import make_optimizer
from atomvla.train.memory_plan import MERGE, PATCH, GB, plan_sft
from atomvla.train.sft import train_sft

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def measured_step_peak(model: torch.nn.Module, batch: dict, config, tmp_path: Path) -> float:
    """Bytes: weights + optimizer states + the peak allocated during one step (after a warm-up step)."""
    opt = make_optimizer([p for p in model.parameters() if p.requires_grad], config.train)

    def step() -> None:
        model(batch, torch.Generator().manual_seed(0)).total.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    model.train()
    step()  # AdamW's states now exist
    persistent = sum(p.numel() * p.element_size() for p in model.parameters())
    persistent += sum(v.numel() * v.element_size() for s in opt.state.values() for v in s.values() if torch.is_tensor(v) and v.dim())
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True,
                                record_shapes=True, with_stack=True) as prof:
        step()
    prof.export_memory_timeline(str(tmp_path / "timeline.json"), device="cpu")
    _, sizes = json.loads((tmp_path / "timeline.json").read_text())
    return persistent + max(sum(row) for row in sizes)


@pytest.mark.slow  # a short training run and a profiled step per mode
@pytest.mark.parametrize("mode", ["full", "freeze"])
def test_the_plan_is_close_to_the_measured_peak_on_tiny_dimensions(export_dir, fast, tmp_path, mode):
    overrides = (*fast, "train.max_steps=1", "backbone.hidden_size=128", "backbone.layers=3", "backbone.heads=4",
                 "head.hidden_size=128", "train.batch_size=8", "data.image_size=128", "data.augment=false",
                 f"backbone.train={mode}")
    trained = load_trained(train_sft(get_config("tiny-cpu", overrides), export_dir, tmp_path / "run").checkpoint)
    config = trained.config
    data = ChunkDataset(open_dataset(export_dir), config.data, trained.stats, trained.cameras, trained.processor)
    batch = trained.processor.collate([data[i] for i in range(0, 8 * 37, 37)])
    cams = len(trained.cameras)
    per_camera = (config.data.image_size // PATCH) ** 2 // MERGE**2 + 2
    text = batch["input_ids"].shape[1] - cams * per_camera
    measured = measured_step_peak(trained.model, batch, config, tmp_path)
    plan = plan_sft(config, world=1, cameras=cams, text_tokens=text, cuda=False, model=trained.model)
    print(f"{mode}: plan {plan.total / 1e6:.1f} MB, measured {measured / 1e6:.1f} MB", file=sys.stderr)
    assert 0.8 * measured < plan.total < 1.25 * measured  # measured here: 0.91x (full), 1.02x (freeze)


@pytest.fixture(scope="module")
def qwen3vl_4b_folder(tmp_path_factory) -> Path:
    """Qwen3-VL-4B-Instruct's published dimensions as a local model folder (no weights: nothing downloaded)."""
    sys.path.insert(0, str(BENCHMARKS))
    from train_gpu_4b import QWEN3VL_4B, write_model_folder

    folder = tmp_path_factory.mktemp("qwen3vl-4b")
    write_model_folder(folder, QWEN3VL_4B)
    return folder


def test_the_4b_recipe_fits_one_80gb_gpu_and_full_fine_tuning_needs_several(qwen3vl_4b_folder):
    model = [f"backbone.model={qwen3vl_4b_folder}"]
    lora = plan_sft(get_config("qwen3vl-4b", model), world=1)
    assert lora.fits and 4.3e9 < lora.counts["total"] < 4.8e9
    assert lora.counts["trainable"] < 0.05 * lora.counts["total"]  # LoRA adapters and the action head
    full = get_config("qwen3vl-4b-full", model)
    one, two = plan_sft(full, world=1), plan_sft(full, world=2)
    assert not one.fits and one.total > 80 * GB
    assert one.rows["optimizer states"] == 8 * one.counts["trainable"]  # fp32 AdamW: two moments
    assert two.fits and two.rows["optimizer states"] == pytest.approx(one.rows["optimizer states"] / 2)
    eight_bit = plan_sft(get_config("qwen3vl-4b-full", [*model, "train.optimizer=adamw8bit"]), world=1)
    assert eight_bit.rows["optimizer states"] == pytest.approx(one.rows["optimizer states"] / 4)


def test_dry_run_on_the_command_line(qwen3vl_4b_folder, tmp_path):
    model = f"backbone.model={qwen3vl_4b_folder}"
    fits = CliRunner().invoke(app, ["sft", "--dry-run", "--config", "qwen3vl-4b", "--out", str(tmp_path / "o"), model])
    assert fits.exit_code == 0, fits.output
    assert "fits" in fits.output and "optimizer states" in fits.output and not (tmp_path / "o").exists()
    small = CliRunner().invoke(app, ["sft", "--dry-run", "--config", "qwen3vl-4b-full", "--gpu-memory", "40",
                                     "--world-size", "2", model])
    assert small.exit_code == 1 and "DOES NOT FIT" in small.output and "2 process(es)" in small.output


def test_grpo_dry_run_plans_the_policy_and_its_sharded_reference(export_dir):
    from tests.train.stage2 import sft_policy

    policy = sft_policy(str(export_dir))
    r = CliRunner().invoke(app, ["grpo", "--dry-run", "--policy", str(policy), "--world-size", "2"])
    assert r.exit_code == 0, r.output
    assert "reference policy" in r.output and "FSDP" in r.output and "2 process(es)" in r.output
    missing = CliRunner().invoke(app, ["grpo", "--dry-run"])
    assert missing.exit_code == 2 and "needs --policy" in missing.output
