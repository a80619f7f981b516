"""A review store built from the Meta-World fixture: its episodes, a `heuristic` proposal per
episode (the truth with shifted boundaries, a confidence) and a `vlm` proposal (the truth)."""

from __future__ import annotations

import json
from pathlib import Path

from atomvla.curate.sources import open_source
from atomvla.curate.store import Store
from atomvla.schemas import Decomposition, EpisodeMeta, Provenance, Subtask

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures"
V3_AV1 = FIXTURES / "metaworld_lerobot_v30"
TRUTH = FIXTURES / "metaworld_truth.jsonl"


def truth() -> dict[int, dict]:
    return {r["episode_index"]: r for r in map(json.loads, TRUTH.read_text().splitlines())}


def proposal(meta: EpisodeMeta, line: dict, author: str, shift: int, confidence: float) -> Decomposition:
    subs = line["subtasks"]
    cuts = [0] + [min(max(s["start_frame"] + shift, 3), meta.n_frames - 3) for s in subs[1:]] + [meta.n_frames]
    return Decomposition(
        episode_id=meta.episode_id, n_frames=meta.n_frames, author=author,
        subtasks=tuple(Subtask(start_frame=a, end_frame=b, instruction=s["instruction"], skill=s["skill"])
                       for a, b, s in zip(cuts, cuts[1:], subs)),
        provenance=Provenance(backend=author, confidence=confidence),
    )


def build_review_store(path: Path, source: Path = V3_AV1) -> Store:
    store = Store(path)
    metas = [m for m in open_source(str(source)).scan() if isinstance(m, EpisodeMeta)]
    store.upsert_episodes(metas)
    lines = truth()
    decs = []
    for m in metas:
        line = lines[m.episode_index]
        decs.append(proposal(m, line, "heuristic", 4, 0.3 + 0.05 * m.episode_index))
        decs.append(proposal(m, line, "vlm", 0, 0.9))
    store.add_revisions(decs)
    return store
