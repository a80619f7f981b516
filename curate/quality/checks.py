"""`atom-curate qa`: every check over a store, as findings with a severity, plus agreement figures.

Checks:
- contract: each episode's latest revision against the rules in `schemas` (and failed runs);
- coverage: episodes without an accepted decomposition;
- duration: subtasks much shorter or longer than the same skill elsewhere in the dataset;
- motion: boundaries where nothing moves (the state, gripper included, is still around them);
- agreement: boundary F1 and segment IoU between every two authors (backends, annotators),
  and episodes where two authors disagree.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np

from atomvla.curate.episode import Episode
from atomvla.curate.errors import SourceError
from atomvla.curate.quality.agreement import EpisodeAgreement, PairAgreement, authors, pairwise
from atomvla.curate.store import Store
from atomvla.schemas import DEFAULT_MIN_FRAMES, Decomposition, EpisodeMeta, Status, check_subtasks

log = logging.getLogger(__name__)

Severity = Literal["error", "warning", "info"]
SEVERITY_RANK: dict[str, int] = {"info": 0, "warning": 1, "error": 2}


@dataclass(frozen=True)
class QaConfig:
    """Thresholds of the checks; every one is a named setting, none is tuned to a dataset."""

    min_frames: int = DEFAULT_MIN_FRAMES
    short_ratio: float = 1 / 3  # a subtask under this fraction of its skill's median duration is suspicious
    long_ratio: float = 3.0  # ... and over this multiple
    min_skill_samples: int = 5  # medians from fewer subtasks of a skill are not trusted
    max_instruction_words: int = 12  # "short imperative"
    motion: bool = True  # read each episode's arrays for the motion check
    still_window_s: float = 0.25  # half-width of the window around a boundary
    still_fraction: float = 0.05  # moving less than this fraction of the episode's median speed is "still"
    tolerance_s: float = 0.5  # boundaries this close count as the same in agreement
    disagree_f1: float = 0.5  # two authors below this boundary F1 on an episode disagree


@dataclass(frozen=True)
class Finding:
    severity: Severity
    rule: str
    episode_id: str
    message: str


@dataclass
class QaReport:
    n_episodes: int
    statuses: dict[str, int]
    findings: list[Finding] = field(default_factory=list)
    agreement: list[PairAgreement] = field(default_factory=list)
    episode_agreement: list[EpisodeAgreement] = field(default_factory=list)

    def count(self, severity: Severity) -> int:
        return sum(f.severity == severity for f in self.findings)

    def worst(self) -> int:
        """Rank of the most severe finding (-1 if none)."""
        return max((SEVERITY_RANK[f.severity] for f in self.findings), default=-1)

    def as_dict(self) -> dict:
        return {
            "summary": {"episodes": self.n_episodes, "statuses": self.statuses,
                        **{s: self.count(s) for s in ("error", "warning", "info")}},
            "findings": [asdict(f) for f in self.findings],
            "agreement": [p.as_dict() for p in self.agreement],
        }


def run_qa(store: Store, config: QaConfig = QaConfig(), dataset: str | None = None,
           progress: Callable[[], None] | None = None) -> QaReport:
    metas = store.episodes(dataset)
    histories = {m.episode_id: store.history(m.episode_id) for m in metas}
    latest = {e: h[-1] for e, h in histories.items() if h}
    statuses: dict[str, int] = defaultdict(int)
    for m in metas:
        statuses[latest[m.episode_id].status.value if m.episode_id in latest else "unlabelled"] += 1
    report = QaReport(len(metas), dict(statuses))
    report.findings += _contract(metas, latest, config)
    report.findings += _coverage(metas, latest)
    report.findings += _durations(metas, latest, config)
    if config.motion:
        for m in metas:
            if m.episode_id in latest and latest[m.episode_id].subtasks:
                report.findings += _motion(m, latest[m.episode_id], config)
            if progress is not None:
                progress()
    kind_of = _author_kinds(d for h in histories.values() for d in h)
    by_episode = {e: authors(h) for e, h in histories.items()}
    tolerance = {m.episode_id: max(1, round(config.tolerance_s * m.fps)) for m in metas}
    report.agreement, report.episode_agreement = pairwise(by_episode, kind_of, tolerance)
    for a in report.episode_agreement:
        if a.boundaries.f1 < config.disagree_f1:
            report.findings.append(Finding(
                "warning", "agreement", a.episode_id,
                f"{a.first} and {a.second} disagree: boundary F1 {a.boundaries.f1:.2f}, segment IoU {a.iou:.2f}"))
    report.findings.sort(key=lambda f: (-SEVERITY_RANK[f.severity], f.rule, f.episode_id))
    return report


def _author_kinds(decs: Iterable[Decomposition]) -> dict[str, str]:
    """'backend' for authors whose revisions name themselves as the backend, else 'annotator'."""
    kinds: dict[str, str] = {}
    for d in decs:
        is_backend = d.provenance is not None and d.provenance.backend == d.author
        if is_backend or d.author not in kinds:
            kinds[d.author] = "backend" if is_backend else "annotator"
    return kinds


def _contract(metas: list[EpisodeMeta], latest: dict[str, Decomposition], config: QaConfig) -> list[Finding]:
    out = []
    for m in metas:
        dec = latest.get(m.episode_id)
        if dec is None:
            continue
        where = f"revision {dec.revision} by {dec.author}"
        if dec.status is Status.failed:
            out.append(Finding("error", "contract", m.episode_id, f"{where}: the decomposition failed ({dec.note or 'no reason'})"))
            continue
        if dec.n_frames != m.n_frames:
            out.append(Finding("error", "contract", m.episode_id,
                               f"{where}: made for {dec.n_frames} frames, the episode has {m.n_frames}"))
        for problem in check_subtasks(dec.subtasks, m.n_frames, config.min_frames):
            out.append(Finding("error", "contract", m.episode_id, f"{where}: {problem}"))
        for i, s in enumerate(dec.subtasks, start=1):
            if not s.instruction.strip():
                out.append(Finding("error", "contract", m.episode_id, f"{where}: subtask {i} has a blank instruction"))
            elif len(s.instruction.split()) > config.max_instruction_words:
                out.append(Finding("warning", "instruction", m.episode_id,
                                   f"{where}: subtask {i} instruction has {len(s.instruction.split())} words "
                                   f"(more than {config.max_instruction_words}): {s.instruction!r}"))
            if i > 1 and s.instruction == dec.subtasks[i - 2].instruction:
                out.append(Finding("warning", "instruction", m.episode_id,
                                   f"{where}: subtasks {i - 1} and {i} have the same instruction {s.instruction!r}"))
    return out


def _coverage(metas: list[EpisodeMeta], latest: dict[str, Decomposition]) -> list[Finding]:
    out = []
    for m in metas:
        dec = latest.get(m.episode_id)
        if dec is None or dec.status is not Status.accepted:
            state = "no decomposition" if dec is None else f"latest revision {dec.revision} is {dec.status.value}"
            out.append(Finding("warning", "coverage", m.episode_id, f"no accepted decomposition ({state})"))
    return out


def _durations(metas: list[EpisodeMeta], latest: dict[str, Decomposition], config: QaConfig) -> list[Finding]:
    """Subtasks far from the median duration of their skill over the dataset (each dataset apart)."""
    by_skill: dict[tuple[str, str], list[tuple[str, int, float]]] = defaultdict(list)
    for m in metas:
        dec = latest.get(m.episode_id)
        for i, s in enumerate(dec.subtasks if dec else (), start=1):
            by_skill[(m.dataset, s.skill)].append((m.episode_id, i, s.n_frames / m.fps))
    out = []
    for (_, skill), items in by_skill.items():
        if len(items) < config.min_skill_samples:
            continue
        median = float(np.median([d for *_, d in items]))
        for episode_id, i, d in items:
            if d < median * config.short_ratio or d > median * config.long_ratio:
                word = "short" if d < median else "long"
                out.append(Finding("warning", "duration", episode_id,
                                   f"subtask {i} ({skill}) lasts {d:.2f} s, {word} against the median "
                                   f"{median:.2f} s of {len(items)} {skill} subtasks"))
    return out


def motion_speed(meta: EpisodeMeta) -> np.ndarray | None:
    """(n_frames - 1,) per-frame change of the state (or the action when there is no state), each
    dimension scaled by its range over the episode so a gripper and an arm count alike."""
    arrays = Episode(meta).arrays
    key = "observation.state" if "observation.state" in arrays else "action" if "action" in arrays else None
    if key is None or len(arrays[key]) < 3:
        return None
    x = arrays[key].astype(np.float64)
    span = x.max(axis=0) - x.min(axis=0)
    x = x[:, span > 0] / span[span > 0]
    return np.abs(np.diff(x, axis=0)).sum(axis=1) if x.size else None


def _motion(meta: EpisodeMeta, dec: Decomposition, config: QaConfig) -> list[Finding]:
    try:
        speed = motion_speed(meta)
    except (SourceError, OSError) as exc:
        return [Finding("info", "motion", meta.episode_id, f"arrays not readable, motion not checked: {exc}")]
    if speed is None:
        return []
    moving = float(np.median(speed[speed > 0])) if (speed > 0).any() else 0.0
    half = max(1, round(config.still_window_s * meta.fps))
    out = []
    for b in dec.boundaries:
        window = speed[max(0, b - half): b + half]
        if moving > 0 and window.size and window.max() < config.still_fraction * moving:
            out.append(Finding("warning", "motion", meta.episode_id,
                               f"boundary at frame {b}: nothing moves within ±{half} frames"))
    return out
