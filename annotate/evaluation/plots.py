"""One PNG per episode: truth and prediction as coloured timelines, key frames underneath."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from atomvla.annotate.evaluation.report import EpisodeScore  # noqa: E402
from atomvla.curate.episode import Episode  # noqa: E402
from atomvla.schemas import SKILLS, Subtask  # noqa: E402

log = logging.getLogger(__name__)

_COLOURS = dict(zip(SKILLS, plt.get_cmap("tab10").colors + ((0.6, 0.6, 0.6),)))
MAX_KEY_FRAMES = 6


def key_frames(score: EpisodeScore, n_frames: int, k: int = MAX_KEY_FRAMES) -> list[int]:
    """The first and last frames and the boundaries (truth and prediction), thinned or filled
    with evenly spaced frames to `k`."""
    marks = {0, n_frames - 1}
    for subtasks in (score.truth, score.predicted or ()):
        marks.update(s.start_frame for s in subtasks[1:])
    gap = n_frames / (2 * k)
    for f in np.linspace(0, n_frames - 1, k).round().astype(int):
        if len(marks) < k and all(abs(f - m) >= gap for m in marks):
            marks.add(int(f))
    frames = sorted(marks)
    if len(frames) > k:
        frames = [frames[round(i)] for i in np.linspace(0, len(frames) - 1, k)]
    return frames


def _timeline(ax, subtasks: Sequence[Subtask], n_frames: int, label: str) -> None:
    ax.set_xlim(0, n_frames)
    ax.set_ylim(0, 1)
    ax.set_yticks([0.5], [label])
    ax.tick_params(axis="y", length=0)
    for s in subtasks:
        ax.barh(0.5, s.n_frames, left=s.start_frame, height=0.9, color=_COLOURS[s.skill], edgecolor="white")
        text = s.instruction if len(s.instruction) * 0.9 < 100 * s.n_frames / n_frames else s.skill
        ax.text((s.start_frame + s.end_frame) / 2, 0.5, text, ha="center", va="center", fontsize=8, color="white",
                clip_on=True)
    for s in subtasks[1:]:
        ax.text(s.start_frame, 1.0, str(s.start_frame), ha="center", va="bottom", fontsize=7)
    if not subtasks:
        ax.text(n_frames / 2, 0.5, "no proposal", ha="center", va="center", fontsize=9, color="grey")


def _frames(episode: Episode, indices: list[int]) -> np.ndarray | None:
    """(k, H, W, 3) uint8, or None when the episode's video cannot be read (the plot goes on without)."""
    try:
        return np.asarray(episode.frames().get_many(indices))
    except Exception as exc:  # noqa: BLE001  frames only illustrate: any decoding problem just drops them
        log.warning("%s: no key frames in the plot (%s)", episode.meta.episode_id, exc)
        return None


def _strip(images: np.ndarray, pad: int) -> tuple[np.ndarray, list[float]]:
    """(k, H, W, 3) -> one (H, k*W + (k-1)*pad, 3) image with white gaps, and each frame's centre x."""
    k, h, w, _ = images.shape
    strip = np.full((h, k * w + (k - 1) * pad, 3), 255, dtype=np.uint8)
    for i, img in enumerate(images):
        strip[:, i * (w + pad) : i * (w + pad) + w] = img
    return strip, [i * (w + pad) + w / 2 for i in range(k)]


def plot_episode(score: EpisodeScore, episode: Episode, out_dir: Path, backend: str) -> Path:
    """Write `<out_dir>/<episode id with / as __>.png` and return its path."""
    n = episode.meta.n_frames
    idx = key_frames(score, n)
    images = _frames(episode, idx)
    # One axes per row (the key frames drawn as a single strip): a figure per episode stays fast.
    heights = [1, 1, 3.2] if images is not None else [1, 1]
    fig, axes = plt.subplots(
        len(heights), 1, figsize=(11, 5.0 if images is not None else 2.8),
        gridspec_kw={"height_ratios": heights, "hspace": 0.5, "top": 0.84 if images is not None else 0.74, "bottom": 0.08},
    )
    ax_true, ax_pred = axes[0], axes[1]
    _timeline(ax_true, score.truth, n, "truth")
    _timeline(ax_pred, score.predicted or (), n, backend)
    ax_true.tick_params(axis="x", labelbottom=False)
    for ax in (ax_true, ax_pred):
        for f in idx:
            ax.axvline(f, color="black", lw=0.6, ls=":", alpha=0.4)
    if images is not None:
        strip, centres = _strip(images, pad=max(images.shape[2] // 6, 2))
        axes[2].imshow(strip)
        axes[2].set_xticks(centres, [f"frame {f}" for f in idx], fontsize=8)
        axes[2].tick_params(axis="x", length=0)
        axes[2].set_yticks([])
        for side in axes[2].spines.values():
            side.set_visible(False)
    b = score.boundary
    fig.suptitle(
        f"{episode.meta.episode_id}: {episode.meta.task}\n"
        f"boundary F1 {b.f1:.2f} (TP {b.tp}, FP {b.fp}, FN {b.fn}), edit {score.edit:.2f}",
        fontsize=9,
    )
    used = sorted({s.skill for s in (*score.truth, *(score.predicted or ()))}, key=SKILLS.index)
    fig.legend(
        handles=[Patch(color=_COLOURS[k], label=k) for k in used], loc="upper right", fontsize=7, ncol=len(used),
        frameon=False,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / (episode.meta.episode_id.replace("/", "__") + ".png")
    fig.savefig(path, dpi=90, pil_kwargs={"compress_level": 1})  # speed over size: one PNG per episode
    plt.close(fig)
    return path
