"""`hybrid`: boundaries from one backend, language from another, snapping to kinematic events.

The language backends here are real `VLMBackend`s (the shared prompt/parse/repair path) whose
model is a function of the prompt: one answers valid JSON, one answers prose."""

import asyncio
import json
import re
from pathlib import Path

import pytest

from atomvla.annotate.backends import BACKENDS, get_backend
from atomvla.annotate.backends.hybrid import HybridConfig, event_frames, snap, transfer_language
from atomvla.annotate.backends.vlm_backend import VLMBackend, VLMConfig
from atomvla.annotate.client.pricing import Usage
from atomvla.curate.episode import Episode
from atomvla.curate.sources import open_source
from atomvla.curate.store import Store
from atomvla.schemas import EpisodeMeta, Status, Subtask

FIXTURE = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "metaworld_lerobot_v30"


def sub(a: int, b: int, instruction: str = "x", skill: str = "other") -> Subtask:
    return Subtask(start_frame=a, end_frame=b, instruction=instruction, skill=skill)


@pytest.fixture(scope="module")
def episode() -> Episode:
    meta = next(m for m in open_source(str(FIXTURE)).scan() if isinstance(m, EpisodeMeta))
    return Episode(meta)  # pick up the puck and place it at the goal, 69 frames


class ScriptedVLM(VLMBackend):
    """A vision-language backend whose 'model' reads the prompt's frame count and answers with a
    fixed split (or prose); tokens are counted as the words of the prompt."""

    name = "scripted-vlm"
    Config = VLMConfig
    prose = False

    @property
    def model(self) -> str:
        return "scripted"

    def generate(self, messages, frames):
        words = sum(len(str(m["content"]).split()) for m in messages)
        if self.prose:
            return "The robot picks the puck, then it places it.", Usage(words, 12, 0.001, 1)
        n = int(re.search(r"episode has (\d+) frames", json.dumps(messages[1]["content"])).group(1))
        answer = {"subtasks": [
            {"start_frame": 0, "end_frame": n // 3, "instruction": "grab the hockey puck", "skill": "pick"},
            {"start_frame": n // 3, "end_frame": n, "instruction": "put the puck on the target", "skill": "place"},
        ]}
        return json.dumps(answer), Usage(words, 40, 0.002, 1)


class ProseVLM(ScriptedVLM):
    name = "prose-vlm"
    prose = True


@pytest.fixture
def vlms(monkeypatch):
    monkeypatch.setitem(BACKENDS, ScriptedVLM.name, ScriptedVLM)
    monkeypatch.setitem(BACKENDS, ProseVLM.name, ProseVLM)


def test_snap_moves_boundaries_to_near_events_keeping_the_contract():
    assert snap([30, 60], [27, 34, 58, 90], window=5, n_frames=100, min_frames=2) == [27, 58]
    assert snap([30], [40], window=5, n_frames=100, min_frames=2) == [30]  # too far
    # Two boundaries may not land on one event; a snap may not leave a subtask too short.
    assert snap([30, 33], [31], window=5, n_frames=100, min_frames=2) == [31, 33]
    assert snap([30], [97], window=80, n_frames=100, min_frames=5) == [30]


def test_language_by_position_or_by_overlap():
    cut = (sub(0, 40), sub(40, 100))
    named = (sub(0, 10, "reach the mug", "reach"), sub(10, 100, "push the mug", "push"))
    assert [s.instruction for s in transfer_language(cut, named)] == ["reach the mug", "push the mug"]
    three = (sub(0, 10, "a", "reach"), sub(10, 70, "b", "pick"), sub(70, 100, "c", "place"))
    out = transfer_language(cut, three)
    assert [(s.start_frame, s.instruction, s.skill) for s in out] == [(0, "b", "pick"), (40, "b", "pick")]


def test_uvd_boundaries_named_by_the_heuristic_and_snapped(episode):
    uvd = get_backend("uvd")().propose(episode)
    heuristic = get_backend("heuristic")().propose(episode)
    unsnapped = get_backend("hybrid")(HybridConfig(snap_s=0)).propose(episode)
    assert unsnapped.boundaries == uvd.boundaries
    assert [s.instruction for s in unsnapped.subtasks] == [s.instruction for s in heuristic.subtasks]

    snapped = get_backend("hybrid")(HybridConfig(snap_s=0.5)).propose(episode)
    events = event_frames(episode.meta, episode.arrays)
    assert snapped.status is Status.proposed and snapped.author == "hybrid"
    for moved, original in zip(snapped.boundaries, uvd.boundaries):
        assert moved == original or (moved in events and abs(moved - original) <= 10)
    assert snapped.boundaries != uvd.boundaries  # this episode's cut is 2 frames from the grasp


def test_heuristic_boundaries_with_a_vlm_s_language(episode, vlms):
    config = HybridConfig(boundaries="heuristic", language="scripted-vlm", language_settings={"frames": 6}, snap_s=0)
    dec = get_backend("hybrid")(config).propose(episode)
    heuristic = get_backend("heuristic")().propose(episode)
    assert dec.boundaries == heuristic.boundaries
    assert [s.instruction for s in dec.subtasks] == ["grab the hockey puck", "put the puck on the target"]
    assert dec.provenance.model == "scripted"
    assert dec.provenance.prompt_version is not None
    assert dec.provenance.tokens_out == 40 and dec.provenance.cost_usd == pytest.approx(0.002)
    # Settings of the parts are part of the hybrid's own settings hash.
    other = HybridConfig(boundaries="heuristic", language="scripted-vlm", language_settings={"frames": 8}, snap_s=0)
    assert get_backend("hybrid")(other).settings_hash != get_backend("hybrid")(config).settings_hash


def test_a_failed_language_backend_fails_the_episode_with_its_reason(episode, vlms):
    config = HybridConfig(boundaries="heuristic", language="prose-vlm", language_settings={"frames": 4})
    dec = get_backend("hybrid")(config).propose(episode)
    assert dec.status is Status.failed and dec.subtasks == ()
    assert dec.note.startswith("language from prose-vlm failed: ")
    assert dec.provenance.tokens_out == 24  # the first answer and the repair's, both paid


def test_bad_settings_are_refused_up_front():
    with pytest.raises(ValueError, match="language: unknown backend 'gpt5'"):
        HybridConfig(language="gpt5")
    with pytest.raises(ValueError, match="boundaries: hybrid cannot take its boundaries from itself"):
        HybridConfig(boundaries="hybrid")
    with pytest.raises(ValueError, match="boundaries_settings for uvd: no_such_setting: Extra inputs"):
        HybridConfig(boundaries_settings={"no_such_setting": 1})


def test_run_and_eval_from_the_command_line(tmp_path):
    from typer.testing import CliRunner

    from atomvla.annotate.cli import app as annotate
    from atomvla.curate.cli import app as curate

    store = str(tmp_path / "s.sqlite")
    runner = CliRunner()
    assert runner.invoke(curate, ["import", str(FIXTURE), "--store", store]).exit_code == 0
    run = runner.invoke(annotate, ["run", "--store", store, "--backend", "hybrid", "boundaries=uvd",
                                   "language=heuristic", "snap_s=0.5", "--episodes", "0-1"])
    assert run.exit_code == 0, run.output
    latest = Store(tmp_path / "s.sqlite").latest_all(author="hybrid")
    assert len(latest) == 2 and all(d.status is Status.proposed for d in latest.values())
    truth = FIXTURE.parent / "metaworld_truth.jsonl"
    scored = runner.invoke(annotate, ["eval", "--truth", str(truth), "--store", store, "--backend", "hybrid"])
    assert scored.exit_code == 0, scored.output
    assert "hybrid vs metaworld_truth.jsonl" in scored.output
    wrong = runner.invoke(annotate, ["run", "--store", store, "--backend", "heuristic", "encoder=pixels"])
    assert wrong.exit_code == 2 and "the heuristic backend has no setting 'encoder'" in wrong.output
    itself = runner.invoke(annotate, ["run", "--store", store, "--backend", "hybrid", "language=hybrid"])
    assert itself.exit_code == 2 and "hybrid cannot take its language from itself" in " ".join(itself.output.split())


def test_heuristic_boundaries_with_gpt_instructions_from_a_local_server(episode, monkeypatch):
    """The issue's example: heuristic boundaries, instructions from the `openai` backend, here the
    real OpenAI client against the tests' local server (which answers three subtasks)."""
    from fake_openai import FakeOpenAI

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-hybrid")
    with FakeOpenAI() as server:
        config = HybridConfig(
            boundaries="heuristic", language="openai", language_settings={"base_url": server.url, "frames": 4}, snap_s=0
        )
        dec = get_backend("hybrid")(config).propose(episode)
        requests = server.chat_requests()
    heuristic = get_backend("heuristic")().propose(episode)
    assert dec.status is Status.proposed and dec.boundaries == heuristic.boundaries
    # Two heuristic segments, three answered: each takes the answer it overlaps most.
    assert [s.instruction for s in dec.subtasks] == ["step 1", "step 3"]
    assert len(requests) == 1 and dec.provenance.model == "gpt-4o"
    assert dec.provenance.tokens_in > 4 * 85 and dec.provenance.cost_usd > 0


def test_a_paid_part_gets_the_engine_s_key_check_and_response_cache(tmp_path, episode, monkeypatch):
    """Built by the job engine (as `atom-annotate run` does), hybrid's `openai` part has its key
    checked up front and its answers cached beside the store: asking again sends nothing."""
    from fake_openai import FakeOpenAI

    from atomvla.annotate.backends.openai_backend import MissingKeyError, OpenAIBackend
    from atomvla.annotate.jobs.engine import build_engine

    store = Store(tmp_path / "s.sqlite")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with FakeOpenAI() as server:
        settings = ["boundaries=heuristic", "language=openai", "snap_s=0",
                    f"language_settings.base_url={server.url}", "language_settings.frames=4"]
        engine = build_engine(store, "hybrid", None, settings, prepare=False)
        paid = [p for p in engine.parts if isinstance(p, OpenAIBackend)]
        assert len(paid) == 1 and paid[0].cache is not None
        with pytest.raises(MissingKeyError, match="no API key: set OPENAI_API_KEY"):
            paid[0].check_key()
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-hybrid")
        first = engine.propose(episode)
        again = build_engine(store, "hybrid", None, settings).propose(episode)
        assert len(server.chat_requests()) == 1
    assert first.status is Status.proposed and again.subtasks == first.subtasks


def test_the_ledger_records_the_model_each_paid_part_called(tmp_path, monkeypatch):
    """A hybrid of two models behind the local server: each episode's ledger rows name the model
    called, priced as that model, under the hybrid's job (they all said 'hybrid', which the ledger
    can neither price nor group)."""
    from fake_openai import FakeOpenAI
    from typer.testing import CliRunner

    from atomvla.annotate import store_tables
    from atomvla.annotate.cli import app as annotate
    from atomvla.annotate.client.pricing import cost_usd
    from atomvla.curate.cli import app as curate

    store = str(tmp_path / "s.sqlite")
    runner = CliRunner()
    assert runner.invoke(curate, ["import", str(FIXTURE), "--store", store]).exit_code == 0
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-hybrid")
    with FakeOpenAI() as server:
        run = runner.invoke(annotate, [
            "run", "--store", store, "--backend", "hybrid", "--episodes", "0-1", "snap_s=0",
            "boundaries=openai", f"boundaries_settings.base_url={server.url}", "boundaries_settings.model=gpt-4o-mini",
            "language=openai", f"language_settings.base_url={server.url}", "language_settings.frames=4",
        ])
        assert run.exit_code == 0, run.output
        assert sorted(r.body["model"] for r in server.chat_requests()) == ["gpt-4o", "gpt-4o", "gpt-4o-mini", "gpt-4o-mini"]
    (job,) = store_tables.ledger_by_job(Store(store))
    assert job["job_id"].startswith("hybrid-") and sorted(job["models"].split(",")) == ["gpt-4o", "gpt-4o-mini"]
    rows = store_tables.ledger_rows(Store(store), job["job_id"])
    assert sorted((r["episode_id"], r["model"]) for r in rows) == sorted(
        (e, m) for e in {r["episode_id"] for r in rows} for m in ("gpt-4o", "gpt-4o-mini")
    ) and len(rows) == 4
    for r in rows:
        assert r["cost_usd"] > 0 and r["cost_usd"] == pytest.approx(cost_usd(r["model"], r["input_tokens"], r["output_tokens"]))
    # What each model cost, as `ledger --by model` prints it: the sum of that model's rows.
    listing = runner.invoke(annotate, ["ledger", "--store", store, "--by", "model"], env={"COLUMNS": "200"})
    assert listing.exit_code == 0, listing.output
    for model in ("gpt-4o", "gpt-4o-mini"):
        mine = [r for r in rows if r["model"] == model]
        line = next(line for line in listing.output.splitlines() if line.startswith(f"│ {model} "))
        cells = [c.strip() for c in line.split("│")[2:-1]]
        assert cells == ["1", "2", f"{sum(r['input_tokens'] for r in mine):,}", f"{sum(r['output_tokens'] for r in mine):,}",
                         f"{sum(r['cost_usd'] for r in mine):.4f}", "0"], line


def test_a_part_that_names_no_model_is_ledgered_as_the_model_its_decomposition_names(tmp_path, episode, vlms):
    from atomvla.annotate import store_tables
    from atomvla.annotate.jobs.runner import run_backend

    store = Store(tmp_path / "s.sqlite")
    store.upsert_episodes([episode.meta])
    hybrid = get_backend("hybrid")(HybridConfig(boundaries="heuristic", language=ScriptedVLM.name, snap_s=0))
    result = run_backend(store, hybrid, [episode.meta])
    assert result.proposed == [episode.meta.episode_id]
    (row,) = store_tables.ledger_rows(store, result.job_id)
    assert row["model"] == "scripted" and row["cost_usd"] == pytest.approx(0.002)


def test_usage_adds_up_per_model():
    a, b = Usage(10, 1, 0.1, 1, model="a"), Usage(20, 2, 0.2, 1, model="b")
    total = a + Usage() + b + a
    assert (total.input_tokens, total.requests, total.model) == (40, 3, None) and total.cost_usd == pytest.approx(0.4)
    assert [(s.model, s.input_tokens, s.requests) for s in total.by_model()] == [("a", 20, 2), ("b", 20, 1)]
    assert (a + Usage()).by_model() == (a,) and (Usage() + Usage()).model is None
    assert Usage(5, requests=1).named("c").model == "c" and (a + Usage(5, requests=1)).named("c").by_model()[1].model == "c"


def test_a_part_that_fails_leaves_what_the_other_paid_in_the_ledger(tmp_path, episode, monkeypatch):
    """The language part's server is down; the boundaries part's slower answer is billed: the failed
    episode's ledger row has it (the hybrid gave up on the first failure, before that answer came)."""
    import socket

    from fake_openai import FakeOpenAI

    from atomvla.annotate import store_tables
    from atomvla.annotate.client.retry import RetryPolicy
    from atomvla.annotate.jobs.engine import build_engine
    from atomvla.annotate.jobs.runner import arun

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-hybrid")
    store = Store(tmp_path / "s.sqlite")
    store.upsert_episodes([episode.meta])
    with FakeOpenAI(latency_s=0.5) as server:
        settings = ["boundaries=openai", f"boundaries_settings.base_url={server.url}", "boundaries_settings.frames=4",
                    "language=openai", f"language_settings.base_url={down}", "snap_s=0"]
        engine = build_engine(store, "hybrid", None, settings, retry=RetryPolicy(attempts=1))
        result = asyncio.run(arun(store, engine, [episode.meta]))
        assert len(server.chat_requests()) == 1
    assert result.failed and "1 attempts failed; last: APIConnectionError" in result.failed[0][1]
    (row,) = store_tables.ledger_rows(store, result.job_id)
    assert row["model"] == "gpt-4o" and row["cost_usd"] > 0 and row["cost_usd"] == pytest.approx(result.usage.cost_usd)


def test_an_episodes_two_ledger_rows_land_in_one_transaction(tmp_path, episode, monkeypatch):
    """A write that fails on the episode's second ledger row (a trigger in the real SQLite stands in
    for a crash between the two) leaves neither: the first row used to land alone."""
    import sqlite3

    from fake_openai import FakeOpenAI

    from atomvla.annotate import store_tables
    from atomvla.annotate.jobs.engine import build_engine
    from atomvla.annotate.jobs.runner import arun

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-hybrid")
    store = Store(tmp_path / "s.sqlite")
    store.upsert_episodes([episode.meta])
    with store.transaction() as conn:
        conn.execute(
            "CREATE TRIGGER second_row AFTER INSERT ON ledger WHEN (SELECT count(*) FROM ledger"
            " WHERE job_id = NEW.job_id AND episode_id = NEW.episode_id) > 1 BEGIN SELECT RAISE(ABORT, 'second row'); END"
        )
    with FakeOpenAI() as server:
        settings = ["boundaries=openai", f"boundaries_settings.base_url={server.url}", "boundaries_settings.model=gpt-4o-mini",
                    "boundaries_settings.frames=4", "language=openai", f"language_settings.base_url={server.url}",
                    "language_settings.frames=4", "snap_s=0"]
        engine = build_engine(store, "hybrid", None, settings)
        with pytest.raises(sqlite3.IntegrityError, match="second row"):
            asyncio.run(arun(store, engine, [episode.meta]))
        assert sorted(r.body["model"] for r in server.chat_requests()) == ["gpt-4o", "gpt-4o-mini"]
    assert store.connection().execute("SELECT count(*) FROM ledger").fetchone()[0] == 0
    assert store.history(episode.meta.episode_id) == []  # the ledger is written before the revision
