"""`uvd`: the walk back from the goal on known embedding paths, the backend on frames stored in
HDF5 and in the AV1 fixture, and a transformers encoder loaded by path (tiny random-init model)."""

from pathlib import Path

import h5py
import numpy as np
import pytest

from atomvla.annotate.backends import BackendError, get_backend
from atomvla.annotate.backends.uvd import UVDConfig, fit_count, name_segments, walk_back
from atomvla.curate.episode import Episode
from atomvla.curate.store import Store
from atomvla.curate.sources import open_source
from atomvla.schemas import CameraRef, EpisodeMeta, Status

FIXTURE = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "metaworld_lerobot_v30"
FPS = 20


def path_through(points: list[tuple[float, float]], frames_per_leg: list[int]) -> np.ndarray:
    """(n, 2) positions moving at constant speed from each point to the next."""
    legs = [
        np.linspace(a, b, k, endpoint=False) for a, b, k in zip(points[:-1], points[1:], frames_per_leg, strict=True)
    ]
    return np.concatenate([*legs, np.asarray(points[-1:])])


def test_walk_cuts_where_the_distance_to_the_subgoal_stops_falling():
    # Away from the goal first (0,1) -> (0,2), then to it (0,0): the distance to the goal rises,
    # then falls; the cut is where it peaks. Before the cut every frame nears (0,2): no second cut.
    xy = path_through([(0, 1), (0, 2), (0, 0)], [25, 35])
    at = np.arange(len(xy))
    cuts = walk_back(xy, at, min_interval=10, sigma=1.5, plateau=0.0)
    assert [f for f, _ in cuts] == [pytest.approx(25, abs=1)]
    assert 0.4 < cuts[0][1] <= 1.0


def test_walk_passes_over_cuts_closer_than_the_minimum_interval():
    # A short detour of 6 frames just before the goal, and a real one at frame 20.
    xy = path_through([(0, 1), (0, 2), (0, 0), (0.3, 0), (0, 0)], [20, 30, 6, 6])
    at = np.arange(len(xy))
    assert [f for f, _ in walk_back(xy, at, min_interval=10, sigma=1.0, plateau=0.3)] == [pytest.approx(20, abs=1)]
    # With sampled frames (every 2nd) the cut is still reported in episode frames.
    assert [f for f, _ in walk_back(xy[::2], at[::2], min_interval=10, sigma=2.0, plateau=0.3)] == [pytest.approx(20, abs=2)]


def test_plateau_cuts_where_progress_stalls_but_not_in_a_pause_before_the_subgoal():
    # Towards (0,3), a slow creep on to (0,2.8), then to the goal (0,0): going back from the goal
    # the distance rises fast, barely over the creep, fast again. No local maximum, so UVD's rule
    # finds no cut; the plateau rule cuts where the approach to the goal starts (frame 40). Going
    # back from that subgoal, the creep (distance near 0) is not a cut: nothing has risen yet.
    xy = path_through([(0, 5), (0, 3), (0, 2.8), (0, 0)], [20, 20, 30])
    at = np.arange(len(xy))
    assert walk_back(xy, at, min_interval=10, sigma=1.0, plateau=0.0) == []
    assert [f for f, _ in walk_back(xy, at, min_interval=10, sigma=1.0, plateau=0.3)] == [pytest.approx(40, abs=2)]


def test_fit_count_keeps_the_most_salient_and_halves_the_longest():
    cuts = [(10, 0.2), (30, 0.9), (50, 0.5)]
    assert fit_count(cuts, 3, 60, 2) == [(30, 0.9), (50, 0.5)]
    assert fit_count([(10, 0.2)], 3, 60, 2) == [(10, 0.2), (35, 0.0)]
    assert fit_count([], 2, 3, 2) == []  # too short to halve


def test_segments_are_named_from_the_plan():
    steps = name_segments("pick up the bowl and place it on the plate", 2)
    assert [(s.skill, s.instruction) for s in steps] == [("pick", "pick up the bowl"), ("place", "place the bowl on the plate")]
    three = name_segments("pick up the bowl and place it on the plate", 3)
    assert [s.skill for s in three] == ["pick", "other", "place"]


def _hdf5_episode(tmp_path: Path, xy: np.ndarray, task: str) -> Episode:
    """Frames whose pixels are a linear image of a 2-d state: pixel distances follow the state."""
    rng = np.random.default_rng(0)
    base, a, b = (rng.uniform(0, 1, (24, 24, 3)) for _ in range(3))
    images = np.clip(60 + 120 * base + 40 * xy[:, 0, None, None, None] * a + 40 * xy[:, 1, None, None, None] * b, 0, 255)
    path = tmp_path / "frames.h5"
    with h5py.File(path, "w") as f:
        f["cam"] = images.astype(np.uint8)
    meta = EpisodeMeta(
        episode_id="toy/0", dataset="toy", episode_index=0, source=str(path), source_format="none", fps=FPS,
        n_frames=len(xy), task=task, cameras=(CameraRef(key="cam", kind="hdf5", path=str(path), dataset="cam"),),
    )
    return Episode(meta)


