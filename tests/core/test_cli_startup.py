"""The console scripts start fast: importing a CLI module, and asking any of its commands for
`--help` or giving it a bad argument, imports none of the heavy packages (they load inside the
commands that use them). Nothing is timed here; benchmarks/cli_startup.py measures the seconds."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

CLIS = ("atomvla.curate.cli", "atomvla.annotate.cli", "atomvla.ui.cli", "atomvla.train.cli")
# Not pydantic: typer itself converts parsed arguments with it.
HEAVY = (
    "torch", "transformers", "gradio", "pandas", "pyarrow", "openai", "httpx2", "label_studio_sdk", "datasets",
    "huggingface_hub", "numpy", "av", "decord", "h5py", "PIL", "matplotlib", "accelerate", "safetensors",
)

# In a fresh interpreter: import the CLI, then run `--help` of the app and of every command and
# group, and each command with an unknown option; print the heavy packages that got imported.
CHILD = r"""
import contextlib, importlib, io, sys
import typer
module = importlib.import_module(sys.argv[1])
root = typer.main.get_command(module.app)

def walk(cmd, path):
    yield path
    for name, sub in getattr(cmd, "commands", {}).items():
        yield from walk(sub, [*path, name])

for path in list(walk(root, [])):
    for args in ([*path, "--help"], [*path, "--no-such-option"]):
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                root.main(args, prog_name="x", standalone_mode=False)
        except SystemExit:
            pass
        except Exception as exc:  # click's usage errors and exits (typer vendors click); anything else is a bug
            if not type(exc).__module__.startswith(("click", "typer")):
                raise
heavy = sys.argv[2].split(",")
print(",".join(sorted({m.split(".")[0] for m in sys.modules} & set(heavy))))
"""


@pytest.mark.parametrize("cli", CLIS)
def test_help_and_bad_arguments_import_nothing_heavy(cli):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "120"}
    result = subprocess.run([sys.executable, "-c", CHILD, cli, ",".join(HEAVY)], capture_output=True, text=True,
                            env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "", f"{cli} imported {result.stdout.strip()}"


def test_the_status_words_in_help_are_the_schema_statuses():
    from atomvla.cli import STATUSES
    from atomvla.schemas import Status

    assert STATUSES == tuple(s.value for s in Status)
