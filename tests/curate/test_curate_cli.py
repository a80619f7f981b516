"""`atom-curate` end to end on the real fixtures and on damaged copies of them."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from typer.testing import CliRunner

from atomvla.curate.cli import IMPORT_BATCH, app
from atomvla.curate.store import Store
from builders import DATA, EPISODES, FIXTURES, V3_AV1, V3_H264, copy_dataset, replicate_lerobot_v3

TRUTH = FIXTURES / "metaworld_truth.jsonl"
runner = CliRunner()


def curate(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def fixture_lengths(root: Path) -> dict[int, int]:
    table = pq.read_table(root / EPISODES, columns=["episode_index", "length"]).to_pydict()
    return dict(zip(table["episode_index"], table["length"]))


def test_import_both_fixtures_with_their_frame_counts(tmp_path):
    db = tmp_path / "s.sqlite"
    for root in (V3_AV1, V3_H264):
        result = curate("import", root, "--store", db)
        assert result.exit_code == 0, result.output
        assert "Imported 11 episode(s)" in result.output
        metas = Store(db).episodes(dataset=root.name)
        assert {m.episode_index: m.n_frames for m in metas} == fixture_lengths(root)
        assert sum(m.n_frames for m in metas) == 889
    listing = curate("ls", "--store", db)
    assert listing.exit_code == 0 and "22 episode(s)" in listing.output and "unlabelled: 22" in listing.output


def test_reimport_is_idempotent(tmp_path):
    db = tmp_path / "s.sqlite"
    assert curate("import", V3_AV1, "--store", db).exit_code == 0
    assert curate("import", V3_AV1, "--store", db).exit_code == 0
    assert Store(db).count_episodes() == 11


def test_truth_round_trips_through_import_annotations_and_export(tmp_path):
    db, out = tmp_path / "s.sqlite", tmp_path / "out.jsonl"
    curate("import", V3_AV1, "--store", db)
    result = curate("import-annotations", TRUTH, "--store", db, "--author", "truth")
    assert result.exit_code == 0, result.output
    assert "stored 11 revision(s)" in result.output
    assert curate("export", out, "--to", "jsonl", "--store", db, "--status", "accepted").exit_code == 0
    truth = {r["episode_index"]: r for r in map(json.loads, TRUTH.read_text().splitlines())}
    exported = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(exported) == 11
    for rec in exported:
        assert rec["subtasks"] == truth[rec["episode_index"]]["subtasks"]
        assert rec["episode_id"] == f"{V3_AV1.name}/{rec['episode_index']}"
        assert (rec["author"], rec["revision"], rec["status"]) == ("truth", 1, "accepted")
    # No revision has status `rejected`: the export is empty, not an error (replacing the file
    # needs --overwrite).
    assert curate("export", out, "--store", db, "--status", "rejected", "--overwrite").exit_code == 0
    assert out.read_text() == ""


def test_jsonl_export_is_an_ordinary_file_and_never_replaces_a_folder(tmp_path):
    db, out = tmp_path / "s.sqlite", tmp_path / "out.jsonl"
    curate("import", V3_H264, "--store", db)
    curate("import-annotations", TRUTH, "--store", db, "--author", "truth")
    umask = os.umask(0o022)
    try:
        assert curate("export", out, "--store", db).exit_code == 0
    finally:
        os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o644  # not mkstemp's private 0600
    folder = tmp_path / "existing"
    folder.mkdir()
    result = curate("export", folder, "--to", "jsonl", "--store", db)
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {folder}: is a folder; this writes a file"
    assert list(folder.iterdir()) == [] and not list(tmp_path.glob(".*"))  # no temporary file left


def test_bad_annotation_lines_are_reported_and_the_good_ones_stored(tmp_path):
    db, bad = tmp_path / "s.sqlite", tmp_path / "bad.jsonl"
    curate("import", V3_AV1, "--store", db)
    lines = TRUTH.read_text().splitlines()
    broken = json.loads(lines[1])
    broken["subtasks"][1]["start_frame"] += 3  # a gap between the two subtasks
    wrong_length = json.loads(lines[2]) | {"n_frames": 5}
    unknown = json.loads(lines[3]) | {"episode_index": 99}
    bad.write_text("\n".join([lines[0], json.dumps(broken), "{not json", json.dumps(wrong_length), json.dumps(unknown)]) + "\n")
    result = curate("import-annotations", bad, "--store", db, "--author", "someone")
    assert result.exit_code == 1
    out = " ".join(result.output.split())
    assert "stored 1 revision(s)" in out
    assert f"{bad}:2: episode {V3_AV1.name}/1: subtask 1 ends at frame" in out and "(a gap)" in out
    assert f"{bad}:3: not valid JSON" in out
    assert f"{bad}:4: episode 2: the file says 5 frames, the episode has" in out
    assert f"{bad}:5: episode 99: no such episode in the store" in out
    assert set(Store(db).latest_all()) == {f"{V3_AV1.name}/0"}


def test_damaged_episode_is_skipped_and_named(tmp_path):
    root = copy_dataset(V3_AV1, tmp_path / "ds")
    table = pq.read_table(root / EPISODES)
    # Episode 4 claims to end far past the end of the video.
    ends = table["videos/observation.images.corner/to_timestamp"].to_pylist()
    ends[4] += 100.0
    starts = table["videos/observation.images.corner/from_timestamp"].to_pylist()
    starts[4] += 99.0
    for name, values in (("from_timestamp", starts), ("to_timestamp", ends)):
        column = f"videos/observation.images.corner/{name}"
        table = table.set_column(table.schema.get_field_index(column), column, pa.array(values, pa.float64()))
    pq.write_table(table, root / EPISODES)
    db = tmp_path / "s.sqlite"
    result = curate("import", root, "--store", db)
    assert result.exit_code == 1
    out = " ".join(result.output.split())
    assert "1 episode(s) skipped" in out and "episode 4" in out and "file-000.mp4" in out
    assert Store(db).count_episodes() == 10


def test_damaged_parquet_is_named_not_a_traceback(tmp_path):
    root = copy_dataset(V3_H264, tmp_path / "ds")
    (root / DATA).write_bytes(b"not parquet")  # the data file holds every episode
    db = tmp_path / "s.sqlite"
    result = curate("import", root, "--store", db)
    assert result.exit_code == 1
    out = " ".join(result.output.split())
    assert "11 episode(s) skipped" in out and f"{root / DATA}: episode 10: cannot be read as parquet" in out
    assert not db.exists()
    (root / EPISODES).write_bytes(b"not parquet either")  # the episode index: the whole source
    result = curate("import", root, "--store", db)
    assert result.exit_code == 2
    assert result.output.strip().startswith(f"error: {root / EPISODES}: cannot be read as parquet")
    assert not db.exists()


def test_whole_source_error_writes_nothing(tmp_path):
    root = copy_dataset(V3_AV1, tmp_path / "ds")
    info = json.loads((root / "meta/info.json").read_text())
    (root / "meta/info.json").write_text(json.dumps(info | {"codebase_version": "v9.9"}))
    db = tmp_path / "s.sqlite"
    curate("import", V3_H264, "--store", db)
    result = curate("import", root, "--store", db)
    assert result.exit_code == 2
    assert "info.json" in result.output and "v9.9" in result.output
    assert Store(db).count_episodes() == 11  # what was there is still there


def test_unreadable_or_empty_source_creates_no_store(tmp_path):
    db = tmp_path / "new.sqlite"
    result = curate("import", tmp_path / "missing", "--store", db)
    assert result.exit_code == 2 and "no such file or folder" in result.output
    assert list(tmp_path.iterdir()) == []
    result = curate("import", V3_H264, "--format", "video_folder", "--store", db)  # no videos at its top
    assert result.exit_code == 2
    # The reader names the folder it resolved (shared/ may be reached through a link).
    assert result.output.strip() == f"error: {V3_H264.resolve()}: no episodes found (read as video_folder); nothing imported"
    assert list(tmp_path.iterdir()) == []


def test_store_that_is_not_a_store_is_refused_untouched(tmp_path):
    db = tmp_path / "s.sqlite"
    db.write_text("hello")
    result = curate("import", V3_AV1, "--store", db)
    assert result.exit_code == 2 and "not an atomvla store" in result.output
    assert db.read_text() == "hello"


def test_sigkill_mid_import_leaves_a_consistent_store_and_a_rerun_completes(tmp_path):
    n = 12 * IMPORT_BATCH
    root = tmp_path / "big"
    replicate_lerobot_v3(root, n)
    db = tmp_path / "s.sqlite"
    cli = [sys.executable, "-m", "atomvla.curate", "import", str(root), "--store", str(db)]
    proc = subprocess.Popen(cli, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if db.exists():
            try:
                seen = sqlite3.connect(db, timeout=0.1).execute("SELECT count(*) FROM episodes").fetchone()[0]
            except sqlite3.OperationalError:  # schema not created yet
                seen = 0
            if seen:
                break
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 0 < seen < n, f"the import was not caught mid-way ({seen} of {n})"

    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    count = conn.execute("SELECT count(*) FROM episodes").fetchone()[0]
    assert count % IMPORT_BATCH == 0 and count < n  # whole batches only
    conn.close()
    assert all(m.n_frames > 0 for m in Store(db).episodes())  # every stored row parses

    rerun = subprocess.run(cli, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert Store(db).count_episodes() == n


def test_an_error_about_a_long_path_stays_on_one_line(tmp_path):
    deep = tmp_path / ("a-rather-long-folder-name-" * 4) / "project.sqlite"
    result = curate("ls", "--store", deep)
    assert result.exit_code == 2
    (line,) = [line for line in result.output.splitlines() if line.strip()]
    assert line.startswith("error:") and str(deep) in line and "no such store" in line


def test_store_filters_are_dataset_name_and_status_and_the_store_comes_from_atomvla_store(tmp_path):
    db = tmp_path / "s.sqlite"
    for root in (V3_AV1, V3_H264):
        assert curate("import", root, "--store", db).exit_code == 0
    env = {"ATOMVLA_STORE": str(db), "COLUMNS": "200"}
    listed = runner.invoke(app, ["ls", "--dataset-name", V3_H264.name, "-v"], env=env)
    assert listed.exit_code == 0, listed.output
    assert f"11 episode(s) in {db}" in listed.output and V3_AV1.name + "/" not in listed.output
    bad = runner.invoke(app, ["ls", "--status", "done"], env=env)
    assert bad.exit_code == 2
    assert bad.output.strip() == "error: --status 'done': choose one of proposed, accepted, rejected, needs_review, failed"
    old = runner.invoke(app, ["ls", "--dataset", V3_H264.name], env=env)
    assert old.exit_code == 2 and "No such option: --dataset" in old.output


def test_a_dataset_name_the_store_lacks_is_one_error_and_writes_nothing(tmp_path):
    db = tmp_path / "s.sqlite"
    for root in (V3_AV1, V3_H264):
        assert curate("import", root, "--store", db).exit_code == 0
    assert curate("import-annotations", TRUTH, "--store", db, "--author", "truth", "--dataset-name", V3_AV1.name).exit_code == 0
    before = Store(db).latest_all()
    # Each of these had matched nothing and said so as a result: an empty table ("empty store"), an
    # empty JSONL file, "0 episode(s)" from qa, one skipped line per truth line.
    for args in (["ls"], ["export", tmp_path / "x.jsonl"], ["qa"], ["report", "--out", tmp_path / "report"],
                 ["import-annotations", TRUTH, "--author", "other"]):
        result = curate(*args, "--store", db, "--dataset-name", "metaworld_typo")
        (line,) = [line for line in result.output.splitlines() if line.strip()]
        assert result.exit_code == 2, (args, result.output)
        assert "--dataset-name metaworld_typo: the store holds no such dataset" in line
        assert f"(it holds {V3_AV1.name}, {V3_H264.name};" in line
    assert {p.name for p in tmp_path.iterdir()} <= {"s.sqlite", "s.sqlite-wal", "s.sqlite-shm"}  # no export, no report
    assert Store(db).latest_all() == before
    filtered = curate("ls", "--store", db, "--status", "failed")
    assert filtered.exit_code == 0 and filtered.output.split()[-3:] == ["no", "episode", "matches"]
    first = curate("ls", "--store", db, "--limit", "3")
    assert "22 episode(s) in" in first.output and "the first 3 shown" in first.output


def test_truth_known_by_index_in_a_store_of_several_datasets_is_one_error(tmp_path):
    db = tmp_path / "s.sqlite"
    for root in (V3_AV1, V3_H264):
        assert curate("import", root, "--store", db).exit_code == 0
    result = curate("import-annotations", TRUTH, "--store", db, "--author", "truth")
    (line,) = [line for line in " ".join(result.output.split()).split("error: ")[1:]]
    assert result.exit_code == 2, result.output
    assert line.startswith(f"{TRUTH}: 11 line(s) match no episode_id of the store")
    assert f"several datasets ({V3_AV1.name}, {V3_H264.name})" in line and "--dataset-name" in line
    assert Store(db).latest_all() == {}
    empty = tmp_path / "empty.sqlite"
    Store(empty)
    result = curate("import-annotations", TRUTH, "--store", empty, "--author", "truth")
    assert result.exit_code == 2 and "the store holds no episodes; import the dataset first" in result.output


def test_a_source_imported_by_a_relative_path_is_read_from_any_folder(tmp_path, monkeypatch):
    """README's `atom-curate import examples/metaworld_sample` stored the path as typed: every
    later command that reads arrays (qa's motion check, annotate run, export, training from the
    store) failed with "examples/metaworld_sample: no such file or folder" outside that folder."""
    from atomvla.curate.episode import Episode

    copy_dataset(V3_H264, tmp_path / "project" / "data" / "ds")
    monkeypatch.chdir(tmp_path / "project")
    assert curate("import", "data/ds", "--store", "s.sqlite").exit_code == 0
    monkeypatch.chdir(tmp_path)
    (meta, *_) = Store(tmp_path / "project" / "s.sqlite").episodes()
    assert meta.source == str(tmp_path / "project" / "data" / "ds") and meta.dataset == "ds"
    assert Episode(meta).arrays["action"].shape == (meta.n_frames, 4)


def test_the_help_summary_names_every_command():
    """It named import, ls, export and import-annotations only: qa, report, push, merge and
    labelstudio were found only in the command list below it."""
    summary = " ".join(curate("--help").output.split("Options:")[0].split())
    for words in ("import sources", "list them", "export subtask annotations", "quality", "HTML report", "Hub",
                  "merge stores", "Label Studio"):
        assert words in summary, words
