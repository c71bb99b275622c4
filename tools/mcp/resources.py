"""The MCP resources: `anime://characters` (the list), `anime://characters/{name}` (one
character: its entry as JSON and its reference image) and `anime://images/recent`."""

from __future__ import annotations

import json
from typing import Any

from tools.errors import UserError
from tools.mcp.args import SearchImagesArgs
from tools.mcp.calls import Toolset
from tools.mcp.previews import file_base64
from tools.mcp.queries import characters, images_query

CHARACTERS = "anime://characters"
RECENT = "anime://images/recent"
CHARACTER_TEMPLATE = "anime://characters/{name}"
RECENT_LIMIT = 20
JSON = "application/json"


class NoSuchResource(UserError):
    """A URI that names nothing: the protocol's invalid-params error, not a tool result."""


def listed(toolset: Toolset) -> list[dict[str, Any]]:
    """Every resource there is now: the two lists, and each character."""
    fixed = [
        {"uri": CHARACTERS, "name": "characters", "description": "the character library"},
        {"uri": RECENT, "name": "recent images", "description": "the newest images, newest first"},
    ]
    people = [
        {
            "uri": CHARACTER_TEMPLATE.format(name=entry["name"]),
            "name": entry["name"],
            "description": entry["description"] or f"the character {entry['name']}",
        }
        for entry in characters(toolset.client())
    ]
    return [{**item, "mime_type": JSON} for item in [*fixed, *people]]


def templates() -> list[dict[str, str]]:
    return [
        {
            "uri_template": CHARACTER_TEMPLATE,
            "name": "character",
            "description": "one character: name, description, reference path (JSON), and its "
            "reference image (PNG)",
            "mime_type": JSON,
        }
    ]


def read(toolset: Toolset, uri: str) -> list[dict[str, Any]]:
    """The contents of `uri`: dicts with `uri`, `mime_type` and `text` or `blob`."""
    client = toolset.client()
    if uri == CHARACTERS:
        return [{"uri": uri, "mime_type": JSON, "text": json.dumps(characters(client))}]
    if uri == RECENT:
        query = images_query(SearchImagesArgs(limit=RECENT_LIMIT))
        images = client.call("GET", query, timeout=60)["images"]
        return [{"uri": uri, "mime_type": JSON, "text": json.dumps(images)}]
    prefix = CHARACTER_TEMPLATE.partition("{")[0]
    if uri.startswith(prefix):
        name = uri[len(prefix) :].strip("/").lower()
        entry = next((c for c in characters(client) if c["name"] == name), None)
        if entry is not None:
            contents = [{"uri": uri, "mime_type": JSON, "text": json.dumps(entry)}]
            blob = file_base64(entry["reference"])
            if blob is not None:
                contents.append({"uri": uri, "mime_type": "image/png", "blob": blob})
            return contents
        raise NoSuchResource(f"no character '{name}'", f"read {CHARACTERS} for the names")
    raise NoSuchResource(
        f"no resource {uri}", f"the resources are {CHARACTERS}, {CHARACTER_TEMPLATE}, {RECENT}"
    )
