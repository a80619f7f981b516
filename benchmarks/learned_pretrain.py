"""Make the learned backend's packaged weights from every generated ground-truth set.

    python -m benchmarks.learned_data       # every source -> benchmarks/out/learned_data (about 30 min on 2 cores)
    python -m benchmarks.learned_pretrain   # -> annotate/learned/weights/base.safetensors
    python -m benchmarks.learned_pretrain --data DIR [DIR ...] --out W   # other sets, e.g. the scene ablation's

The packaged weights: every source `learned_data` writes with its defaults (the Meta-World ones with
the `objects` state convention, so the scene channels see object and goal), then `learned_pretrain`
with the defaults below. The data and its sha256 are in the weights' metadata (`trained_on`,
`data_hash`).

Reads every `<source>.pkl` under each DATA folder (see benchmarks/learned_data.py; a source may
come from one folder only), leaves out the sets that
relabel the same episodes with another team's convention (`--exclude`, default the two-arm release
convention: it is what few-shot calibration is for), adds a copy without its scene state of every
episode that has one (the model must read both: most datasets have no scene state), trains the
default spec and writes the weights with the sha256 of the records read and what they were in the
metadata. Seeded: the same data gives the same weights.
"""

from __future__ import annotations

import argparse
import logging
import pickle
import time
from collections import Counter
from pathlib import Path
from typing import Any

from atomvla.annotate.learned import DEFAULT_WEIGHTS
from atomvla.annotate.learned.data import Sample, record_sample, records_hash, with_sceneless_copies
from atomvla.annotate.learned.features import layout
from atomvla.annotate.learned.model import ModelSpec
from atomvla.annotate.learned.train import TrainConfig, pretrain
from atomvla.cli import setup_logging

log = logging.getLogger("learned_pretrain")

EXCLUDE = ("aloha_release",)
SPEC = ModelSpec(layout(events=True, pixels=False), hidden=32, layers=8, stages=2)
# 400 steps, as every leave-one-task-out fold is trained: the packaged recipe is the one measured.
# Longer training fits Meta-World's conventions closer and carries them to other robots: weights
# trained without LIBERO scored 0.87 on it zero-shot after 400 steps, 0.76 after 1500.
CONFIG = TrainConfig(steps=400, batch=8, lr=3e-3, crop=160)
# Decoding adds 0.3 x the heuristic's proposed boundaries (WeightsInfo.heuristic_prior): chosen by
# leave-one-task-out (0, 0.1, 0.2, 0.3, 0.5, 1.0 tried; 0.3 best, and the only one to find
# button-press-topdown held out).
HEURISTIC_PRIOR = 0.3


def load_records(data: Path, exclude: tuple[str, ...] = EXCLUDE) -> list[dict[str, Any]]:
    """Every record of every source pickle under `data`, sources in name order, `exclude`d sources left out."""
    records = []
    for path in sorted(data.glob("*.pkl")):
        records += [r for r in pickle.loads(path.read_bytes()) if r["source"] not in exclude]
    if not records:
        raise SystemExit(f"{data}: no records (run `python -m benchmarks.learned_data --out {data}` first)")
    return records


def load_folders(folders: list[Path], exclude: tuple[str, ...] = EXCLUDE) -> list[dict[str, Any]]:
    """`load_records` of each folder, in the order given; a source file in two folders is refused
    (its episodes would be trained on twice)."""
    seen: dict[str, Path] = {}
    for folder in folders:
        for path in sorted(folder.glob("*.pkl")):
            if path.name in seen:
                raise SystemExit(f"{path.name} is in both {seen[path.name]} and {folder}: give each source once")
            seen[path.name] = folder
    return [r for folder in folders for r in load_records(folder, exclude)]


def samples_of(records: list[dict[str, Any]], channels: tuple[str, ...]) -> list[Sample]:
    return [record_sample(r, channels, i) for i, r in enumerate(records)]


def describe(records: list[dict[str, Any]]) -> str:
    by_source = Counter(r["source"] for r in records)
    tasks = len({(r["source"], r["task"]) for r in records})
    return f"{len(records)} episodes, {tasks} source-tasks ({', '.join(f'{s} {n}' for s, n in sorted(by_source.items()))})"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, nargs="+", default=[Path("benchmarks/out/learned_data")],
                        help="folders of learned_data's <source>.pkl files (default: learned_data's default --out)")
    parser.add_argument("--out", type=Path, default=DEFAULT_WEIGHTS, help="weights file to write (default: the packaged weights)")
    parser.add_argument("--exclude", default=",".join(EXCLUDE), help="sources left out (comma-separated)")
    parser.add_argument("--steps", type=int, default=CONFIG.steps, help="training steps (the packaged recipe's by default)")
    args = parser.parse_args(argv)
    setup_logging()
    records = load_folders(args.data, tuple(s for s in args.exclude.split(",") if s))
    started = time.perf_counter()
    training = with_sceneless_copies(records)
    samples = samples_of(training, SPEC.channels)
    digest = records_hash(records)
    trained_on = f"{describe(records)}; with {len(training) - len(records)} of them again without their scene state"
    log.info("%s; features in %.0f s; data sha256 %s", trained_on, time.perf_counter() - started, digest)
    config = TrainConfig(**{**CONFIG.__dict__, "steps": args.steps})
    model = pretrain(SPEC, samples, config, data_hash=digest, trained_on=trained_on, heuristic_prior=HEURISTIC_PRIOR)
    model.save(args.out)
    log.info("trained in %.0f s -> %s (%d kB)", time.perf_counter() - started, args.out, args.out.stat().st_size // 1024)


if __name__ == "__main__":
    main()
