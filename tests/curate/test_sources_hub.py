"""A Hub repo id as a source: the real `huggingface_hub` code, offline, against a local cache.

No test downloads: the cache is laid out the way `snapshot_download` leaves it
(`datasets--<owner>--<name>/refs/main` + `snapshots/<commit>/...`), and HF_HUB_OFFLINE=1 makes
the library resolve from it, as it does on a machine that downloaded the dataset before.
"""

from __future__ import annotations

import shutil

import pytest

from atomvla.curate.errors import SourceError
from atomvla.curate.sources import open_source
from builders import V3_AV1

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def offline_hub_cache(tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    repo = cache / "datasets--someone--metaworld_demo"
    shutil.copytree(V3_AV1, repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    # huggingface_hub reads these at import time; point its constants at the test cache.
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    open_source.cache_clear()
    yield cache
    open_source.cache_clear()


def test_repo_id_resolves_from_the_local_cache(offline_hub_cache):
    reader = open_source("someone/metaworld_demo")
    metas = [m for m in reader.scan()]
    assert reader.name == "lerobot_v3"
    assert len(metas) == 11 and sum(m.n_frames for m in metas) == 889
    assert all(m.source == "someone/metaworld_demo" for m in metas)
    assert str(offline_hub_cache) in str(reader.root)


def test_unknown_repo_id_offline_is_a_clear_error(offline_hub_cache):
    with pytest.raises(SourceError, match="someone/not_there: not a local path, and the Hub download failed"):
        open_source("someone/not_there")


def test_path_that_is_neither_file_nor_repo_id(tmp_path):
    with pytest.raises(SourceError, match="no such file or folder"):
        open_source(str(tmp_path / "missing" / "dataset"))
