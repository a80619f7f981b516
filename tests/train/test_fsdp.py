"""FSDP2 for real on two CPU ranks (gloo): each rank holds half of every parameter, both end with the
same weights, checkpoints are sharded and load on one process (2 -> 1) and a one-process checkpoint
resumes on two (1 -> 2), and resume under FSDP is exact."""

import re
import shutil

import pytest
import torch
from safetensors.torch import load_file

from atomvla.train.assemble import load_trained
from atomvla.train.config import get_config
from atomvla.train.sft import train_sft
from tests.train.test_sft import torchrun


@pytest.mark.slow  # three two-rank launches
def test_fsdp_shards_trains_identically_and_its_checkpoints_move_between_world_sizes(export_dir, fast, tmp_path):
    overrides = [*fast, "train.max_steps=4", "train.save_every=2", "train.batch_size=2", "train.fsdp=true"]
    log = torchrun("ddp_worker.py", str(export_dir), str(tmp_path), *overrides)
    held = {int(r): (int(n), int(m)) for r, n, m in re.findall(r"fsdp: rank (\d) holds (\d+) of (\d+) parameter elements", log)}
    assert set(held) == {0, 1}
    (n0, total), (n1, total1) = held[0], held[1]
    assert total == total1 and n0 + n1 == total and 0.4 * total < n0 < 0.6 * total  # each holds about half
    w0, w1 = load_file(tmp_path / "rank0.safetensors"), load_file(tmp_path / "rank1.safetensors")
    assert all(torch.equal(w0[k], w1[k]) for k in w0)
    step4 = tmp_path / "run" / "step-000004"
    assert (step4 / "model.dcp").is_dir() and not (step4 / "model.safetensors").exists()
    # 2 -> 1: the sharded checkpoint loads in one process, equal to the weights the ranks gathered.
    one = load_trained(step4).model.state_dict()
    assert all(torch.equal(one[k], w0[k]) for k in w0)
    losses = [(tmp_path / f"rank{r}.losses").read_text().split() for r in (0, 1)]

    # Exact resume under FSDP: continue from step 2 on two ranks, the same losses and weights.
    shutil.rmtree(step4)
    torchrun("ddp_worker.py", str(export_dir), str(tmp_path), "--resume", *overrides)
    for r in (0, 1):
        assert (tmp_path / f"rank{r}.losses").read_text().split() == losses[r][2:]
    again = load_file(tmp_path / "rank0.safetensors")
    assert all(torch.equal(again[k], w0[k]) for k in w0)


def test_a_one_process_checkpoint_loads_sharded_on_two(export_dir, fast, tmp_path):
    overrides = [*fast, "train.max_steps=2", "train.save_every=2", "train.batch_size=2"]
    single = train_sft(get_config("tiny-cpu", overrides), export_dir, tmp_path / "run")
    saved = load_file(single.checkpoint / "model.safetensors")
    # 1 -> 2: resumed at its last step on two FSDP ranks (weights and optimizer state load, no step left).
    log = torchrun("ddp_worker.py", str(export_dir), str(tmp_path), "--resume", *overrides, "train.fsdp=true")
    assert "fsdp: rank 1 holds" in log
    for r in (0, 1):
        w = load_file(tmp_path / f"rank{r}.safetensors")
        assert set(w) == set(saved) and all(torch.equal(w[k], saved[k]) for k in saved)
