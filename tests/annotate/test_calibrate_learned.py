"""`atom-annotate calibrate --backend learned`: the network fine-tuned on accepted episodes, saved
with its weights in the profile, and `run --profile` proposing with them."""

import asyncio
import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from atomvla.annotate import store_tables as annotate_tables
from atomvla.annotate.backends.base import SetupError
from atomvla.annotate.cli import app
from atomvla.annotate.jobs.runner import arun
from atomvla.annotate.learned import learned_backend, load_pretrained
from atomvla.annotate.learned.features import robot_layout
from atomvla.annotate.learned.model import LearnedModel
from atomvla.annotate.profiles import backend_from_profile, save_profile
from atomvla.curate.cli import app as curate_app
from atomvla.curate.store import Store
from atomvla.schemas import Decomposition, Status, Subtask

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures"
DATASET = FIXTURES / "metaworld_lerobot_v30_h264"
TRUTH = FIXTURES / "metaworld_truth.jsonl"
runner = CliRunner()
SHIFT = 4  # frames: this team ends every subtask a little later than the pretraining's truth


def invoke(*args, command=app):
    return runner.invoke(command, [str(a) for a in args], env={"COLUMNS": "200"})


@pytest.fixture
def store(tmp_path) -> Path:
    path = tmp_path / "store.sqlite"
    assert invoke("import", DATASET, "--store", path, command=curate_app).exit_code == 0
    return path


def _accept(db: Store, task: str, count: int) -> list:
    """`count` episodes of `task` accepted by "ann" with the fixture's truth shifted by SHIFT."""
    truth = {line["episode_index"]: line for line in map(json.loads, TRUTH.read_text().splitlines())}
    metas = [m for m in db.episodes() if truth[m.episode_index]["metaworld_task"] == task][:count]
    for meta in metas:
        subtasks = [Subtask(**s) for s in truth[meta.episode_index]["subtasks"]]
        starts = [0, *(s.start_frame + SHIFT for s in subtasks[1:])]
        ends = [*starts[1:], meta.n_frames]
        shifted = [s.model_copy(update={"start_frame": a, "end_frame": b}) for s, a, b in zip(subtasks, starts, ends)]
        db.add_revision(Decomposition(episode_id=meta.episode_id, n_frames=meta.n_frames, subtasks=tuple(shifted),
                                      status=Status.accepted, author="ann"))
    return metas


@pytest.mark.slow  # three fine-tunes (~20 s on a busy 2-core machine)
def test_calibrate_learned_fine_tunes_saves_the_weights_and_run_uses_them(store):
    db = Store(store)
    metas = _accept(db, "pick-place-v3", 2)
    assert len(metas) == 2
    result = invoke("calibrate", "--store", store, "--backend", "learned", "--author", "ann", "--profile", "team",
                    "--tolerance-frames", "2")
    assert result.exit_code == 0, result.output
    assert "fine-tuned on 2 episodes" in result.output
    saved = annotate_tables.profile(db, "learned", "team")
    report = saved["report"]
    assert report["n_examples"] == 2 and report["f1_fit"] >= report["f1_before"]
    model = LearnedModel.from_bytes(saved["weights"])
    assert model.info.robot_layout.startswith("observation.state[hand_x,hand_y,hand_z,gripper]")
    assert saved["settings"]["weights_sha256"] == model.digest()
    # the profile's weights say whether decoding keeps the heuristic prior, and calibrate said so
    kept = "kept" if model.info.heuristic_prior else "off"
    extra = model.info.extra
    assert report["changed"]["heuristic prior"] == f"{kept} (F1 within 0.3 s here: heuristic {extra['prior_heuristic_f1']}, network {extra['prior_network_f1']})"
    assert "heuristic prior=" in result.output
    # and whether it adds the accepted episodes' alignment prior (see align.py)
    assert len(model.exemplars) == 2
    aligned = f"kept at weight {model.info.alignment_prior:g}" if model.info.alignment_prior else "off"
    assert report["changed"]["alignment prior"] == (f"{aligned} (F1 within 0.3 s here: accepted episodes aligned to the others of their instruction "
                                                    f"{extra['alignment_f1']}, network {extra['alignment_network_f1']})")
    assert report["changed"]["exemplars"] == "2 of 2 accepted episodes (at most 8, each at most 60 s)"
    assert "alignment prior=" in result.output

    tuned = backend_from_profile(db, "learned", "team")
    result = invoke("run", "--store", store, "--backend", "learned", "--profile", "team")
    assert result.exit_code == 0, result.output
    # the episodes it learned from stay accepted; every other episode gets its proposal
    assert [db.latest(m.episode_id).author for m in metas] == ["ann", "ann"]
    others = [m for m in db.episodes() if m not in metas]
    assert {db.latest(m.episode_id).author for m in others} == {"learned"}
    proposal = db.latest(others[0].episode_id)
    assert proposal.provenance.settings_hash == tuned.settings_hash
    assert proposal.provenance.model == f"learned:{model.digest()[:12]}"
    # the proposal names the profile that made it and how many accepts it learned from
    assert (proposal.provenance.profile, proposal.provenance.learned_from) == ("team", 2)


