"""Errors the person can fix, for the whole tree.

`UserError` is the one base every CLI catches: it prints `error: message` and `hint: ...`, exit
1, no traceback. It lives here, at the bottom of `assistant -> tools -> posebank`, because
posebank imports nothing of ours; `tools.errors` re-exports it.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix; `hint` says how."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\nhint: {self.hint}"


class PoseBankError(UserError):
    """A pose bank problem the user can fix (unknown pose, bad pose file, empty query)."""
