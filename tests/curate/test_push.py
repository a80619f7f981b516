"""`atom-curate push` with the real `huggingface_hub` client against a local fake Hub
(tests/curate/fake_hub.py): create, card, upload, tags, an interrupted push resumed, refusals.

huggingface_hub reads HF_ENDPOINT / HF_HUB_DISABLE_XET / HF_HUB_OFFLINE at import, so in process
they are set on its `constants`; the no-token and offline tests run the CLI in a subprocess with the
variables a user's shell would set."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from atomvla.curate.cli import app
from builders import FIXTURES, V3_AV1
from fake_hub import TOKEN, serve

REPO = "atom-lab/metaworld-subtasks"


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("push")
    db = tmp / "s.sqlite"
    runner = CliRunner()
    truth = tmp / "truth.jsonl"  # three accepted episodes keep the export quick
    truth.write_text("".join((FIXTURES / "metaworld_truth.jsonl").read_text().splitlines(keepends=True)[:3]))
    for args in (("import", V3_AV1), ("import-annotations", truth, "--author", "truth"),
                 ("export", tmp / "ds", "--to", "lerobot")):
        result = runner.invoke(app, [str(a) for a in (*args, "--store", db)])
        assert result.exit_code == 0, result.output
    return tmp / "ds"


@pytest.fixture
def hub():
    hub, server = serve()
    yield hub
    server.shutdown()
    server.server_close()


@pytest.fixture
def hub_env(hub, monkeypatch, tmp_path):
    """The in-process client pointed at the fake Hub, with the token in HF_TOKEN."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", hub.url)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    return hub


def push(folder: Path, *args: str):
    return CliRunner().invoke(app, ["push", str(folder), "--repo-id", REPO, *args])


def push_subprocess(folder: Path, hub_url: str, home: Path, token: str | None,
                    offline: bool = False) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env |= {"HF_ENDPOINT": hub_url, "HF_HOME": str(home), "HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_OFFLINE": "1" if offline else "0", "COLUMNS": "200"}
    if token:
        env["HF_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", "atomvla.curate", "push", str(folder), "--repo-id", REPO],
                          env=env, capture_output=True, text=True, timeout=120)


def _local_files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*")
            if p.is_file() and ".cache" not in p.parts}


def test_push_creates_the_repo_with_card_files_and_tags(export_dir, hub_env):
    hub = hub_env
    result = push(export_dir, "--revision", "v1", "--private")
    assert result.exit_code == 0, result.output
    repo = hub.repos[REPO]
    assert repo.private
    assert repo.files == _local_files(export_dir)
    card = repo.files["README.md"].decode()
    assert "task_categories:\n- robotics" in card and "- LeRobot" in card
    assert "Reviewed by people: 3 of 3 episodes (100%)" in card
    assert "data_files: data/*/*.parquet" in card
    assert repo.tags == {"v1": repo.head, "v3.0": repo.head}
    assert hub.count("PUT", "^/lfs/") == len(repo.lfs) >= 4  # parquets and the video went through LFS


def test_an_interrupted_push_resumes_without_resending(export_dir, hub_env):
    hub = hub_env
    hub.lfs_puts_before_failure = 2
    first = push(export_dir, "--revision", "v1")
    assert first.exit_code == 2 and "re-run to resume" in first.output
    assert first.output.count("error:") == 1
    assert not hub.repos[REPO].commits and not hub.repos[REPO].tags
    hub.fail_next["commit"] = 1  # the second try dies at the commit, after every upload
    second = push(export_dir, "--revision", "v1")
    assert second.exit_code == 2 and not hub.repos[REPO].commits
    third = push(export_dir, "--revision", "v1")
    assert third.exit_code == 0, third.output
    repo = hub.repos[REPO]
    assert repo.files == _local_files(export_dir)
    # Every LFS object was sent once, plus the one refused attempt: nothing uploaded twice.
    assert hub.count("PUT", "^/lfs/") == len(repo.lfs) + 1
    assert list(repo.tags) == ["v1", "v3.0"]


