"""Frame access against a reference sequential PyAV decode, on real files (AV1, H.264, HDF5)."""

from __future__ import annotations

import shutil
from pathlib import Path

import av
import h5py
import numpy as np
import pandas as pd
import pytest

from atomvla.curate.errors import SourceError
from atomvla.curate.video import cache_info, configure_cache, open_frames, wait_background
from atomvla.curate.video.clip import write_clip
from atomvla.curate.video.frame_cache import FrameCache
from atomvla.curate.video.frames import VideoFrames
from atomvla.curate.video.pool import DecoderPool
from atomvla.curate.video.pyav_decoder import KEEP_BEFORE, SKIP_MARGIN, PyAVDecoder
from atomvla.schemas import CameraRef

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures"
CAMERA = "observation.images.corner"
VIDEO = f"videos/{CAMERA}/chunk-000/file-000.mp4"
DATASETS = {"av1": "metaworld_lerobot_v30", "h264": "metaworld_lerobot_v30_h264"}
FPS = 20.0


def decode_all(path: Path) -> np.ndarray:
    """(n, H, W, 3) every frame of the file in presentation order: the reference."""
    with av.open(str(path)) as container:
        frames = sorted(container.decode(video=0), key=lambda f: f.pts)
        return np.stack([f.to_ndarray(format="rgb24") for f in frames])


class Clip:
    """One episode of a video file and its expected frames."""

    def __init__(self, path: Path, from_timestamp: float, n_frames: int, fps: float, reference: np.ndarray):
        self.ref = CameraRef(key=CAMERA, kind="video", path=str(path), from_timestamp=from_timestamp)
        self.n_frames = n_frames
        self.fps = fps
        first = round(from_timestamp * fps)  # constant frame rate: file frame = episode start + i
        self.expected = reference[first : first + n_frames]
        assert len(self.expected) == n_frames

    def open(self, **kw):
        return open_frames(self.ref, self.n_frames, self.fps, episode="ep", **kw)


@pytest.fixture(scope="module", params=[("av1", 3), ("h264", 7), ("h264", 0)], ids=lambda p: f"{p[0]}-ep{p[1]}")
def clip(request) -> Clip:
    codec, episode = request.param
    root = FIXTURES / DATASETS[codec]
    episodes = pd.read_parquet(next((root / "meta" / "episodes").rglob("*.parquet")))
    row = episodes.set_index("episode_index").loc[episode]
    return Clip(root / VIDEO, float(row[f"videos/{CAMERA}/from_timestamp"]), int(row["length"]), FPS,
                decode_all(root / VIDEO))


def encode_long_gop(path: Path, gop: int, n_frames: int) -> Path:
    """H.264 96x64 at 25 fps with B-frames (a pyramid of them, as libx264 makes by default)."""
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        stream.codec_context.gop_size = gop
        stream.options = {"keyint_min": str(gop), "sc_threshold": "0", "bf": "3"}
        base = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
        for i in range(n_frames):
            img = np.roll(base, 2 * i, axis=1)
            img[10:30, i % 80 : i % 80 + 16] = (255, 3 * i % 256, 0)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture(scope="module")
def long_gop(tmp_path_factory) -> Clip:
    """H.264 with 40-frame GOPs and B-frames: the fixtures' 2-frame GOPs never exercise the
    decode cursor, the frame cache across GOPs, or reordering."""
    path = encode_long_gop(tmp_path_factory.mktemp("video") / "long_gop.mp4", gop=40, n_frames=150)
    # The episode starts mid-GOP, past the first keyframe.
    return Clip(path, from_timestamp=55 / 25, n_frames=90, fps=25.0, reference=decode_all(path))


def scrub_walk(start: int, n: int) -> list[int]:
    """Positions of a review-UI walk: +1 steps, +10 jumps, then back with -1 and -10."""
    steps = [1] * 5 + [10] * 3 + [-1] * 12 + [-10] * 5 + [1, -1, 10, -10]
    positions, pos = [], start
    for step in steps:
        pos = min(max(pos + step, 0), n - 1)
        positions.append(pos)
    return positions


