"""`atom-train eval`: how well an SFT policy acts and knows its subtask on held-out episodes.

Action error is measured twice: with the action head conditioned on the labelled subtask (the
head alone) and on the subtask the VLM generated (the deployed policy). Subtask generation is
scored by exact match with the label, bucketed by the frame's distance to the nearest boundary
(where confusion is expected). A plot shows predicted against true chunks along one episode.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from atomvla.train.data.episodes import dataset_ref, open_dataset
from atomvla.train.data.samples import ChunkDataset, Sample
from atomvla.train.policy import Policy, load_policy

log = logging.getLogger(__name__)
DISTANCE_BUCKETS = ((0, 2), (3, 5), (6, 10), (11, 20), (21, None))


def _bucket(d: int) -> str:
    for lo, hi in DISTANCE_BUCKETS:
        if hi is None or d <= hi:
            return f"{lo}-{hi}" if hi is not None else f">={lo}"
    raise AssertionError(d)


def _mean(xs: list[float]) -> float | None:
    return float(np.mean(xs)) if xs else None


def evaluate(
    checkpoint: Path, dataset: str | None, out: Path, max_samples: int = 256, batch_size: int = 16, seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Score the policy on held-out samples; `progress(done, total)` after each batch of them."""
    policy = load_policy(checkpoint, seed=seed)
    trained = policy.trained
    dataset = dataset_ref(dataset or trained.state["dataset"])
    episodes = open_dataset(dataset, trained.config.data.status)
    # Episode ids are stable across a store and its exports: pick the held-out ones wherever they are.
    held, seen = set(trained.state["val_episodes"]), set(trained.state["train_episodes"])
    chosen = [e for e in episodes if e.meta.episode_id in held] or [e for e in episodes if e.meta.episode_id not in seen]
    if not chosen:
        log.warning("%s: every episode was trained on; evaluating on training episodes", dataset)
        chosen = episodes
    data = ChunkDataset(chosen, trained.config.data, trained.stats, trained.cameras)
    indices = np.unique(np.linspace(0, len(data) - 1, min(max_samples, len(data))).round().astype(int))

    per: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for start in range(0, len(indices), batch_size):
        samples = [data.raw(int(i)) for i in indices[start : start + batch_size]]
        _score(policy, samples, per)
        if progress is not None:
            progress(start + len(samples), len(indices))

    report = {
        "checkpoint": str(trained.path),
        "dataset": dataset,
        "held_out": not seen & {e.meta.episode_id for e in chosen},
        "episodes": len(chosen),
        "samples": len(indices),
        "action_mse": _mean(per["all"]["mse_label"]),
        "action_mse_generated_subtask": _mean(per["all"]["mse_generated"]),
        "action_mae": _mean(per["all"]["mae_label"]),
        "subtask_match_rate": _mean(per["all"]["match"]),
        "per_skill": {k[6:]: _summary(v) for k, v in sorted(per.items()) if k.startswith("skill:")},
        "per_subtask": {k[8:]: _summary(v) for k, v in sorted(per.items()) if k.startswith("subtask:")},
        "match_by_boundary_distance": {
            b: {"match_rate": _mean(per[f"dist:{b}"]["match"]), "samples": len(per[f"dist:{b}"]["match"])}
            for b in map(lambda lh: _bucket(lh[0]), DISTANCE_BUCKETS) if per[f"dist:{b}"]["match"]
        },
    }
    out.mkdir(parents=True, exist_ok=True)
    report["plot"] = plot_chunks(policy, data, out / "chunks.png").name  # beside report.json
    (out / "report.json").write_text(json.dumps(report, indent=2))
    return report


def _summary(v: dict[str, list[float]]) -> dict[str, Any]:
    return {"action_mse": _mean(v["mse_label"]), "subtask_match_rate": _mean(v["match"]), "samples": len(v["match"])}


