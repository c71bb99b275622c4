"""OllamaPlanner: the local LLM plans through native tool calling with the official client.

Every call is validated with the tool's pydantic `Args`; on a validation error the model is asked
again with the error (at most `MAX_REASKS` times). Small models that print the call as JSON in the
message text are accepted too. One planning attempt (probe, chat, re-asks) is bounded by
`llm.timeout`; every transport failure becomes an `OllamaUnavailable` with the fix.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import ollama
from pydantic import ValidationError

from assistant.planners.base import Plan, PlannerContext
from assistant.planners.resolve import Resolved, compose_reply, resolve_call
from prompts import load_prompt
from tools.errors import UserError
from tools.generation.toolbox import TOOLS, tool_schemas, validate_args

MAX_REASKS = 2


class OllamaUnavailable(UserError):
    """The server is down or the model is not pulled; `auto` falls back to the rules."""


def server_down(host: str) -> OllamaUnavailable:
    return OllamaUnavailable(f"Ollama is not reachable at {host}", "start it with `ollama serve`")


def model_missing(model: str) -> OllamaUnavailable:
    return OllamaUnavailable(
        f"the Ollama model '{model}' is not pulled", f"run `ollama pull {model}`"
    )


def too_slow(host: str, seconds: float) -> OllamaUnavailable:
    return OllamaUnavailable(
        f"Ollama at {host} did not answer within {seconds:g} s",
        "check it with `ollama ps`, or raise llm.timeout in ~/.anime-config.yaml",
    )


def connection_lost(host: str) -> OllamaUnavailable:
    return OllamaUnavailable(
        f"Ollama at {host} dropped the connection", "check its log; `ollama serve` restarts it"
    )


class Deadline:
    """The time left of one planning attempt; each request to Ollama gets only what is left."""

    def __init__(self, seconds: float, start: float | None = None) -> None:
        self.seconds = seconds
        self.end = (time.monotonic() if start is None else start) + seconds

    def remaining(self, host: str) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise too_slow(host, self.seconds)
        return left


@contextlib.contextmanager
def transport_errors(client: ollama.Client, host: str, deadline: Deadline) -> Iterator[None]:
    """Bound one request by the deadline and turn every way the connection can fail into the
    user error with its fix (the client maps only a refused connection to ConnectionError)."""
    # ollama.Client keeps its httpx client as `_client`; httpx lets the timeout change per call.
    client._client.timeout = httpx.Timeout(deadline.remaining(host))
    try:
        yield
    except httpx.TimeoutException as error:
        raise too_slow(host, deadline.seconds) from error
    except (ConnectionError, httpx.ConnectError) as error:
        raise server_down(host) from error
    except (httpx.TransportError, OSError) as error:
        raise connection_lost(host) from error


def _same_model(wanted: str, available: str) -> bool:
    if ":" not in wanted:
        wanted += ":latest"
    if ":" not in available:
        available += ":latest"
    return wanted == available


def check_available(
    client: ollama.Client, host: str, model: str, deadline: Deadline | None = None
) -> None:
    """Raise `OllamaUnavailable` unless the server answers and has the model."""
    try:
        with transport_errors(client, host, deadline or Deadline(120.0)):
            listing = client.list()
    except ollama.ResponseError as error:
        raise server_down(host) from error
    names = [entry.model or "" for entry in listing.models]
    if not any(_same_model(model, name) for name in names):
        raise model_missing(model)


def unload(client: ollama.Client, model: str) -> None:
    """Ask Ollama to free the model's VRAM now (keep_alive 0) before a heavy batch."""
    # Nothing loaded or nothing to free: generation goes on either way.
    with (
        contextlib.suppress(OllamaUnavailable, ollama.ResponseError),
        transport_errors(client, "", Deadline(10.0)),
    ):
        client.generate(model=model, prompt="", keep_alive=0)


@dataclass
class RawCall:
    name: str
    arguments: dict[str, Any]


JSON_BLOCK = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def calls_from_text(content: str) -> list[RawCall]:
    """Tool calls a small model wrote as JSON text: {"name", "arguments"} or {"tool", "args"}."""
    candidates = [m.group(1) for m in JSON_BLOCK.finditer(content)] or [content]
    calls: list[RawCall] = []
    for candidate in candidates:
        start = min((i for i in (candidate.find("{"), candidate.find("[")) if i >= 0), default=-1)
        if start < 0:
            continue
        try:
            data, _ = json.JSONDecoder().raw_decode(candidate[start:])
        except json.JSONDecodeError:
            continue
        for item in data if isinstance(data, list) else [data]:
            call = _call_from_json(item)
            if call:
                calls.append(call)
    return calls


