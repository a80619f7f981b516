"""Frame embeddings in the learned boundary model: with and without the pixel channels, on a rendered set.

    python -m benchmarks.metaworld_gt.generate --out benchmarks/out/rendered/metaworld14 --tasks <the 14> --seeds 4 --codec h264
    python -m benchmarks.metaworld_gt.generate --out benchmarks/out/rendered/metaworld_hard --seeds 4 --codec h264 \
        --tasks dial-turn-v3,door-lock-v3,door-unlock-v3,handle-pull-v3,lever-pull-v3,reach-v3,door-close-v3
    python -m benchmarks.learned_pixels --dataset benchmarks/out/rendered/{metaworld14,metaworld_hard}/lerobot \
        --truth benchmarks/out/rendered/{metaworld14,metaworld_hard}/truth.jsonl [--held TASKS] \
        [--data benchmarks/out/learned_data] [--steps 400] [--seed 0] [--json out.json]

Leave-one-task-out within the rendered set (its `metaworld_task`s held out in turn): a model trained
on the other tasks scores the held-out task's episodes zero-shot, and, fine-tuned on the held-out
task's first 2 episodes, its other episodes (few-shot). Each for two feature layouts, the default
and the default plus the pixel channels (`features.PIXEL_CHANNELS`: a 4x4 grey thumbnail of every
decoded frame and its change). Two training sets: the rendered set alone, and (`--data`) the
state-only generated sets plus the rendered set, the held-out task left out of both. The state-only
episodes have no frames: their pixel channels are zero, the value a channel normalised over its
episode averages to, so they teach the rest of the network and leave the pixel weights to the
rendered episodes. The heuristic scores the same episodes. Boundary F1 at ±3 frames (scripted
Meta-World), micro over episodes. The CPU seconds the pixels cost: building the features (decoding
included) and training, with and without them.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from atomvla.annotate.backends.heuristic import HeuristicBackend
from atomvla.annotate.learned.data import Sample, features_for, make_sample, record_sample
from atomvla.annotate.learned.decode import propose
from atomvla.annotate.learned.features import PIXEL_CHANNELS, Features, layout
from atomvla.annotate.learned.model import LearnedModel, ModelSpec
from atomvla.annotate.learned.train import FINE_TUNE, TrainConfig, fine_tune_samples, plan_convention, pretrain
from atomvla.cli import setup_logging
from atomvla.curate.episode import Episode
from atomvla.curate.sources import open_source
from atomvla.schemas import DEFAULT_MIN_FRAMES, EpisodeMeta, Subtask
from benchmarks.learned_eval import FEW_SHOT, MIN_SUBTASK_S, TOLERANCE, Score
from benchmarks.learned_pretrain import CONFIG, HEURISTIC_PRIOR, SPEC, describe, load_records

log = logging.getLogger("learned_pixels")

TOLERANCE_FRAMES = TOLERANCE["metaworld"]
LAYOUTS = {"no pixels": SPEC, "pixels": replace(SPEC, channels=layout(events=True, pixels=True))}


@dataclass(frozen=True)
class RenderedEpisode:
    episode: Episode
    truth: tuple[Subtask, ...]
    task: str  # the Meta-World task: what leave-one-task-out holds out


def load_rendered(dataset: Path, truth_file: Path) -> list[RenderedEpisode]:
    """The dataset's episodes with their truth lines (matched by episode_index)."""
    truth = {}
    for n, line in enumerate(truth_file.read_text().splitlines(), 1):
        rec = json.loads(line)
        if "metaworld_task" not in rec:
            raise SystemExit(f"{truth_file}:{n}: episode {rec.get('episode_index')} has no metaworld_task")
        truth[rec["episode_index"]] = rec
    out = []
    for meta in open_source(str(dataset)).scan():
        if not isinstance(meta, EpisodeMeta):
            raise SystemExit(f"{dataset}: {meta}")
        rec = truth.get(meta.episode_index)
        if rec is None:
            raise SystemExit(f"{truth_file}: no truth for episode {meta.episode_id}")
        out.append(RenderedEpisode(Episode(meta), tuple(Subtask(**s) for s in rec["subtasks"]), rec["metaworld_task"]))
    if not out:
        raise SystemExit(f"{dataset}: no episodes")
    return out


def rendered_samples(episodes: Sequence[RenderedEpisode], spec: ModelSpec) -> tuple[list[Sample], float]:
    """The episodes as samples in `spec`'s layout, and the CPU seconds their features took (frames
    decoded for a pixel layout; the arrays are loaded before the clock)."""
    for e in episodes:
        e.episode.arrays  # noqa: B018 - loaded here: the feature timing is features only
    cpu = time.process_time()
    samples = [make_sample(features_for(spec.channels, e.episode), e.truth, e.task, "rendered") for e in episodes]
    return samples, time.process_time() - cpu


