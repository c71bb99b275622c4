"""Words for what the user reads: a count with its noun in the right number."""

from __future__ import annotations

_SIBILANTS = ("s", "x", "z", "ch", "sh")


def plural(count: int, noun: str, many: str | None = None) -> str:
    """`1 image`, `2 images`, `0 images`; `many` for a noun that is not regular."""
    if count == 1:
        return f"{count} {noun}"
    if many is None:
        if noun.endswith(_SIBILANTS):
            many = f"{noun}es"
        elif noun.endswith("y") and noun[-2:-1] not in "aeiou":
            many = f"{noun[:-1]}ies"
        else:
            many = f"{noun}s"
    return f"{count} {many}"


def one_line(text: object, limit: int = 80) -> str:
    """A value from a file or another program, fit for a one-line message: whitespace (line
    breaks too) collapsed, at most `limit` characters."""
    words = " ".join(str(text).split())
    return words if len(words) <= limit else f"{words[: limit - 3]}..."
