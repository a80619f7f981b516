"""SFT on the tiny config: the loss falls, resume is exact, two CPU ranks stay identical, a skill
expert can be added without touching the others, and the trained policy generates its subtask."""

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from atomvla.train.assemble import load_trained
from atomvla.train.checkpoint import CheckpointError
from atomvla.train.config import get_config
from atomvla.train.data.episodes import DatasetError, open_dataset
from atomvla.train.data.samples import ChunkDataset
from atomvla.train.eval import evaluate
from atomvla.train.policy import load_policy
from atomvla.train.sft import train_sft

CAMERA = "observation.images.corner"


@pytest.fixture(scope="module")
def trained_run(export_dir, fast, tmp_path_factory):
    """16 steps with two episodes held out; checkpoints at 4, 8, 12 and 16."""
    out = tmp_path_factory.mktemp("sft") / "run"
    overrides = (*fast, "train.max_steps=16", "train.save_every=4", "data.val_fraction=0.2")
    result = train_sft(get_config("tiny-cpu", overrides), export_dir, out)
    return out, result


def fixed_batch_loss(checkpoint: Path, export_dir: Path) -> float:
    trained = load_trained(checkpoint)
    episodes = open_dataset(export_dir)
    data = ChunkDataset(episodes, trained.config.data, trained.stats, trained.cameras, trained.processor)
    batch = trained.processor.collate([data[i] for i in range(0, len(data), len(data) // 16)])
    trained.model.eval()
    with torch.no_grad():
        return float(trained.model(batch, torch.Generator().manual_seed(0)).total)


def test_tiny_config_trains_and_its_loss_falls(trained_run, export_dir):
    out, result = trained_run
    assert len(result.losses) == 16 and all(np.isfinite(result.losses))
    assert sorted(p.name for p in out.glob("step-*")) == [f"step-{s:06d}" for s in (4, 8, 12, 16)]
    assert fixed_batch_loss(out / "step-000004", export_dir) > fixed_batch_loss(out / "step-000016", export_dir)
    assert (out / "tb").is_dir() and any((out / "tb").iterdir())


def test_a_resumed_run_gives_the_losses_of_the_uninterrupted_one(export_dir, fast, tmp_path):
    cfg = get_config("tiny-cpu", (*fast, "train.max_steps=4", "train.save_every=2", "train.batch_size=2"))
    whole = train_sft(cfg, export_dir, tmp_path / "whole")
    shutil.copytree(tmp_path / "whole" / "step-000002", tmp_path / "resumed" / "step-000002")
    with pytest.raises(CheckpointError, match="pass --resume"):
        train_sft(cfg, export_dir, tmp_path / "resumed")
    resumed = train_sft(cfg, None, tmp_path / "resumed", resume=True)
    assert resumed.losses == whole.losses[2:]
    a, b = load_file(whole.checkpoint / "model.safetensors"), load_file(resumed.checkpoint / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    a, b = (load_file(c / "optimizer.safetensors") for c in (whole.checkpoint, resumed.checkpoint))
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_cpu_processes_train_identical_weights(export_dir, fast, tmp_path, strategy):
    torchrun = Path(sys.executable).with_name("torchrun")
    overrides = [*fast, "train.max_steps=2", "train.save_every=2", "train.batch_size=2", f"train.distributed={strategy}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [str(torchrun), "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(port), str(Path(__file__).with_name("ddp_worker.py")),
           str(export_dir), str(tmp_path), *overrides]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    w0, w1 = load_file(tmp_path / "rank0.safetensors"), load_file(tmp_path / "rank1.safetensors")
    assert all(torch.equal(w0[k], w1[k]) for k in w0)
    # Each rank saw its own half of every batch, so their local losses differ.
    assert (tmp_path / "rank0.losses").read_text() != (tmp_path / "rank1.losses").read_text()
    saved = load_file(tmp_path / "run" / "step-000002" / "model.safetensors")
    assert all(torch.equal(saved[k], w0[k]) for k in saved)


def test_adding_a_skill_trains_only_the_new_expert_and_the_router(store_of, fast, tmp_path):
    moe = (*fast, "head.moe=true", "train.max_steps=2", "train.save_every=2", "train.batch_size=2")
    first = train_sft(get_config("tiny-cpu", moe), store_of(tmp_path / "a.sqlite", [2, 3]), tmp_path / "first")
    assert load_trained(first.checkpoint).skills == ("reach", "open")
    more = store_of(tmp_path / "b.sqlite", [2, 3, 4, 5])  # brings "press"
    with pytest.raises(DatasetError, match="skills press have no expert .* nor --add-skill"):
        train_sft(get_config("tiny-cpu"), more, tmp_path / "x", from_checkpoint=first.checkpoint, add_skill="pull")
    with pytest.raises(DatasetError, match="skills press have no expert .*; add one with --add-skill"):
        train_sft(get_config("tiny-cpu"), more, tmp_path / "x", from_checkpoint=first.checkpoint)
    added = train_sft(get_config("tiny-cpu"), more, tmp_path / "added", add_skill="press",
                      from_checkpoint=first.checkpoint)
    assert load_trained(added.checkpoint).skills == ("reach", "open", "press")
    before, after = load_file(first.checkpoint / "model.safetensors"), load_file(added.checkpoint / "model.safetensors")
    new_expert = [k for k in after if ".experts.2." in k]
    routers = [k for k in after if k.endswith("ffn.router")]
    assert new_expert and routers
    for k, v in before.items():
        if not k.endswith("ffn.router"):
            assert torch.equal(v, after[k]), f"{k} changed"
    for k in routers:
        assert after[k].shape == (3, 3)
        assert not torch.equal(after[k][:2, :2], before[k])  # the router trained
    init = {k: after[k.replace(".experts.2.", ".shared.")] for k in new_expert}  # new expert started as the shared one
    assert any(not torch.equal(after[k], before[k.replace(".experts.2.", ".shared.")]) for k in init)


def test_the_policy_generates_its_subtask_then_acts(trained_run, export_dir, store_file, tmp_path):
    out, _ = trained_run
    policy = load_policy(out)
    data = ChunkDataset(open_dataset(export_dir), policy.trained.config.data, policy.stats, policy.trained.cameras)
    s = data.sample(10)
    observation = {"images": {CAMERA: s.images[0]}, "state": policy.stats.state.unnormalize(s.state), "task": s.task}
    result = policy.infer(observation)
    assert result.actions.shape == (4, 4) and np.isfinite(result.actions).all()
    assert isinstance(result.subtask, str)
    # Re-deciding every K chunks: the VLM generates on chunks 0, K, 2K, ... of an episode.
    generated = []
    generate = policy.generate_subtasks
    policy.generate_subtasks = lambda samples, **kw: generated.append(len(generated)) or generate(samples, **kw)
    policy.redecide_every = 3
    policy.reset()
    for _ in range(7):
        policy.infer(observation)
    assert len(generated) == 3  # chunks 0, 3, 6
    report = evaluate(out, None, tmp_path / "eval", max_samples=8)
    assert report["held_out"] and report["episodes"] == 2 and report["samples"] == 8
    assert 0 <= report["subtask_match_rate"] <= 1 and report["action_mse"] > 0
    assert sum(b["samples"] for b in report["match_by_boundary_distance"].values()) == 8
    assert set(report["per_skill"]) and set(report["per_subtask"])
    assert (tmp_path / "eval" / "chunks.png").stat().st_size > 10_000
    assert (tmp_path / "eval" / "report.json").is_file()
    # The store the export came from holds the same episodes: the same ones are held out, with the same scores.
    again = evaluate(out, str(store_file), tmp_path / "eval-store", max_samples=8)
    assert again["held_out"] and again["per_subtask"] == report["per_subtask"]


@pytest.mark.parametrize("mode", ["freeze", "lora"])
def test_frozen_and_lora_backbones_keep_their_base_weights(export_dir, fast, tmp_path, mode):
    overrides = (*fast, f"backbone.train={mode}", "train.max_steps=2", "train.save_every=1", "train.batch_size=2")
    train_sft(get_config("tiny-cpu", overrides), export_dir, tmp_path)
    first, last = (load_file(tmp_path / f"step-{s:06d}" / "model.safetensors") for s in (1, 2))
    base = [k for k in first if k.startswith("backbone.") and "lora_" not in k]
    assert base and all(torch.equal(first[k], last[k]) for k in base)
    assert not all(torch.equal(first[k], last[k]) for k in first if k.startswith("head."))
    adapters = [k for k in last if "lora_" in k]
    if mode == "lora":
        assert adapters and not all(torch.equal(first[k], last[k]) for k in adapters)
    else:
        assert not adapters
