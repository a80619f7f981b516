"""The ledger: an episode's rows land all or none, and `atom-annotate ledger --by model` prints
what each model cost over every job (or one), from the rows the runner writes."""

import sqlite3

import pytest
from typer.testing import CliRunner

from atomvla.annotate import store_tables
from atomvla.annotate.cli import app
from atomvla.annotate.store_tables import Spend
from atomvla.curate.store import Store

# Two jobs: a hybrid of gpt-4o-mini and gpt-4o (two rows an episode), then a gpt-4o job that
# reused one answer from the cache, and a local model served at $0.
SPENDS = {
    ("hybrid-1", "ds/0"): [Spend("gpt-4o-mini", 1200, 80, 0.00023), Spend("gpt-4o", 3400, 150, 0.01000)],
    ("hybrid-1", "ds/1"): [Spend("gpt-4o-mini", 1100, 90, 0.00022), Spend("gpt-4o", 3100, 140, 0.00915)],
    ("openai-2", "ds/0"): [Spend("gpt-4o", 0, 0, 0.0, cached=1)],
    ("openai-2", "ds/2"): [Spend("gpt-4o", 2900, 120, 0.00845)],
    ("vllm-3", "ds/2"): [Spend("Qwen/Qwen2.5-VL-7B-Instruct", 5000, 300, 0.0)],
}


@pytest.fixture
def store_path(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    for (job, episode), spends in SPENDS.items():
        store_tables.add_ledger_rows(store, job, episode, spends)
    store.close()
    return tmp_path / "s.sqlite"


def printed_rows(*args) -> list[list[str]]:
    result = CliRunner().invoke(app, ["ledger", *map(str, args)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    # The header's cells are between heavy rules (┃), the body's between light ones (│).
    lines = [line.replace("┃", "│") for line in result.output.splitlines()]
    return [[c.strip() for c in line.split("│")[1:-1]] for line in lines if line.startswith("│")]


def model_totals(path, jobs: list[str]) -> list[list[str]]:
    store = Store(path)
    rows = [dict(r, job_id=job) for job in jobs for r in store_tables.ledger_rows(store, job)]
    out = []
    for model in {r["model"] for r in rows}:
        mine = [r for r in rows if r["model"] == model]
        out.append((-sum(r["cost_usd"] for r in mine), model, [
            model, str(len({r["job_id"] for r in mine})), str(len({r["episode_id"] for r in mine})),
            f"{sum(r['input_tokens'] for r in mine):,}", f"{sum(r['output_tokens'] for r in mine):,}",
            f"{sum(r['cost_usd'] for r in mine):.4f}", str(sum(r["cached"] for r in mine)),
        ]))
    return [cells for _, _, cells in sorted(out)]


def test_by_model_prints_each_models_totals_over_every_job(store_path):
    rows = printed_rows("--store", store_path, "--by", "model")
    assert rows[0] == ["model", "jobs", "episodes", "input tokens", "output tokens", "$", "cached answers"]
    assert rows[1:] == model_totals(store_path, ["hybrid-1", "openai-2", "vllm-3"])
    # The figures by hand: gpt-4o was paid in two jobs, on three episodes, one answer reused.
    assert rows[1] == ["gpt-4o", "2", "3", "9,400", "410", "0.0276", "1"]
    assert rows[-1] == ["Qwen/Qwen2.5-VL-7B-Instruct", "1", "1", "5,000", "300", "0.0000", "0"]


def test_by_model_over_one_job_and_the_default_stays_per_job(store_path):
    rows = printed_rows("--store", store_path, "--by", "model", "--job", "hybrid-1")
    assert rows[1:] == model_totals(store_path, ["hybrid-1"])
    assert [r[0] for r in rows[1:]] == ["gpt-4o", "gpt-4o-mini"]
    per_job = printed_rows("--store", store_path)
    assert [r[0] for r in per_job[1:]] == ["hybrid-1", "openai-2", "vllm-3"]
    result = CliRunner().invoke(app, ["ledger", "--store", str(store_path), "--by", "model", "--job", "nope"],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 2 and "no ledger rows for job 'nope'" in result.output


def test_an_episodes_rows_land_all_or_none(tmp_path):
    """The second row breaks a constraint (a model is required): the first does not land either."""
    store = Store(tmp_path / "s.sqlite")
    with pytest.raises(sqlite3.IntegrityError, match="NOT NULL constraint failed: ledger.model"):
        store_tables.add_ledger_rows(store, "hybrid-1", "ds/0", [Spend("gpt-4o-mini", 1200, 80, 0.00023),
                                                                  Spend(None, 3400, 150, 0.01)])
    assert store_tables.ledger_rows(store, "hybrid-1") == []
    store_tables.add_ledger_rows(store, "hybrid-1", "ds/0", SPENDS[("hybrid-1", "ds/0")])
    assert [(r["model"], r["cost_usd"]) for r in store_tables.ledger_rows(store, "hybrid-1")] == [
        ("gpt-4o-mini", 0.00023), ("gpt-4o", 0.01)]
