"""`atom-annotate calibrate`: settings fitted to a person's accepted episodes, saved as a profile."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from atomvla.annotate import store_tables as annotate_tables
from atomvla.annotate.backends import get_backend
from atomvla.annotate.calibrate import CalibrationError, Example, calibrate
from atomvla.annotate.cli import app
from atomvla.annotate.profiles import backend_from_profile
from atomvla.curate.cli import app as curate_app
from atomvla.curate.episode import Episode
from atomvla.curate.store import Store
from atomvla.schemas import Status

DATASET = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "metaworld_lerobot_v30_h264"
runner = CliRunner()
HEURISTIC = get_backend("heuristic")


def invoke(*args, command=app):
    return runner.invoke(command, [str(a) for a in args], env={"COLUMNS": "200"})


@pytest.fixture
def store(tmp_path) -> Path:
    path = tmp_path / "store.sqlite"
    assert invoke("import", DATASET, "--store", path, command=curate_app).exit_code == 0
    return path


def _grasping(db: Store) -> list:
    """The fixture's episodes that grasp (pick-place, sweep, coffee push)."""
    return [m for m in db.episodes() if m.task.split()[0] in {"pick", "sweep", "push"}]


def accept(db: Store, metas, config, author="ann") -> None:
    """Store, as `author`'s accepted revisions, what the heuristic proposes with `config`: a team
    whose convention is that config's."""
    for meta in metas:
        proposal = HEURISTIC(config).propose(Episode(meta))
        db.add_revision(proposal.model_copy(update={"status": Status.accepted, "author": author, "provenance": None}))


def test_calibrate_learns_a_teams_pick_convention_and_saves_it(store):
    db = Store(store)
    metas = _grasping(db)
    assert len(metas) >= 4
    team = HEURISTIC.Config(pick_end="closed")
    accept(db, metas[:4], team)
    accept(db, metas[4:5], HEURISTIC.Config(), author="someone else")

    result = invoke("calibrate", "--store", store, "--author", "ann", "--profile", "team", "--tolerance-frames", "2")
    assert result.exit_code == 0, result.output
    assert "pick_end=closed" in result.output
    saved = annotate_tables.profile(db, "heuristic", "team")
    assert saved["author"] == "ann" and saved["settings"]["pick_end"] == "closed"
    report = saved["report"]
    assert report["n_examples"] == 4
    assert report["f1_before"] < report["f1_loo"] == report["f1_fit"] == 1.0
    tuned = backend_from_profile(db, "heuristic", "team")
    assert tuned.settings_hash != HEURISTIC().settings_hash
    # the profile reproduces the team's boundaries on an episode it was not fitted on
    held = metas[4]
    assert [s.start_frame for s in tuned.propose(Episode(held)).subtasks] == [
        s.start_frame for s in HEURISTIC(team).propose(Episode(held)).subtasks
    ]
    # `run --profile` leaves the episode someone else accepted as it is (a new settings hash does not
    # make a person's work a backend's to replace) ...
    run = ("run", "--store", store, "--backend", "heuristic", "--profile", "team", "--episodes", str(held.episode_index))
    accepted = db.latest(held.episode_id)
    result = invoke(*run)
    assert result.exit_code == 0, result.output
    assert "reviewed by someone else (accepted)" in result.output
    assert db.latest(held.episode_id) == accepted and db.latest(held.episode_id, author="heuristic") is None
    # ... and proposes over it with the profile's settings when asked to
    result = invoke(*run, "--include-reviewed")
    assert result.exit_code == 0, result.output
    proposal = db.latest(held.episode_id)
    assert proposal.author == "heuristic" and proposal.provenance.settings_hash == tuned.settings_hash
    assert db.history(held.episode_id)[:-1] == [accepted]


def test_calibrate_without_enough_accepted_episodes_says_so(store):
    db = Store(store)
    accept(db, _grasping(db)[:1], HEURISTIC.Config())
    result = invoke("calibrate", "--store", store, "--author", "ann", "--profile", "team")
    assert result.exit_code == 2
    assert "author 'ann': 1 accepted episode(s); calibration needs at least 2" in result.output
    assert annotate_tables.profiles(db) == []


def test_leave_one_out_scores_each_example_with_settings_fitted_on_the_others(store):
    db = Store(store)
    metas = _grasping(db)[:3]
    # one example follows one convention, two another: the odd one cannot be learnt from the
    # others, and with it held out the other two disagree (a tie, kept at the first tried)
    conventions = ["closed", "lifted", "lifted"]
    truths = [HEURISTIC(HEURISTIC.Config(pick_end=p)).propose(Episode(m)).subtasks for m, p in zip(metas, conventions)]
    config, report = calibrate(HEURISTIC, [Example(Episode(m), t) for m, t in zip(metas, truths)], tolerance=1)
    assert config.pick_end == "lifted"
    assert report.f1_loo < report.f1_fit
    with pytest.raises(CalibrationError, match="needs at least 2"):
        calibrate(HEURISTIC, [Example(Episode(metas[0]), truths[0])], tolerance=1)
