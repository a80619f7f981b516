"""`atom-annotate run` leaves a person's work alone (saved, accepted, rejected, a draft), lists it
as skipped with who reviewed it, and proposes over it only with --include-reviewed."""

import json
from pathlib import Path

import pytest

from atomvla.annotate.backends.base import Backend
from atomvla.curate.cli import app as curate_app
from atomvla.curate.store import Store
from atomvla.schemas import Status
from atomvla.ui import store_tables as ui_tables

from tests.annotate.test_annotate_cli import DATASET, N_EPISODES, invoke


def ep(i: int) -> str:
    return f"{DATASET.name}/{i}"


@pytest.fixture
def store(tmp_path) -> Path:
    """The fixture imported and proposed by the heuristic once."""
    path = tmp_path / "store.sqlite"
    assert invoke("import", DATASET, "--store", path, command=curate_app).exit_code == 0
    assert invoke("run", "--store", path).exit_code == 0
    return path


def review(db: Store, i: int, status: Status, author: str) -> None:
    """`author` takes the heuristic's proposal of episode `i` as it is and saves it with `status`."""
    proposal = db.latest(ep(i))
    db.add_revision(proposal.model_copy(update={"status": status, "author": author, "provenance": None}),
                    based_on=proposal.revision)


def summary(output: str) -> dict[str, str]:
    """The run's summary table as {column: value}."""
    lines = output.splitlines()
    head = next(k for k, line in enumerate(lines) if "proposed" in line and "┃" in line)
    columns = [c.strip() for c in lines[head].strip("┃ ").split("┃")]
    # a header may wrap onto the next line; the values are the first row of │-separated cells
    row = next(line for line in lines[head + 1:] if line.strip().startswith("│"))
    values = [c.strip() for c in row.strip("│ ").split("│")]
    return dict(zip(columns, values))


def exported_accepted(store: Path, out: Path) -> set[str]:
    assert invoke("export", out, "--store", store, "--status", "accepted", command=curate_app).exit_code == 0
    return {json.loads(line)["episode_id"] for line in out.read_text().splitlines()}


def test_an_accepted_episode_is_skipped_by_default_and_stays_exported(store, tmp_path):
    db = Store(store)
    review(db, 0, Status.accepted, "ann")
    before = db.history(ep(0))
    # new settings (another settings hash), then --again: neither touches a person's work
    for extra in (["gripper_dim=3"], ["--again"]):
        result = invoke("run", "--store", store, *extra)
        assert result.exit_code == 0, result.output
        assert "reviewed by ann (accepted)" in result.output and ep(0) in result.output
        assert summary(result.output)["skipped (reviewed by a person)"] == "1"
        assert db.history(ep(0)) == before
    assert exported_accepted(store, tmp_path / "accepted.jsonl") == {ep(0)}


def test_include_reviewed_proposes_over_an_accepted_episode_and_history_keeps_it(store, tmp_path):
    db = Store(store)
    review(db, 0, Status.accepted, "ann")
    accepted = db.latest(ep(0))
    result = invoke("run", "--store", store, "--episodes", "0", "--again", "--include-reviewed")
    assert result.exit_code == 0, result.output
    assert summary(result.output)["proposed"] == "1"
    latest = db.latest(ep(0))
    assert (latest.author, latest.status, latest.revision) == ("heuristic", Status.proposed, accepted.revision + 1)
    assert db.revision(ep(0), accepted.revision) == accepted
    # the documented price: exports of accepted episodes leave it out until it is accepted again
    assert exported_accepted(store, tmp_path / "accepted.jsonl") == set()


def test_include_reviewed_alone_still_skips_what_these_settings_proposed_before_the_review(store):
    db = Store(store)
    review(db, 0, Status.accepted, "ann")
    result = invoke("run", "--store", store, "--episodes", "0", "--include-reviewed")
    assert result.exit_code == 0, result.output
    assert summary(result.output)["skipped (already proposed)"] == "1"
    assert db.latest(ep(0)).author == "ann"


