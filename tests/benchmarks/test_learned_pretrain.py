"""benchmarks/learned_pretrain.py: the packaged weights' recipe from one or several data folders,
the data's sha256 and description in the weights' metadata; a source given twice is refused before
any training. Tiny steps: this checks the run, not the weights."""

from __future__ import annotations

import pickle

import pytest

from atomvla.annotate.learned.data import records_hash
from atomvla.annotate.learned.model import LearnedModel
from benchmarks import learned_pretrain


def _folder(path, name: str, records: list) -> None:
    path.mkdir()
    (path / f"{name}.pkl").write_bytes(pickle.dumps(records))


def test_weights_from_two_folders_carry_both_sources_and_their_hash(tmp_path, fixture_records):
    humanlike = [{**r, "source": "humanlike"} for r in fixture_records[:4]]
    _folder(tmp_path / "a", "metaworld", fixture_records)
    _folder(tmp_path / "b", "humanlike", humanlike)
    out = tmp_path / "w.safetensors"
    learned_pretrain.main(["--data", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out), "--steps", "2"])
    info = LearnedModel.load(out).info
    assert info.data_hash == records_hash([*fixture_records, *humanlike])
    assert "15 episodes" in info.trained_on and "humanlike 4" in info.trained_on and "metaworld 11" in info.trained_on


def test_a_source_in_two_folders_is_refused_before_training(tmp_path, fixture_records):
    _folder(tmp_path / "a", "metaworld", fixture_records)
    _folder(tmp_path / "b", "metaworld", fixture_records[:2])
    out = tmp_path / "w.safetensors"
    with pytest.raises(SystemExit, match=f"metaworld.pkl is in both {tmp_path / 'a'} and {tmp_path / 'b'}"):
        learned_pretrain.main(["--data", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out), "--steps", "2"])
    assert not out.exists()