def _score(policy: Policy, samples: list[Sample], per: dict) -> None:
    """`samples` repacked, in the dataset's units: the policy runs the inputs and outputs chains."""
    proc = policy.processor
    # Room for the longest label and a little more: an undertrained VLM may never say <|im_end|>.
    longest = max(len(proc.subtask_ids(s.skill, s.subtask)) for s in samples)
    generated, context = policy.generate(samples, max_new_tokens=longest + 8)
    decoded = [policy.decode(g) for g in generated]
    labelled = [proc.subtask_ids(s.skill, s.subtask) for s in samples]
    pred_label = policy.predict_actions(samples, labelled, [s.skill for s in samples])
    pred_gen = policy.act(samples, context, [d[0] for d in decoded])
    for s, (skill, instruction), a_label, a_gen in zip(samples, decoded, pred_label, pred_gen):
        truth = s.actions[s.action_mask]
        match = float(skill == s.skill and instruction == s.subtask)
        values = {
            "mse_label": float(((a_label[s.action_mask] - truth) ** 2).mean()),
            "mae_label": float(np.abs(a_label[s.action_mask] - truth).mean()),
            "mse_generated": float(((a_gen[s.action_mask] - truth) ** 2).mean()),
            "match": match,
        }
        for key in ("all", f"skill:{s.skill}", f"subtask:{s.subtask}"):
            for name, value in values.items():
                per[key][name].append(value)
        per[f"dist:{_bucket(s.boundary_distance)}"]["match"].append(match)


def plot_chunks(policy: Policy, data: ChunkDataset, path: Path) -> Path:
    """True actions of the first episode, and the chunks predicted every H frames (labelled subtask)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    episode = data.episodes[0]
    h, n = policy.model.head.horizon, episode.meta.n_frames
    samples = [data.raw(t) for t in range(0, n, h)]
    preds = np.concatenate([
        policy.predict_actions(samples[i : i + 16], [policy.processor.subtask_ids(s.skill, s.subtask) for s in
                                                      samples[i : i + 16]], [s.skill for s in samples[i : i + 16]])
        for i in range(0, len(samples), 16)
    ])
    truth = episode.array(policy.stats.action_key)
    names = policy.stats.action.names
    fig, axes = plt.subplots(len(names), 1, figsize=(9, 1.8 * len(names)), sharex=True, squeeze=False)
    for d, ax in enumerate(axes[:, 0]):
        ax.plot(np.arange(n), truth[:, d], color="black", lw=1.2, label="true")
        for s, p in zip(samples, preds):
            steps = np.arange(s.frame, min(s.frame + h, n))
            ax.plot(steps, p[: len(steps), d], color="tab:orange", lw=1.5, label="predicted" if s.frame == 0 else None)
        for b in episode.boundaries:
            ax.axvline(b, color="tab:blue", ls="--", lw=0.8)
        ax.set_ylabel(names[d])
    axes[0, 0].legend(loc="upper right", fontsize=8)
    axes[0, 0].set_title(f"{episode.meta.episode_id}: true actions vs predicted chunks (dashed: subtask boundaries)")
    axes[-1, 0].set_xlabel("frame")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def print_report(report: dict[str, Any], out: Path, console) -> None:
    from rich.table import Table

    fmt = lambda x: "-" if x is None else f"{x:.4f}"  # noqa: E731
    console.print(
        f"{report['samples']} samples from {report['episodes']} {'held-out ' if report['held_out'] else ''}episode(s): "
        f"action MSE {fmt(report['action_mse'])} (labelled subtask), "
        f"{fmt(report['action_mse_generated_subtask'])} (generated subtask); "
        f"subtask match {fmt(report['subtask_match_rate'])}"
    )
    for title, rows in (("skill", report["per_skill"]), ("subtask", report["per_subtask"])):
        table = Table("per " + title, "action MSE", "subtask match", "samples")
        for name, r in rows.items():
            table.add_row(name, fmt(r["action_mse"]), fmt(r["subtask_match_rate"]), str(r["samples"]))
        console.print(table)
    table = Table("frames to boundary", "subtask match", "samples")
    for bucket, r in report["match_by_boundary_distance"].items():
        table.add_row(bucket, fmt(r["match_rate"]), str(r["samples"]))
    console.print(table)
    console.print(f"wrote {out / 'report.json'} and {out / report['plot']}", highlight=False, soft_wrap=True)