def test_a_taken_tag_is_refused_and_an_unchanged_push_uploads_nothing(export_dir, hub_env):
    hub = hub_env
    assert push(export_dir, "--revision", "v1").exit_code == 0
    puts = hub.count("PUT", "^/lfs/")
    again = push(export_dir, "--revision", "v1")
    assert again.exit_code == 2 and "tag 'v1' already exists" in " ".join(again.output.split())
    assert len(hub.repos[REPO].commits) == 1 and hub.count("POST", "/preupload/") == 1
    assert push(export_dir, "--revision", "v2").exit_code == 0
    repo = hub.repos[REPO]
    assert len(repo.commits) == 1  # nothing changed: no new commit, the new tag names the same one
    assert repo.tags == {"v1": repo.head, "v2": repo.head, "v3.0": repo.head}
    assert hub.count("PUT", "^/lfs/") == puts


def test_no_token_is_a_one_line_error_and_sends_nothing(export_dir, hub, tmp_path):
    result = push_subprocess(export_dir, hub.url, tmp_path, token=None)
    assert result.returncode == 2 and "no Hugging Face token" in result.stderr
    assert result.stderr.count("error:") == 1 and "Traceback" not in result.stderr
    assert hub.requests == []


@pytest.mark.parametrize("status, fails, advice", [
    pytest.param(401, None, "the Hub did not accept the token (HTTP 401): check HF_TOKEN, or log in again with "
                            "`hf auth login`", id="bad-token"),
    pytest.param(403, "create", "the token may not write to this repo (HTTP 403): check the repo id, that you may "
                                "create or write repos under 'atom-lab', and that the token has write access",
                 id="no-rights-to-the-namespace"),
    pytest.param(404, "commit", "the Hub has no such dataset repo, or not one this token can see (HTTP 404): check "
                                "the repo id and your rights to it", id="repo-gone"),
])
def test_a_refusal_a_rerun_cannot_fix_says_what_to_do(export_dir, hub_env, monkeypatch, status, fails, advice):
    hub = hub_env
    if fails is None:
        monkeypatch.setenv("HF_TOKEN", "hf_not_the_fake_hubs_token")  # the fake Hub answers it with a 401
    else:
        hub.fail_next[fails] = 1
        hub.fail_status = status
    result = push(export_dir)
    said = " ".join(result.output.split())
    assert result.exit_code == 2 and f"error: {REPO}: {advice}" in said
    assert "re-run" not in said and said.count("error:") == 1


