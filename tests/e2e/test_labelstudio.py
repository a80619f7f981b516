"""The Label Studio round trip against a real server (installed into .cache/ and started here):
export the fixture's episodes with their decompositions as predictions, annotate through the
REST API as the editor does, import back, and check every frame number on the way."""

from __future__ import annotations

from pathlib import Path

import av
import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from atomvla.curate.cli import app
from atomvla.curate.episode import Episode
from atomvla.curate.labelstudio.regions import from_results, to_results
from atomvla.curate.labelstudio.server import TOKEN_ENV
from atomvla.curate.store import Store
from atomvla.schemas import SKILLS, Status, Subtask
from tests.curate.builders import FIXTURES, V3_H264
from tests.e2e.labelstudio_server import LabelStudioServer, Unavailable, install
from tests.e2e.review_server import free_port

TRUTH = FIXTURES / "metaworld_truth.jsonl"


def run(*args, token: str | None = None):
    return CliRunner().invoke(app, [str(a) for a in args], env={TOKEN_ENV: token})


def said(result) -> str:
    """The command's output with rich's line wrapping undone."""
    return " ".join(result.output.split())


@pytest.fixture(scope="module")
def ls(tmp_path_factory):
    try:
        exe = install()
    except Unavailable as exc:
        pytest.skip(str(exc))
    server = LabelStudioServer.start(exe, tmp_path_factory.mktemp("labelstudio"))
    yield server
    server.stop()


@pytest.fixture
def api(ls):
    with httpx.Client(base_url=ls.url, headers={"Authorization": f"Token {ls.token}"}, timeout=60) as client:
        yield client


@pytest.fixture
def store(tmp_path) -> Path:
    path = tmp_path / "store.sqlite"
    assert run("import", V3_H264, "--store", path).exit_code == 0
    assert run("import-annotations", TRUTH, "--author", "truth", "--store", path).exit_code == 0
    return path


def export(ls, store: Path, project: str, url: str | None = None, token: str | None = None):
    return run("labelstudio", "export", "--url", url or ls.url, "--project", project, "--store", store,
               "--media-root", ls.media_root, token=token or ls.token)


def tasks_of(api, project: str) -> list[dict]:
    (pid,) = [p["id"] for p in api.get("/api/projects/", params={"page_size": 100}).json()["results"] if p["title"] == project]
    return api.get("/api/tasks", params={"project": pid, "fields": "all", "page_size": 100}).json()["tasks"]


def region(rid: str, start: int, end: int, skill: str, text: str) -> list[dict]:
    """A subtask as the editor saves it: Label Studio frames start..end, both included, from 1."""
    ranges = [{"start": start, "end": end}]
    return [{"id": rid, "from_name": "skill", "to_name": "video", "type": "timelinelabels",
             "value": {"ranges": ranges, "timelinelabels": [skill]}},
            {"id": rid, "from_name": "instruction", "to_name": "video", "type": "textarea",
             "value": {"ranges": ranges, "text": [text]}}]


def test_frames_count_from_one_in_label_studio():
    subtasks = [Subtask(start_frame=0, end_frame=30, instruction="pick up the puck", skill="pick"),
                Subtask(start_frame=30, end_frame=69, instruction="place the puck", skill="place")]
    results = to_results(subtasks)
    assert [r["value"]["ranges"] for r in results if r["type"] == "timelinelabels"] == [
        [{"start": 1, "end": 30}], [{"start": 31, "end": 69}]]
    assert from_results(results) == subtasks
    assert from_results(region("a", 31, 69, "place", "x") + region("b", 1, 30, "pick", "y"))[0].end_frame == 30


