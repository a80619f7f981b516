"""An episode with its arrays and frames loaded lazily from its source."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from atomvla.schemas import EpisodeMeta


@dataclass(frozen=True)
class Episode:
    meta: EpisodeMeta

    @property
    def arrays(self) -> dict[str, np.ndarray]:
        """Loaded on first use and kept. Not functools.cached_property: on Python 3.11 it holds one
        lock for every instance, so concurrent jobs loading different episodes ran one at a time."""
        loaded = self.__dict__.get("_arrays")
        if loaded is None:
            from atomvla.curate.sources import open_source

            loaded = open_source(self.meta.source, self.meta.source_format).load_arrays(self.meta)
            self.__dict__["_arrays"] = loaded
        return loaded

    def frames(self, camera: str | None = None):
        """Frame access for one camera (the first if not named): see `atomvla.curate.video`."""
        from atomvla.curate.video import open_frames

        cams = {c.key: c for c in self.meta.cameras}
        if not cams:
            raise ValueError(f"episode {self.meta.episode_id} has no camera")
        if camera is not None and camera not in cams:
            raise KeyError(f"episode {self.meta.episode_id} has no camera {camera!r} (has {', '.join(cams)})")
        ref = cams[camera] if camera is not None else next(iter(cams.values()))
        return open_frames(ref, n_frames=self.meta.n_frames, fps=self.meta.fps, episode=self.meta.episode_id)