def zero_pixels(sample: Sample) -> Sample:
    """A state-only sample in the pixel layout: its pixel channels zero."""
    x: np.ndarray = sample.features.x  # (t, c)
    padded = np.concatenate([x, np.zeros((len(x), len(PIXEL_CHANNELS)), np.float32)], axis=1)
    return replace(sample, features=Features(padded, sample.features.n_frames, sample.features.scale))


def _boundaries(subtasks: Sequence[Subtask]) -> list[int]:
    return [s.start_frame for s in subtasks[1:]]


def _min_frames(meta: EpisodeMeta) -> int:
    return max(DEFAULT_MIN_FRAMES, round(MIN_SUBTASK_S * meta.fps))


def _score(model: LearnedModel, episodes: Sequence[RenderedEpisode], samples: Sequence[Sample], idx: Sequence[int], score: Score) -> None:
    for i in idx:
        meta = episodes[i].episode.meta
        subtasks, _ = propose(model, samples[i].features, meta.task, _min_frames(meta))
        score.add(_boundaries(subtasks), _boundaries(episodes[i].truth), TOLERANCE_FRAMES)


def loto(
    episodes: Sequence[RenderedEpisode], samples: dict[str, list[Sample]], state_only: dict[str, list[Sample]] | None,
    config: TrainConfig, held_out: Sequence[str],
) -> Iterator[tuple[dict[str, dict[str, Score]], dict[str, float]]]:
    """Holding out each of `held_out` in turn, after each fold: per held-out task so far, per column (`<set> <layout> <zero-shot|few-shot>` and
    `heuristic`), the scores; and the training CPU seconds per `<set> <layout>` so far."""
    rows: dict[str, dict[str, Score]] = defaultdict(lambda: defaultdict(Score))
    train_cpu: dict[str, float] = defaultdict(float)
    sets = {"rendered": {name: [] for name in LAYOUTS}} | ({"pretrained": state_only} if state_only is not None else {})
    for fold, held in enumerate(held_out):
        test = [i for i, e in enumerate(episodes) if e.task == held]
        shots, rest = test[:FEW_SHOT], test[FEW_SHOT:]
        for i in test:
            rows[held]["heuristic"].add(HeuristicBackend().propose(episodes[i].episode).boundaries,
                                        _boundaries(episodes[i].truth), TOLERANCE_FRAMES)
        for set_name, extra in sets.items():
            for name, spec in LAYOUTS.items():
                train = [s for s in extra[name] if s.task != held] + [s for s, e in zip(samples[name], episodes) if e.task != held]
                cpu, wall = time.process_time(), time.perf_counter()
                model = pretrain(spec, train, config, heuristic_prior=HEURISTIC_PRIOR)
                train_cpu[f"{set_name} {name}"] += time.process_time() - cpu
                log.info("fold %d/%d %s, %s %s: trained on %d in %.0f s", fold + 1, len(held_out), held, set_name, name,
                         len(train), time.perf_counter() - wall)
                _score(model, episodes, samples[name], test, rows[held][f"{set_name} {name} zero-shot"])
                if rest:
                    tuned = fine_tune_samples(model, [samples[name][i] for i in shots], None,
                                              plan_convention([episodes[i].episode.meta.task for i in shots],
                                                              [episodes[i].truth for i in shots]), FINE_TUNE)
                    _score(tuned, episodes, samples[name], rest, rows[held][f"{set_name} {name} few-shot"])
        yield rows, dict(train_cpu)


def columns(rows: dict[str, dict[str, Any]]) -> list[str]:
    names = {name for cols in rows.values() for name in cols}
    ordered = ["heuristic"] + [f"{s} {lay} {shot}" for shot in ("zero-shot", "few-shot") for s in ("rendered", "pretrained")
                               for lay in LAYOUTS]
    return [c for c in ordered if c in names]


def overall(rows: dict[str, dict[str, Any]], name: str) -> dict[str, float]:
    """Episode-weighted F1 and count accuracy of column `name` over the tasks."""
    picked = [cols[name] for cols in rows.values() if name in cols and cols[name]["episodes"]]
    n = sum(c["episodes"] for c in picked)
    if not n:
        return {"f1": float("nan"), "count_acc": float("nan"), "episodes": 0}
    return {k: round(sum(c[k] * c["episodes"] for c in picked) / n, 4) for k in ("f1", "count_acc")} | {"episodes": n}


