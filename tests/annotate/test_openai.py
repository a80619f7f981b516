"""The `openai` backend with the real client against a local server that speaks the protocol and
injects the faults a real API has. No network."""

import asyncio
from pathlib import Path

import pytest
from fake_openai import FakeOpenAI, marked_store, marker
from typer.testing import CliRunner

from atomvla.annotate import store_tables as annotate_tables
from atomvla.annotate.backends.openai_backend import OpenAIBackend, OpenAIConfig
from atomvla.annotate.cli import app
from atomvla.annotate.client.cache import ResponseCache
from atomvla.annotate.client.pricing import input_tokens
from atomvla.annotate.client.retry import RetryPolicy
from atomvla.annotate.jobs.runner import arun
from atomvla.curate.cli import app as curate_app
from atomvla.curate.store import Store
from atomvla.schemas import Status, decomposition_json_schema

DATASET = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "metaworld_lerobot_v30"
KEY = "sk-test-9f8e7d6c5b4a"
FAST = RetryPolicy(attempts=3, base_s=0.01, cap_s=0.05, timeout_s=0.5)

runner = CliRunner()


def invoke(*args, env=None, command=app):
    result = runner.invoke(command, [str(a) for a in args], env={"COLUMNS": "200", **(env or {})})
    assert not isinstance(result.exception, AssertionError), result.exception
    return result


@pytest.fixture
def metas(tmp_path):
    return marked_store(tmp_path / "store.sqlite", DATASET)


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    return KEY


def backend(server, store_path=None, **settings) -> OpenAIBackend:
    cache = ResponseCache.beside(store_path) if store_path is not None else None
    return OpenAIBackend(OpenAIConfig(base_url=server.url, **settings), cache=cache, retry=FAST)


def test_every_fault_ends_proposed_or_failed_with_a_reason(tmp_path, metas, key):
    plans = {
        0: ["429", "ok"],
        1: ["500", "ok"],
        2: ["hang", "ok"],
        3: ["nonjson", "ok"],
        4: ["seven", "seven"],
        5: ["overlap", "ok"],
        6: ["out_of_range", "out_of_range"],
        7: ["slow", "ok"],
        8: ["garbage_body"],
        9: ["500", "500", "500"],
    }
    store = Store(tmp_path / "store.sqlite")
    with FakeOpenAI(hang_s=1.0, slow_s=0.2, retry_after_s=0.05) as server:
        server.plans = {marker(i): list(p) for i, p in plans.items()}
        result = asyncio.run(arun(store, backend(server, store.path), metas, concurrency=4))
        requests = {i: server.chat_requests(marker(i)) for i in range(len(metas))}

    latest = store.latest_all(author="openai")
    errors = annotate_tables.job_errors(store, result.job_id)
    ids = {m.episode_index: m.episode_id for m in metas}
    for i, episode_id in ids.items():  # every episode ends proposed, or failed with its reason
        dec = latest.get(episode_id)
        assert (dec is not None and dec.status is Status.proposed) or (dec is not None and dec.note) or errors.get(episode_id)

    assert {ids[i] for i in (0, 1, 2, 3, 5, 7, 10)} == set(result.proposed)
    assert [r.behaviour for r in requests[0]] == ["429", "ok"]  # retried after retry-after
    assert [r.behaviour for r in requests[1]] == ["500", "ok"]
    assert [r.behaviour for r in requests[2]] == ["hang", "ok"]  # timed out, retried
    # A bad answer gets one repair request quoting what was wrong.
    repair = requests[3][1].body["messages"][-1]["content"]
    assert "the answer is not JSON" in repair
    assert "(an overlap); subtasks must be contiguous" in requests[5][1].body["messages"][-1]["content"]
    assert requests[5][1].body["messages"][-2]["role"] == "assistant"
    # Still bad after the repair: stored as failed, with the validator's reason and the tokens spent.
    assert latest[ids[4]].status is Status.failed and "has 7 subtasks" in latest[ids[4]].note
    assert latest[ids[6]].status is Status.failed and "past n_frames" in latest[ids[6]].note
    assert latest[ids[4]].provenance.tokens_in > 0 and len(requests[4]) == 2
    # Server faults that outlive the retries: a job item failed with the reason, no revision.
    assert ids[8] not in latest and "not a chat completion" in errors[ids[8]]
    assert ids[9] not in latest and "3 attempts failed; last: HTTP 500" in errors[ids[9]]
    # Every answered episode is in the ledger at GPT-4o prices.
    rows = {r["episode_id"]: r for r in annotate_tables.ledger_rows(store, result.job_id)}
    assert set(rows) == {ids[i] for i in (0, 1, 2, 3, 4, 5, 6, 7, 10)}
    assert all(r["model"] == "gpt-4o" and r["cost_usd"] > 0 for r in rows.values())
    assert annotate_tables.ledger_totals(store, result.job_id)["cost_usd"] == pytest.approx(result.usage.cost_usd)


