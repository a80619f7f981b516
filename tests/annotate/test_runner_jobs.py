"""The job runner: resumable after SIGKILL, shards, budget, dry run, rate limits, the Batch API."""

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fake_openai import FakeOpenAI, marked_store, marker
from typer.testing import CliRunner

from atomvla.annotate import store_tables as annotate_tables
from atomvla.annotate.backends.openai_backend import OpenAIBackend, OpenAIConfig
from atomvla.annotate.cli import app
from atomvla.annotate.client.limiter import RateLimiter, parse_duration
from atomvla.annotate.client.pricing import cost_usd
from atomvla.annotate.client.retry import RetryPolicy
from atomvla.annotate.jobs.runner import Shard, arun
from atomvla.curate.store import Store
from atomvla.schemas import Status

DATASET = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "metaworld_lerobot_v30"
KEY = "sk-test-runner-0a1b2c"
FAST = RetryPolicy(attempts=4, base_s=0.01, cap_s=0.05, timeout_s=2.0)

runner = CliRunner()


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200", "OPENAI_API_KEY": KEY})
    assert not isinstance(result.exception, AssertionError), result.exception
    return result


@pytest.fixture
def store_path(tmp_path) -> Path:
    return tmp_path / "store.sqlite"


@pytest.fixture
def metas(store_path):
    return marked_store(store_path, DATASET)


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "Ctrl-C"])
def test_a_killed_run_resumes_asking_nothing_already_answered(store_path, metas, stop):
    env = {**os.environ, "OPENAI_API_KEY": KEY, "HF_HUB_OFFLINE": "1"}
    db = Store(store_path)
    # 1 s an answer, 2 at a time: the 11 episodes take ~6 s, so the stop lands mid-run even when a
    # loaded machine notices the 3rd stored revision late (at 0.3 s the run had sometimes finished
    # between the check and the signal, and exited 0).
    with FakeOpenAI(latency_s=1.0) as server:
        cmd = [sys.executable, "-c", "from atomvla.annotate.cli import app; app()", "run", "--store", str(store_path),
               "--backend", "openai", f"base_url={server.url}", "--concurrency", "2"]
        # Ctrl-C as a terminal sends it: a shell that started pytest in the background (`nohup ... &`)
        # ignores SIGINT, and a child that inherits that never sees the signal (it ran on, exit 0).
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.monotonic() + 60
        # An episode's answer is cached before its revision is stored: once stored, it is in the cache.
        while len(db.latest_all(author="openai")) < 3 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        stored = set(db.latest_all(author="openai"))
        answered = {marker(m.episode_index) for m in metas if m.episode_id in stored}
        assert proc.poll() is None, "the run ended before it could be stopped"
        proc.send_signal(stop)
        _, err = proc.communicate(timeout=60)
        if stop == signal.SIGKILL:
            assert proc.returncode == -signal.SIGKILL
        else:
            assert proc.returncode == 130 and "interrupted; run the same command again to resume" in err
        assert 3 <= len(answered) < len(metas)
        before = len(server.chat_requests())

        result = invoke("run", "--store", store_path, "--backend", "openai", f"base_url={server.url}", "--concurrency", "4")
        assert result.exit_code == 0, result.output
        again = server.chat_requests()[before:]
    assert not [r for r in again if any(m in r.text for m in answered)]
    latest = Store(store_path).latest_all(author="openai")
    assert len(latest) == len(metas) and all(d.status is Status.proposed for d in latest.values())


def test_shards_split_the_episodes_the_same_way_everywhere(store_path, metas):
    ids = [m.episode_id for m in metas]
    parts = [{e for e in ids if e in Shard(i, 3)} for i in range(3)]
    assert set().union(*parts) == set(ids) and sum(map(len, parts)) == len(ids)
    assert all(parts)  # 11 episodes over 3 shards: none empty
    with pytest.raises(ValueError, match="need 0 <= i < N"):
        Shard.parse("3/3")
    result = invoke("run", "--store", store_path, "--shard", "1/3")
    assert result.exit_code == 0, result.output
    assert set(Store(store_path).latest_all(author="heuristic")) == parts[1]