def _every_file(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("status, fails, advice", [
    pytest.param(409, "commit", r"the Hub refused the push as a conflict \(HTTP 409\): another commit or tag reached "
                                r"this repo at the same time \(its branch moved\); make sure no other push to it is "
                                r"running, then re-run", id="conflict"),
    pytest.param(412, "commit", r"the branch moved under this push \(HTTP 412\): someone else committed to this repo "
                                r"while it ran \(another push, an edit on the Hub\); look at what they committed, then "
                                r"re-run: the re-run commits this export on top of it \(files the Hub already holds are "
                                r"not sent again; this export's files replace theirs at the same paths, their other "
                                r"files stay\)", id="branch-moved"),
    pytest.param(413, "upload", r"the Hub refused the upload of '(?P<file>[^']+)' as too large \(HTTP 413\): the file "
                                r"is over the Hub's size limit for one file and must be split into smaller files; "
                                r"re-running unchanged fails the same way", id="file-too-large"),
    # The 413 of a request to the Hub's API, which is where one comes from on huggingface_hub's Xet path.
    pytest.param(413, "commit", r"the Hub refused a request of the push as too large \(HTTP 413\): a commit carried "
                                r"too many files, or a file is over the Hub's size limit for one file \(through Xet, "
                                r"huggingface_hub's path when hf_xet is installed, the refusal does not name it\) and "
                                r"must be split into smaller files; re-running unchanged fails the same way",
                 id="request-too-large"),
    pytest.param(422, "create", r"the Hub could not process the request \(HTTP 422\): something it names is invalid, "
                                r"e\.g\. the repo id, the --revision tag's name or the dataset card's metadata; fix "
                                r"that and push again \(re-running unchanged fails the same way\)", id="invalid-request"),
])
def test_a_conflict_a_moved_branch_too_large_requests_and_an_invalid_one_say_what_to_do(export_dir, hub_env, status,
                                                                                        fails, advice):
    from atomvla.curate.card import build_card

    hub = hub_env
    if fails == "upload":
        hub.lfs_puts_before_failure = 0
    else:
        hub.fail_next[fails] = 1
    hub.fail_status = status
    before = _every_file(export_dir)
    result = push(export_dir, "--revision", "v1")
    said = " ".join(result.output.split())
    found = re.search(rf"error: {REPO}: {advice} \(the Hub said: injected (create|commit|upload) failure\)", said)
    assert result.exit_code == 2 and found, said
    assert said.count("error:") == 1 and "re-run to resume" not in said
    if fails == "upload":  # the file named is one of the export's, sent through LFS
        assert found["file"] in before and found["file"].endswith((".parquet", ".mp4"))
    assert REPO not in hub.repos or not hub.repos[REPO].commits
    # Nothing local is half-written: every file as it was, but the card, written whole before the upload.
    after = _every_file(export_dir)
    assert after.keys() - {"README.md"} == before.keys() - {"README.md"}
    assert all(after[f] == before[f] for f in after if f != "README.md")
    if "README.md" in after:
        assert after["README.md"].decode() == str(build_card(export_dir, REPO, None))
    if status in (409, 412):  # what the message says to do works
        assert push(export_dir, "--revision", "v1").exit_code == 0
        assert hub.repos[REPO].files == _local_files(export_dir)


@pytest.mark.parametrize("status", [429, 503])
def test_a_refusal_a_rerun_fixes_says_re_run_and_the_re_run_completes(export_dir, hub_env, status):
    hub = hub_env
    hub.fail_next["commit"] = 1
    hub.fail_status = status
    first = push(export_dir, "--revision", "v1")
    assert first.exit_code == 2 and f"{status}" in first.output and "re-run to resume" in first.output
    second = push(export_dir, "--revision", "v1")
    assert second.exit_code == 0, second.output
    assert hub.repos[REPO].files == _local_files(export_dir)


def test_offline_mode_says_push_needs_the_network_and_sends_nothing(export_dir, hub, tmp_path):
    result = push_subprocess(export_dir, hub.url, tmp_path, token=TOKEN, offline=True)
    said = " ".join(result.stderr.split())
    assert result.returncode == 2 and f"error: {REPO}: push needs the network" in said
    assert "HF_HUB_OFFLINE=0 atom-curate push" in said and "re-run" not in said
    assert said.count("error:") == 1 and "Traceback" not in said
    assert hub.requests == []


def test_a_hub_that_does_not_answer_is_a_one_line_error(export_dir, hub_env, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens on port 9
    closed = push(export_dir)
    assert closed.exit_code == 2 and "cannot reach the Hub" in closed.output
    assert closed.output.count("error:") == 1


def test_a_parquet_export_keeps_its_configs_in_the_card(export_dir, hub_env, tmp_path):
    db = export_dir.parent / "s.sqlite"
    plain = tmp_path / "plain"
    assert CliRunner().invoke(app, ["export", str(plain), "--to", "parquet", "--store", str(db)]).exit_code == 0
    assert push(plain, "--revision", "p1").exit_code == 0
    card = hub_env.repos[REPO].files["README.md"].decode()
    assert "config_name: frames" in card and "config_name: episodes" in card and "- LeRobot" in card
    import datasets

    from atomvla.curate.store import Store

    accepted = Store(db).latest_all(status="accepted")
    frames = sum(d.n_frames for d in accepted.values())
    loaded = datasets.load_dataset(str(plain), split="train", cache_dir=str(tmp_path / "hf_cache"))
    assert len(loaded) == frames  # the card still selects the data
