"""The pose bank's user-fixable error (posebank imports nothing of ours, so not tools.errors)."""

from __future__ import annotations


class PoseBankError(Exception):
    """A problem the user can fix; `hint` says how. Same shape as `tools.errors.UserError`."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\nhint: {self.hint}"