def test_max_cost_stops_before_the_budget_and_a_rerun_finishes(store_path, metas):
    store = Store(store_path)
    with FakeOpenAI() as server:
        os.environ["OPENAI_API_KEY"] = KEY
        try:
            engine = OpenAIBackend(OpenAIConfig(base_url=server.url), retry=FAST)
            result = asyncio.run(arun(store, engine, metas, concurrency=2, max_cost=0.02, estimate_usd=0.004))
            assert result.stopped and result.not_started
            assert result.usage.cost_usd <= 0.02
            assert len(result.proposed) + len(result.not_started) == len(metas)
            assert annotate_tables.ledger_totals(store, result.job_id)["cost_usd"] == pytest.approx(result.usage.cost_usd)
            rest = asyncio.run(arun(store, engine, metas, concurrency=2))
        finally:
            del os.environ["OPENAI_API_KEY"]
    assert sorted(rest.proposed) == sorted(result.not_started) and len(rest.skipped) == len(result.proposed)


def test_dry_run_estimates_without_asking_or_storing(store_path, metas):
    with FakeOpenAI() as server:
        result = invoke("run", "--store", store_path, "--backend", "openai", f"base_url={server.url}", "--dry-run")
        assert result.exit_code == 0, result.output
        assert server.log == []
    row = next(line for line in result.output.splitlines() if line.strip().startswith("│") and "11" in line)
    episodes, tokens_in, tokens_out, usd, batch_usd = [c.strip().replace(",", "") for c in row.strip("│ ").split("│")]
    assert int(episodes) == 11 and 1000 < float(tokens_in) < 2500
    assert float(usd) == pytest.approx(11 * cost_usd("gpt-4o", round(float(tokens_in)), round(float(tokens_out))), rel=0.02)
    assert float(batch_usd) == pytest.approx(float(usd) / 2, rel=0.02)
    assert Store(store_path).latest_all() == {}


def test_the_limiter_honours_ratelimit_headers():
    assert parse_duration("6m0s") == 360 and parse_duration("20ms") == 0.02 and parse_duration("1.5") == 1.5
    assert parse_duration("soon") is None

    async def waits() -> float:
        limiter = RateLimiter()
        limiter.update({"x-ratelimit-remaining-requests": "1", "x-ratelimit-reset-requests": "150ms"})
        start = time.monotonic()
        await limiter.acquire(10)  # the one request left
        await limiter.acquire(10)  # waits for the window to reset
        return time.monotonic() - start

    assert 0.14 <= asyncio.run(waits()) < 1.0


def test_honouring_the_ratelimit_headers_avoids_most_refusals(tmp_path, metas):
    def refusals(honour: bool) -> int:
        store = Store(tmp_path / f"{honour}.sqlite")
        store.upsert_episodes(metas)
        with FakeOpenAI(window_requests=2, window_s=0.3) as server:
            engine = OpenAIBackend(OpenAIConfig(base_url=server.url), retry=RetryPolicy(attempts=30, timeout_s=5.0))
            if not honour:  # the baseline: only retry-after is obeyed
                engine.limiter.update = lambda headers: None
            result = asyncio.run(arun(store, engine, metas, concurrency=8))
            assert len(result.proposed) == len(metas)
            return len([r for r in server.chat_requests() if r.behaviour == "window"])

    os.environ["OPENAI_API_KEY"] = KEY
    try:
        honoured, ignored = refusals(True), refusals(False)
    finally:
        del os.environ["OPENAI_API_KEY"]
    # The opening burst (8 sent, 2 allowed) is refused either way; after it, the limiter keeps to
    # the announced window while a client that ignores it is refused in every window.
    assert honoured <= 2 * ignored // 3 and honoured < ignored - 5, (honoured, ignored)