def test_requests_are_low_detail_frames_labelled_with_their_numbers_and_a_strict_schema(tmp_path, metas, key):
    store = Store(tmp_path / "store.sqlite")
    with FakeOpenAI() as server:
        asyncio.run(arun(store, backend(server), metas[:1], concurrency=1))
        (request,) = server.chat_requests()
        auth = [h["authorization"] for h in server.headers_seen]
    body = request.body
    assert body["model"] == "gpt-4o" and auth == [f"Bearer {KEY}"]
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "decomposition", "strict": True, "schema": decomposition_json_schema()},
    }
    system, user = body["messages"]
    assert "reach, pick, place" in system["content"]
    parts = user["content"]
    assert metas[0].task in parts[0]["text"] and f"{metas[0].n_frames} frames" in parts[0]["text"]
    images = [i for i, p in enumerate(parts) if p["type"] == "image_url"]
    assert 14 <= len(images) <= 20
    labels = [int(parts[i - 1]["text"].removeprefix("Frame ").removesuffix(":")) for i in images]
    assert labels == sorted(set(labels)) and labels[0] == 0 and labels[-1] == metas[0].n_frames - 1
    assert all(parts[i]["image_url"]["detail"] == "low" for i in images)
    assert all(parts[i]["image_url"]["url"].startswith("data:image/jpeg;base64,") for i in images)


def test_coarse_to_fine_re_asks_each_boundary_with_dense_frames(tmp_path, metas, key):
    store = Store(tmp_path / "store.sqlite")
    with FakeOpenAI() as server:
        result = asyncio.run(arun(store, backend(server, coarse_to_fine=True, dense_frames=5), metas[:1]))
        _, *refines = server.chat_requests()
    dec = store.latest(metas[0].episode_id)
    assert result.proposed == [metas[0].episode_id]
    assert len(refines) == len(dec.subtasks) - 1 == 2
    windows = sorted([int(line[6:-1]) for line in r.text.splitlines() if line.startswith("Frame ")] for r in refines)
    assert all(r.body["response_format"]["json_schema"]["name"] == "boundary" for r in refines)
    assert [len(w) for w in windows] == [5, 5]
    assert dec.boundaries == [w[2] for w in windows]  # the fake answers the middle frame shown
    assert dec.provenance.tokens_in == result.usage.input_tokens  # the coarse request and both refinements


def test_answers_paid_before_an_episode_fails_are_in_the_ledger_and_the_spend(tmp_path, metas, key):
    """The coarse answer is billed; its refinements then fail past the retries: the failed episode's
    spend is ledgered and counted (it was dropped: a billed answer in no ledger, outside --max-cost)."""
    store = Store(tmp_path / "store.sqlite")
    with FakeOpenAI() as server:
        server.plans = {marker(0): ["ok"] + ["500"] * 2 * FAST.attempts}
        result = asyncio.run(arun(store, backend(server, store.path, coarse_to_fine=True), metas[:1]))
        (coarse,) = [r for r in server.chat_requests() if r.status == 200]
    assert result.failed and "attempts failed; last: HTTP 500" in result.failed[0][1]
    (row,) = annotate_tables.ledger_rows(store, result.job_id)
    assert row["model"] == "gpt-4o" and row["cost_usd"] > 0 and row["cost_usd"] == pytest.approx(result.usage.cost_usd)
    assert row["input_tokens"] == input_tokens(coarse.body["messages"], coarse.body["response_format"])


