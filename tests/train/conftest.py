"""Curated datasets for the training tests, made the way a user makes them: `atom-curate import`
of the Meta-World fixture, its ground truth imported as accepted decompositions, and
`atom-curate export --to lerobot`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from atomvla.curate.cli import app as curate_app

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures"
SOURCE = FIXTURES / "metaworld_lerobot_v30"
TRUTH = FIXTURES / "metaworld_truth.jsonl"
CAMERA = "observation.images.corner"


@pytest.fixture(autouse=True, scope="module")  # module: before the module-scoped training runs
def one_torch_thread():
    """Tiny models gain nothing from threads, and on a busy 2-core machine threads spin against each
    other (a tiny training step ran 20x slower with 2); restored after each module of this folder."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# Tiny and quick: small batches, frequent checkpoints, nothing held out unless a test asks.
FAST = ("train.batch_size=4", "train.warmup_steps=2", "train.log_every=1000", "data.val_fraction=0")


def curate(*args: str) -> None:
    result = CliRunner().invoke(curate_app, list(args))
    assert result.exit_code == 0, result.output


def make_store(path: Path, episode_indices: list[int] | None = None) -> Path:
    """A store of the fixture with the ground truth of `episode_indices` (all if None) accepted."""
    lines = [ln for ln in TRUTH.read_text().splitlines() if ln.strip()]
    if episode_indices is not None:
        lines = [ln for ln in lines if json.loads(ln)["episode_index"] in episode_indices]
    truth = path.with_suffix(".truth.jsonl")
    truth.write_text("\n".join(lines) + "\n")
    curate("import", str(SOURCE), "--store", str(path))
    curate("import-annotations", str(truth), "--author", "truth", "--store", str(path))
    return path


@pytest.fixture(scope="session")
def store_of():
    """`store_of(path, episode_indices)`: a store with only those episodes' truth accepted."""
    return make_store


@pytest.fixture(scope="session")
def fast():
    return FAST


@pytest.fixture(scope="session")
def store_file(tmp_path_factory) -> Path:
    return make_store(tmp_path_factory.mktemp("store") / "atomvla.sqlite")


@pytest.fixture(scope="session")
def export_dir(store_file, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "curated"
    curate("export", str(out), "--to", "lerobot", "--store", str(store_file))
    return out
