"""The answer to one request: what was made, where, how long, what was rejected and why.

Also draws a contact sheet for multi-image results and inline thumbnails for terminals that speak
an image protocol (kitty, iTerm2, sixel); `ANIME_CHAT_IMAGES=off|kitty|iterm|sixel` overrides.
"""

from __future__ import annotations

import base64
import io
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from assistant.executor import CallOutcome

THUMB_SIDE = 160
SHEET_THUMB = 256
SHEET_COLUMNS = 4


def answer(outcomes: list[CallOutcome], sheet: Path | None = None) -> str:
    lines: list[str] = []
    for outcome in outcomes:
        if outcome.error is not None:
            hint = f" ({outcome.error.hint})" if outcome.error.hint else ""
            lines.append(f"{outcome.call.tool}: {outcome.error.message}{hint}")
            continue
        result = outcome.result
        assert result is not None
        lines.append(result.text)
        for record in result.outputs:
            lines.append("  " + _record_line(record))
    if sheet is not None:
        lines.append(f"contact sheet: {sheet}")
    return "\n".join(lines)


def _record_line(record: Any) -> str:
    if record.accepted:
        return f"{record.path}  (seed {record.seed})"
    reasons = "; ".join(getattr(record, "reasons", []) or []) or "below the quality bar"
    return f"rejected {record.path or ''}  (seed {record.seed}): {reasons}".replace("  (", " (")


def image_paths(outcomes: list[CallOutcome]) -> list[Path]:
    return [
        Path(record.path)
        for outcome in outcomes
        if outcome.result is not None
        for record in outcome.result.outputs
        if record.path and record.accepted
    ]


def contact_sheet(paths: list[Path], folder: Path) -> Path | None:
    """A grid of thumbnails for two or more images, written atomically; None for fewer."""
    if len(paths) < 2:
        return None
    from PIL import Image

    from tools.atomic import write_atomic

    thumbs = []
    for path in paths:
        with Image.open(path) as image:
            thumb = image.convert("RGB")
            thumb.thumbnail((SHEET_THUMB, SHEET_THUMB))
            thumbs.append(thumb)
    columns = min(SHEET_COLUMNS, len(thumbs))
    rows = -(-len(thumbs) // columns)
    sheet = Image.new("RGB", (columns * SHEET_THUMB, rows * SHEET_THUMB), "white")
    for i, thumb in enumerate(thumbs):
        x, y = (i % columns) * SHEET_THUMB, (i // columns) * SHEET_THUMB
        sheet.paste(
            thumb, (x + (SHEET_THUMB - thumb.width) // 2, y + (SHEET_THUMB - thumb.height) // 2)
        )
    target = folder / f"sheet_{time.strftime('%Y%m%d-%H%M%S')}_{len(paths)}.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(target, lambda handle: sheet.save(handle, format="PNG"))
    return target


def image_protocol(env: Mapping[str, str], is_tty: bool) -> str | None:
    """Which inline image protocol the terminal speaks, or None (also when not a terminal)."""
    forced = env.get("ANIME_CHAT_IMAGES", "").lower()
    if forced:
        return None if forced == "off" else forced
    if not is_tty:
        return None
    if env.get("TERM") == "xterm-kitty" or "KITTY_WINDOW_ID" in env:
        return "kitty"
    if env.get("TERM_PROGRAM") in ("iTerm.app", "WezTerm") or env.get("LC_TERMINAL") == "iTerm2":
        return "iterm"
    if "sixel" in env.get("TERM", "") or env.get("TERM_PROGRAM") in ("mlterm", "foot"):
        return "sixel"
    return None


def _thumbnail(path: Path) -> Any:
    from PIL import Image

    with Image.open(path) as image:
        thumb = image.convert("RGB")
    thumb.thumbnail((THUMB_SIDE, THUMB_SIDE))
    return thumb


def _png(image: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def kitty_sequence(image: Any) -> str:
    data = base64.b64encode(_png(image)).decode()
    chunks = [data[i : i + 4096] for i in range(0, len(data), 4096)] or [""]
    parts = []
    for i, chunk in enumerate(chunks):
        more = 1 if i < len(chunks) - 1 else 0
        control = f"a=T,f=100,m={more}" if i == 0 else f"m={more}"
        parts.append(f"\x1b_G{control};{chunk}\x1b\\")
    return "".join(parts) + "\n"


def iterm_sequence(image: Any) -> str:
    data = _png(image)
    encoded = base64.b64encode(data).decode()
    return f"\x1b]1337;File=inline=1;size={len(data)};preserveAspectRatio=1:{encoded}\a\n"


def sixel_sequence(image: Any, colors: int = 64) -> str:
    quantized = image.quantize(colors=colors)
    palette = quantized.getpalette()[: colors * 3]
    width, height = quantized.size
    pixels = quantized.load()
    out = ["\x1bPq", f'"1;1;{width};{height}']
    for index in range(len(palette) // 3):
        r, g, b = palette[index * 3 : index * 3 + 3]
        out.append(f"#{index};2;{r * 100 // 255};{g * 100 // 255};{b * 100 // 255}")
    for top in range(0, height, 6):
        band = range(top, min(top + 6, height))
        used = sorted({pixels[x, y] for x in range(width) for y in band})
        rows = []
        for color in used:
            sixels = "".join(
                chr(63 + sum(1 << (y - top) for y in band if pixels[x, y] == color))
                for x in range(width)
            )
            rows.append(f"#{color}{sixels}")
        out.append("$".join(rows) + "-")
    out.append("\x1b\\")
    return "".join(out) + "\n"


SEQUENCES = {"kitty": kitty_sequence, "iterm": iterm_sequence, "sixel": sixel_sequence}


def inline_thumbnails(paths: list[Path], protocol: str | None) -> str:
    encode = SEQUENCES.get(protocol or "")
    if encode is None:
        return ""
    return "".join(encode(_thumbnail(path)) for path in paths)


def terminal_protocol(stream: Any) -> str | None:
    return image_protocol(os.environ, bool(getattr(stream, "isatty", lambda: False)()))
