"""The OpenAI Batch API for half-price runs: submit the first request of each episode, poll, collect.

`submit` writes one JSONL line per episode (custom_id = episode id; the same body a live run
sends), uploads it (split so no file passes the API's limits) and records each batch in the
store. `collect` downloads finished output into the response cache, at Batch prices in the
ledger; the ordinary runner then proposes those episodes from the cache (a repair or a
coarse-to-fine request, if needed, goes to the live API).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import openai

from atomvla.annotate import store_tables
from atomvla.annotate.backends.openai_backend import OpenAIBackend, OpenAIConfig
from atomvla.annotate.client.cache import ResponseCache
from atomvla.annotate.client.pricing import Usage, cost_usd
from atomvla.annotate.jobs.runner import job_id, pending
from atomvla.annotate.vlm import response_format
from atomvla.curate.episode import Episode
from atomvla.curate.store import Store
from atomvla.schemas import EpisodeMeta

log = logging.getLogger(__name__)

ENDPOINT = "/v1/chat/completions"
# The API takes up to 50,000 requests and 200 MB per input file; stay a little under the size.
MAX_REQUESTS = 50_000
MAX_BYTES = 190 << 20
# Batch states after which nothing more comes from the API (`collected`: ours, once a completed
# batch's answers are cached); episodes of an ENDED batch can be submitted again.
ENDED = ("failed", "expired", "cancelled", "collected")


def sync_client(backend: OpenAIBackend) -> openai.OpenAI:
    backend.check_key()
    return openai.OpenAI(api_key=os.environ[backend.api_key_env], base_url=backend.config.base_url)  # type: ignore[attr-defined]


def backend_of(batch: dict, api_key_env: str, cache: ResponseCache | None) -> OpenAIBackend:
    """The backend a batch was submitted with (its settings are stored with it)."""
    return OpenAIBackend(OpenAIConfig.model_validate(batch["request"]["settings"]), api_key_env=api_key_env, cache=cache)


def open_episodes(store: Store, job: str) -> set[str]:
    """Episodes of this job in a batch that will answer or has answered (until collected, when the
    answers are in the cache)."""
    return {e for b in store_tables.batches(store) if b["job_id"] == job and b["state"] not in ENDED for e in b["request"]["episodes"]}


def submit(store: Store, backend: OpenAIBackend, episodes: Sequence[EpisodeMeta], client: openai.OpenAI) -> list[str]:
    """Batch ids submitted for the episodes that need an answer (not proposed, not a person's work,
    not cached, not queued).

    Each batch is uploaded as soon as it is full, so memory holds one input file at most.
    """
    job = job_id(backend)
    todo = pending(store, backend, episodes, overwrite=False).todo
    queued = open_episodes(store, job)
    batch_ids: list[str] = []
    chunk: list[tuple[str, str, str]] = []  # (episode id, cache key, JSONL line)
    size = 0
    for meta in todo:
        if meta.episode_id in queued:
            continue
        messages, _ = backend.request(Episode(meta))
        body = backend.body(messages, response_format())
        key = backend.cache_key(body)
        if backend.cache is not None and backend.cache.get(key) is not None:
            continue
        line = json.dumps({"custom_id": meta.episode_id, "method": "POST", "url": ENDPOINT, "body": body})
        if chunk and (len(chunk) >= MAX_REQUESTS or size + len(line) + 1 > MAX_BYTES):
            batch_ids.append(_upload(store, backend, client, job, chunk))
            chunk, size = [], 0
        chunk.append((meta.episode_id, key, line))
        size += len(line) + 1
    if chunk:
        batch_ids.append(_upload(store, backend, client, job, chunk))
    return batch_ids


def _upload(store: Store, backend: OpenAIBackend, client: openai.OpenAI, job: str, chunk: list[tuple[str, str, str]]) -> str:
    """One input file and its batch, recorded in the store with what collecting it needs."""
    store_tables.start_job(store, job, backend.name, backend.config.model_dump(mode="json"), [e for e, _, _ in chunk])
    payload = ("\n".join(line for _, _, line in chunk) + "\n").encode()
    uploaded = client.files.create(file=("atomvla-batch.jsonl", payload), purpose="batch")
    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint=ENDPOINT, completion_window="24h", metadata={"atomvla_job": job}
    )
    store_tables.add_batch(
        store,
        batch.id,
        job,
        batch.status,
        {
            "episodes": [e for e, _, _ in chunk],
            "keys": {e: k for e, k, _ in chunk},
            "input_file_id": uploaded.id,
            "model": backend.model,
            "settings": backend.config.model_dump(mode="json"),
        },
    )
    log.info("submitted %s: %d episodes", batch.id, len(chunk))
    return batch.id


@dataclass
class BatchState:
    batch_id: str
    state: str
    total: int
    completed: int
    failed: int


ClientFor = Callable[[dict], openai.OpenAI]  # batch row -> a client of the server it went to


def refresh(store: Store, client_for: ClientFor) -> list[BatchState]:
    """Every batch in the store, its state updated from the API unless already finished."""
    states = []
    for b in store_tables.batches(store):
        if b["state"] in ENDED:
            n = len(b["request"]["episodes"])
            states.append(BatchState(b["batch_id"], b["state"], n, n if b["state"] == "collected" else 0, 0))
            continue
        remote = client_for(b).batches.retrieve(b["batch_id"])
        if remote.status != b["state"]:
            store_tables.set_batch_state(store, b["batch_id"], remote.status)
        counts = remote.request_counts
        states.append(
            BatchState(b["batch_id"], remote.status, counts.total if counts else 0, counts.completed if counts else 0, counts.failed if counts else 0)
        )
    return states


@dataclass
class Collected:
    answered: dict[str, list[str]] = field(default_factory=dict)  # job id -> episodes whose answer is now cached
    settings: dict[str, dict] = field(default_factory=dict)  # job id -> the backend settings of its batches
    spent: dict[str, Usage] = field(default_factory=dict)  # job id -> what its answers cost at Batch price (in the ledger)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (episode id, why)
    waiting: list[str] = field(default_factory=list)  # batch ids not finished yet


def collect(store: Store, cache: ResponseCache, client_for: ClientFor) -> Collected:
    """Cache the answers of every completed batch and record their Batch-price cost in the ledger."""
    out = Collected()
    refresh(store, client_for)
    for b in store_tables.batches(store):
        if b["state"] in ENDED:
            continue
        if b["state"] != "completed":
            out.waiting.append(b["batch_id"])
            continue
        client = client_for(b)
        remote = client.batches.retrieve(b["batch_id"])
        request = b["request"]
        job, model, keys = b["job_id"], request["model"], request["keys"]
        out.settings[job] = request["settings"]
        answered = out.answered.setdefault(job, [])
        seen = set()
        lines = client.files.content(remote.output_file_id).text.splitlines() if remote.output_file_id else []
        for line in filter(str.strip, lines):
            item = json.loads(line)
            episode_id = item["custom_id"]
            seen.add(episode_id)
            response = item.get("response") or {}
            if item.get("error") or response.get("status_code") != 200:
                out.errors.append((episode_id, f"batch {b['batch_id']}: {item.get('error') or response.get('status_code')}"))
                continue
            body = response["body"]
            message = body["choices"][0]["message"]
            text = message.get("content") or message.get("refusal") or ""
            tokens_in, tokens_out = body["usage"]["prompt_tokens"], body["usage"]["completion_tokens"]
            cost = cost_usd(model, tokens_in, tokens_out, batch=True)
            cache.put(keys[episode_id], {"text": text, "input_tokens": tokens_in, "output_tokens": tokens_out, "model": model,
                                         "cost_usd": cost})
            store_tables.add_ledger(store, job, episode_id, model, tokens_in, tokens_out, cost, 0)
            out.spent[job] = out.spent.get(job, Usage()) + Usage(tokens_in, tokens_out, cost, requests=1, model=model)
            answered.append(episode_id)
        for episode_id in request["episodes"]:
            if episode_id not in seen:
                out.errors.append((episode_id, f"batch {b['batch_id']}: no answer in the output file"))
        store_tables.set_batch_state(store, b["batch_id"], "collected")
    return out
