"""`atom-train` from the command line: a short run, eval, and bad input as one clean error line."""

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


def test_bad_input_is_one_clean_error(export_dir, tmp_path):
    cases = [
        (["sft", "--config", "tiny-cpo", "--dataset", str(export_dir)], "did you mean tiny-cpu"),
        (["sft", "--dataset", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")], "no such file or folder"),
        (["sft", "--dataset", str(export_dir), "--out", str(tmp_path / "o"), "train.lr=fast"], "is not a number"),
        (["eval", "--checkpoint", str(tmp_path)], "not a checkpoint"),
    ]
    for args, message in cases:
        r = run(*args)
        assert r.exit_code == 2, (args, r.output)
        text = " ".join(r.output.split())  # the error console wraps long lines
        assert message in text and "Traceback" not in text
