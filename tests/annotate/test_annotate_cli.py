"""`atom-annotate run` and `eval` end to end on the fixture imported into a temporary store."""

import json
from pathlib import Path

import pytest
from synthetic import write_video
from typer.testing import CliRunner

from atomvla.annotate.cli import app
from atomvla.curate.cli import app as curate_app
from atomvla.curate.store import Store
from atomvla.schemas import Status

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures"
DATASET = FIXTURES / "metaworld_lerobot_v30_h264"
TRUTH = FIXTURES / "metaworld_truth.jsonl"
N_EPISODES = 11

runner = CliRunner()


def invoke(*args, command=app):
    result = runner.invoke(command, [str(a) for a in args], env={"COLUMNS": "200"})
    assert not isinstance(result.exception, AssertionError), result.exception
    return result


@pytest.fixture
def store(tmp_path) -> Path:
    path = tmp_path / "store.sqlite"
    result = invoke("import", DATASET, "--store", path, command=curate_app)
    assert result.exit_code == 0, result.output
    return path


def test_run_proposes_every_episode_and_eval_scores_them(store, tmp_path):
    result = invoke("run", "--store", store)
    assert result.exit_code == 0, result.output
    proposals = Store(store).latest_all(author="heuristic")
    assert len(proposals) == N_EPISODES
    for dec in proposals.values():
        assert dec.status is Status.proposed and dec.revision == 1
        assert dec.provenance.backend == "heuristic" and dec.provenance.settings_hash
        assert dec.provenance.latency_s > 0

    out = tmp_path / "report.json"
    result = invoke("eval", "--store", store, "--truth", TRUTH, "--json", out)
    assert result.exit_code == 0, result.output
    assert "heuristic vs metaworld_truth.jsonl" in result.output
    rep = json.loads(out.read_text())["heuristic"]
    overall = rep["overall"]
    assert overall["episodes"] == N_EPISODES and overall["missing"] == 0
    # The product's targets on the fixture (boundary F1 at 3 frames, counts, objects).
    assert overall["f1"] >= 0.9 and overall["count_accuracy"] >= 0.9 and overall["object_accuracy"] >= 0.9
    assert len(rep["per_task"]) == 6
    assert [e["episode_id"] for e in rep["episodes"]] == [f"{DATASET.name}/{i}" for i in range(N_EPISODES)]


