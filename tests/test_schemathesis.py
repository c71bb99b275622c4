"""schemathesis against the studio app's own OpenAPI, with a valid token: no operation answers
5xx, whatever the generated request. In-process (ASGI), on a home with images and no models.

Bounded for CI (`FUZZ_EXAMPLES` per operation, derandomized so a run is reproducible); a longer
hunt: `ANIME_FUZZ_EXAMPLES=2000 pytest tests/test_schemathesis.py`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings

from assistant.studio import routers
from tests.test_gallery import write_images
from tools.server.app import create_app
from tools.server.studio import Studio

TOKEN = "fuzz-token"
HEADERS = {"Authorization": f"Bearer {TOKEN}", "Host": "127.0.0.1"}
FUZZ_EXAMPLES = int(os.environ.get("ANIME_FUZZ_EXAMPLES", "40"))
# The first pose search loads the sentence embedder: time enough on a loaded machine.
CALL_TIMEOUT = 300


def fuzz(operation, failures: list[str]) -> None:
    """Up to FUZZ_EXAMPLES generated requests to one operation; each 5xx is noted."""

    @settings(
        max_examples=FUZZ_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],
    )
    @given(case=operation.as_strategy())
    def call(case):
        response = case.call(headers=HEADERS, timeout=CALL_TIMEOUT)
        if response.status_code >= 500:
            failures.append(
                f"{operation.method.upper()} {operation.path} → {response.status_code}:"
                f" query={case.query} path={case.path_parameters} body={case.body!r:.200}"
            )

    call()


@pytest.mark.slow
def test_no_operation_answers_a_server_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    home = tmp_path / "home"
    home.mkdir()
    write_images(home)
    monkeypatch.setenv("ANIME_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    app = create_app(Studio(home, TOKEN, "127.0.0.1"), routers())
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, headers=HEADERS)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 30, "the schema lost its operations"
    failures: list[str] = []
    for operation in operations:
        fuzz(operation, failures)
    assert failures == [], "\n".join(failures[:20])
