"""A Hugging Face Hub on loopback: serves local folders as model repos to the real client.

It answers the requests huggingface_hub 2.x makes for `model_info`, `snapshot_download` and
`hf_hub_download` (repo info with siblings, the recursive tree listing, HEAD and GET on
`resolve/{revision}/{path}` with the commit, ETag and size headers), and counts every request so
a test can prove a command made none. Point the client at it with `HF_ENDPOINT=<url>` and a temp
`HF_HOME`; those are read when huggingface_hub is imported, so use it from a subprocess.
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

MAX_REQUESTS = 10_000  # bounded: a runaway client fails instead of spinning forever


class Repo:
    def __init__(self, repo_id: str, files: dict[str, bytes]) -> None:
        self.repo_id = repo_id
        self.files = files
        listing = "".join(f"{path}:{_blob_id(data)}\n" for path, data in sorted(files.items()))
        self.sha = hashlib.sha1(listing.encode()).hexdigest()

    def info(self) -> dict:
        siblings = [
            {"rfilename": path, "size": len(data), "blobId": _blob_id(data)}
            for path, data in sorted(self.files.items())
        ]
        return {"id": self.repo_id, "sha": self.sha, "private": False, "siblings": siblings}

    def tree(self, under: str) -> list[dict]:
        prefix = f"{under}/" if under else ""
        entries = [
            {"type": "file", "path": path, "size": len(data), "oid": _blob_id(data)}
            for path, data in sorted(self.files.items())
            if path.startswith(prefix)
        ]
        folders = {p.rsplit("/", 1)[0] for p in self.files if "/" in p and p.startswith(prefix)}
        entries += [{"type": "directory", "path": f, "size": 0, "oid": "0" * 40} for f in folders]
        return entries


def _blob_id(data: bytes) -> str:
    """The git blob id, which the Hub sends as a regular file's ETag."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def repo_from_folder(repo_id: str, folder: Path, extra: dict[str, bytes] | None = None) -> Repo:
    files = {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }
    return Repo(repo_id, {**files, **(extra or {})})


class FakeHub:
    """`with FakeHub(repos) as hub:` serves on `hub.url` until the block ends."""

    def __init__(self, repos: list[Repo]) -> None:
        self.repos = {repo.repo_id: repo for repo in repos}
        self.requests: list[str] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeHub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _route(self, path: str) -> tuple[int, dict[str, str], bytes]:
        parts = [unquote(p) for p in urlsplit(path).path.strip("/").split("/")]
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            repo = self.repos.get("/".join(parts[2:4]))
            if repo is None:
                return _error(404, "RepoNotFound")
            rest = parts[4:]
            if not rest or rest[0] == "revision":
                return 200, {}, json.dumps(repo.info()).encode()
            if rest[0] == "tree":
                return 200, {}, json.dumps(repo.tree("/".join(rest[2:]))).encode()
        if len(parts) >= 5 and parts[2] == "resolve":
            repo = self.repos.get("/".join(parts[:2]))
            if repo is None:
                return _error(404, "RepoNotFound")
            data = repo.files.get("/".join(parts[4:]))
            if data is None:
                return _error(404, "EntryNotFound", repo.sha)
            headers = {"X-Repo-Commit": repo.sha, "ETag": f'"{_blob_id(data)}"'}
            return 200, headers, data
        return _error(404, "RepoNotFound")

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, with_body: bool) -> None:
                hub.requests.append(f"{self.command} {self.path}")
                if len(hub.requests) > MAX_REQUESTS:
                    status, headers, body = _error(429, "TooManyRequests")
                else:
                    status, headers, body = hub._route(self.path)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()
                if with_body:
                    self.wfile.write(body)

            def do_GET(self) -> None:
                self._answer(with_body=True)

            def do_HEAD(self) -> None:
                self._answer(with_body=False)

            def log_message(self, *args: object) -> None:
                pass

        return Handler


def _error(status: int, code: str, commit: str | None = None) -> tuple[int, dict[str, str], bytes]:
    headers = {"X-Error-Code": code}
    if commit:
        headers["X-Repo-Commit"] = commit
    return status, headers, json.dumps({"error": code}).encode()
