"""`--dataset-name D`: the store's datasets a command may be limited to.

A name the store does not hold is an error, not a filter that matches nothing: an empty table, an
empty export or "0 episodes" would read as an empty dataset rather than a mistyped name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from atomvla.errors import UserError

if TYPE_CHECKING:
    from atomvla.curate.store import Store


def unknown_dataset(name: str, known: Sequence[str]) -> str:
    held = ", ".join(known) if known else "no episodes"
    return f"--dataset-name {name}: the store holds no such dataset (it holds {held}; `atom-curate ls` shows each episode's)"


def dataset_names(store: Store) -> list[str]:
    rows = store.connection().execute("SELECT DISTINCT dataset FROM episodes ORDER BY dataset").fetchall()
    return [r[0] for r in rows]


def check_dataset_name(store: Store, name: str | None) -> None:
    """Refuse a `--dataset-name` the store does not hold (None: every dataset, always fine)."""
    if name is not None:
        known = dataset_names(store)
        if name not in known:
            raise UserError(f"{store.path}: {unknown_dataset(name, known)}")
