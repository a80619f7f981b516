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
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from atomvla.curate.errors import SourceError
from atomvla.curate.sources import open_source

FIXTURE = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "metaworld_lerobot_v30"
EPISODES = Path("meta/episodes/chunk-000/file-000.parquet")
DATA = Path("data/chunk-000/file-000.parquet")
TARGET_S = 5.0
REPEATS = 3


def replicate(dest: Path, n_episodes: int) -> int:
    """Write the replicated dataset to `dest`; returns its frame count."""
    info = json.loads((FIXTURE / "meta/info.json").read_text())
    episodes, data = pq.read_table(FIXTURE / EPISODES), pq.read_table(FIXTURE / DATA)
    per_block = episodes.num_rows
    blocks = -(-n_episodes // per_block)
    keys = [k for k, f in info["features"].items() if f["dtype"] == "video"]
    block_s = {k: _remux_repeated(FIXTURE / _video(k), dest / _video(k), blocks) for k in keys}

    source = np.arange(n_episodes) % per_block
    block = np.arange(n_episodes) // per_block
    lengths = episodes["length"].to_numpy()[source]
    ends = np.cumsum(lengths)
    new = episodes.take(pa.array(source))
    changes = {"episode_index": np.arange(n_episodes), "dataset_from_index": ends - lengths, "dataset_to_index": ends}
    for key in keys:
        for edge in ("from_timestamp", "to_timestamp"):
            column = f"videos/{key}/{edge}"
            changes[column] = new[column].to_numpy() + block * block_s[key]
    for name, values in changes.items():
        new = new.set_column(new.schema.get_field_index(name), name, pa.array(values, new.schema.field(name).type))
    _write(new, dest / EPISODES)

    rows = pa.concat_tables([data] * blocks).slice(0, int(ends[-1]))
    row_block = np.repeat(block, lengths)
    episode_index = rows["episode_index"].to_numpy() + row_block * per_block
    rows = rows.set_column(rows.schema.get_field_index("episode_index"), "episode_index", pa.array(episode_index))
    rows = rows.set_column(rows.schema.get_field_index("index"), "index", pa.array(np.arange(rows.num_rows)))
    assert pc.all(pc.equal(rows["episode_index"], pa.array(np.repeat(np.arange(n_episodes), lengths)))).as_py()
    _write(rows, dest / DATA)

    for name in ("tasks.parquet", "stats.json"):
        shutil.copy(FIXTURE / "meta" / name, dest / "meta" / name)
    info.update(total_episodes=n_episodes, total_frames=int(ends[-1]), splits={"train": f"0:{n_episodes}"})
    (dest / "meta/info.json").write_text(json.dumps(info, indent=4))
    return int(ends[-1])


def _video(key: str) -> Path:
    return Path("videos") / key / "chunk-000" / "file-000.mp4"


def _write(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def _remux_repeated(src: Path, dest: Path, times: int) -> float:
    """`src`'s video stream `times` times in a row, without re-encoding; returns one copy's seconds."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(src)) as probe:
        stream = probe.streams.video[0]
        span, seconds = stream.duration, float(stream.duration * stream.time_base)
    with av.open(str(dest), "w") as out:
        for k in range(times):
            # The muxer takes ownership of each packet, so the input is demuxed afresh per copy.
            with av.open(str(src)) as inp:
                in_stream = inp.streams.video[0]
                if k == 0:
                    out_stream = out.add_stream_from_template(in_stream, opaque=True)
                for packet in inp.demux(in_stream):
                    if packet.dts is None:  # the demuxer's end-of-stream marker
                        continue
                    packet.pts += k * span
                    packet.dts += k * span
                    packet.stream = out_stream
                    out.mux(packet)
    return seconds


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
        frames = replicate(root, args.episodes)
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
