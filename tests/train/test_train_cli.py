"""`atom-train` from the command line: a short run, eval, bad input as one clean error line, and Ctrl-C."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

from atomvla.train.cli import app


def run(*args):
    return CliRunner().invoke(app, list(args))


def test_sft_then_eval_from_the_command_line(export_dir, fast, tmp_path):
    out = tmp_path / "run"
    r = run("sft", "--config", "tiny-cpu", "--dataset", str(export_dir), "--out", str(out),
            *fast, "train.max_steps=2", "train.save_every=2", "data.val_fraction=0.2")
    assert r.exit_code == 0, r.output
    assert "checkpoint" in r.output and (out / "step-000002" / "model.safetensors").is_file()
    r = run("eval", "--checkpoint", str(out), "--out", str(tmp_path / "eval"), "--max-samples", "4")
    assert r.exit_code == 0, r.output
    assert "subtask match" in r.output and (tmp_path / "eval" / "chunks.png").is_file()
    # Where the report and plot are, as paths a user can open (it printed "plot: chunks.png").
    assert f"wrote {tmp_path / 'eval' / 'report.json'} and {tmp_path / 'eval' / 'chunks.png'}" in r.output
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert report["plot"] == "chunks.png"
    again = run("eval", "--checkpoint", str(out), "--out", str(tmp_path / "eval"), "--max-samples", "4")
    assert again.exit_code == 2 and "already exists; pass --overwrite" in again.output
    r = run("eval", "--checkpoint", str(out), "--out", str(tmp_path / "eval"), "--max-samples", "4", "--overwrite")
    assert r.exit_code == 0, r.output


def test_bad_input_is_one_clean_error(export_dir, store_file, tmp_path):
    from conftest import SOURCE, curate

    elsewhere = tmp_path / "curated"  # e.g. the export itself given as --out: checkpoints went in beside it
    elsewhere.mkdir()
    (elsewhere / "README.md").write_text("a dataset card\n")
    jsonl = tmp_path / "curated.jsonl"  # `atom-curate export`'s default format (it said "not an atomvla store")
    curate("export", str(jsonl), "--store", str(store_file))
    unreviewed = tmp_path / "unreviewed.sqlite"
    curate("import", str(SOURCE), "--store", str(unreviewed))
    cases = [
        (["sft", "--dataset", str(export_dir), "--out", str(elsewhere), "train.max_steps=1"], "not a run folder"),
        (["wm", "--dataset", str(export_dir), "--out", str(elsewhere), "train.max_steps=1"], "not a run folder"),
        (["sft", "--config", "tiny-cpo", "--dataset", str(export_dir)], "did you mean tiny-cpu"),
        (["sft", "--dataset", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")], "no such file or folder"),
        (["sft", "--dataset", str(export_dir), "--out", str(tmp_path / "o"), "train.lr=fast"], "is not a number"),
        (["eval", "--checkpoint", str(tmp_path)], "not a checkpoint"),
        (["sft", "--dataset", str(jsonl), "--out", str(tmp_path / "o")],
         "holds the subtasks but no frames or actions; train on an `atom-curate export --to lerobot DIR` folder"),
        (["sft", "--dataset", str(unreviewed), "--out", str(tmp_path / "o")],
         "no episode's latest decomposition is accepted (review them with atom-review, or import some with "
         "atom-curate import-annotations; data.status=any trains on every episode's latest one)"),
        (["configs", "--kind", "rl"], "--kind 'rl': choose one of sft, wm, grpo"),  # it listed nothing, exit 0
    ]
    for args, message in cases:
        r = run(*args)
        assert r.exit_code == 2, (args, r.output)
        text = " ".join(r.output.split())  # the error console wraps long lines
        assert message in text and "Traceback" not in text
    assert [p.name for p in elsewhere.iterdir()] == ["README.md"]


def test_a_video_cut_short_after_import_is_one_clean_error(tmp_path):
    """The store keeps frames in the source: a video shortened since the import names its file."""
    import shutil

    import av

    from conftest import FIXTURES, TRUTH, curate

    # The H.264 twin: its packets remux without a decoder round trip.
    source = shutil.copytree(FIXTURES / "metaworld_lerobot_v30_h264", tmp_path / "source")
    store = tmp_path / "s.sqlite"
    curate("import", str(source), "--store", str(store))
    curate("import-annotations", str(TRUTH), "--author", "truth", "--store", str(store))
    (video,) = source.glob("videos/*/chunk-000/file-000.mp4")
    with av.open(str(video)) as src, av.open(str(tmp_path / "short.mp4"), "w") as dst:
        stream = dst.add_stream_from_template(src.streams.video[0])
        for packet in [p for p in src.demux(src.streams.video[0]) if p.dts is not None][:100]:
            packet.stream = stream
            dst.mux(packet)
    shutil.move(tmp_path / "short.mp4", video)
    r = run("sft", "--config", "tiny-cpu", "--dataset", str(store), "--out", str(tmp_path / "o"), "train.max_steps=1")
    assert r.exit_code == 2, r.output
    text = " ".join(r.output.split())
    assert str(video) in text and "no video frame" in text and "Traceback" not in text


# Ctrl-C lost every step since the last checkpoint (save_every: 50-100 by default, 2000 in the 4B and
# ViT-L configs). Each run below would go on for 100000 steps, checkpointing only at the end.
UNTIL_STOPPED = ("train.max_steps=100000", "train.save_every=100000", "train.log_every=1")


def interrupted(*args: str, out: Path) -> int:
    """Runs `python -m atomvla.train ARGS --out OUT`, sends it SIGINT once its first step is logged, checks
    that it saved the step it was in and said how to go on; the step saved."""
    cmd = [sys.executable, "-m", "atomvla.train", *args, "--out", str(out), *UNTIL_STOPPED]
    proc = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    metrics, deadline = out / "metrics.jsonl", time.monotonic() + 300
    while not (metrics.is_file() and metrics.read_text()) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    output = " ".join(proc.communicate(timeout=300)[0].split())
    assert proc.returncode == 130, output
    (checkpoint,) = sorted(out.glob("step-*"))
    step = json.loads((checkpoint / "trainer_state.json").read_text())["step"]
    assert (f"stopped by SIGINT after step {step}; saved {checkpoint}: the same command with --resume continues it"
            in output and "Traceback" not in output)
    assert json.loads(metrics.read_text().splitlines()[-1])["step"] == step
    return step


def test_ctrl_c_saves_the_last_finished_step_and_resume_continues_from_it(export_dir, fast, tmp_path):
    from atomvla.train.config import get_config
    from atomvla.train.sft import train_sft

    out = tmp_path / "run"
    step = interrupted("sft", "--dataset", str(export_dir), *fast, out=out)
    resumed = train_sft(get_config("tiny-cpu"), None, out, resume=True, overrides=(f"train.max_steps={step + 1}",))
    assert len(resumed.losses) == 1 and resumed.checkpoint.name == f"step-{step + 1:06d}"


def test_ctrl_c_in_wm_saves_its_last_step_and_resume_needs_no_dataset_nor_latents(export_dir, tmp_path):
    out, latents = tmp_path / "wm", tmp_path / "shared-latents"
    step = interrupted("wm", "--dataset", str(export_dir), "--latents", str(latents), "train.batch_size=4",
                       "train.val_fraction=0", out=out)
    assert not (out / "world_model.safetensors").exists()  # written once the run is done
    encoded = {p: p.stat().st_mtime_ns for p in (latents / "episodes").iterdir()}
    assert encoded
    cache = latents.rename(tmp_path / "moved-latents")
    r = run("wm", "--out", str(out), "--resume", f"train.max_steps={step + 1}")
    text = " ".join(r.output.split())
    assert r.exit_code == 2 and f"{latents.resolve()}: the latent cache this run used" in text, r.output
    assert "no longer exists; pass --latents DIR" in text and "Traceback" not in text
    cache.rename(latents)
    # Neither --dataset nor --latents again: it needed the dataset, and without --latents it encoded every
    # frame again into OUT/latents.
    r = run("wm", "--out", str(out), "--resume", f"train.max_steps={step + 1}")
    assert r.exit_code == 0, r.output
    assert (out / f"step-{step + 1:06d}").is_dir() and (out / "world_model.safetensors").is_file()
    assert not (out / "latents").exists()
    assert {p: p.stat().st_mtime_ns for p in (latents / "episodes").iterdir()} == encoded  # no frame encoded again


def test_ctrl_c_in_grpo_saves_its_last_step_and_resume_continues_from_it(export_dir, tmp_path):
    from tests.train.stage2 import GRPO_FAST, sft_policy, trained_world_model

    policy, (wm_dir, _, _) = sft_policy(str(export_dir)), trained_world_model(str(export_dir))
    out = tmp_path / "grpo"
    step = interrupted("grpo", "--policy", str(policy), "--world-model", str(wm_dir), *GRPO_FAST, out=out)
    r = run("grpo", "--out", str(out), "--resume", f"train.max_steps={step + 1}")
    assert r.exit_code == 0, r.output
    assert f"step {step + 1}:" in r.output and (out / f"step-{step + 1:06d}" / "grpo_config.json").is_file()