def test_backend_on_frames_from_the_frame_layer(tmp_path):
    xy = path_through([(0, 1), (0, 2), (0, 0)], [30, 40])
    episode = _hdf5_episode(tmp_path, xy, "pick up the bowl and place it on the plate")
    backend = get_backend("uvd")(UVDConfig(pixel_size=12, min_interval_s=0.5))
    dec = backend.propose(episode)
    assert dec.status is Status.proposed and dec.author == "uvd"
    assert dec.boundaries == [pytest.approx(30, abs=2)]
    assert [s.instruction for s in dec.subtasks] == ["pick up the bowl", "place the bowl on the plate"]
    assert dec.provenance.confidence > 0.3

    # count=embedding: as many as the walk finds, clamped to the contract's 2.
    walked = get_backend("uvd")(UVDConfig(pixel_size=12, min_interval_s=0.5, count="embedding")).propose(episode)
    assert walked.boundaries == dec.boundaries
    assert backend.settings_hash != get_backend("uvd")(UVDConfig(count="embedding")).settings_hash


def test_backend_on_the_av1_fixture_through_sampled_access():
    meta = next(m for m in open_source(str(FIXTURE)).scan() if isinstance(m, EpisodeMeta))
    dec = get_backend("uvd")(UVDConfig(max_frames=32)).propose(Episode(meta))
    assert dec.status is Status.proposed and 2 <= len(dec.subtasks) <= 5
    assert dec.subtasks[-1].end_frame == meta.n_frames


def test_episode_without_camera_or_encoder_is_a_backend_error(tmp_path):
    episode = _hdf5_episode(tmp_path, path_through([(0, 0), (1, 1)], [40]), "open the drawer")
    no_camera = Episode(episode.meta.model_copy(update={"cameras": ()}))
    assert not get_backend("uvd").can_handle(no_camera.meta)
    with pytest.raises(BackendError, match="no camera"):
        get_backend("uvd")().propose(no_camera)
    with pytest.raises(BackendError, match="cannot load encoder .*`pixels` needs no weights"):
        get_backend("uvd")(UVDConfig(encoder=str(tmp_path / "no-such-model"))).propose(episode)


def _tiny_dinov2(folder: Path) -> int:
    from transformers import Dinov2Config, Dinov2Model, ViTImageProcessor

    config = Dinov2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=32, patch_size=8
    )
    Dinov2Model(config).save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return 32  # pooled output


def _tiny_clip(folder: Path) -> int:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    layers = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2}
    config = CLIPConfig(
        text_config={**layers, "vocab_size": 100}, vision_config={**layers, "image_size": 32, "patch_size": 8},
        projection_dim=16,
    )
    CLIPModel(config).save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return 16  # image features (projection)


@pytest.mark.parametrize("build", [_tiny_dinov2, _tiny_clip], ids=["dinov2", "clip"])
def test_transformers_encoder_loaded_by_path(tmp_path, build):
    folder = tmp_path / "tiny-encoder"
    dim = build(folder)

    from atomvla.annotate.backends.uvd import load_encoder

    frames = np.random.default_rng(1).integers(0, 255, (5, 24, 24, 3), dtype=np.uint8)
    embeddings = load_encoder(str(folder), 16)(frames)
    assert embeddings.shape == (5, dim) and np.isfinite(embeddings).all()

    xy = path_through([(0, 1), (0, 2), (0, 0)], [30, 40])
    episode = _hdf5_episode(tmp_path, xy, "open the drawer")
    dec = get_backend("uvd")(UVDConfig(encoder=str(folder), max_frames=24)).propose(episode)
    assert dec.status is Status.proposed and len(dec.subtasks) == 2
    assert [s.skill for s in dec.subtasks] == ["reach", "open"]


def test_an_encoder_that_cannot_load_stops_the_run_in_one_line_before_any_work(tmp_path):
    from typer.testing import CliRunner

    from atomvla.annotate.cli import app as annotate
    from atomvla.curate.cli import app as curate

    store = tmp_path / "s.sqlite"
    runner = CliRunner()
    assert runner.invoke(curate, ["import", str(FIXTURE), "--store", str(store)]).exit_code == 0
    missing = tmp_path / "no-such-encoder"
    result = runner.invoke(annotate, ["run", "--store", str(store), "--backend", "uvd", f"encoder={missing}"])
    assert result.exit_code == 2
    (line,) = [line for line in result.output.splitlines() if line.strip()]
    assert line.startswith("error: uvd: cannot load encoder") and "`encoder=pixels` needs no weights" in line
    assert Store(store).latest_all(author="uvd") == {}
