"""How fast `anime-gen mcp` is ready: process start to `initialize` answered, with the studio
server warm (issue 26's target: under 1 s), and to the first tool call answered.

    python -m evals.mcp_start [--runs 5] [--home DIR]

Speaks the stdio transport itself (one JSON-RPC message per line), so the numbers are the
server's and not a client library's. The first run starts the studio server (cold); the median
of `--runs` warm runs follows. Uses a temporary home (nothing is rendered, no weights needed);
the server it started is stopped at the end. The last line is `mcp_initialize_median_s=...`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

TARGET_SECONDS = 1.0
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "evals.mcp_start", "version": "1"},
    },
}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}
FIRST_CALL = {
    "jsonrpc": "2.0",
    "id": 2,
    "method": "tools/call",
    "params": {"name": "list_characters", "arguments": {}},
}


def _send(pipe: IO[str], message: dict[str, Any]) -> None:
    pipe.write(json.dumps(message) + "\n")
    pipe.flush()


def _answer(pipe: IO[str], wanted: int) -> dict[str, Any]:
    while line := pipe.readline():
        message = json.loads(line)
        if message.get("id") == wanted:
            return message
    raise SystemExit("anime-gen mcp closed its stdout before answering")


def one_run(env: dict[str, str]) -> tuple[float, float]:
    """(seconds to `initialize` answered, seconds to the first tool call answered)."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "assistant.gen_cli", "mcp"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        _send(process.stdin, INITIALIZE)
        _answer(process.stdout, 1)
        ready = time.perf_counter() - started
        _send(process.stdin, INITIALIZED)
        _send(process.stdin, FIRST_CALL)
        answer = _answer(process.stdout, 2)
        if answer.get("result", {}).get("isError"):
            raise SystemExit(f"list_characters failed: {answer}")
        return ready, time.perf_counter() - started
    finally:
        process.stdin.close()
        process.wait(60)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evals.mcp_start")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--home", type=Path, help="default: a temporary home")
    args = parser.parse_args(argv)
    home = args.home or Path(tempfile.mkdtemp(prefix="mcp-start-home-"))
    home.mkdir(parents=True, exist_ok=True)
    root = str(Path(__file__).resolve().parent.parent)
    env = {k: v for k, v in os.environ.items() if k != "ANIME_IN_PROCESS"}
    env.update(ANIME_HOME=str(home), ANIME_SERVER_PORT="0")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    try:
        cold_ready, cold_call = one_run(env)
        print(
            f"cold: initialize {cold_ready:.2f} s, first call (starts the server) {cold_call:.2f} s"
        )
        runs = [one_run(env) for _ in range(args.runs)]
        ready = statistics.median(run[0] for run in runs)
        call = statistics.median(run[1] for run in runs)
        print(f"warm (median of {args.runs}): initialize {ready:.2f} s, first call {call:.2f} s")
        verdict = "meets" if ready < TARGET_SECONDS else "misses"
        print(f"warm start to initialize {verdict} the {TARGET_SECONDS:g} s target")
        print(f"mcp_initialize_median_s={ready:.3f}")
    finally:
        from tools.jobs.processes import stop_worker
        from tools.server.files import stop_server

        stop_server(home / ".anime-chat")
        stop_worker(home / ".anime-chat")
        if args.home is None:
            shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
