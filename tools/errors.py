"""Errors split by who fixes them.

`UserError` is something the person can fix (unknown character, bad config value): the CLIs print
its one-line message and hint, never a traceback, and exit 1. Anything else is a bug. It is
defined in `posebank.errors` (posebank imports nothing of ours), so the pose bank's
`PoseBankError` is one too and the CLIs catch the one type.
"""

from __future__ import annotations

from posebank.errors import UserError

__all__ = ["ConfigError", "UnknownCharacterError", "UserError"]


class ConfigError(UserError):
    """The config file or an override is invalid."""


class UnknownCharacterError(UserError):
    """A character name that is not in the library."""

    def __init__(self, name: str, suggestions: list[str]) -> None:
        hint = (
            f"did you mean {', '.join(suggestions)}?"
            if suggestions
            else "see `anime-gen characters list`, or add one with "
            "`anime-gen characters add NAME --image PATH`"
        )
        super().__init__(f"unknown character '{name}'", hint)
        self.name = name
        self.suggestions = suggestions