def test_calibrate_learned_with_one_accepted_episode_says_so(store):
    _accept(Store(store), "pick-place-v3", 1)
    result = invoke("calibrate", "--store", store, "--backend", "learned", "--author", "ann", "--profile", "team")
    assert result.exit_code == 2
    assert "1 accepted episode(s); calibration needs at least 2" in result.output


def test_a_profile_with_damaged_weights_stops_run_in_one_line_naming_it_before_any_work(store):
    db = Store(store)
    annotate_tables.save_profile(db, "learned", "team", {"weights_sha256": "0" * 64}, None, "ann", b"not safetensors")
    result = invoke("run", "--store", store, "--backend", "learned", "--profile", "team")
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [result.output.strip()]  # one line
    assert "profile 'team' weights: damaged weights" in result.output
    assert db.latest_all() == {}  # nothing proposed


def _other_robot(tmp_path: Path) -> Path:
    """The fixture's episodes as another robot records them: other state and action names (no videos)."""
    other = tmp_path / "other_robot"
    shutil.copytree(DATASET, other, ignore=shutil.ignore_patterns("videos"))
    info = json.loads((other / "meta" / "info.json").read_text())
    info["features"] = {k: v for k, v in info["features"].items() if v["dtype"] != "video"}
    info["features"]["observation.state"]["names"] = ["ee_x", "ee_y", "ee_z", "gripper"]
    info["features"]["action"]["names"] = ["x", "y", "z", "gripper"]
    (other / "meta" / "info.json").write_text(json.dumps(info))
    return other


def _team_profile_with_another_robot(store: Path, tmp_path: Path) -> Store:
    """The store with `_other_robot`'s episodes too, and profile "team" as calibrate saves it for the
    fixture's robot (the packaged weights stand in for fine-tuned ones: what a run checks is the robot
    layout in their metadata)."""
    assert invoke("import", _other_robot(tmp_path), "--store", store, command=curate_app).exit_code == 0
    db = Store(store)
    base = load_pretrained()
    model = replace(base, info=replace(base.info, robot_layout=robot_layout(db.episodes(DATASET.name)[0])))
    save_profile(db, learned_backend(model), "team", {"n_examples": 2}, "ann", weights=model.to_bytes())
    assert model.info.robot_layout == "observation.state[hand_x,hand_y,hand_z,gripper] action[dx,dy,dz,grip]"
    return db


OTHER_ROBOT_REFUSED = (
    "profile 'team' weights: fine-tuned on observation.state[hand_x,hand_y,hand_z,gripper] action[dx,dy,dz,grip]; "
    "11 of the 22 episodes to propose have observation.state[ee_x,ee_y,ee_z,gripper] action[x,y,z,gripper] "
    "(other_robot/0, other_robot/1, other_robot/2, ... (8 more))")


def _nothing_done(db: Store) -> None:
    assert db.latest_all() == {}
    assert db.connection().execute("SELECT count(*) FROM jobs").fetchone()[0] == 0  # no job row either