def test_batch_submit_status_collect_at_half_price(store_path, metas):
    with FakeOpenAI() as server:
        result = invoke("batch", "submit", "--store", store_path, f"base_url={server.url}", "--episodes", "0-5")
        assert result.exit_code == 0, result.output
        (batch,) = annotate_tables.batches(Store(store_path))
        assert len(batch["request"]["episodes"]) == 6 and KEY not in str(batch)
        # Submitting again adds nothing: those episodes are waiting in the open batch.
        assert "nothing to submit" in invoke("batch", "submit", "--store", store_path, f"base_url={server.url}", "--episodes", "0-5").output
        # A live run leaves them to the batch (no paying twice) and does the rest.
        live = invoke("run", "--store", store_path, "--backend", "openai", f"base_url={server.url}", "--episodes", "4-7")
        assert live.exit_code == 0 and "waiting in a Batch API batch" in live.output
        assert len(server.chat_requests()) == 2
        status = invoke("batch", "status", "--store", store_path)
        assert status.exit_code == 0 and "in_progress" in status.output
        collected = invoke("batch", "collect", "--store", store_path)
        assert collected.exit_code == 0, collected.output
        assert len(server.chat_requests()) == 2  # the batch's episodes were answered by the batch
        assert len([r for r in server.log if r.path.startswith("batch:")]) == 6
    store = Store(store_path)
    latest = store.latest_all(author="openai")
    assert sorted(latest) == sorted(batch["request"]["episodes"] + [metas[6].episode_id, metas[7].episode_id])
    rows = annotate_tables.ledger_rows(store, batch["job_id"])
    paid = [r for r in rows if not r["cached"] and r["episode_id"] in batch["request"]["episodes"]]
    assert len(paid) == 6 and all(
        r["cost_usd"] == pytest.approx(cost_usd("gpt-4o", r["input_tokens"], r["output_tokens"]) / 2) for r in paid
    )
    # Each batch-answered revision carries what its answer cost at Batch price (not 0).
    for r in paid:
        assert latest[r["episode_id"]].provenance.cost_usd == pytest.approx(r["cost_usd"]) and r["cost_usd"] > 0
    assert annotate_tables.batches(store)[0]["state"] == "collected"


def test_backoff_grows_exponentially_with_full_jitter_up_to_the_cap():
    import random

    import httpx2
    import openai

    from atomvla.annotate.client.retry import backoff_s, is_retryable, retry_after_s

    policy, rng = RetryPolicy(base_s=0.5, cap_s=4.0), random.Random(0)
    draws = {a: [backoff_s(a, policy, rng) for _ in range(200)] for a in range(6)}
    for a, values in draws.items():
        ceiling = min(4.0, 0.5 * 2**a)
        assert all(0 <= v <= ceiling for v in values) and max(values) > 0.8 * ceiling

    def error(status, headers):
        request = httpx2.Request("POST", "http://127.0.0.1/v1/chat/completions")
        response = httpx2.Response(status, headers=headers, request=request)
        return openai.APIStatusError("x", response=response, body=None) if status != 429 else openai.RateLimitError("x", response=response, body=None)

    assert retry_after_s(error(429, {"retry-after-ms": "250"})) == 0.25
    assert retry_after_s(error(429, {"retry-after": "3"})) == 3.0
    assert 0 <= retry_after_s(error(429, {"retry-after": "Thu, 01 Jan 1970 00:00:00 GMT"})) < 1  # past: now
    assert is_retryable(error(429, {})) and is_retryable(error(503, {})) and not is_retryable(error(400, {}))


def test_a_large_submit_is_split_into_files_within_the_api_limits(store_path, metas, monkeypatch):
    from atomvla.annotate.jobs import batch as batch_api

    monkeypatch.setattr(batch_api, "MAX_REQUESTS", 4)
    with FakeOpenAI() as server:
        result = invoke("batch", "submit", "--store", store_path, f"base_url={server.url}")
        assert result.exit_code == 0, result.output
        uploads = [r for r in server.log if r.path.endswith("/files")]
    batches = annotate_tables.batches(Store(store_path))
    assert [len(b["request"]["episodes"]) for b in batches] == [4, 4, 3] and len(uploads) == 3
    assert sorted(e for b in batches for e in b["request"]["episodes"]) == sorted(m.episode_id for m in metas)


