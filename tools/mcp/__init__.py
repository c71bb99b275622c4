"""The MCP door: the studio's tools for any MCP client (Claude Desktop, Cursor, Open WebUI, ...).

One definition (`toolset` + `server`) served over two transports: stdio (`anime-gen mcp`, a thin
client of this home's studio server) and streamable HTTP at `/mcp` on the studio server itself.
The tools call the studio server's HTTP API through `tools.server.client`, so they render nothing
and import nothing heavy (docs/MCP.md).
"""
