"""Samples/s of the SFT data pipeline and of the tiny model's training step, on this machine.

The dataset is the Meta-World fixture curated the user's way (`atom-curate import`, its ground truth
imported as accepted, `atom-curate export --to lerobot`) unless `--dataset` names one. Measured:
- decode: frames + arrays only (`ChunkDataset.sample`), the floor of the pipeline;
- pipeline: the whole chain (repack, normalise, resize + patchify, tokenise, collate) through a
  DataLoader with 0 and with N workers;
- train step: forward + backward + AdamW of the `tiny-cpu` policy on ready batches.
Printed as ratios against baselines from the same run: the pipeline against the decode floor, and
the pipeline against the training step it must feed (>= 1: the model never waits for data).

    .venv/bin/python benchmarks/train_throughput.py [--dataset DIR] [--batches 20] [--workers 2] [--image-size 224]
"""

from __future__ import annotations

import argparse
import itertools
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from atomvla.curate.cli import app as curate_app  # noqa: E402
from atomvla.train.assemble import make_model, make_processor  # noqa: E402
from atomvla.train.config import get_config  # noqa: E402
from atomvla.train.data.episodes import open_dataset  # noqa: E402
from atomvla.train.data.normalize import Stats  # noqa: E402
from atomvla.train.data.samples import ChunkDataset, ChunkSampler, cameras_of  # noqa: E402
from atomvla.train.models.backbone import load_tokenizer  # noqa: E402
from atomvla.train.sft import skills_of  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"


def curated_fixture(tmp: Path) -> Path:
    store, out = tmp / "s.sqlite", tmp / "curated"
    for args in (
        ["import", str(FIXTURES / "metaworld_lerobot_v30"), "--store", str(store)],
        ["import-annotations", str(FIXTURES / "metaworld_truth.jsonl"), "--author", "truth", "--store", str(store)],
        ["export", str(out), "--to", "lerobot", "--store", str(store)],
    ):
        result = CliRunner().invoke(curate_app, args)
        assert result.exit_code == 0, result.output
    return out


def rate(n_samples: int, seconds: float) -> float:
    return n_samples / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", help="curated export, Hub id or store (default: the curated fixture)")
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--image-size", type=int, default=64, help="camera side after resizing (qwen3vl-4b: 224)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = get_config("tiny-cpu", [f"train.batch_size={args.batch_size}", f"data.image_size={args.image_size}"])
    with tempfile.TemporaryDirectory() as tmp:
        dataset = args.dataset or curated_fixture(Path(tmp))
        episodes = open_dataset(dataset)
        stats = Stats.compute(episodes, cfg.data.state_key, cfg.data.action_key)
        tokenizer = load_tokenizer(cfg.backbone)
        skills = skills_of(episodes)
        processor = make_processor(cfg, tokenizer, skills)
        data = ChunkDataset(episodes, cfg.data, stats, cameras_of(episodes, ()), processor)
        n = args.batches * args.batch_size
        print(f"{len(episodes)} episodes, {len(data)} samples; {args.image_size} px; batches of {args.batch_size}; "
              f"{args.threads} torch threads")

        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(0)).tolist()[:n]
        t = time.perf_counter()
        for i in order:
            data.sample(i)
        decode = rate(n, time.perf_counter() - t)

        pipeline = {}
        for workers in (0, args.workers):
            loader = torch.utils.data.DataLoader(
                data, batch_sampler=ChunkSampler(len(data), args.batch_size, seed=1), collate_fn=processor.collate,
                num_workers=workers, prefetch_factor=4 if workers else None,
            )
            it = iter(loader)
            next(it)  # worker start-up is paid once per run, not per batch
            t = time.perf_counter()
            for _ in itertools.islice(it, args.batches):
                pass
            pipeline[workers] = rate(n, time.perf_counter() - t)
            del it, loader

        model = make_model(cfg, tokenizer, stats, skills)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
        batches = list(itertools.islice(torch.utils.data.DataLoader(
            data, batch_sampler=ChunkSampler(len(data), args.batch_size, seed=2), collate_fn=processor.collate), 4))

        def step(batch) -> None:
            model(batch, torch.Generator().manual_seed(0)).total.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        step(batches[0])  # warm-up
        t = time.perf_counter()
        for i in range(args.batches):
            step(batches[i % len(batches)])
        train = rate(n, time.perf_counter() - t)
        params = sum(p.numel() for p in model.parameters())

    print(f"decode only (floor)        {decode:8.1f} samples/s")
    for workers, r in pipeline.items():
        print(f"pipeline, {workers} worker(s)     {r:8.1f} samples/s  = {r / decode:.2f}x decode, "
              f"{r / train:.2f}x the training step")
    print(f"tiny train step ({params / 1e6:.2f} M params) {train:8.1f} samples/s")


if __name__ == "__main__":
    main()
