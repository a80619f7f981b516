"""The one base of every error a user can act on.

The console scripts catch `UserError` and print its message on one line (exit 2), never a
traceback; anything else is a bug and keeps its traceback. Area errors subclass it (and the
builtin they were before, e.g. `ValueError`, so existing handlers still match).
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input, a missing file, an unknown name: the message says what is wrong and what to do."""

    def __str__(self) -> str:
        # KeyError subclasses would otherwise print their message in quotes.
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()
