"""Episode metadata as the store keeps it: where the episode lives, not its frames."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class CameraRef(BaseModel):
    """How to reach one camera stream of one episode.

    `video`: frames are in a video file, from `from_timestamp` (seconds) on; LeRobot v3 packs many
    episodes per file. `hdf5`: frames are an (n, H, W, 3) uint8 dataset `dataset` in file `path`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str
    kind: Literal["video", "hdf5"]
    path: str
    from_timestamp: float = 0.0
    dataset: str | None = None
    flip_vertical: bool = Field(False, description="stored upside down (LIBERO)")
    height: int | None = None
    width: int | None = None
    codec: str | None = None


class EpisodeMeta(BaseModel):
    """One demonstration, as indexed in the store."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    episode_id: str = Field(description="stable id, `<dataset>/<episode_index>`")
    dataset: str
    episode_index: int = Field(ge=0)
    source: str = Field(description="local path or Hub repo id of the source dataset")
    source_format: str = Field(description="name of the reader that indexed it")
    fps: float = Field(gt=0)
    n_frames: int = Field(gt=0)
    task: str
    cameras: tuple[CameraRef, ...] = ()
    feature_names: dict[str, list[str]] = Field(
        default_factory=dict,
        description="per array (`action`, `observation.state`, ...) the name of each dimension",
    )
    locator: dict[str, str | int | float] = Field(
        default_factory=dict,
        description="reader-private address of the episode's arrays (row range, file, HDF5 group)",
    )

    @property
    def duration_s(self) -> float:
        return self.n_frames / self.fps