def test_eval_plots_one_png_per_episode(store, tmp_path):
    invoke("run", "--store", store, "--episodes", "0,4")
    truth = tmp_path / "truth.jsonl"
    truth.write_text("\n".join(line for line in TRUTH.read_text().splitlines() if json.loads(line)["episode_index"] in (0, 4)))
    result = invoke("eval", "--store", store, "--truth", truth, "--plots", tmp_path / "plots")
    assert result.exit_code == 0, result.output
    pngs = sorted((tmp_path / "plots" / "heuristic").glob("*.png"))
    assert [p.name for p in pngs] == [f"{DATASET.name}__0.png", f"{DATASET.name}__4.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)

    # Existing outputs are refused before any work, and replaced whole with --overwrite.
    (tmp_path / "plots" / "mine.txt").write_text("keep")
    report = tmp_path / "report.json"
    report.write_text("keep")
    for args in (["--plots", tmp_path / "plots"], ["--json", report]):
        again = invoke("eval", "--store", store, "--truth", truth, *args)
        assert again.exit_code == 2 and "already exists; pass --overwrite" in again.output
    assert (tmp_path / "plots" / "mine.txt").read_text() == "keep" and report.read_text() == "keep"
    replaced = invoke("eval", "--store", store, "--truth", truth, "--plots", tmp_path / "plots", "--json", report, "--overwrite")
    assert replaced.exit_code == 0, replaced.output
    assert not (tmp_path / "plots" / "mine.txt").exists() and len(list((tmp_path / "plots" / "heuristic").glob("*.png"))) == 2
    assert "heuristic" in json.loads(report.read_text())


def test_rerun_skips_unless_again_or_new_settings(store):
    assert invoke("run", "--store", store, "--episodes", "0-2,7").exit_code == 0
    db = Store(store)
    assert sorted(db.latest_all(author="heuristic")) == sorted(f"{DATASET.name}/{i}" for i in (0, 1, 2, 7))

    result = invoke("run", "--store", store)
    assert result.exit_code == 0
    assert len(db.history(f"{DATASET.name}/0")) == 1  # skipped: same backend, same settings
    assert len(db.history(f"{DATASET.name}/3")) == 1  # new: proposed now

    assert invoke("run", "--store", store, "--episodes", "0", "--again").exit_code == 0
    assert len(db.history(f"{DATASET.name}/0")) == 2
    assert invoke("run", "--store", store, "--episodes", "0", "gripper_dim=3").exit_code == 0
    history = db.history(f"{DATASET.name}/0")
    assert len(history) == 3 and history[-1].provenance.settings_hash != history[0].provenance.settings_hash


@pytest.mark.parametrize(
    ("selection", "message"),
    [("5-2", "range '5-2' is backwards"), ("99", "'99' selects no episode (indices in the store: 0-10)"),
     ("0,,1", "empty item"), ("nope/3", "no episode 'nope/3' in the store")],
)
def test_bad_episode_selection_is_refused(store, selection, message):
    result = invoke("run", "--store", store, "--episodes", selection)
    assert result.exit_code == 2
    assert message in result.output
    assert Store(store).latest_all() == {}


def test_unknown_backend_lists_the_known_ones(store):
    result = invoke("run", "--store", store, "--backend", "gpt9")
    assert result.exit_code == 2
    assert "unknown backend 'gpt9' (known: heuristic" in result.output


def test_unknown_hybrid_part_is_one_plain_line(store):
    result = invoke("run", "--store", store, "--backend", "hybrid", "boundaries=gpt9", "language=heuristic")
    assert result.exit_code == 2
    (line,) = result.output.strip().splitlines()
    assert line.startswith("error: settings for the hybrid backend: boundaries: unknown backend 'gpt9' (known: heuristic, ")


def test_batch_collect_with_no_batch_says_so(store):
    result = invoke("batch", "collect", "--store", store)
    assert result.exit_code == 0
    assert "nothing to collect: no batch is waiting" in result.output


def test_settings_are_key_value_checked_against_the_backend(store):
    result = invoke("run", "--store", store, "windows_s=0.4")
    assert result.exit_code == 2
    assert result.output.strip() == (
        "error: setting 'windows_s': the heuristic backend has no setting 'windows_s'; did you mean window_s? "
        "(`atom-annotate settings --backend heuristic` lists them)"
    )
    result = invoke("run", "--store", store, "window_s")
    assert result.exit_code == 2 and "setting 'window_s' is not key=value" in result.output
    assert Store(store).latest_all() == {}
    listing = invoke("settings", "--backend", "heuristic")
    assert listing.exit_code == 0 and "window_s" in listing.output and "half-window" in listing.output


def test_the_store_comes_from_atomvla_store(store):
    result = runner.invoke(app, ["run", "--episodes", "0"], env={"COLUMNS": "200", "ATOMVLA_STORE": str(store)})
    assert result.exit_code == 0, result.output
    assert len(Store(store).latest_all(author="heuristic")) == 1


def test_missing_store_is_refused(tmp_path):
    result = invoke("run", "--store", tmp_path / "none.sqlite")
    assert result.exit_code == 2 and "no such store" in result.output


def test_truth_with_bad_lines_names_them(store, tmp_path):
    invoke("run", "--store", store)
    lines = TRUTH.read_text().splitlines()
    lines[2] = "{not json"
    lines[4] = json.dumps({**json.loads(lines[4]), "subtasks": []})
    bad = tmp_path / "truth.jsonl"
    bad.write_text("\n".join(lines))
    result = invoke("eval", "--store", store, "--truth", bad)
    assert result.exit_code == 2
    assert f"{bad}:3: not valid JSON" in result.output
    assert f"{bad}:5: episode" in result.output and "has 0 subtasks" in result.output


def test_truth_episodes_missing_from_the_store_are_named(store, tmp_path):
    invoke("run", "--store", store)
    extra = tmp_path / "truth.jsonl"
    record = json.loads(TRUTH.read_text().splitlines()[0])
    extra.write_text(TRUTH.read_text() + json.dumps({**record, "episode_index": 42}) + "\n")
    result = invoke("eval", "--store", store, "--truth", extra)
    assert result.exit_code == 2
    assert f"{extra}:12: episode 42: no such episode in the store" in result.output


def test_missing_truth_file_is_one_line(store, tmp_path):
    invoke("run", "--store", store)
    result = invoke("eval", "--store", store, "--truth", tmp_path / "nope.jsonl")
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {tmp_path / 'nope.jsonl'}: cannot read: No such file or directory"


def test_eval_without_proposals_says_what_to_run(store):
    result = invoke("eval", "--store", store, "--truth", TRUTH)
    assert result.exit_code == 2 and "run `atom-annotate run` first" in result.output


def test_episodes_without_kinematics_fail_clearly_and_the_run_goes_on(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    write_video(videos / "episode_0.mp4", 30)
    (videos / "task.txt").write_text("open the drawer")
    store = tmp_path / "store.sqlite"
    assert invoke("import", DATASET, "--store", store, command=curate_app).exit_code == 0
    assert invoke("import", videos, "--store", store, command=curate_app).exit_code == 0
    result = invoke("run", "--store", store)
    assert result.exit_code == 1
    assert "videos/0: no `action` or `observation.state` array" in result.output
    assert "backends that can handle it: " in result.output and "openai" in result.output  # video is enough for it
    assert len(Store(store).latest_all(author="heuristic")) == N_EPISODES  # the others were proposed


def test_bad_dimension_overrides_are_refused(store):
    result = invoke("run", "--store", store, "ee_dims=x,y,z")
    assert result.exit_code == 2 and "settings for the heuristic backend: ee_dims.0: Input should be a valid integer" in result.output
    result = invoke("run", "--store", store, "--episodes", "0", "ee_dims=0,1,9")
    assert result.exit_code == 1
    assert "dimension 9 is out of range: observation.state has 4 dims" in result.output