def _call_from_json(item: Any) -> RawCall | None:
    if not isinstance(item, dict):
        return None
    if isinstance(item.get("function"), dict):
        item = item["function"]
    name = item.get("name") or item.get("tool")
    arguments = item.get("arguments", item.get("args", item.get("parameters", {})))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            return None
    if not isinstance(name, str) or not isinstance(arguments, dict):
        return None
    return RawCall(name, arguments)


def system_prompt(context: PlannerContext) -> str:
    text = load_prompt("system")
    characters = ", ".join(context.characters) or "(none yet)"
    text = text.replace("{characters}", characters).replace(
        "{postures}", ", ".join(context.postures)
    )
    if context.previous is not None:
        previous = json.dumps(context.previous.call.contract()["args"])
        images = "; ".join(
            f"{i}: seed {image.seed}, pose {' '.join(image.pose_tags)}"
            for i, image in enumerate(context.previous.images, start=1)
        )
        text += (
            f"\n\nThe previous request was {context.previous.call.tool} {previous}."
            + (f" Its images: {images}." if images else "")
            + " Reuse it for follow-ups like 'more of that' or 'same but ...'."
        )
    return text


class OllamaPlanner:
    name = "ollama"

    def __init__(
        self,
        client: ollama.Client,
        model: str,
        host: str,
        timeout: float = 120.0,
        started: float | None = None,
    ) -> None:
        self.client = client
        self.model = model
        self.host = host
        self.timeout = timeout
        # The first attempt began with the availability probe: its time counts against it.
        self._first_start = started

    def unload(self) -> None:
        unload(self.client, self.model)

    def plan(self, text: str, context: PlannerContext) -> Plan:
        deadline = Deadline(self.timeout, self._first_start)
        self._first_start = None
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": system_prompt(context)},
            {"role": "user", "content": text},
        ]
        resolved = Resolved()
        content = ""
        for _ in range(MAX_REASKS + 1):
            message = self._chat(messages, deadline)
            content = message.content or ""
            raw = [
                RawCall(call.function.name, dict(call.function.arguments or {}))
                for call in message.tool_calls or []
            ] or calls_from_text(content)
            errors = self._validate(raw, context, resolved)
            if not errors:
                break
            messages.append({"role": "assistant", "content": content, "tool_calls": [
                {"function": {"name": call.name, "arguments": call.arguments}} for call in raw
            ]})  # fmt: skip
            messages.append({"role": "user", "content": _reask(errors)})
        else:
            resolved.notes.append("The model kept producing invalid tool calls; nothing planned.")
        return Plan(
            planner=self.name,
            reply=compose_reply(resolved, fallback=content.strip() or "Nothing to do."),
            calls=resolved.calls,
        )

    def _chat(self, messages: list[dict[str, Any]], deadline: Deadline) -> Any:
        try:
            with transport_errors(self.client, self.host, deadline):
                response = self.client.chat(
                    model=self.model, messages=messages, tools=tool_schemas()
                )
        except ollama.ResponseError as error:
            if error.status_code == 404:
                raise model_missing(self.model) from error
            raise UserError(f"Ollama answered with an error: {error.error}") from error
        return response.message

    def _validate(
        self, raw: list[RawCall], context: PlannerContext, resolved: Resolved
    ) -> list[str]:
        """Resolve every valid call into `resolved`, or return the errors to re-ask with."""
        validated = []
        errors = []
        for call in raw:
            if call.name not in TOOLS:
                errors.append(f"'{call.name}' is not a tool; the tools are {', '.join(TOOLS)}")
                continue
            try:
                validated.append((call.name, validate_args(call.name, call.arguments)))
            except ValidationError as error:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}"
                    for e in error.errors()
                )
                errors.append(f"{call.name}: {problems}")
        if errors:
            return errors
        for name, args in validated:
            resolve_call(name, args, context, resolved)
        return []


def _reask(errors: list[str]) -> str:
    return (
        "Those tool calls were invalid: "
        + " | ".join(errors)
        + ". Call the tools again with corrected arguments."
    )


class FallbackPlanner:
    """`--planner auto`: Ollama plans; when it cannot (down, too slow, connection lost), the
    rule planner answers instead, after one notice line."""

    def __init__(self, primary: OllamaPlanner, fallback: Any, notice: Callable[[str], None]):
        self.primary = primary
        self.fallback = fallback
        self.notice = notice

    @property
    def name(self) -> str:
        return self.primary.name

    def unload(self) -> None:
        self.primary.unload()

    def plan(self, text: str, context: PlannerContext) -> Plan:
        try:
            return self.primary.plan(text, context)
        except OllamaUnavailable as error:
            self.notice(fallback_notice(error))
            return self.fallback.plan(text, context)


def fallback_notice(error: OllamaUnavailable) -> str:
    return f"notice: {error.message} ({error.hint}); using the built-in rule planner"
