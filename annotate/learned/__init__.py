"""The learned boundary model: a small temporal segmentation network (MS-TCN family) over
per-frame kinematics, actions and the heuristic's events, pretrained on every generated
ground-truth set and fine-tuned in seconds on a team's accepted episodes.

Stable API (used by `atom-annotate calibrate --backend learned` and the review app):

- `load_pretrained() -> LearnedModel`: the packaged weights (`weights/base.safetensors`).
- `fine_tune(base, episodes, truths, config=FINE_TUNE) -> LearnedModel`: a copy of `base`
  fitted to accepted episodes (`truths[i]`: the accepted subtasks of `episodes[i]`); `base` is
  unchanged. Seconds for 20 episodes on a CPU. The copy keeps up to 8 of the episodes as
  exemplars, whose boundaries decoding carries to new episodes by time warping (`align`).
- `LearnedModel.to_bytes()` / `LearnedModel.from_bytes(data)`: safetensors bytes with the spec,
  feature layout, data hash and fitted robot layout in the metadata (and a profile's exemplars); what a profile stores
  (`profiles.save_profile(..., weights=model.to_bytes())`).
- `learned_backend(model, min_subtask_s=0.25) -> LearnedBackend`: a ready backend around a
  model (its config carries the weights' hash, so proposals from different weights differ in
  settings hash); `profiles.backend_from_profile(store, "learned", name)` builds one from a
  saved profile.

Modules: `features` (the per-frame channels), `model` (network, weights file), `data`
(training samples), `train` (pretraining and fine-tuning), `align` (exemplar alignment),
`decode` (probabilities -> subtasks).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from atomvla.annotate.backends.learned import LearnedBackend
    from atomvla.annotate.learned.model import LearnedModel

DEFAULT_WEIGHTS = Path(__file__).parent / "weights" / "base.safetensors"


def load_pretrained() -> LearnedModel:
    """The packaged weights; raises model.WeightsError when they are missing or damaged."""
    from atomvla.annotate.learned.model import LearnedModel

    return LearnedModel.load(DEFAULT_WEIGHTS)


def fine_tune(base, episodes, truths, config=None) -> LearnedModel:  # noqa: ANN001 (see train.fine_tune)
    """See `atomvla.annotate.learned.train.fine_tune`."""
    from atomvla.annotate.learned import train

    return train.fine_tune(base, episodes, truths, config or train.FINE_TUNE)


def learned_backend(model: LearnedModel, min_subtask_s: float = 0.25) -> LearnedBackend:
    """A prepared `learned` backend running `model`."""
    from atomvla.annotate.backends.learned import LearnedBackend, LearnedConfig

    config = LearnedConfig(weights_sha256=model.digest(), min_subtask_s=min_subtask_s)
    backend = LearnedBackend(config, model=model)
    backend.prepare()
    return backend
