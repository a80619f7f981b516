"""Samples: the prompt's subtask, chunk padding, store and export agreeing, resumable sampling, bad data."""

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from atomvla.train.config import get_config
from atomvla.train.data.episodes import DatasetError, open_dataset
from atomvla.train.data.normalize import Stats
from atomvla.train.data.samples import ChunkDataset, ChunkSampler
from atomvla.train.models.backbone import load_tokenizer
from atomvla.train.assemble import make_processor

CFG = get_config("tiny-cpu")


def dataset_of(source, horizon=4):
    episodes = open_dataset(source)
    stats = Stats.compute(episodes, "observation.state", "action")
    cfg = get_config("tiny-cpu", [f"data.horizon={horizon}"])
    return ChunkDataset(episodes, cfg.data, stats, ("observation.images.corner",)), cfg


def index_of(ds, episode_pos, t):
    return int(ds._starts[episode_pos]) + t


def test_prompt_holds_the_subtask_active_at_each_side_of_a_boundary(export_dir):
    ds, cfg = dataset_of(export_dir)
    proc = make_processor(cfg, load_tokenizer(cfg.backbone), ("pick", "place"))
    ep = next(i for i, e in enumerate(ds.episodes) if e.meta.episode_index == 0)  # boundary at frame 32
    before, after = ds.sample(index_of(ds, ep, 31)), ds.sample(index_of(ds, ep, 32))
    assert (before.subtask, before.skill, before.boundary_distance) == ("pick up the puck", "pick", 1)
    assert (after.subtask, after.skill, after.boundary_distance) == ("place the puck at the goal", "place", 0)
    for s in (before, after):
        item = proc(s)
        text = proc.tokenizer.decode(item["input_ids"], skip_special_tokens=True)
        assert text == f"Task: pick up the puck and place it at the goal\nCurrent subtask: {s.skill}: {s.subtask}"
        target = item["input_ids"][item["labels"] != -100]
        assert proc.tokenizer.decode(target, skip_special_tokens=True) == f"{s.skill}: {s.subtask}"
        assert item["skill"].item() == ("pick", "place").index(s.skill)


def test_chunks_are_padded_and_masked_at_the_episode_end(export_dir):
    ds, _ = dataset_of(export_dir, horizon=4)
    e = ds.episodes[0]
    n = e.meta.n_frames
    actions = ds.stats.action.normalize(e.array("action"))
    full, tail = ds.sample(n - 4), ds.sample(n - 2)
    assert full.action_mask.all()
    np.testing.assert_allclose(full.actions, actions[n - 4 :], rtol=1e-6)
    assert tail.action_mask.tolist() == [True, True, False, False]
    np.testing.assert_allclose(tail.actions[:2], actions[n - 2 :], rtol=1e-6)
    assert (tail.actions[2:] == 0).all()
    assert len(ds) == sum(e.meta.n_frames for e in ds.episodes)


def test_an_export_and_its_store_give_the_same_samples(export_dir, store_file):
    from_export, _ = dataset_of(export_dir)
    from_store, _ = dataset_of(store_file)
    assert [e.meta.episode_id for e in from_export.episodes] == [e.meta.episode_id for e in from_store.episodes]
    for i in (0, 150, len(from_store) - 1):
        a, b = from_export.sample(i), from_store.sample(i)
        assert (a.subtask, a.task, a.frame, a.episode_id) == (b.subtask, b.task, b.frame, b.episode_id)
        np.testing.assert_array_equal(a.images, b.images)
        np.testing.assert_array_equal(a.actions, b.actions)


def test_sampler_resumes_mid_epoch_and_splits_each_global_batch_across_ranks():
    def take(sampler, k):
        it = iter(sampler)
        return [next(it) for _ in range(k)]

    whole = take(ChunkSampler(10, 2, seed=3), 12)  # 5 steps per epoch: crosses two epochs
    assert take(ChunkSampler(10, 2, seed=3, start=7), 5) == whole[7:]
    assert sorted(sum(whole[:5], [])) == list(range(10))
    ranks = [take(ChunkSampler(10, 1, seed=3, rank=r, world=2), 5) for r in (0, 1)]
    assert [a + b for a, b in zip(*ranks)] == whole[:5]


def test_a_store_without_accepted_subtasks_is_refused(store_of, tmp_path):
    store = store_of(tmp_path / "s.sqlite", [])
    with pytest.raises(DatasetError, match="no subtasks"):
        open_dataset(store)


def _copy_export(export_dir: Path, dest: Path) -> Path:
    shutil.copytree(export_dir, dest)
    return dest


def test_an_export_without_subtasks_is_refused(export_dir, tmp_path):
    d = _copy_export(export_dir, tmp_path / "e")
    (d / "meta" / "atomvla_subtasks.jsonl").unlink()
    with pytest.raises(DatasetError, match=r"atomvla_subtasks.jsonl: no subtasks in this dataset"):
        open_dataset(d)


def test_a_dataset_without_the_action_feature_is_refused(export_dir, tmp_path):
    d = _copy_export(export_dir, tmp_path / "e")
    info = json.loads((d / "meta" / "info.json").read_text())
    del info["features"]["action"]
    (d / "meta" / "info.json").write_text(json.dumps(info))
    data = d / "data" / "chunk-000" / "file-000.parquet"
    table = pq.read_table(data)
    pq.write_table(table.drop(["action"]), data)
    episodes = open_dataset(d)
    with pytest.raises(DatasetError, match=r"episode metaworld_lerobot_v30/0 has no 'action' feature"):
        Stats.compute(episodes, "observation.state", "action")


def test_statistics_of_another_dataset_are_refused(export_dir, tmp_path):
    episodes = open_dataset(export_dir)
    stats = Stats.compute(episodes, "observation.state", "action")
    d = _copy_export(export_dir, tmp_path / "e")
    info = json.loads((d / "meta" / "info.json").read_text())
    info["features"]["action"]["names"] = ["j1", "j2", "j3", "j4"]
    (d / "meta" / "info.json").write_text(json.dumps(info))
    with pytest.raises(DatasetError, match="statistics do not match"):
        ChunkDataset(open_dataset(d), CFG.data, stats, ("observation.images.corner",))


def test_a_hub_repo_id_reads_the_curated_export_from_the_hub_cache(export_dir, tmp_path, monkeypatch):
    """The real `snapshot_download`, offline, against a cache laid out the way it leaves one."""
    import huggingface_hub.constants as hub_constants

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "datasets--someone--curated"
    shutil.copytree(export_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    episodes = open_dataset("someone/curated")
    assert [e.subtasks for e in episodes] == [e.subtasks for e in open_dataset(export_dir)]
    with pytest.raises(DatasetError, match="someone/elsewhere: not a local path, and the Hub download failed"):
        open_dataset("someone/elsewhere")
