"""The report's figures, drawn with matplotlib (Agg) to PNG files."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from atomvla.schemas import SKILLS, Decomposition  # noqa: E402

# One fixed colour per skill, so every figure and the legend agree.
SKILL_COLOURS: dict[str, str] = dict(zip(SKILLS, plt.get_cmap("tab20").colors[::2] + plt.get_cmap("tab20").colors[1::2]))


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def subtasks_per_episode(counts: Sequence[int], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(4.2, 2.8))
    values = range(min(counts, default=2), max(counts, default=2) + 1)
    ax.bar(list(values), [list(counts).count(v) for v in values], color="#4c78a8", width=0.8)
    ax.set_xticks(list(values))
    ax.set_xlim(min(values) - 1, max(values) + 1)
    ax.set_xlabel("subtasks per episode")
    ax.set_ylabel("episodes")
    return _save(fig, path)


def duration_per_skill(durations: Mapping[str, Sequence[float]], path: Path) -> Path:
    """One histogram of subtask durations (seconds) per skill, side by side on a shared axis."""
    skills = [s for s in SKILLS if durations.get(s)] or ["other"]
    every = [d for s in skills for d in durations.get(s, ())]
    bins = np.linspace(0, max(every, default=1.0), 13)
    fig, axes = plt.subplots(1, len(skills), figsize=(max(4.2, 1.7 * len(skills)), 2.8), sharey=True, squeeze=False)
    for ax, skill in zip(axes[0], skills):
        ax.hist(durations.get(skill, ()), bins=bins, color=SKILL_COLOURS[skill], edgecolor="white")
        ax.set_title(f"{skill} ({len(durations.get(skill, ()))})", fontsize=9)
        ax.set_xlabel("duration (s)", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0][0].set_ylabel("subtasks")
    axes[0][0].yaxis.set_major_locator(MaxNLocator(integer=True))
    return _save(fig, path)


def timeline(dec: Decomposition, fps: float, keyframes: Sequence[tuple[int, np.ndarray]], path: Path) -> Path:
    """Key frames above a strip of the subtasks coloured by skill, with their boundaries."""
    n = len(keyframes)
    fig = plt.figure(figsize=(max(6.0, 1.25 * n), 2.3))
    grid = fig.add_gridspec(2, max(n, 1), height_ratios=[2.2, 1], hspace=0.25)
    for i, (frame_index, image) in enumerate(keyframes):
        ax = fig.add_subplot(grid[0, i])
        ax.imshow(image)
        ax.set_title(f"frame {frame_index}", fontsize=7)
        ax.axis("off")
    strip = fig.add_subplot(grid[1, :])
    for s in dec.subtasks:
        strip.barh(0, s.n_frames, left=s.start_frame, color=SKILL_COLOURS[s.skill], edgecolor="white", height=0.8)
        strip.text(s.start_frame + s.n_frames / 2, 0, f"{s.skill}\n{s.instruction}", ha="center", va="center",
                   fontsize=6, clip_on=True)
    strip.set_xlim(0, dec.n_frames)
    strip.set_yticks([])
    strip.set_xlabel(f"frame ({fps:g} fps)", fontsize=7)
    strip.tick_params(labelsize=7)
    return _save(fig, path)
