"""`atom-curate export --to parquet`: a plain dataset that `datasets.load_dataset(DIR)` loads."""

from __future__ import annotations

import datasets
from typer.testing import CliRunner

from atomvla.curate.cli import app
from atomvla.curate.store import Store
from builders import FIXTURES, V3_AV1, accept_halves, build_robomimic_hdf5

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


def test_episodes_with_different_arrays_are_refused_in_one_line(tmp_path):
    # One frames table has one set of array columns: a Meta-World (4-d actions) and a robomimic
    # (7-d actions, other observations) dataset cannot share it.
    db, out = tmp_path / "s.sqlite", tmp_path / "plain"
    robomimic = build_robomimic_hdf5(tmp_path / "can.hdf5", (24, 30))
    for args in (("import", V3_AV1), ("import", robomimic)):
        assert runner.invoke(app, [str(a) for a in (*args, "--store", db)]).exit_code == 0
    store = Store(db)
    accept_halves(store, "pick up the can")
    result = runner.invoke(app, ["export", str(out), "--to", "parquet", "--store", str(db)])
    message = " ".join(result.output.split())
    assert result.exit_code == 2 and message.count("error:") == 1 and not out.exists()
    assert "the selected episodes have different arrays" in message and "(--dataset-name)" in message
    assert "episode can/0 has action (7), observation.object (14), " in message
    assert f"episode {V3_AV1.name}/0 has action (4), observation.state (4)" in message
    only = runner.invoke(app, ["export", str(out), "--to", "parquet", "--store", str(db), "--dataset-name", "can"])
    assert only.exit_code == 0, only.output
