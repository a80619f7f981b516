"""Shared by the benchmarks' tests: the rendered Meta-World fixture's episodes as the state-only
generator (benchmarks/learned_data.py) writes them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from atomvla.annotate.kinematics import ACTION, STATE
from benchmarks import learned_pixels

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures"


@pytest.fixture(scope="session")
def fixture_records() -> list[dict[str, Any]]:
    """The fixture's 11 episodes as learned_data's record dicts (source `metaworld`)."""
    records = []
    for e in learned_pixels.load_rendered(FIXTURES / "metaworld_lerobot_v30_h264", FIXTURES / "metaworld_truth.jsonl"):
        meta = e.episode.meta
        records.append({"source": "metaworld", "task": e.task, "instruction": meta.task, "fps": meta.fps,
                        "feature_names": {k: list(v) for k, v in meta.feature_names.items()},
                        "state": e.episode.arrays[STATE], "action": e.episode.arrays[ACTION],
                        "subtasks": [s.model_dump() for s in e.truth]})
    return records
