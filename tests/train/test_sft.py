"""SFT on the tiny config: the loss falls, resume is exact, two CPU ranks stay identical (adding a skill:
test_add_skill.py; the trained policy: test_policy.py)."""

import logging
import os
import shutil
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
from atomvla.train.data.episodes import open_dataset
from atomvla.train.data.samples import ChunkDataset
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


def test_a_resumed_run_gives_the_losses_of_the_uninterrupted_one(export_dir, fast, tmp_path, caplog):
    cfg = get_config("tiny-cpu", (*fast, "train.max_steps=4", "train.save_every=2", "train.batch_size=2"))
    whole = train_sft(cfg, export_dir, tmp_path / "whole")
    shutil.copytree(tmp_path / "whole" / "step-000002", tmp_path / "resumed" / "step-000002")
    with pytest.raises(CheckpointError, match="pass --resume"):
        train_sft(cfg, export_dir, tmp_path / "resumed")
    resumed = train_sft(cfg, None, tmp_path / "resumed", resume=True)
    assert resumed.losses == whole.losses[2:]
    # Resuming a finished run trains nothing, and says so (it said nothing) and how to train further.
    with caplog.at_level(logging.WARNING):
        again = train_sft(cfg, None, tmp_path / "resumed", resume=True)
    assert again.losses == [] and again.checkpoint is None
    assert ("step-000004: the run has reached step 4 of train.max_steps=4: nothing to train (pass train.max_steps=N "
            "with N > 4 to train further)") in caplog.text
    a, b = load_file(whole.checkpoint / "model.safetensors"), load_file(resumed.checkpoint / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    a, b = (load_file(c / "optimizer.safetensors") for c in (whole.checkpoint, resumed.checkpoint))
    assert all(torch.equal(a[k], b[k]) for k in a)


def torchrun(worker: str, *args: str) -> str:
    """Run `worker` (a script beside this file) on two CPU ranks (gloo); returns its log."""
    exe = Path(sys.executable).with_name("torchrun")
    # --standalone: the rendezvous store binds port 0 itself, so two tests never race for a port
    cmd = [str(exe), "--standalone", "--nproc_per_node", "2", str(Path(__file__).with_name(worker)), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout + done.stderr


def test_two_cpu_processes_train_identical_weights_under_ddp(export_dir, fast, tmp_path):
    overrides = [*fast, "train.max_steps=2", "train.save_every=2", "train.batch_size=2", "train.fsdp=false"]
    log = torchrun("ddp_worker.py", str(export_dir), str(tmp_path), *overrides)
    assert "fsdp: rank" not in log
    w0, w1 = load_file(tmp_path / "rank0.safetensors"), load_file(tmp_path / "rank1.safetensors")
    assert all(torch.equal(w0[k], w1[k]) for k in w0)
    # Each rank saw its own half of every batch, so their local losses differ.
    assert (tmp_path / "rank0.losses").read_text() != (tmp_path / "rank1.losses").read_text()
    saved = load_file(tmp_path / "run" / "step-000002" / "model.safetensors")
    assert all(torch.equal(saved[k], w0[k]) for k in saved)


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


def test_a_run_refused_on_bad_data_leaves_no_run_folder(export_dir, fast, tmp_path):
    """Frames that cannot be read surface at the first batch, after the run started: no OUT, no OUT/tb."""
    from atomvla.errors import UserError

    broken = shutil.copytree(export_dir, tmp_path / "broken")
    for video in broken.glob("videos/**/*.mp4"):
        video.write_bytes(video.read_bytes()[:2000])
    with pytest.raises(UserError):
        train_sft(get_config("tiny-cpu", (*fast, "train.max_steps=2")), broken, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_keep_last_rotates_checkpoints(export_dir, fast, tmp_path):
    overrides = (*fast, "train.max_steps=3", "train.save_every=1", "train.keep_last=2", "train.batch_size=2")
    result = train_sft(get_config("tiny-cpu", overrides), export_dir, tmp_path)
    assert sorted(p.name for p in tmp_path.glob("step-*")) == ["step-000002", "step-000003"]
    assert result.checkpoint == tmp_path / "step-000003"