def test_an_exhausted_quota_is_not_retried(tmp_path, metas, key):
    # A 429 with code insufficient_quota is not a rate limit: retrying it only waits and asks again.
    store = Store(tmp_path / "store.sqlite")
    with FakeOpenAI() as server:
        server.plans = {marker(0): ["quota", "ok"]}
        result = asyncio.run(arun(store, backend(server, store.path), metas[:2], concurrency=2))
        assert [r.behaviour for r in server.chat_requests(marker(0))] == ["quota"]
    assert result.proposed == [metas[1].episode_id]
    assert "exceeded your current quota" in annotate_tables.job_errors(store, result.job_id)[metas[0].episode_id]


def test_a_failed_answer_is_asked_again_by_again_not_replayed_from_the_cache(tmp_path, metas, key):
    path = tmp_path / "store.sqlite"
    args = ["run", "--store", path, "--backend", "openai", "--episodes", "0"]
    with FakeOpenAI() as server:
        server.plans = {marker(0): ["nonjson", "nonjson", "ok"]}
        args += [f"base_url={server.url}"]
        assert invoke(*args).exit_code == 1  # the answer and its repair were not JSON: failed
        assert invoke(*args, "--again").exit_code == 0
        assert [r.behaviour for r in server.chat_requests(marker(0))] == ["nonjson", "nonjson", "ok"]
    assert [d.status for d in Store(path).history(metas[0].episode_id)] == [Status.failed, Status.proposed]


def test_a_rerun_asks_nothing_already_answered(tmp_path, metas, key):
    path = tmp_path / "store.sqlite"
    args = ["run", "--store", path, "--backend", "openai", "--concurrency", "4"]
    with FakeOpenAI() as server:
        args += [f"base_url={server.url}"]
        assert invoke(*args).exit_code == 0
        first = len(server.chat_requests())
        assert invoke(*args, "--again").exit_code == 0  # proposes again, from the cache
        assert len(server.chat_requests()) == first == len(metas)
    store = Store(path)
    assert all(len(store.history(m.episode_id)) == 2 for m in metas)
    totals = annotate_tables.ledger_totals(store)
    assert totals["cached"] == len(metas) and totals["rows"] == 2 * len(metas)
    # The ledger counts tokens billed: a reused answer adds none (it added them a second time), while
    # each revision's provenance still carries what its answer cost.
    (job,) = annotate_tables.ledger_by_job(store)
    reused = [r for r in annotate_tables.ledger_rows(store, job["job_id"]) if r["cached"]]
    assert len(reused) == len(metas) and {(r["input_tokens"], r["output_tokens"], r["cost_usd"]) for r in reused} == {(0, 0, 0.0)}
    for m in metas:
        first, again = (d.provenance for d in store.history(m.episode_id))
        assert (again.tokens_in, again.tokens_out, again.cost_usd) == (first.tokens_in, first.tokens_out, first.cost_usd) != (0, 0, 0.0)
    assert job["cost_usd"] == pytest.approx(totals["cost_usd"]) and job["models"] == "gpt-4o"
    listing = invoke("ledger", "--store", path)
    assert listing.exit_code == 0 and job["job_id"] in listing.output and f"{job['cost_usd']:.4f}" in listing.output
    per_episode = invoke("ledger", "--store", path, "--job", job["job_id"])
    assert per_episode.exit_code == 0 and all(m.episode_id in per_episode.output for m in metas)
    assert invoke("ledger", "--store", path, "--job", "nope").exit_code == 2


def test_a_missing_key_is_one_line_before_any_work(tmp_path, metas, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    path = tmp_path / "store.sqlite"
    with FakeOpenAI() as server:
        result = invoke("run", "--store", path, "--backend", "openai", f"base_url={server.url}")
        assert result.exit_code == 2
        assert result.output.strip().splitlines() == [
            "error: no API key: set OPENAI_API_KEY, or name the variable with --api-key-env"
        ]
        result = invoke("run", "--store", path, "--backend", "openai", f"base_url={server.url}", "--api-key-env", "TEAM_KEY")
        assert result.exit_code == 2 and result.output.strip() == "error: no API key: set TEAM_KEY"
        assert server.log == []
        # The named variable is the one read.
        result = invoke("run", "--store", path, "--backend", "openai", f"base_url={server.url}", "--api-key-env",
                        "TEAM_KEY", "--episodes", "0", env={"TEAM_KEY": KEY})
        assert result.exit_code == 0, result.output
        assert {h["authorization"] for h in server.headers_seen} == {f"Bearer {KEY}"}
    assert annotate_tables.job_items(Store(path), "nonexistent") == []


def test_the_key_never_reaches_logs_store_cache_or_exports(tmp_path, metas, key):
    path = tmp_path / "store.sqlite"
    with FakeOpenAI(retry_after_s=0.01) as server:
        server.plans = {marker(0): ["429", "nonjson", "ok"], marker(1): ["seven", "seven"]}
        result = invoke("run", "--store", path, "--backend", "openai", f"base_url={server.url}", "-v", "--concurrency", "2")
        assert result.exit_code == 1  # episode 1 failed
        assert "has 7 subtasks" in result.output and "HTTP Request: POST" in result.output  # logs were on
    assert invoke("export", tmp_path / "out.jsonl", "--store", path, command=curate_app).exit_code == 0
    assert KEY not in result.output
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".json" for p in files) and (tmp_path / "out.jsonl") in files
    for p in files:
        assert KEY.encode() not in p.read_bytes(), p