def table_row(output: str, title: str) -> dict[str, str]:
    """The one data row of the rich table titled `title` in `output`, by column header."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if title in line)
    header = next(line for line in lines[start:] if line.startswith("┃"))
    row = next(line for line in lines[start:] if line.startswith("│"))
    names = [c.strip() for c in header.strip("┃").split("┃")]
    return dict(zip(names, (c.strip().replace(",", "") for c in row.strip("│").split("│"))))


def test_batch_collect_prints_what_the_ledger_records(store_path, metas):
    """The summary of `batch collect` counts the batch's answers (bought at Batch price by the
    collect) and a live repair, as the ledger does; it printed $0 and 0 tokens."""
    with FakeOpenAI() as server:
        server.plans = {marker(1): ["nonjson", "ok"]}  # the batch's answer is prose; its repair goes live
        assert invoke("batch", "submit", "--store", store_path, f"base_url={server.url}", "--episodes", "0-2").exit_code == 0
        assert invoke("batch", "status", "--store", store_path).exit_code == 0
        collected = invoke("batch", "collect", "--store", store_path)
        assert collected.exit_code == 0, collected.output
        assert [(r.path.startswith("batch:"), r.behaviour) for r in server.log if marker(1) in r.text] == [
            (True, "nonjson"), (False, "ok")
        ]
    store = Store(store_path)
    (job,) = annotate_tables.ledger_by_job(store)
    rows = annotate_tables.ledger_rows(store, job["job_id"])
    batch_usd = sum(r["cost_usd"] for r in rows if not r["cached"])
    live_usd = sum(r["cost_usd"] for r in rows if r["cached"])
    assert live_usd > 0 and batch_usd == pytest.approx(
        sum(cost_usd("gpt-4o", r["input_tokens"], r["output_tokens"]) / 2 for r in rows if not r["cached"])
    )
    printed = table_row(collected.output, "atom-annotate batch collect")
    assert printed["proposed"] == "3" and printed["cached answers"] == str(job["cached"]) == "3"
    assert int(printed["input tokens"]) == job["input_tokens"] and int(printed["output tokens"]) == job["output_tokens"]
    assert printed["$ spent"] == f"{job['cost_usd']:.4f}" != "0.0000"


def test_max_cost_stops_a_hybrid_on_what_its_paid_part_spends(store_path, metas):
    """A hybrid's paid part is estimated (dry run) and reserved (--max-cost) like the openai backend:
    the hybrid estimated $0, so 4 episodes started at once and spent twice the budget."""
    with FakeOpenAI() as server:
        hybrid = ["--backend", "hybrid", "boundaries=heuristic", "language=openai", "snap_s=0",
                  f"language_settings.base_url={server.url}"]
        openai = ["--backend", "openai", f"base_url={server.url}"]
        dry = [table_row(invoke("run", "--store", store_path, *args, "--dry-run").output, "--dry-run") for args in (hybrid, openai)]
        assert dry[0]["input tokens/episode"] == dry[1]["input tokens/episode"] and float(dry[0]["$ (hybrid)"]) > 0
        assert dry[0]["$ (hybrid)"] == dry[1]["$ (gpt-4o)"] and dry[0]["$ Batch API"] == dry[1]["$ Batch API"]
        run = invoke("run", "--store", store_path, *hybrid, "--max-cost", "0.012", "--concurrency", "4")
        assert run.exit_code == 1 and "stopped before passing --max-cost $0.012 (spent $" in run.output
        rest = invoke("run", "--store", store_path, *hybrid, "--concurrency", "4")
        assert rest.exit_code == 0, rest.output
    store = Store(store_path)
    (job,) = annotate_tables.ledger_by_job(store)
    first = table_row(run.output, "atom-annotate run: hybrid")
    assert 0 < float(first["$ spent"]) <= 0.012 and f"(spent ${float(first['$ spent']):.4f})" in run.output
    assert job["cost_usd"] > 0.012 and len(store.latest_all(author="hybrid")) == len(metas)


def test_max_cost_counts_what_a_run_pays_not_the_answers_a_batch_bought(store_path, metas):
    """Answers a batch bought are reused at no cost, so a budget below their price still proposes
    them all, and stops on the live spend."""
    with FakeOpenAI() as server:
        assert invoke("batch", "submit", "--store", store_path, f"base_url={server.url}", "--episodes", "0-5").exit_code == 0
        assert invoke("batch", "status", "--store", store_path).exit_code == 0
        assert invoke("batch", "collect", "--store", store_path).exit_code == 0
        bought = annotate_tables.ledger_totals(Store(store_path))["cost_usd"]
        run = invoke("run", "--store", store_path, "--backend", "openai", f"base_url={server.url}", "--again",
                     "--max-cost", "0.012", "--concurrency", "1")
        assert run.exit_code == 1 and "stopped before passing --max-cost" in run.output
        live = len(server.chat_requests())
    store = Store(store_path)
    spent = annotate_tables.ledger_totals(store)["cost_usd"] - bought
    assert bought > 0.012 and 0 < spent <= 0.012 and live == 2
    printed = table_row(run.output, "atom-annotate run: openai")
    assert printed["proposed"] == "8" and printed["cached answers"] == "6" and printed["$ spent"] == f"{spent:.4f}"