def test_iteration_matches_reference(clip):
    frames = list(clip.open())
    assert len(frames) == clip.n_frames
    np.testing.assert_array_equal(np.stack(frames), clip.expected)


def test_random_access_matches_reference(clip):
    frames = clip.open()
    for i in np.random.default_rng(1).permutation(clip.n_frames)[:25]:
        np.testing.assert_array_equal(frames.get(int(i)), clip.expected[i])


def test_get_many_keeps_order_and_repeats(clip):
    frames = clip.open()
    indices = [clip.n_frames - 1, 0, 5, 5, clip.n_frames // 2, 1]
    np.testing.assert_array_equal(frames.get_many(indices), clip.expected[indices])


def test_sample_spreads_first_to_last(clip):
    indices, frames = clip.open().sample(8)
    assert indices[0] == 0 and indices[-1] == clip.n_frames - 1
    assert len(indices) == 8 and indices == sorted(set(indices))
    np.testing.assert_array_equal(frames, clip.expected[indices])


def test_scrubbing_both_ways(clip):
    frames = clip.open()
    for pos in scrub_walk(clip.n_frames // 2, clip.n_frames):
        np.testing.assert_array_equal(frames.get(pos), clip.expected[pos])


def test_long_gop_scrubbing_and_batches(long_gop):
    configure_cache()
    frames = long_gop.open()
    for start in (70, 44, 10):  # within a GOP, right after a keyframe, before the first one
        for pos in scrub_walk(start, long_gop.n_frames):
            np.testing.assert_array_equal(frames.get(pos), long_gop.expected[pos])
    assert cache_info().frame_cache_hits > 0  # backward steps came from memory
    indices, sampled = frames.sample(16)
    np.testing.assert_array_equal(sampled, long_gop.expected[indices])
    np.testing.assert_array_equal(np.stack(list(frames)), long_gop.expected)


def test_decord_batches_give_the_same_frames(long_gop):
    """decord is off by default (PyAV measured faster on batches) but stays the alternative the
    benchmark compares against: where switched on it must return the same frames."""
    pool = DecoderPool(4, 64 << 20)
    assert pool.decord(long_gop.ref.path) is not None  # it reads this file: the batch below is decord's
    frames = VideoFrames(long_gop.ref, long_gop.n_frames, long_gop.fps, "ep", pool, use_decord=True)
    indices = [0, 17, 40, 41, 89, 5, 5]
    np.testing.assert_array_equal(frames.get_many(indices), long_gop.expected[indices])


def test_small_frame_cache_still_exact(long_gop):
    configure_cache(frame_cache_bytes=5 * 96 * 64 * 3 // 2)  # five frames: constant eviction
    frames = long_gop.open()
    for pos in scrub_walk(60, long_gop.n_frames):
        np.testing.assert_array_equal(frames.get(pos), long_gop.expected[pos])
    assert cache_info().frame_cache_bytes <= 5 * 96 * 64 * 3 // 2
    configure_cache()


def test_decoders_are_reused_not_reopened(clip):
    configure_cache()
    first = clip.open()
    first.get(0)
    first.get_many([0, 1])  # batches may open (or probe) decord too
    opened = cache_info().opens
    for _ in range(3):
        frames = clip.open()
        frames.get(1)
        frames.get_many([2, 3])
    info = cache_info()
    assert info.opens == opened
    assert info.reuses >= 6
    frames.get(1)
    assert cache_info().frame_cache_hits > info.frame_cache_hits


def test_missing_video_names_file_and_episode(tmp_path):
    ref = CameraRef(key="cam", kind="video", path=str(tmp_path / "nope.mp4"))
    with pytest.raises(SourceError, match="does not exist") as err:
        open_frames(ref, 10, FPS, episode="demo/4")
    assert err.value.file.endswith("nope.mp4") and err.value.episode == "demo/4"


@pytest.mark.parametrize("keep", [0.1, 0.6])
def test_truncated_video(tmp_path, keep):
    source = FIXTURES / DATASETS["h264"] / VIDEO
    cut = tmp_path / "cut.mp4"
    data = source.read_bytes()
    cut.write_bytes(data[: int(len(data) * keep)])
    ref = CameraRef(key="cam", kind="video", path=str(cut), from_timestamp=40.0)
    with pytest.raises(SourceError) as err:
        open_frames(ref, 60, FPS, episode="demo/9")
    assert err.value.file == str(cut) and err.value.episode == "demo/9"


def test_video_shorter_than_episode(clip):
    with pytest.raises(SourceError, match=r"no video frame at [\d.]+s for frame \d+") as err:
        open_frames(clip.ref, 10_000, clip.fps, episode="demo/1")
    assert err.value.episode == "demo/1" and err.value.file == clip.ref.path


def test_index_outside_episode(clip):
    frames = clip.open()
    with pytest.raises(IndexError, match=f"outside \\[0, {clip.n_frames}\\)"):
        frames.get(clip.n_frames)
    with pytest.raises(IndexError):
        frames.get_many([0, -1])


@pytest.fixture
def h5_frames(tmp_path) -> tuple[Path, np.ndarray]:
    frames = np.random.default_rng(2).integers(0, 256, (150, 12, 16, 3), dtype=np.uint8)
    path = tmp_path / "demo.hdf5"
    with h5py.File(path, "w") as f:
        f["data/demo_0/obs/agentview_rgb"] = frames
        f["data/demo_0/obs/flat"] = frames[..., 0]
    return path, frames


@pytest.mark.parametrize("flip", [False, True])
def test_hdf5_camera(h5_frames, flip):
    path, stored = h5_frames
    ref = CameraRef(key="agentview", kind="hdf5", path=str(path), dataset="data/demo_0/obs/agentview_rgb",
                    flip_vertical=flip)
    expected = stored[:, ::-1] if flip else stored
    frames = open_frames(ref, 150, 20.0, episode="libero/0")
    np.testing.assert_array_equal(frames.get(7), expected[7])
    np.testing.assert_array_equal(frames.get_many([9, 2, 2]), expected[[9, 2, 2]])
    np.testing.assert_array_equal(np.stack(list(frames)), expected)
    indices, sampled = frames.sample(4)
    assert indices == [0, 50, 99, 149]
    np.testing.assert_array_equal(sampled, expected[indices])


@pytest.mark.parametrize(
    ("dataset", "n_frames", "problem"),
    [("data/demo_0/obs/missing", 10, "no dataset"), ("data/demo_0/obs/flat", 10, r"expected uint8 \(n, H, W, 3\)"),
     ("data/demo_0/obs/agentview_rgb", 151, "has 150 frames, the episode has 151")],
)
def test_hdf5_errors(h5_frames, dataset, n_frames, problem):
    ref = CameraRef(key="agentview", kind="hdf5", path=str(h5_frames[0]), dataset=dataset)
    with pytest.raises(SourceError, match=problem) as err:
        open_frames(ref, n_frames, 20.0, episode="libero/3")
    assert err.value.episode == "libero/3"


def test_rewritten_video_is_reopened(tmp_path):
    source = FIXTURES / DATASETS["h264"] / VIDEO
    path = tmp_path / "episode.mp4"
    path.write_bytes(source.read_bytes()[:60_000])  # an export interrupted midway...
    ref = CameraRef(key="cam", kind="video", path=str(path), from_timestamp=40.0)
    with pytest.raises(SourceError):
        open_frames(ref, 60, FPS)
    shutil.copyfile(source, path)  # ...then redone
    frames = open_frames(ref, 60, FPS)
    np.testing.assert_array_equal(frames.get(59), decode_all(source)[round(40.0 * FPS) + 59])



def test_jump_keeps_a_window_and_decodes_the_gop_behind_in_the_background(long_gop):
    """A cold jump keeps only the frames just before the target on the way; the rest of the GOP is
    decoded into the cache afterwards, so backward scrub steps come from memory."""
    configure_cache()
    frames = long_gop.open()

    def hit(pos: int) -> bool:
        before = cache_info().frame_cache_hits
        np.testing.assert_array_equal(frames.get(pos), long_gop.expected[pos])
        return cache_info().frame_cache_hits > before

    target = 64  # file frame 119: the last frame of the GOP that starts at file frame 80 (episode 25)
    assert not hit(target)
    wait_background()
    assert all(hit(pos) for pos in range(target - 1, 24, -1))
    assert not hit(24) and hit(23)  # the previous GOP, kept on the way by a backward step
    assert hit(target) and not hit(target + 1) and hit(target + 1)


def test_window_then_gop_without_background(long_gop):
    """Without decoding ahead: a jump keeps `KEEP_BEFORE` frames before the target; a backward step
    past them re-decodes from the keyframe and keeps the GOP."""
    cache = FrameCache(64 << 20)
    decoder = PyAVDecoder(long_gop.ref.path, cache, "key")
    first = 55  # the episode's first file frame

    def hit(file_index: int) -> bool:
        before = cache.hits
        np.testing.assert_array_equal(decoder.read([file_index])[0], long_gop.expected[file_index - first])
        return cache.hits > before

    assert not hit(119)
    assert hit(119 - KEEP_BEFORE)
    assert not hit(119 - KEEP_BEFORE - 1)
    assert all(hit(i) for i in range(119 - KEEP_BEFORE - 2, 79, -1))


def test_deep_jumps_skip_unkept_frames_and_stay_exact(tmp_path):
    """Far into a GOP, non-reference frames before the kept window are not decoded: the target
    and the window must still come out exact, forward continuation included."""
    path = encode_long_gop(tmp_path / "gop120.mp4", gop=120, n_frames=130)
    reference = decode_all(path)
    for target in (KEEP_BEFORE + SKIP_MARGIN + 1, 90, 119, 128):
        cache = FrameCache(64 << 20)
        decoder = PyAVDecoder(path, cache, "key")
        np.testing.assert_array_equal(decoder.read([target])[0], reference[target])
        window = range(max(target - KEEP_BEFORE, target // 120 * 120), target + 1)  # from the target's keyframe at most
        assert all(cache.get(("key", i)) is not None for i in window)
        np.testing.assert_array_equal(decoder.read([min(target + 1, 129)])[0], reference[min(target + 1, 129)])
        np.testing.assert_array_equal(decoder.read([target - KEEP_BEFORE - 1])[0], reference[target - KEEP_BEFORE - 1])


def clip_frames(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def test_clip_of_an_episode_on_a_keyframe_is_copied_exactly(clip, tmp_path):
    out = tmp_path / "clips" / "ep.mp4"
    assert write_clip(clip.ref, clip.n_frames, clip.fps, out, episode="ep") == "copy"
    np.testing.assert_array_equal(clip_frames(out), clip.expected)
    assert [p.name for p in out.parent.iterdir()] == ["ep.mp4"]  # no temporary file left


def test_clip_starting_mid_gop_or_from_hdf5_is_encoded(long_gop, h5_frames, tmp_path):
    out = tmp_path / "mid_gop.mp4"
    assert write_clip(long_gop.ref, long_gop.n_frames, long_gop.fps, out) == "encode"
    got = clip_frames(out)
    assert got.shape == long_gop.expected.shape
    # Re-encoded, so close rather than exact: each frame is nearest to its own source frame.
    exp = long_gop.expected.astype(np.int16)
    own = np.abs(got - exp).mean(axis=(1, 2, 3))  # (90,)
    assert (own[1:] < np.abs(got[1:] - exp[:-1]).mean(axis=(1, 2, 3))).all()
    assert (own[:-1] < np.abs(got[:-1] - exp[1:]).mean(axis=(1, 2, 3))).all()
    path, stored = h5_frames
    ref = CameraRef(key="agentview", kind="hdf5", path=str(path), dataset="data/demo_0/obs/agentview_rgb")
    assert write_clip(ref, 150, 20.0, tmp_path / "h5.mp4") == "encode"
    assert clip_frames(tmp_path / "h5.mp4").shape == (150, 12, 16, 3)
