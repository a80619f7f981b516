"""`atom-train wm`: the predictor's attention pattern, training on the fixture, evaluation, loading."""

from __future__ import annotations

import pytest
import torch

from atomvla.train.worldmodel.model import ACPredictor, PredictorDims, block_causal_mask
from atomvla.train.worldmodel.world_model import WorldModel
from tests.train.stage2 import trained_world_model


def test_attention_is_full_within_a_step_and_causal_across_steps():
    mask = block_causal_mask(3, 2)
    allowed = ~mask
    assert allowed[0, 1] and allowed[1, 0]  # same step
    assert allowed[2, 0] and not allowed[0, 2]  # later sees earlier, not the reverse
    dims = PredictorDims(latent_dim=8, n_patches=4, action_dim=2, state_dim=3, chunk=4)
    torch.manual_seed(0)
    p = ACPredictor(dims, hidden=16, depth=2, heads=2, max_steps=3)
    torch.nn.init.normal_(p.out.weight)
    z, a, s = torch.randn(1, 3, 4, 8), torch.randn(1, 3, 4, 2), torch.randn(1, 3, 3)
    out = p(z, a, s)
    z2 = z.clone()
    z2[:, 2] += 1.0
    out2 = p(z2, a, s)
    torch.testing.assert_close(out[:, :2], out2[:, :2])  # the future does not leak into the past
    assert not torch.allclose(out[:, 2], out2[:, 2])


def test_trained_world_model_beats_copying_the_current_latent(export_dir):
    wm_dir, _, report = trained_world_model(str(export_dir))
    assert report["one_step_l1"] < 0.95 * report["copy_l1"]
    assert report["rollout_l1"] < report["rollout_copy_l1"]
    wm = WorldModel.load(wm_dir)
    assert wm.config.encoder.model == "tiny" and wm.encoder_key


def test_atom_train_wm_end_to_end_and_bad_datasets(export_dir, tmp_path):
    from typer.testing import CliRunner

    from atomvla.train.cli import app
    from tests.train.conftest import SOURCE

    run = CliRunner().invoke(app, ["wm", "--dataset", str(export_dir), "--out", str(tmp_path / "wm"),
                                   "train.max_steps=3", "train.log_every=1000"])
    assert run.exit_code == 0, run.output
    assert "vs copy" in run.output and (tmp_path / "wm" / "world_model.safetensors").is_file()
    bare = CliRunner().invoke(app, ["wm", "--dataset", str(SOURCE), "--out", str(tmp_path / "bare")])
    assert bare.exit_code == 2 and "no subtasks" in bare.output
    assert not (tmp_path / "bare").exists()  # a refused run leaves no run folder


def test_world_model_training_resumes_exactly_without_naming_its_dataset_again(export_dir, tmp_path):
    import shutil

    from atomvla.train.checkpoint import CheckpointError
    from atomvla.train.config import get_config
    from atomvla.train.worldmodel.train import train_world_model

    config = get_config("tiny-cpu", ("train.max_steps=6", "train.save_every=3", "train.keep_last=0", "train.val_fraction=0",
                                     "train.log_every=1000", "train.batch_size=4"), kind="wm")
    whole, _ = train_world_model(config, export_dir, tmp_path / "a", tmp_path / "latents")
    shutil.copytree(tmp_path / "a" / "step-000003", tmp_path / "b" / "step-000003")
    with pytest.raises(CheckpointError, match="pass --resume"):
        train_world_model(config, export_dir, tmp_path / "b", tmp_path / "latents")
    # The checkpoint records its dataset, as sft's does (resuming needed --dataset again). A latent cache
    # named on resume wins over the recorded one (the same encoder's: the same latents).
    resumed, _ = train_world_model(config, None, tmp_path / "b", tmp_path / "elsewhere", resume=True)
    names = {p.name for p in (tmp_path / "latents" / "episodes").iterdir()}
    assert names and {p.name for p in (tmp_path / "elsewhere" / "episodes").iterdir()} == names
    a, b = whole.predictor.state_dict(), resumed.predictor.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert sorted(p.name for p in (tmp_path / "b").glob("step-*")) == ["step-000003", "step-000006"]


@pytest.mark.slow  # two two-rank launches
def test_world_model_trains_sharded_on_two_ranks_and_resumes_exactly(export_dir, tmp_path):
    import shutil

    from safetensors.torch import load_file

    from tests.train.test_sft import torchrun

    overrides = ["train.max_steps=4", "train.save_every=2", "train.keep_last=0", "train.val_fraction=0",
                 "train.log_every=1000", "train.batch_size=4"]
    log = torchrun("wm_worker.py", str(export_dir), str(tmp_path), *overrides)
    assert "fsdp: rank 0 holds" in log and "fsdp: rank 1 holds" in log
    assert (tmp_path / "wm" / "step-000004" / "model.dcp").is_dir() and (tmp_path / "wm" / "world_model.safetensors").is_file()
    shutil.rmtree(tmp_path / "wm" / "step-000004")
    torchrun("wm_worker.py", str(export_dir), str(tmp_path), "--resume", *overrides)
    a, b = load_file(tmp_path / "predictor.safetensors"), load_file(tmp_path / "predictor-resumed.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