def test_a_saved_profile_sets_the_frames_sent(tmp_path, metas, key):
    path = tmp_path / "store.sqlite"
    annotate_tables.save_profile(Store(path), "openai", "cheap", {"frames": 6, "kinematic_events": False})
    with FakeOpenAI() as server:
        result = invoke("run", "--store", path, "--backend", "openai", f"base_url={server.url}", "--profile", "cheap", "--episodes", "0")
        assert result.exit_code == 0, result.output
        (request,) = server.chat_requests()
    assert sum(p["type"] == "image_url" for p in request.body["messages"][1]["content"]) == 6
    result = invoke("run", "--store", path, "--backend", "openai", "--profile", "nope")
    assert result.exit_code == 2 and "no openai profile 'nope' (profiles: cheap)" in result.output
    result = invoke("run", "--store", path, "--backend", "heuristic", "model=gpt-4o")
    assert result.exit_code == 2 and "the heuristic backend has no setting 'model'" in result.output


def test_synchronous_callers_get_a_client_per_event_loop(metas, key):
    from atomvla.curate.episode import Episode

    with FakeOpenAI() as server:
        engine = backend(server)
        first, second = (engine.propose(Episode(m)) for m in metas[:2])  # each call runs its own loop
        assert len(server.chat_requests()) == 2
    assert first.status is second.status is Status.proposed


def test_an_episode_without_the_camera_fails_alone_before_any_request(tmp_path, metas, key):
    store = Store(tmp_path / "store.sqlite")
    blind = metas[1].model_copy(update={"episode_id": "blind/0", "dataset": "blind", "cameras": ()})
    store.upsert_episodes([blind])
    with FakeOpenAI() as server:
        result = asyncio.run(arun(store, backend(server), [metas[0], blind]))
        assert len(server.chat_requests()) == 1
    assert result.proposed == [metas[0].episode_id]
    assert result.failed == [("blind/0", result.failed[0][1])] and "has no camera" in result.failed[0][1]
    with FakeOpenAI() as server:
        result = asyncio.run(arun(store, backend(server, camera="wrist"), metas[:1]))
    assert "no camera 'wrist' (has observation.images.corner)" in result.failed[0][1]


def test_cache_keys_follow_the_frames_not_the_jpeg_bytes(metas, monkeypatch):
    """Another JPEG encoder build (here: the same PIL with other encoder options) writes other bytes
    for the same frames; the response cache must still find the answer."""
    from PIL import Image

    from atomvla.annotate.vlm import response_format
    from atomvla.curate.episode import Episode

    engine = OpenAIBackend(OpenAIConfig())

    def request(meta):
        messages, _ = engine.request(Episode(meta))
        urls = [str(p["image_url"]["url"]) for m in messages if isinstance(m["content"], list)
                for p in m["content"] if p["type"] == "image_url"]
        return engine.cache_key(engine.body(messages, response_format())), urls

    key, urls = request(metas[0])
    save = Image.Image.save
    monkeypatch.setattr(Image.Image, "save", lambda self, fp, format=None, **kw: save(
        self, fp, format=format, **{**kw, "optimize": True, "progressive": True}))
    again, other_urls = request(metas[0])
    assert len(urls) == len(other_urls) > 2 and all(a != b for a, b in zip(urls, other_urls))
    assert again == key
    assert request(metas[1])[0] != key
