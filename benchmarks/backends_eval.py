"""The offline backends side by side: `heuristic`, `uvd encoder=pixels` and `hybrid` (UVD's
boundaries snapped to kinematic events, named by the heuristic), scored by `atom-annotate eval`.

For each set (the fixture, then every generated set under benchmarks/out/, as heuristic_eval
finds them): the episodes are imported into a fresh store, each backend proposes for every
episode (stored as its revisions) and is scored right away by the real `atom-annotate eval
--truth T --store S --backend B --json R`; the equal-parts baseline is stored and scored as author
`baseline`. One table per set with the overall figures. Rates (episodes per second, with the
frames already decoded once and the arrays loaded: each episode's `Episode` is new, so arrays
are read again, frames come from the process-wide caches) as a ratio to the heuristic's in the
same run.

    .venv/bin/python -m benchmarks.backends_eval [DATASET TRUTH ...] [--tolerance 3] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.table import Table

from atomvla.annotate.backends import get_backend
from atomvla.cli import console
from atomvla.curate.episode import Episode
from atomvla.curate.sources import open_source
from atomvla.curate.store import Store
from atomvla.schemas import Decomposition, EpisodeMeta, Status
from benchmarks.heuristic_eval import baseline, discover, label

# (row label, backend, settings): what the issue compares.
RUNS = (
    ("heuristic", "heuristic", {}),
    ("uvd encoder=pixels", "uvd", {"encoder": "pixels"}),
    ("uvd encoder=pixels plateau=0 (UVD's rule)", "uvd", {"encoder": "pixels", "plateau": 0.0}),
    ("hybrid: uvd cuts snapped, heuristic names", "hybrid",
     {"boundaries": "uvd", "boundaries_settings": {"encoder": "pixels"}, "language": "heuristic", "snap_s": 0.5}),
)
ATOM_ANNOTATE = Path(sys.executable).with_name("atom-annotate")


def propose_all(store: Store, metas: list[EpisodeMeta], backend: str, settings: dict) -> tuple[float, int]:
    """Propose for every episode and store it; (episodes per second, episodes that failed)."""
    cls = get_backend(backend)
    engine = cls(cls.Config(**settings))
    decs, failed = [], 0
    start = time.perf_counter()
    for meta in metas:
        dec = engine.propose(Episode(meta))
        if dec.status is Status.failed:
            failed += 1
        decs.append(dec)
    rate = len(metas) / (time.perf_counter() - start)
    store.add_revisions(decs)
    return rate, failed


def atom_annotate_eval(store: Path, truth: Path, author: str, tolerance: int, out: Path) -> dict:
    subprocess.run(
        [str(ATOM_ANNOTATE), "eval", "--truth", str(truth), "--store", str(store), "--backend", author,
         "--tolerance-frames", str(tolerance), "--json", str(out)],
        check=True, capture_output=True, text=True,
    )
    return json.loads(out.read_text())[author]


def evaluate(dataset: Path, truth: Path, tolerance: int, work: Path) -> dict:
    store_path = work / "store.sqlite"
    store = Store(store_path)
    metas = [m for m in open_source(str(dataset)).scan() if isinstance(m, EpisodeMeta)]
    store.upsert_episodes(metas)
    # Warm the decoder and frame caches and read the arrays once, so that the rates compare the
    # backends' own work, not which of them opened each video first.
    for m in metas:
        episode = Episode(m)
        episode.frames().sample(get_backend("uvd").Config().max_frames)
        episode.arrays  # noqa: B018
    results = {}
    # Each run is scored right after it is stored: eval reads each author's latest revisions, and
    # two rows may share an author (uvd with two settings).
    for row, backend, settings in RUNS:
        rate, failed = propose_all(store, metas, backend, settings)
        report = atom_annotate_eval(store_path, truth, backend, tolerance, work / "report.json")["overall"]
        results[row] = {"author": backend, "settings": settings, "episodes_per_s": rate, "failed": failed, "report": report}
    store.add_revisions(
        Decomposition(episode_id=m.episode_id, n_frames=m.n_frames, subtasks=tuple(baseline(m)), author="baseline")
        for m in metas
    )
    report = atom_annotate_eval(store_path, truth, "baseline", tolerance, work / "report.json")["overall"]
    results["baseline: equal parts"] = {"author": "baseline", "episodes_per_s": None, "failed": 0, "report": report}
    store.close()
    return results


def side_by_side(title: str, results: dict, tolerance: int) -> Table:
    t = Table(title=title)
    for col in ("backend", "eps", f"F1@{tolerance}f", "err mean/med", "count", "F1@10/25/50", "edit", "object", "eps/s (× heuristic)"):
        t.add_column(col, justify="left" if col == "backend" else "right", no_wrap=True)
    heuristic_rate = results["heuristic"]["episodes_per_s"]

    def f(x, d=2):
        return "-" if x is None else f"{x:.{d}f}"

    for row, r in results.items():
        s = r["report"]
        rate = r["episodes_per_s"]
        t.add_row(
            row, str(s["episodes"]), f(s["f1"]), f"{f(s['mean_abs_error'], 1)}/{f(s['median_abs_error'], 1)}",
            f(s["count_accuracy"]), "/".join(f(s["f1_at"][k]) for k in ("10", "25", "50")), f(s["edit"]),
            f(s["object_accuracy"]), "-" if rate is None else f"{rate:,.0f} ({rate / heuristic_rate:.2f}×)",
        )
    return t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pairs", nargs="*", type=Path, help="DATASET TRUTH pairs")
    parser.add_argument("--tolerance", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if len(args.pairs) % 2:
        parser.error("give DATASET TRUTH pairs")
    sets = list(zip(args.pairs[::2], args.pairs[1::2])) or discover()
    if not sets:
        raise SystemExit("no dataset/truth pairs found")
    everything = {}
    for dataset, truth in sets:
        with tempfile.TemporaryDirectory() as work:
            results = evaluate(dataset, truth, args.tolerance, Path(work))
        name = label(dataset)
        console.print(side_by_side(f"{name} vs {truth.name} (atom-annotate eval, ±{args.tolerance} frames)", results, args.tolerance))
        everything[name] = results
    if args.json is not None:
        args.json.write_text(json.dumps(everything, indent=2))


if __name__ == "__main__":
    main()
