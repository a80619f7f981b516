"""The ledger: an episode's rows land all or none."""

import sqlite3

import pytest

from atomvla.annotate import store_tables
from atomvla.annotate.store_tables import Spend
from atomvla.curate.store import Store


def test_an_episodes_rows_land_all_or_none(tmp_path):
    """The second row breaks a constraint (a model is required): the first does not land either."""
    store = Store(tmp_path / "s.sqlite")
    with pytest.raises(sqlite3.IntegrityError, match="NOT NULL constraint failed: ledger.model"):
        store_tables.add_ledger_rows(store, "hybrid-1", "ds/0", [Spend("gpt-4o-mini", 1200, 80, 0.00023),
                                                                  Spend(None, 3400, 150, 0.01)])
    assert store_tables.ledger_rows(store, "hybrid-1") == []
    store_tables.add_ledger_rows(store, "hybrid-1", "ds/0", [Spend("gpt-4o-mini", 1200, 80, 0.00023), Spend("gpt-4o", 3400, 150, 0.01)])
    assert [(r["model"], r["cost_usd"]) for r in store_tables.ledger_rows(store, "hybrid-1")] == [
        ("gpt-4o-mini", 0.00023), ("gpt-4o", 0.01)]
