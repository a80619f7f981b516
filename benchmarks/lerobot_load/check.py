"""Does LeRobot's own `LeRobotDataset` read what `atom-curate export --to lerobot` writes?

    .venv/bin/python benchmarks/lerobot_load/check.py VENV [VENV ...]

Each VENV is made by setup_venv.sh with some LeRobot version. The Meta-World fixture with its
ground-truth subtasks is imported into a temporary store and exported twice: with LeRobot's
language columns (read by LeRobot >= 0.6) and with `--no-language` (LeRobot < 0.6 rejects the
`language` dtype). In each venv, read_with_lerobot.py loads the matching export and reports what
LeRobot sees; this script compares that frame by frame with the store, and the decoded images with
the project's own reader. Exit status 1 if any check fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table
from typer.testing import CliRunner

from atomvla.curate.cli import app
from atomvla.curate.episode import Episode
from atomvla.curate.sources import open_source
from atomvla.curate.store import Store

HERE = Path(__file__).resolve().parent
FIXTURES = HERE.parents[2] / "shared" / "fixtures"


def _export(tmp: Path) -> tuple[Store, dict[bool, Path]]:
    db = tmp / "s.sqlite"
    runner = CliRunner()
    outs = {True: tmp / "with_language", False: tmp / "without_language"}
    steps = [["import", str(FIXTURES / "metaworld_lerobot_v30")],
             ["import-annotations", str(FIXTURES / "metaworld_truth.jsonl"), "--author", "truth"],
             ["export", str(outs[True]), "--to", "lerobot"],
             ["export", str(outs[False]), "--to", "lerobot", "--no-language"]]
    for args in steps:
        result = runner.invoke(app, [*args, "--store", str(db)])
        if result.exit_code != 0:
            sys.exit(f"{' '.join(args)} failed: {result.output}")
    return Store(db), outs


def _expected(store: Store) -> list[tuple[int, int, str]]:
    """(episode_index, frame_index, instruction) of every exported frame, from the store."""
    out = []
    for i, meta in enumerate(store.episodes()):
        dec = store.latest(meta.episode_id)
        out += [(i, f, s.instruction) for s in dec.subtasks for f in range(s.start_frame, s.end_frame)]
    return out


def _run(venv: Path, root: Path) -> dict:
    proc = subprocess.run([str(venv / "bin" / "python"), str(HERE / "read_with_lerobot.py"), str(root)],
                          capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return json.loads(proc.stdout)


def _lerobot_version(venv: Path) -> tuple[int, ...]:
    out = subprocess.run([str(venv / "bin" / "python"), "-c", "import importlib.metadata as m; print(m.version('lerobot'))"],
                         capture_output=True, text=True, check=True).stdout.strip()
    return tuple(int(x) for x in out.split(".")[:2])


def main(venvs: list[Path]) -> int:
    console = Console(width=170)
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        store, outs = _export(Path(tmp))
        expected = _expected(store)
        table = Table(title="LeRobotDataset reading an atom-curate export (Meta-World fixture, 11 episodes)")
        for col in ("lerobot", "python", "export", "frames", "subtask_index -> subtasks.parquet",
                    "language_persistent active_at", "decoded images"):
            table.add_column(col)
        for venv in venvs:
            language = _lerobot_version(venv) >= (0, 6)
            root = outs[language]
            seen = _run(venv, root)
            if "error" in seen:
                table.add_row(str(venv), "-", root.name, "-", "-", "-", f"[red]{seen['error'][:80]}[/]")
                failures += 1
                continue
            frames = seen["frames"]
            ok_count = seen["num_frames"] == len(expected) == len(frames)
            got = [(f["episode_index"], f["frame_index"]) for f in frames]
            ok_order = got == [(e, f) for e, f, _ in expected]
            by_subtask = ("subtask" in frames[0]) and all(f["subtask"] == e[2] for f, e in zip(frames, expected))
            by_language = ("active_subtask" in frames[0]) and all(
                f["active_subtask"] == e[2] for f, e in zip(frames, expected))
            images = _compare_images(seen["decoded"], root)
            row_ok = ok_count and ok_order and (by_subtask or by_language) and (not language or by_language)
            failures += not row_ok
            table.add_row(seen["lerobot"], seen["python"], root.name, f"{len(frames)} {'ok' if ok_count and ok_order else 'MISMATCH'}",
                          _mark(by_subtask, "subtask" in frames[0]), _mark(by_language, "active_subtask" in frames[0]),
                          images)
        console.print(table)
    return 1 if failures else 0


def _mark(ok: bool, present: bool) -> str:
    if not present:
        return "not read by this version"
    return "every frame matches the store" if ok else "[red]MISMATCH[/]"


def _compare_images(decoded: dict, root: Path) -> str:
    """Mean pixel of LeRobot's decoded frames vs the project's reader on the same export."""
    if "skipped" in decoded:
        return f"skipped ({decoded['skipped'][:60]})"
    metas = list(open_source(str(root)).scan())
    starts = np.cumsum([0] + [m.n_frames for m in metas])
    worst = 0.0
    for index, cams in decoded.items():
        i = int(index)
        ep = int(np.searchsorted(starts, i, side="right")) - 1
        frames = Episode(metas[ep]).frames().get(i - int(starts[ep]))
        for key, mean in cams.items():
            if key != "subtask":
                worst = max(worst, abs(mean * 255 - float(frames.mean())))
    return f"{len(decoded)} frames, max |mean diff| {worst:.2f}/255"


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    sys.exit(main([Path(v) for v in sys.argv[1:]]))