@pytest.mark.parametrize(("mark", "why"), [("rejected", "reviewed by bob (rejected)"), ("draft", "draft by carol")])
def test_a_rejected_episode_or_a_draft_is_skipped(store, mark, why):
    db = Store(store)
    if mark == "rejected":
        review(db, 4, Status.rejected, "bob")
    else:
        ui_tables.save_draft(db, ep(4), "carol", db.latest(ep(4)).revision, {"segments": []})
    before = db.history(ep(4))
    result = invoke("run", "--store", store, "--episodes", "4", "gripper_dim=3")
    assert result.exit_code == 0, result.output
    assert why in result.output
    assert summary(result.output)["proposed"] == "0" and summary(result.output)["skipped (reviewed by a person)"] == "1"
    assert db.history(ep(4)) == before


def test_a_mix_is_counted_right_by_the_run_and_its_dry_run(store):
    db = Store(store)
    review(db, 0, Status.accepted, "ann")
    review(db, 1, Status.rejected, "bob")
    review(db, 2, Status.needs_review, "bob")  # saved (or flagged) in the review app
    ui_tables.save_draft(db, ep(3), "carol", db.latest(ep(3)).revision, {"segments": []})
    db.restore(ep(5), 1, "dave", based_on=1)  # a person restored the backend's revision: theirs now
    # a backend's own revisions are no one's work: another backend's proposal, a failed proposal
    other = db.latest(ep(6))
    db.add_revision(other.model_copy(update={"author": "vlm", "provenance": other.provenance.model_copy(update={"backend": "vlm"})}))
    failed = db.latest(ep(7))
    db.add_revision(failed.model_copy(update={"status": Status.failed, "subtasks": (), "note": "the answer stayed invalid"}))
    reasons = {ep(0): "reviewed by ann (accepted)", ep(1): "reviewed by bob (rejected)",
               ep(2): "reviewed by bob (needs review)", ep(3): "draft by carol", ep(5): "reviewed by dave (proposed)"}
    assert db.reviewed() == reasons
    before = {e: db.history(e) for e in reasons}

    dry = invoke("run", "--store", store, "gripper_dim=3", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "(0 already done, 5 reviewed by a person)" in dry.output
    assert all(why in dry.output for why in reasons.values())

    result = invoke("run", "--store", store, "gripper_dim=3")
    assert result.exit_code == 0, result.output
    counts = summary(result.output)
    assert (counts["proposed"], counts["skipped (already proposed)"], counts["skipped (reviewed by a person)"]) == (
        str(N_EPISODES - 5), "0", "5")
    assert {e: db.history(e) for e in reasons} == before
    for i in (6, 7):
        latest = db.latest(ep(i))
        assert (latest.author, latest.status) == ("heuristic", Status.proposed)


def test_a_run_reads_the_reviews_and_checks_the_episodes_once(store, monkeypatch):
    """The plan `run` prints from is the one it runs: `Store.reviewed` (every latest revision parsed)
    and the backend's check happen once, for --dry-run and for a run that proposes."""
    db = Store(store)
    review(db, 0, Status.accepted, "ann")
    calls = {"reviewed": 0, "check_episodes": 0}
    for owner, name in ((Store, "reviewed"), (Backend, "check_episodes")):
        def counted(*args, _real=getattr(owner, name), _name=name, **kwargs):
            calls[_name] += 1
            return _real(*args, **kwargs)
        monkeypatch.setattr(owner, name, counted)
    for extra in (["--dry-run"], []):
        calls.update(reviewed=0, check_episodes=0)
        result = invoke("run", "--store", store, "gripper_dim=3", *extra)  # new settings: all but ep 0 to propose
        assert result.exit_code == 0, result.output
        assert calls == {"reviewed": 1, "check_episodes": 1}
    assert summary(result.output)["proposed"] == str(N_EPISODES - 1)
    assert summary(result.output)["skipped (reviewed by a person)"] == "1"
    assert db.latest(ep(0)).author == "ann"


def test_run_help_says_what_include_reviewed_does_and_that_again_does_not():
    result = invoke("run", "--help")
    text = " ".join(result.output.split())
    assert "not over a person's work: see --include-reviewed" in text  # --again's help
    assert "The person's revision stays in the history and the proposal becomes the latest" in text
