"""Exports never replace anything without --overwrite; with it the old OUT stays until the new one is
complete; what a killed export leaves beside OUT is removed by the next export to OUT (and only that)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from atomvla.curate.cli import app
from atomvla.curate.exports.lerobot_v3 import EpisodeRecording, write_lerobot_v3
from atomvla.output import MARKER, OutputExistsError, new_file, new_folder, remove_stale
from builders import FIXTURES, V3_H264

runner = CliRunner()


def curate(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    db = tmp_path_factory.mktemp("store") / "s.sqlite"
    assert curate("import", V3_H264, "--store", db).exit_code == 0
    assert curate("import-annotations", FIXTURES / "metaworld_truth.jsonl", "--store", db, "--author", "truth").exit_code == 0
    return db


@pytest.mark.parametrize("to", ["jsonl", "parquet"])
def test_existing_out_is_refused_then_replaced_with_overwrite(store, tmp_path, to):
    out = tmp_path / ("out.jsonl" if to == "jsonl" else "ds")
    if to == "jsonl":
        out.write_text("keep me\n")
    else:
        out.mkdir()
        (out / "keep.txt").write_text("keep me\n")
    result = curate("export", out, "--to", to, "--store", store)
    assert result.exit_code == 2 and "already exists; pass --overwrite" in " ".join(result.output.split())
    assert result.output.count("error:") == 1
    kept = out if to == "jsonl" else out / "keep.txt"
    assert kept.read_text() == "keep me\n"
    result = curate("export", out, "--to", to, "--store", store, "--overwrite")
    assert result.exit_code == 0, result.output
    if to == "jsonl":
        assert len(out.read_text().splitlines()) == 11
    else:
        assert not (out / "keep.txt").exists() and (out / "README.md").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]  # nothing left beside it


def test_a_failed_overwrite_keeps_the_old_folder(tmp_path):
    out = tmp_path / "ds"
    first = [EpisodeRecording("t", {}, {"action": np.zeros((4, 2), np.float32)})]
    write_lerobot_v3(out, first, fps=10, feature_names={})
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def failing():
        yield EpisodeRecording("t", {}, {"action": np.ones((5, 2), np.float32)})
        raise RuntimeError("the source went away")

    with pytest.raises(OutputExistsError, match="already exists"):
        write_lerobot_v3(out, first, fps=10, feature_names={})
    with pytest.raises(RuntimeError, match="went away"):
        write_lerobot_v3(out, failing(), fps=10, feature_names={}, overwrite=True)
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


_KILLED_WRITER = """
import os, signal, sys
from pathlib import Path
from atomvla.output import {fn}
with {fn}(Path(sys.argv[1])) as tmp:
    {write}
    os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("folder", [True, False])
def test_a_killed_exports_temporary_is_removed_by_the_next_export_only(store, tmp_path, folder):
    out = tmp_path / ("ds" if folder else "out.jsonl")
    code = _KILLED_WRITER.format(fn="new_folder" if folder else "new_file",
                                 write="(tmp / 'half.parquet').write_bytes(b'x')" if folder else "tmp.write_text('half')")
    run = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, timeout=60)
    assert run.returncode == -9, run.stderr
    left = [p for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].name.startswith(f".{out.name}.atomvla-")
    # Look-alikes that are not a dead writer's: another tool's file, our name without the marker
    # (a folder), a live writer's (this process).
    others = [tmp_path / f".{out.name}.tmp", tmp_path / f".{out.name}.atomvla-{os.getpid()}-live"]
    if folder:
        others.append(tmp_path / f".{out.name}.atomvla-999999999-nomarker")
    for p in others:
        p.mkdir() if folder else p.write_text("not ours to remove")
    result = curate("export", out, "--to", "parquet" if folder else "jsonl", "--store", store)
    assert result.exit_code == 0, result.output
    assert not left[0].exists() and all(p.exists() for p in others)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([out.name, *(p.name for p in others)])


def test_the_temporary_folder_is_marked_until_it_is_renamed(tmp_path):
    out = tmp_path / "ds"
    with new_folder(out) as tmp:
        assert (tmp / MARKER).is_file() and remove_stale(out) == []  # a live writer's is kept
        (tmp / "data.txt").write_text("x")
    assert sorted(p.name for p in out.iterdir()) == ["data.txt"]
    with pytest.raises(OutputExistsError, match="is a folder; this writes a file"):
        with new_file(out):
            pass
