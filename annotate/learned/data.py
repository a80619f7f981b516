"""Training samples: one episode's features on the grid with its true boundaries and skills.

A sample comes from a stored episode and the subtasks a person accepted (fine-tuning), or from a
generator's record (pretraining: `benchmarks/learned_data.py` writes them as dicts with
`source, task, instruction, fps, feature_names, state, action, subtasks`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from atomvla.annotate.kinematics import ACTION, STATE
from atomvla.annotate.learned.features import EVENT_CHANNELS, PIXEL_CHANNELS, Features, episode_features, robot_state_dims
from atomvla.curate.episode import Episode
from atomvla.schemas import SKILLS, EpisodeMeta, Subtask


@dataclass(frozen=True)
class Sample:
    features: Features
    boundaries: tuple[int, ...]  # grid frames
    skills: np.ndarray  # (t,) int: index into SKILLS of each grid frame's subtask
    task: str = ""  # what leave-one-task-out groups by
    source: str = ""
    instruction: str = ""  # the episode's task instruction (an exemplar aligns with episodes of the same)


def wants(channels: Sequence[str]) -> tuple[bool, bool]:
    """(events, pixels): which optional channel groups a layout has."""
    return EVENT_CHANNELS[0] in channels, PIXEL_CHANNELS[0] in channels


def features_for(channels: Sequence[str], episode: Episode) -> Features:
    """An episode's features in the layout `channels` (decoding its frames when the layout has pixels)."""
    events, pixels = wants(channels)
    frames = None
    if pixels:
        frames = episode.frames().get_many(range(episode.meta.n_frames))
    return episode_features(episode.meta, episode.arrays, events, frames)


def make_sample(features: Features, truth: Sequence[Subtask], task: str = "", source: str = "", instruction: str = "") -> Sample:
    t = len(features.x)
    skills = np.zeros(t, dtype=np.int64)
    for s in truth:
        skills[features.to_grid(s.start_frame) :] = SKILLS.index(s.skill)
    return Sample(features, tuple(features.to_grid(s.start_frame) for s in truth[1:]), skills, task, source, instruction)


def record_meta(record: Mapping[str, Any], index: int = 0) -> EpisodeMeta:
    n = len(record["state"])
    return EpisodeMeta(
        episode_id=f"{record['source']}/{index}", dataset=record["source"], episode_index=index, source="generated",
        source_format="none", fps=record["fps"], n_frames=n, task=record["instruction"],
        feature_names={k: list(v) for k, v in record["feature_names"].items()},
    )


def record_sample(record: Mapping[str, Any], channels: Sequence[str], index: int = 0) -> Sample:
    """A generator's record as a sample (state and action only: no pixels)."""
    events, _ = wants(channels)
    meta = record_meta(record, index)
    arrays = {STATE: np.asarray(record["state"]), ACTION: np.asarray(record["action"])}
    truth = [Subtask(**s) for s in record["subtasks"]]
    return make_sample(episode_features(meta, arrays, events), truth, record["task"], record["source"], record["instruction"])


def without_scene(record: Mapping[str, Any]) -> dict[str, Any] | None:
    """The record as a robot without scene state would have recorded it: the state dims no arm uses
    removed (see features.robot_state_dims); None when it has none."""
    names = list(record["feature_names"].get(STATE) or [])
    keep = sorted(robot_state_dims(names)) if names else []
    if not names or len(keep) == len(names):
        return None
    return {**record, "state": np.asarray(record["state"])[:, keep],
            "feature_names": {**record["feature_names"], STATE: [names[i] for i in keep]}}


def with_sceneless_copies(records: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Every record, then a copy without its scene state of each that has one: the model must read
    episodes with and without scene state (most datasets have none) and not take the flag for a robot."""
    return [*records, *(c for r in records if (c := without_scene(r)) is not None)]


def records_hash(records: Iterable[Mapping[str, Any]]) -> str:
    """sha256 over every record's arrays and truth, in order: names the data weights were trained on."""
    h = hashlib.sha256()
    for r in records:
        h.update(json.dumps({k: r[k] for k in ("source", "task", "instruction", "fps", "feature_names", "subtasks")},
                            sort_keys=True).encode())
        for key in ("state", "action"):
            h.update(np.ascontiguousarray(r[key], dtype=np.float32).tobytes())
    return h.hexdigest()
