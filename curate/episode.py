"""An episode with its arrays and frames loaded lazily from its source."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from atomvla.schemas import EpisodeMeta


@dataclass(frozen=True)
class Episode:
    meta: EpisodeMeta

    @cached_property
    def arrays(self) -> dict[str, np.ndarray]:
        from atomvla.curate.sources import open_source

        return open_source(self.meta.source, self.meta.source_format).load_arrays(self.meta)

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
