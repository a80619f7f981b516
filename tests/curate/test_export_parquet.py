"""`atom-curate export --to parquet`: a plain dataset that `datasets.load_dataset(DIR)` loads."""

from __future__ import annotations

import datasets
from typer.testing import CliRunner

from atomvla.curate.cli import app
from atomvla.curate.store import Store
from builders import FIXTURES, V3_AV1

runner = CliRunner()


def test_loads_with_datasets_in_both_configs(tmp_path):
    db, out = tmp_path / "s.sqlite", tmp_path / "plain"
    for args in (("import", V3_AV1), ("import-annotations", FIXTURES / "metaworld_truth.jsonl", "--author", "truth"),
                 ("export", out, "--to", "parquet")):
        result = runner.invoke(app, [str(a) for a in (*args, "--store", db)])
        assert result.exit_code == 0, result.output
    assert "configs:" in (out / "README.md").read_text()
    store = Store(db)
    decs = [store.latest(m.episode_id) for m in store.episodes()]
    cache = str(tmp_path / "hf_cache")  # datasets caches local folders by name: keep each test apart
    frames = datasets.load_dataset(str(out), split="train", cache_dir=cache)
    assert len(frames) == sum(d.n_frames for d in decs)
    assert frames[0]["subtask"] == decs[0].subtasks[0].instruction
    last = decs[0].subtasks[-1]
    row = frames[last.start_frame]
    assert (row["episode_index"], row["frame_index"], row["subtask"], row["skill"]) == (
        0, last.start_frame, last.instruction, last.skill)
    assert len(row["action"]) == 4
    episodes = datasets.load_dataset(str(out), "episodes", split="train", cache_dir=cache)
    assert [e["episode_id"] for e in episodes] == [d.episode_id for d in decs]
    assert episodes[3]["subtasks"] == [s.model_dump() for s in decs[3].subtasks]
