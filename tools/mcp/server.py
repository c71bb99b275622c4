"""The MCP server, one definition for both transports: the tools (schemas from `args`, work in
`drawing`/`queries`), the resources, and how a call's outcome becomes an MCP result.

Built on the SDK's low-level `Server` so that the input schemas are exactly our pydantic models'
(`mcp.server.lowlevel.server`). A user error is a result with `isError: true` and our one line +
hint, never a protocol error; a bug is logged with its traceback and answered in one line.
Tool code blocks (the studio client is `http.client`), so each call runs in a worker thread;
a client's cancellation cancels the jobs the call queued.
"""

from __future__ import annotations

import http.client
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import anyio
import anyio.to_thread
import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import MCPError
from pydantic import BaseModel, ValidationError

from prompts import load_prompt
from tools.errors import UserError
from tools.mcp import resources
from tools.mcp.args import (
    ChatArgs,
    CreateCharacterFromArgs,
    DrawArgs,
    FindPoseArgs,
    JobArgs,
    ListCharactersArgs,
    SearchImagesArgs,
    schema,
)
from tools.mcp.calls import Call, CallCancelled, Reply, Toolset, error_reply
from tools.mcp.drawing import chat, create_character, draw
from tools.mcp.previews import base64_png
from tools.mcp.queries import cancel_job, find_pose, job_status, list_characters, search_images

log = logging.getLogger("anime.mcp")
NAME = "anime-chat"
# Tool calls wait on the studio server; their own threads, so that many waiting calls never
# starve the server's threads that answer them (the HTTP transport runs in the server).
THREADS = 16


@dataclass(frozen=True)
class McpTool:
    name: str
    args: type[BaseModel]
    run: Callable[[Toolset, Any, Call], Reply]
    prompt: str
    read_only: bool = False

    def definition(self) -> types.Tool:
        return types.Tool(
            name=self.name,
            description=load_prompt(self.prompt),
            input_schema=schema(self.args),
            annotations=types.ToolAnnotations(
                read_only_hint=self.read_only, destructive_hint=False, open_world_hint=False
            ),
        )


TOOLS: dict[str, McpTool] = {
    tool.name: tool
    for tool in (
        McpTool("draw", DrawArgs, draw, "mcp_draw"),
        McpTool("find_pose", FindPoseArgs, find_pose, "tool_find_pose", read_only=True),
        McpTool(
            "list_characters",
            ListCharactersArgs,
            list_characters,
            "tool_list_characters",
            read_only=True,
        ),
        McpTool("create_character", CreateCharacterFromArgs, create_character, "mcp_create"),
        McpTool("search_images", SearchImagesArgs, search_images, "mcp_search", read_only=True),
        McpTool("job_status", JobArgs, job_status, "mcp_job_status", read_only=True),
        McpTool("cancel_job", JobArgs, cancel_job, "mcp_cancel_job"),
        McpTool("chat", ChatArgs, chat, "mcp_chat"),
    )
}


def _invalid(name: str, error: ValidationError) -> Reply:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    return error_reply(
        UserError(f"{name}: {where + ': ' if where else ''}{message}", "see the tool's inputSchema")
    )


def run_tool(toolset: Toolset, name: str, arguments: dict[str, Any] | None, call: Call) -> Reply:
    """The tool's reply, whatever happens (blocking; runs in a worker thread)."""
    tool = TOOLS.get(name)
    if tool is None:
        return error_reply(UserError(f"no tool '{name}'", f"the tools are {', '.join(TOOLS)}"))
    try:
        args = tool.args.model_validate(arguments or {})
    except ValidationError as error:
        return _invalid(name, error)
    try:
        return tool.run(toolset, args, call)
    except CallCancelled:
        toolset.cancel_jobs(call.jobs)
        return Reply("cancelled", error=True)
    except UserError as error:
        return error_reply(error)
    except (OSError, http.client.HTTPException) as error:
        log.warning("%s: the studio server went away: %r", name, error)
        return error_reply(
            UserError(
                f"the studio server stopped answering ({type(error).__name__})",
                "call the tool again (it starts the server); `anime-gen serve` shows why",
            )
        )
    except Exception as error:  # a bug: the traceback goes to the log, the client gets a line
        log.exception("MCP tool %s failed", name)
        return error_reply(
            UserError(f"the MCP server failed: {type(error).__name__}: {error}", "see its log")
        )


def result_of(reply: Reply) -> types.CallToolResult:
    content: list[Any] = [types.TextContent(text=reply.text)]
    for path in reply.images:
        data = base64_png(path)
        if data is not None:
            content.append(types.ImageContent(data=data, mime_type="image/png"))
    return types.CallToolResult(
        content=content, structured_content=reply.data, is_error=reply.error
    )


def _sender(ctx: Any) -> Callable[[float, float | None, str | None], None]:
    """Progress from the tool's thread to the client (a no-op without a progress token)."""

    def send(progress: float, total: float | None, message: str | None) -> None:
        try:
            anyio.from_thread.run(ctx.session.report_progress, progress, total, message)
        except Exception:  # noqa: BLE001  (the call ended meanwhile: nobody to tell)
            log.debug("progress not sent", exc_info=True)

    return send


def build_server(toolset: Toolset) -> Server[Any]:
    limiter: list[anyio.CapacityLimiter] = []

    async def in_thread(function: Callable[[], Any]) -> Any:
        if not limiter:
            limiter.append(anyio.CapacityLimiter(THREADS))
        return await anyio.to_thread.run_sync(function, abandon_on_cancel=True, limiter=limiter[0])

    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[tool.definition() for tool in TOOLS.values()])

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        call = Call(send=_sender(ctx))

        def answer() -> types.CallToolResult:
            return result_of(run_tool(toolset, params.name, params.arguments, call))

        try:
            return await in_thread(answer)
        except anyio.get_cancelled_exc_class():
            call.cancelled.set()  # the thread cancels what it queues from now on
            with anyio.CancelScope(shield=True):
                await in_thread(partial(toolset.cancel_jobs, list(call.jobs)))
            raise

    async def read_or_raise(function: Callable[[], Any]) -> Any:
        try:
            return await in_thread(function)
        except resources.NoSuchResource as error:
            raise MCPError(types.INVALID_PARAMS, f"{error.message} ({error.hint})") from None
        except UserError as error:
            raise MCPError(types.INTERNAL_ERROR, f"{error.message} ({error.hint})") from None
        except (OSError, http.client.HTTPException) as error:
            raise MCPError(
                types.INTERNAL_ERROR, f"the studio server stopped answering: {error}"
            ) from None

    async def list_resources(ctx: Any, params: Any) -> types.ListResourcesResult:
        items = await read_or_raise(partial(resources.listed, toolset))
        return types.ListResourcesResult(resources=[types.Resource(**item) for item in items])

    async def list_templates(ctx: Any, params: Any) -> types.ListResourceTemplatesResult:
        items = resources.templates()
        return types.ListResourceTemplatesResult(
            resource_templates=[types.ResourceTemplate(**item) for item in items]
        )

    async def read_resource(
        ctx: Any, params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        items = await read_or_raise(partial(resources.read, toolset, str(params.uri)))
        contents: list[Any] = [
            types.BlobResourceContents(**item)
            if "blob" in item
            else types.TextResourceContents(**item)
            for item in items
        ]
        return types.ReadResourceResult(contents=contents)

    return Server(
        NAME,
        version=_version(),
        instructions=load_prompt("mcp_instructions"),
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_resources=list_resources,
        on_list_resource_templates=list_templates,
        on_read_resource=read_resource,
    )


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(NAME)
    except PackageNotFoundError:
        return "0"