def test_a_profile_of_another_robot_stops_run_once_before_any_work(store, tmp_path):
    db = _team_profile_with_another_robot(store, tmp_path)
    ours = db.episodes(DATASET.name)
    for extra in ([], ["--dry-run"]):
        result = invoke("run", "--store", store, "--backend", "learned", "--profile", "team", *extra)
        assert result.exit_code == 2, result.output
        assert result.output.strip().splitlines() == [result.output.strip()]  # one line, not one per episode
        assert OTHER_ROBOT_REFUSED in result.output
    _nothing_done(db)
    # its own robot's episodes are proposed
    result = invoke("run", "--store", store, "--backend", "learned", "--profile", "team",
                    "--episodes", ",".join(m.episode_id for m in ours))
    assert result.exit_code == 0, result.output
    assert set(db.latest_all(author="learned")) == {m.episode_id for m in ours}


def test_the_runner_given_no_plan_refuses_another_robot_before_any_work(store, tmp_path):
    """`arun` as an API caller uses it (no `split` from the CLI's plan): it splits and checks itself."""
    db = _team_profile_with_another_robot(store, tmp_path)
    with pytest.raises(SetupError) as refused:
        asyncio.run(arun(db, backend_from_profile(db, "learned", "team"), db.episodes()))
    assert OTHER_ROBOT_REFUSED in str(refused.value)
    _nothing_done(db)


@pytest.mark.slow  # one fine-tune on 60-70 s episodes (~15 s on a busy 2-core machine)
def test_calibrate_says_accepted_episodes_too_long_to_be_exemplars_are_none(tmp_path):
    slow = tmp_path / "slow"  # the fixture's episodes recorded at 1 fps: each 60-128 s long
    shutil.copytree(DATASET, slow, ignore=shutil.ignore_patterns("videos"))
    info = json.loads((slow / "meta" / "info.json").read_text())
    info["fps"] = 1
    info["features"] = {k: v for k, v in info["features"].items() if v["dtype"] != "video"}
    (slow / "meta" / "info.json").write_text(json.dumps(info))
    path = tmp_path / "store.sqlite"
    assert invoke("import", slow, "--store", path, command=curate_app).exit_code == 0
    metas = _accept(Store(path), "pick-place-v3", 2)
    assert [m.n_frames for m in metas] == [69, 61]  # seconds, past the 60 s an exemplar may last
    result = invoke("calibrate", "--store", path, "--backend", "learned", "--author", "ann", "--profile", "team")
    assert result.exit_code == 0, result.output
    assert "exemplars=0 of 2" in result.output and "alignment prior=off" in result.output
    saved = annotate_tables.profile(Store(path), "learned", "team")
    assert saved["report"]["changed"]["exemplars"] == "0 of 2 accepted episodes (at most 8, each at most 60 s)"
    assert saved["report"]["changed"]["alignment prior"] == "off (aligning needs 2 exemplars)"
    assert LearnedModel.from_bytes(saved["weights"]).exemplars == ()


def test_calibrate_help_says_what_the_learned_backend_fits_and_keeps():
    from atomvla.annotate.calibrate import LEARNED_FOLDS
    from atomvla.annotate.learned.features import GRID_FPS
    from atomvla.annotate.learned.train import MAX_EXEMPLAR_FRAMES, MAX_EXEMPLARS

    result = invoke("calibrate", "--help")
    assert result.exit_code == 0
    text = " ".join(result.output.split())  # as one paragraph, whatever the wrapping
    assert "`--backend learned` searches no settings: it fine-tunes its network" in text
    assert f"{LEARNED_FOLDS}-fold past {LEARNED_FOLDS} examples" in text
    assert f"up to {MAX_EXEMPLARS} of those episodes (each at most {MAX_EXEMPLAR_FRAMES / GRID_FPS:.0f} s) as exemplars" in text


def test_run_help_says_a_learned_profile_carries_its_weights_and_exemplars():
    result = invoke("run", "--help")
    assert result.exit_code == 0
    assert "for `learned` its fine-tuned weights and exemplars" in " ".join(result.output.split())
