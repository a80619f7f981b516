"""List prices and token counts as the API bills them (estimates where the API has no local counter),
and the `Usage` (tokens, dollars, requests) of one episode."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Price:
    """US dollars per million tokens."""

    input_per_m: float
    output_per_m: float


# OpenAI list prices (standard tier); the Batch API bills half. Longest matching prefix wins, so
# dated snapshots (`gpt-4o-2024-08-06`) price as their family.
PRICES: dict[str, Price] = {
    "gpt-4o": Price(2.50, 10.00),
    "gpt-4o-mini": Price(0.15, 0.60),
    "gpt-4.1": Price(2.00, 8.00),
    "gpt-4.1-mini": Price(0.40, 1.60),
    "gpt-4.1-nano": Price(0.10, 0.40),
}
BATCH_DISCOUNT = 0.5

# gpt-4o bills a `detail: low` image as a flat 85 tokens; high detail 85 + 170 per 512-px tile.
LOW_DETAIL_IMAGE_TOKENS = 85
HIGH_DETAIL_TILE_TOKENS = 170
# Chat framing the API adds: per message (role, separators), and once to prime the reply.
TOKENS_PER_MESSAGE = 3
REPLY_PRIMING_TOKENS = 3
# No tokenizer ships offline (tiktoken downloads its vocabulary), so text is counted at 4
# characters per token, OpenAI's published rule of thumb for English text.
CHARS_PER_TOKEN = 4


def price_of(model: str) -> Price | None:
    """The list price of `model`, or None (a local or unknown model: its runs cost nothing here)."""
    matches = [name for name in PRICES if model == name or model.startswith(name + "-")]
    return PRICES[max(matches, key=len)] if matches else None


def cost_usd(model: str, input_tokens: int, output_tokens: int, batch: bool = False) -> float:
    price = price_of(model)
    if price is None:
        return 0.0
    dollars = (input_tokens * price.input_per_m + output_tokens * price.output_per_m) / 1e6
    return dollars * (BATCH_DISCOUNT if batch else 1.0)


def text_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def image_tokens(detail: str, width: int = 512, height: int = 512) -> int:
    if detail == "low":
        return LOW_DETAIL_IMAGE_TOKENS
    # High detail: fit in 2048x2048, shortest side to 768, then 512-px tiles.
    scale = min(1.0, 2048 / max(width, height))
    w, h = width * scale, height * scale
    scale = min(1.0, 768 / min(w, h))
    w, h = w * scale, h * scale
    return LOW_DETAIL_IMAGE_TOKENS + HIGH_DETAIL_TILE_TOKENS * math.ceil(w / 512) * math.ceil(h / 512)


def input_tokens(messages: Sequence[dict], response_format: dict | None = None, image_size: tuple[int, int] = (512, 512)) -> int:
    """Input tokens of a chat request as the API counts them: framing, text, images, and the strict
    schema (which the API adds to the prompt)."""
    total = REPLY_PRIMING_TOKENS
    for m in messages:
        total += TOKENS_PER_MESSAGE + text_tokens(m["role"])
        content = m["content"]
        if isinstance(content, str):
            total += text_tokens(content)
            continue
        for part in content:
            if part["type"] == "text":
                total += text_tokens(part["text"])
            else:
                total += image_tokens(part["image_url"].get("detail", "auto"), *image_size)
    if response_format is not None:
        total += text_tokens(json.dumps(response_format.get("json_schema", response_format)))
    return total


# The figures of a Usage that add up (all but `model` and `shares`).
TALLIES = ("input_tokens", "output_tokens", "cost_usd", "requests", "cached", "cached_cost_usd", "cached_input_tokens",
           "cached_output_tokens")


@dataclass(frozen=True)
class Usage:
    """Tokens and dollars spent on one episode; `requests` counts calls made, `cached` answers reused.

    `input_tokens`, `output_tokens` and `cost_usd` are spent now (the ledger's figures); the
    `cached_*` fields are what the reused answers cost when they were bought (live, or by a Batch
    API batch), so a decomposition's provenance carries the tokens and price of its answer however
    it was fetched (`answer_*`), and a reused answer is never billed twice in the ledger.

    `model` is the model the figures were spent on, as the ledger prices and groups them (None: not
    named). A sum over several models (a hybrid of two) has none of its own; `shares` keeps each
    model's figures, so the ledger gets a row per model.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    requests: int = 0
    cached: int = 0
    cached_cost_usd: float = 0.0
    cached_input_tokens: int = 0
    cached_output_tokens: int = 0
    model: str | None = None
    shares: tuple[Usage, ...] = ()

    def __add__(self, other: Usage) -> Usage:
        by_model: dict[str | None, Usage] = {}
        for share in (*self.by_model(), *other.by_model()):
            if share.model in by_model:
                share = Usage(*_sum(by_model[share.model], share), model=share.model)
            by_model[share.model] = share
        # Nothing spent names no model: `Usage()` added to a model's figures leaves them that model's.
        used = [u for u in by_model.values() if any(getattr(u, f) for f in TALLIES)]
        if len(used) > 1:
            return Usage(*_sum(self, other), shares=tuple(used))
        return Usage(*_sum(self, other), model=used[0].model if used else None)

    def by_model(self) -> tuple[Usage, ...]:
        """The figures of each model, in the order first spent (one Usage when one model or none)."""
        return self.shares or (self,)

    def named(self, model: str) -> Usage:
        """These figures, what no model was named for now spent on `model`."""
        return sum((s if s.model is not None else replace(s, model=model) for s in self.by_model()), Usage())

    @property
    def answer_cost_usd(self) -> float:
        return self.cost_usd + self.cached_cost_usd

    @property
    def answer_input_tokens(self) -> int:
        return self.input_tokens + self.cached_input_tokens

    @property
    def answer_output_tokens(self) -> int:
        return self.output_tokens + self.cached_output_tokens


def _sum(a: Usage, b: Usage) -> tuple:
    return tuple(getattr(a, f) + getattr(b, f) for f in TALLIES)


# What the episode being proposed has spent, request by request (the runner sets a list per
# episode): an episode that fails after paid requests still has them in the ledger and the spend.
SPENT: ContextVar[list[Usage] | None] = ContextVar("spent", default=None)


def spent(usage: Usage) -> Usage:
    """`usage` (of a request just paid for), noted as spent by the episode being proposed."""
    if (tally := SPENT.get()) is not None:
        tally.append(usage)
    return usage
