"""`anime-gen mcp`: the MCP server over stdio, what Claude Desktop and Cursor start.

A thin process: it answers `initialize` and `tools/list` without the studio server, and connects
to this home's server (starting it on demand) on the first call that needs it, so a client's
start is quick however cold the studio is. It never loads a model.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path


def run_stdio(home: Path) -> int:
    import anyio
    from mcp.server.stdio import stdio_server

    from tools.mcp.calls import Toolset
    from tools.mcp.server import build_server
    from tools.server.client import connect

    # stdout is the protocol's wire: every log line goes to stderr (the client's log).
    logging.basicConfig(
        level=logging.WARNING,
        stream=sys.stderr,
        format=f"%(asctime)s anime-gen mcp[{os.getpid()}] %(levelname)s %(message)s",
    )
    server = build_server(Toolset(lambda: connect(home), remember_chat=True))

    async def serve() -> None:
        async with stdio_server() as (read_stream, write_stream):
            await server.run(read_stream, write_stream, server.create_initialization_options())

    anyio.run(serve)
    return 0