def test_round_trip(ls, api, store, tmp_path):
    result = export(ls, store, "round trip")
    assert result.exit_code == 0, result.output
    assert "11 task(s), 11 with a prediction; clips: 11 copied, 0 encoded" in said(result)
    assert ls.token not in "".join(result.output.split())

    (project,) = [p for p in api.get("/api/projects/").json()["results"] if p["title"] == "round trip"]
    config = project["label_config"]
    assert 'frameRate="20"' in config and 'perRegion="true"' in config
    assert all(f'<Label value="{skill}"/>' in config for skill in SKILLS)
    tasks = tasks_of(api, "round trip")
    assert len(tasks) == 11

    db = Store(store)
    task = next(t for t in tasks if t["data"]["episode_id"].endswith("/3"))
    episode_id = task["data"]["episode_id"]
    truth = db.latest(episode_id)
    n = truth.n_frames
    prediction = task["predictions"][0]["result"]
    spans = [tuple(r["value"]["ranges"][0].values()) for r in prediction if r["type"] == "timelinelabels"]
    assert spans == [(s.start_frame + 1, s.end_frame) for s in truth.subtasks]
    assert spans[0][0] == 1 and spans[-1][1] == n  # the first frame is 1, the last is n
    assert from_results(prediction) == list(truth.subtasks)

    # The clip the editor plays is the episode, frame for frame (packets copied, not re-encoded).
    served = api.get(task["data"]["video"])
    assert served.status_code == 200
    (tmp_path / "served.mp4").write_bytes(served.content)
    with av.open(str(tmp_path / "served.mp4")) as container:
        decoded = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    np.testing.assert_array_equal(decoded, Episode(db.episode(episode_id)).frames().get_many(range(n)))

    # An annotator ends the first subtask at Label Studio frame 30 and retypes an instruction.
    first, last = truth.subtasks[0], truth.subtasks[-1]
    annotation = region("r1", 1, 30, first.skill, "grasp the drawer handle") + region("r2", 31, n, last.skill, last.instruction)
    posted = api.post(f"/api/tasks/{task['id']}/annotations/", json={"result": annotation})
    assert posted.status_code == 201

    result = run("labelstudio", "import", "--url", ls.url, "--project", "round trip", "--store", store, token=ls.token)
    assert result.exit_code == 0, result.output
    assert "stored 1 revision(s)" in said(result)
    new = db.latest(episode_id)
    assert new.author == ls.username and new.status is Status.accepted and new.revision == truth.revision + 1
    assert [(s.start_frame, s.end_frame) for s in new.subtasks] == [(0, 30), (30, n)]
    assert [s.instruction for s in new.subtasks] == ["grasp the drawer handle", last.instruction]

    again = run("labelstudio", "import", "--url", ls.url, "--project", "round trip", "--store", store, token=ls.token)
    assert again.exit_code == 0 and "stored 0 revision(s)" in said(again) and "1 unchanged" in said(again)
    assert db.latest(episode_id).revision == new.revision

    # The annotator edits the annotation: the last frame of the first subtask becomes 40.
    edited = region("r1", 1, 40, first.skill, "grasp the drawer handle") + region("r2", 41, n, last.skill, last.instruction)
    assert api.patch(f"/api/annotations/{posted.json()['id']}/", json={"result": edited}).status_code == 200
    third = run("labelstudio", "import", "--url", ls.url, "--project", "round trip", "--store", store, token=ls.token)
    assert third.exit_code == 0 and "stored 1 revision(s)" in said(third)
    assert db.latest(episode_id).boundaries == [40] and db.latest(episode_id).revision == new.revision + 1


def test_bad_input_is_refused_and_nothing_written(ls, api, store):
    db = Store(store)
    revisions = len(db.revisions_since(0))
    clips = ls.media_root / "atomvla"
    before = sorted(clips.rglob("*")) if clips.exists() else []

    dead = export(ls, store, "never", url=f"http://127.0.0.1:{free_port()}")
    assert dead.exit_code == 2 and "does not answer" in said(dead)
    no_token = run("labelstudio", "export", "--url", ls.url, "--project", "never", "--store", store,
                   "--media-root", ls.media_root)
    assert no_token.exit_code == 2 and f"set {TOKEN_ENV}" in said(no_token)
    wrong = export(ls, store, "never", token="f" * 40)
    assert wrong.exit_code == 2 and "was refused (HTTP 401)" in said(wrong) and "f" * 40 not in "".join(wrong.output.split())
    assert (sorted(clips.rglob("*")) if clips.exists() else []) == before  # no clip cut
    assert not [t for t in api.get("/api/projects/").json()["results"] if t["title"] == "never"]

    assert export(ls, store, "bad annotations").exit_code == 0
    assert export(ls, store, "bad annotations").exit_code == 2  # the title is taken: nothing added to it
    task = tasks_of(api, "bad annotations")[0]
    n = task["data"]["n_frames"]
    gap = region("a", 1, 20, "reach", "reach the puck") + region("b", 22, n, "push", "push the puck")
    assert api.post(f"/api/tasks/{task['id']}/annotations/", json={"result": gap}).status_code == 201
    result = run("labelstudio", "import", "--url", ls.url, "--project", "bad annotations", "--store", store,
                 token=ls.token)
    assert result.exit_code == 1
    assert f"episode {task['data']['episode_id']}" in said(result) and "stored 0 revision(s)" in said(result)
    assert len(db.revisions_since(0)) == revisions
