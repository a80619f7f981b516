"""The latent cache: encoded once, reused, and never used for another encoder or changed frames."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from atomvla.train.data.episodes import open_dataset
from atomvla.train.latents import FrameEncoder, LatentCache, LatentCacheError
from tests.train.stage2 import TINY_ENCODER


@pytest.fixture(scope="module")
def metas(export_dir):
    return [e.meta for e in open_dataset(export_dir)[:2]]


def test_encodes_once_and_matches_the_encoder(metas, tmp_path):
    spec = TINY_ENCODER.spec()
    cache = LatentCache(tmp_path, spec)
    assert cache.build(metas) == sum(m.n_frames for m in metas)
    again = LatentCache(tmp_path, spec)
    assert again.build(metas) == 0  # nothing re-encoded
    latents = again.load(metas[0])
    encoder = FrameEncoder(spec)
    assert latents.shape == (metas[0].n_frames, encoder.n_patches, encoder.hidden) == (metas[0].n_frames, 16, 64)
    from atomvla.curate.episode import Episode

    direct = encoder.encode(Episode(metas[0]).frames().get_many([0, 5]))
    torch.testing.assert_close(latents[[0, 5]], direct)


def test_a_cache_of_another_encoder_is_refused(metas, tmp_path):
    LatentCache(tmp_path, TINY_ENCODER.spec()).build(metas[:1])
    other = dataclasses.replace(TINY_ENCODER, seed=1).spec()
    with pytest.raises(LatentCacheError, match=r"another encoder.*weights"):
        LatentCache(tmp_path, other)
    other_crop = dataclasses.replace(TINY_ENCODER, crop_size=32).spec()
    with pytest.raises(LatentCacheError, match="crop_size"):
        LatentCache(tmp_path, other_crop)


def test_stale_latents_are_refused(metas, tmp_path):
    cache = LatentCache(tmp_path, TINY_ENCODER.spec())
    cache.build(metas[:1])
    longer = metas[0].model_copy(update={"n_frames": metas[0].n_frames + 1})
    with pytest.raises(LatentCacheError, match=r"stale.*n_frames"):
        cache.load(longer)
    moved = metas[0].model_copy(update={"cameras": (metas[0].cameras[0].model_copy(update={"from_timestamp": 1.0}),)})
    with pytest.raises(LatentCacheError, match=r"episode .*stale.*from_timestamp"):
        cache.build([moved])
    with pytest.raises(LatentCacheError, match="no cached latents"):
        cache.load(metas[1])


def test_a_saved_checkpoint_loads_through_from_pretrained(metas, tmp_path):
    from transformers import VJEPA2Model

    from atomvla.train.latents import EncoderSpec

    tiny = FrameEncoder(TINY_ENCODER.spec())
    tiny.model.save_pretrained(tmp_path / "vjepa2-tiny")
    spec = EncoderSpec(str(tmp_path / "vjepa2-tiny"), storage_dtype="float32")
    loaded = FrameEncoder(spec)
    assert isinstance(loaded.model, VJEPA2Model) and not loaded.model.training
    cache = LatentCache(tmp_path / "cache", spec)
    cache.build(metas[:1])
    torch.testing.assert_close(cache.load(metas[0])[:3], tiny.encode(tiny_frames(metas[0])))
    with pytest.raises(LatentCacheError, match="cannot load the V-JEPA 2 encoder's config"):
        LatentCache(tmp_path / "other", EncoderSpec(str(tmp_path / "missing")))


def tiny_frames(meta):
    from atomvla.curate.episode import Episode

    return Episode(meta).frames().get_many([0, 1, 2])


RSS_SCRIPT = """
import sys
from pathlib import Path

from atomvla.train.worldmodel.data import NormedLatents
from atomvla.train.latents import MappedLatents


def rss() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


files = sorted(Path(sys.argv[1]).glob("*.safetensors"))
NormedLatents(MappedLatents.of(files[0]))[[0, 1]]  # first read: lazy imports and allocator warm-up
base, peak, frames = rss(), 0, 0
for path in files:
    latents = NormedLatents(MappedLatents.of(path))
    for t in range(0, latents.shape[0] - 8, 4):
        x = latents[[t, t + 4, t + 8]]
        frames += 3
        peak = max(peak, rss())
print(peak - base, frames)
"""


def test_latents_are_read_from_disk_with_bounded_memory(tmp_path):
    """A process reading every frame of a 192 MB cache grows by far less than the cache."""
    import subprocess
    import sys

    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(0)
    for i in range(12):  # 12 episodes x 64 frames x 256 patches x 512 dims in fp16: 16 MiB each
        save_file({"latents": torch.randn(64, 256, 512, generator=g).half()}, str(tmp_path / f"ep{i:02d}.safetensors"))
    total = sum(p.stat().st_size for p in tmp_path.glob("*.safetensors"))
    done = subprocess.run([sys.executable, "-c", RSS_SCRIPT, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    growth, frames = map(int, done.stdout.split())
    assert frames == 12 * 14 * 3
    assert total > 190e6 and growth < 24e6, f"RSS grew {growth / 1e6:.1f} MB reading a {total / 1e6:.0f} MB cache"


def test_mapped_latents_equal_the_loaded_ones_in_every_storage_dtype(tmp_path):
    from atomvla.train.latents import MappedLatents

    x = torch.randn(5, 3, 4)
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        from safetensors.torch import save_file

        save_file({"latents": x.to(dtype)}, str(tmp_path / "e.safetensors"))
        mapped = MappedLatents.of(tmp_path / "e.safetensors")
        assert mapped.shape == (5, 3, 4) and len(mapped) == 5
        torch.testing.assert_close(mapped[[4, 0]], x.to(dtype).float()[[4, 0]], rtol=0, atol=0)
        torch.testing.assert_close(mapped[-1], x.to(dtype).float()[-1], rtol=0, atol=0)
