"""Time indexing a 1,000-episode LeRobot v3.0 dataset: the reader's `scan()` and `atom-curate import`.

The dataset is the Meta-World fixture replicated, honestly:
- `meta/episodes`: the fixture's rows (stats columns included) repeated in blocks of 11, with
  episode indices, row ranges and video timestamps shifted to where the copies sit;
- `data`: the fixture's rows repeated the same way (episode_index and index rewritten), one file;
- the video: the fixture's AV1 stream remuxed (packets copied, timestamps shifted, no re-encode) once
  per block, so every episode's time range lies inside the file as in a real dataset.
Everything is read from disk as a real import would; the files are one data parquet and one MP4,
as LeRobot writes at this size.

Figures are printed as ratios against baselines measured in the same run: the I/O floor (read the
index columns, the data's `episode_index` column and the video header with pyarrow and PyAV
directly) and the CLI's start-up (importing `atomvla.curate.cli`). Target: import <= 5 s.

    .venv/bin/python benchmarks/import_index.py [--episodes 1000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import av
import pyarrow.parquet as pq

from atomvla.curate.errors import SourceError
from atomvla.curate.sources import open_source

# The replicated dataset is built by the tests' dataset builders, which the kill-mid-import test shares.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "curate"))
from builders import V3_AV1 as FIXTURE, replicate_lerobot_v3  # noqa: E402

EPISODES = Path("meta/episodes/chunk-000/file-000.parquet")
DATA = Path("data/chunk-000/file-000.parquet")
TARGET_S = 5.0
REPEATS = 3


def _video(key: str) -> Path:
    return Path("videos") / key / "chunk-000" / "file-000.mp4"


def io_floor(root: Path) -> None:
    """The reads no index can avoid, done directly."""
    info = json.loads((root / "meta/info.json").read_text())
    keys = [k for k, f in info["features"].items() if f["dtype"] == "video"]
    columns = ["episode_index", "length", "tasks", "data/chunk_index", "data/file_index"]
    columns += [f"videos/{k}/{c}" for k in keys for c in ("chunk_index", "file_index", "from_timestamp")]
    pq.read_table(root / EPISODES, columns=columns).to_pylist()
    pq.read_table(root / DATA, columns=["episode_index"])
    for key in keys:
        with av.open(str(root / _video(key))) as container:
            assert container.streams.video[0].duration


def scan_all(root: Path) -> None:
    open_source.cache_clear()
    results = list(open_source(str(root)).scan())
    bad = [r for r in results if isinstance(r, SourceError)]
    assert not bad, bad[:3]


def cli_startup() -> None:
    subprocess.run([sys.executable, "-c", "import atomvla.curate.cli"], check=True)


def cli_import(root: Path, work: Path) -> None:
    store = work / f"store-{time.monotonic_ns()}.sqlite"
    cli = Path(sys.executable).parent / "atom-curate"
    subprocess.run([str(cli), "import", str(root), "--store", str(store)], check=True, capture_output=True)


def best_of(fn: Callable[[], None]) -> float:
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        root = work / f"metaworld_x{args.episodes}"
        start = time.perf_counter()
        frames = replicate_lerobot_v3(root, args.episodes)
        print(
            f"built {args.episodes} episodes / {frames} frames from {FIXTURE.name} in {time.perf_counter() - start:.1f} s"
        )
        floor = best_of(lambda: io_floor(root))
        scan = best_of(lambda: scan_all(root))
        startup = best_of(cli_startup)
        imported = best_of(lambda: cli_import(root, work))
    print(f"best of {REPEATS}:")
    print(f"  I/O floor (pyarrow + PyAV directly)  {floor:7.3f} s")
    print(
        f"  reader scan()                        {scan:7.3f} s  = {scan / floor:5.1f} x I/O floor, {scan / args.episodes * 1e3:.2f} ms/episode"
    )
    print(f"  CLI start-up (import the CLI)        {startup:7.3f} s")
    print(
        f"  atom-curate import, fresh store      {imported:7.3f} s  = {imported / startup:5.1f} x start-up, {imported / TARGET_S:.2f} x the {TARGET_S:g} s target"
    )


if __name__ == "__main__":
    main()
