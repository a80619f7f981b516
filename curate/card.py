"""The dataset card of an exported folder: YAML metadata the Hub reads (task categories, tags,
`configs`) and a body that says how the subtasks were made (backends, models, prompt versions,
the share people reviewed, cost), computed from the export's own interchange records."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from huggingface_hub import DatasetCard, DatasetCardData

LEROBOT_JSONL = Path("meta") / "atomvla_subtasks.jsonl"
PARQUET_EPISODES = Path("data") / "episodes"


def export_kind(root: Path) -> str:
    """'lerobot' or 'parquet' (the two folder exports), from the files they always hold."""
    if (root / LEROBOT_JSONL).is_file() and (root / "meta" / "info.json").is_file():
        return "lerobot"
    if (root / PARQUET_EPISODES).is_dir():
        return "parquet"
    raise ValueError(f"{root}: not an atom-curate export (no {LEROBOT_JSONL} nor {PARQUET_EPISODES}/)")


def episode_records(root: Path) -> list[dict[str, Any]]:
    """The export's interchange records (one dict per episode)."""
    if export_kind(root) == "lerobot":
        return [json.loads(line) for line in (root / LEROBOT_JSONL).read_text().splitlines() if line.strip()]
    rows = pq.read_table(root / PARQUET_EPISODES).to_pylist()
    for row in rows:
        row["provenance"] = json.loads(row.get("provenance") or "{}")
        row["proposals"] = json.loads(row.get("proposals") or "[]")
    return rows


@dataclass(frozen=True)
class SubtaskSummary:
    episodes: int
    frames: int
    subtasks: int
    skills: Counter
    makers: Counter  # (backend, model, prompt_version) -> episodes it proposed for
    reviewed_by_person: int
    cost_usd: float
    tokens: int

    @classmethod
    def of(cls, records: list[dict[str, Any]]) -> SubtaskSummary:
        makers: Counter = Counter()
        cost = 0.0
        tokens = 0
        for r in records:
            proposals = r.get("proposals") or ([r["provenance"]] if r.get("provenance") else [])
            for p in proposals:
                makers[(p.get("backend", "?"), p.get("model") or "-", p.get("prompt_version") or "-")] += 1
                cost += float(p.get("cost_usd", 0.0))
                tokens += int(p.get("tokens_in", 0)) + int(p.get("tokens_out", 0))
        return cls(
            episodes=len(records),
            frames=sum(int(r["n_frames"]) for r in records),
            subtasks=sum(len(r["subtasks"]) for r in records),
            skills=Counter(s["skill"] for r in records for s in r["subtasks"]),
            makers=makers,
            reviewed_by_person=sum(bool(r.get("reviewed_by_person")) for r in records),
            cost_usd=cost,
            tokens=tokens,
        )


def build_card(root: Path, repo_id: str, license: str | None = None) -> DatasetCard:
    kind = export_kind(root)
    summary = SubtaskSummary.of(episode_records(root))
    if kind == "lerobot":
        configs = [{"config_name": "default", "data_files": "data/*/*.parquet"}]
    else:
        configs = [{"config_name": "frames", "default": True, "data_files": [{"split": "train", "path": "data/frames/*.parquet"}]},
                   {"config_name": "episodes", "data_files": [{"split": "train", "path": "data/episodes/*.parquet"}]}]
    data = DatasetCardData(
        license=license,
        task_categories=["robotics"],
        tags=["LeRobot", "robotics", "atomvla", "subtasks", "task-decomposition"],
        configs=configs,
    )
    return DatasetCard(f"---\n{data.to_yaml()}\n---\n" + _body(kind, repo_id, summary, _conformed_rates(root)))


def _conformed_rates(root: Path) -> tuple[float, int] | None:
    """(recorded fps, stored fps) of a LeRobot export whose video was conformed to an integer rate
    (its cameras' `video.source_fps`), else None."""
    if export_kind(root) != "lerobot":
        return None
    info = json.loads((root / "meta" / "info.json").read_text())
    recorded = [f["info"]["video.source_fps"] for f in info["features"].values() if "video.source_fps" in f.get("info", {})]
    return (recorded[0], info["fps"]) if recorded else None


def _body(kind: str, repo_id: str, s: SubtaskSummary, conformed: tuple[float, int] | None) -> str:
    share = s.reviewed_by_person / s.episodes if s.episodes else 0.0
    lines = [
        f"# {repo_id}",
        "",
        f"Robot demonstrations split into atomic subtasks: {s.episodes} episodes, {s.frames} frames, "
        f"{s.subtasks} subtasks ({s.subtasks / max(s.episodes, 1):.1f} per episode). Curated with atomvla "
        f"(`atom-curate export --to {kind}`).",
        "",
        "## How the subtasks were made",
        "",
        f"- Reviewed by people: {s.reviewed_by_person} of {s.episodes} episodes ({share:.0%}); the rest are "
        "accepted model proposals.",
        f"- Model cost: ${s.cost_usd:.2f} ({s.tokens} tokens).",
        "",
        "| backend | model | prompt version | episodes proposed |",
        "| --- | --- | --- | --- |",
        *(f"| {b} | {m} | {p} | {n} |" for (b, m, p), n in sorted(s.makers.items())),
        *(["| (none recorded) | | | |"] if not s.makers else []),
        "",
        "Skills: " + ", ".join(f"{k} {v}" for k, v in s.skills.most_common()) + ".",
        "",
        "## Layout",
        "",
    ]
    if kind == "lerobot":
        lines += [
            "A LeRobot v3.0 dataset. Subtasks are in LeRobot's per-frame `language_persistent` column "
            "(rows with `style: subtask`, `role: assistant`, stamped with the subtask's first frame time), in "
            "the per-frame `subtask_index` with `meta/subtasks.parquet`, and in `meta/atomvla_subtasks.jsonl` "
            "(one line per episode: frame ranges, skills, instructions, authors, provenance).",
            "",
        ]
        if conformed is not None:
            recorded, stored = conformed
            lines += [
                f"The video was recorded at {recorded:.5g} fps and conformed to {stored} fps (LeRobot stores an "
                f"integer rate): the same frames, timestamped i/{stored}, play {abs(stored / recorded - 1) * 100:.2g}% "
                f"{'faster' if stored > recorded else 'slower'}. Subtask boundaries are frame numbers and did not move; "
                "each camera's `info` keeps the recorded rate as `video.source_fps`.",
                "",
            ]
        lines += [
            "```python",
            "from lerobot.datasets.lerobot_dataset import LeRobotDataset",
            f'ds = LeRobotDataset("{repo_id}")',
            "```",
        ]
    else:
        lines += [
            "Plain parquet: config `frames` (default, one row per frame with its subtask) and config "
            "`episodes` (one row per episode with its subtasks and provenance).",
            "",
            "```python",
            "from datasets import load_dataset",
            f'frames = load_dataset("{repo_id}", split="train")',
            "```",
        ]
    return "\n".join(lines) + "\n"