def gains(rows: dict[str, dict[str, Any]], totals: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Per `<set> <zero-shot|few-shot>`: F1 with pixels minus F1 without, per task and `all`."""
    out: dict[str, dict[str, float]] = {}
    for s in ("rendered", "pretrained"):
        for shot in ("zero-shot", "few-shot"):
            a, b = f"{s} no pixels {shot}", f"{s} pixels {shot}"
            per = {task: round(c[b]["f1"] - c[a]["f1"], 4) for task, c in rows.items() if a in c and b in c and c[a]["episodes"]}
            if per:
                out[f"{s} {shot}"] = per | {"all": round(totals[b]["f1"] - totals[a]["f1"], 4)}
    return out


def table(rows: dict[str, dict[str, Any]], totals: dict[str, dict[str, float]], steps: int) -> Table:
    """F1 per task: the heuristic, then for each training set and shot: without pixels, with, and the difference."""
    delta = gains(rows, totals)
    out = Table(title=f"boundary F1 (±{TOLERANCE_FRAMES} frames), leave-one-task-out within the rendered set, {steps} steps a fold")
    out.add_column("task", min_width=max(len(t) for t in [*rows, "all"]))
    out.add_column("episodes", justify="right")
    out.add_column("heuristic", justify="right")
    for group in delta:
        for label in ("no px", "px", "Δ"):
            out.add_column(f"{group}\n{label}", justify="right")

    def cells(task: str, cols: dict[str, Any]) -> list[str]:
        row = []
        for group, per in delta.items():
            s, shot = group.split(" ", 1)
            a, b = cols.get(f"{s} no pixels {shot}"), cols.get(f"{s} pixels {shot}")
            row += [f"{a['f1']:.2f}", f"{b['f1']:.2f}", f"{per[task]:+.2f}"] if task in per else ["-", "-", "-"]
        return row

    for task, cols in rows.items():
        out.add_row(task, str(cols["heuristic"]["episodes"]), f"{cols['heuristic']['f1']:.2f}", *cells(task, cols))
    out.add_row("all", str(totals["heuristic"]["episodes"]), f"{totals['heuristic']['f1']:.2f}", *cells("all", totals), style="bold")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, nargs="+", required=True,
                        help="rendered LeRobot datasets (metaworld_gt.generate's <out>/lerobot), taken together")
    parser.add_argument("--truth", type=Path, nargs="+", required=True, help="their truth JSONL files (with metaworld_task per line), in the same order")
    parser.add_argument("--held", default=None,
                        help="comma-separated tasks: only these folds (default: every task of the rendered set; the others still train)")
    parser.add_argument("--data", type=Path, default=None,
                        help="state-only record pickles (benchmarks/out/learned_data): also pretrain on them plus the rendered set")
    parser.add_argument("--steps", type=int, default=400, help="training steps per fold (learned_eval's default)")
    parser.add_argument("--seed", type=int, default=0, help="training seed (one seed is noisy: run two to see how much)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    setup_logging()
    config = replace(CONFIG, steps=args.steps, seed=args.seed)
    if len(args.dataset) != len(args.truth):
        parser.error(f"{len(args.dataset)} datasets and {len(args.truth)} truth files: give one truth file per dataset")
    episodes = [e for dataset, truth in zip(args.dataset, args.truth) for e in load_rendered(dataset, truth)]
    held = sorted({e.task for e in episodes})
    if args.held:
        unknown = sorted(set(args.held.split(",")) - set(held))
        if unknown:
            parser.error(f"--held: {', '.join(unknown)} not in the rendered set (has {', '.join(held)})")
        held = args.held.split(",")
    samples, features_cpu = {}, {}
    for name, spec in LAYOUTS.items():
        samples[name], features_cpu[name] = rendered_samples(episodes, spec)
    log.info("%d rendered episodes of %d tasks; features %s CPU s", len(episodes), len({e.task for e in episodes}),
             {k: round(v, 1) for k, v in features_cpu.items()})
    state_only, trained_on = None, ""
    if args.data is not None:
        records = load_records(args.data)
        trained_on = describe(records)
        plain = [record_sample(r, SPEC.channels, i) for i, r in enumerate(records)]
        state_only = {"no pixels": plain, "pixels": [zero_pixels(s) for s in plain]}
    report: dict[str, Any] = {
        "steps_per_fold": args.steps, "seed": args.seed, "episodes": len(episodes), "tasks": len({e.task for e in episodes}),
        "state_only_episodes": len(state_only["no pixels"]) if state_only else 0, "state_only": trained_on,
        "frames": sum(e.episode.meta.n_frames for e in episodes),
        "features_cpu_s": {k: round(v, 2) for k, v in features_cpu.items()},
    }
    for rows, train_cpu in loto(episodes, samples, state_only, config, held):  # the figures so far after every fold
        report["folds_done"] = len(rows)
        report["train_cpu_s"] = {k: round(v, 1) for k, v in train_cpu.items()}
        report["loto"] = {task: {name: score.as_dict() for name, score in cols.items()} for task, cols in sorted(rows.items())}
        report["overall"] = {name: overall(report["loto"], name) for name in columns(report["loto"])}
        report["pixel_gain"] = gains(report["loto"], report["overall"])
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(report, indent=2))
    console = Console(width=240)
    console.print(table(report["loto"], report["overall"], args.steps))
    console.print({"features_cpu_s": report["features_cpu_s"], "train_cpu_s": report["train_cpu_s"], "frames": report["frames"]})

if __name__ == "__main__":
    main()
