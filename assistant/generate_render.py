"""Drawing library characters for `anime-gen generate`: plan, then render in the studio server
(following its job) or here in process, and print what was saved or would be drawn.
"""

from __future__ import annotations

import sys
from typing import Any

import typer

from assistant.cli_common import echo_notices, print_json, settings_from_flags, studio_client
from tools.text import plural


def runtime_from_flags(**overrides: dict[str, Any]) -> Any:
    """The `Runtime` of these settings flags; imported here, so that `--help` stays light."""
    from tools.generation.runtime import Runtime

    return Runtime(settings_from_flags(**overrides))


class GenerateRun:
    """The flags every mode of `generate` shares: output settings, JSON, dry run, detach."""

    def __init__(
        self, output_flags: dict[str, Any], as_json: bool, dry_run: bool, detach: bool
    ) -> None:
        self.output_flags = output_flags
        self.as_json = as_json
        self.dry_run = dry_run
        self.detach = detach

    @property
    def flags(self) -> dict[str, Any]:
        return {"output": self.output_flags} if self.output_flags else {}

    def runtime(self) -> Any:
        return runtime_from_flags(output=self.output_flags)


def generate_images(run: GenerateRun, body: Any, link_variations: bool = False) -> None:
    """Plan, then draw (or only print the plan) in the studio server, or here in process."""
    client = studio_client()
    if run.dry_run:
        if client is not None:
            answer = client.call("POST", "/api/generate/plan", body.model_dump(), flags=run.flags)
            echo_notices(answer)
            outputs = answer["outputs"]
        else:
            outputs = _plan_here(run, body)
        print_planned(outputs, run.as_json)
        return
    if client is not None:
        records = _render_in_server(client, run, body, link_variations)
    else:
        records = _render_here(run, body, link_variations)
    if records is not None:
        _print_records(records, run.as_json)


def _plan_here(run: GenerateRun, body: Any) -> list[dict[str, Any]]:
    from tools.server.generation import plan_generation, planned_outputs

    specs = plan_generation(run.runtime(), body, lambda line: typer.echo(line, err=True))
    return planned_outputs(specs)["outputs"]


def _print_detached(job_id: str, as_json: bool) -> None:
    if as_json:
        print_json({"job": job_id})
    else:
        typer.echo(f"queued job {job_id} (anime-gen jobs wait {job_id})")


def _render_here(run: GenerateRun, body: Any, link_variations: bool) -> list[dict[str, Any]] | None:
    """In this process (`ANIME_IN_PROCESS=1`): the records, or None once a detached job is
    queued."""
    from assistant.progress import render_with_progress, submit_detached
    from tools.server.generation import plan_generation

    runtime = run.runtime()
    specs = plan_generation(runtime, body, lambda line: typer.echo(line, err=True))
    if run.detach:
        _print_detached(submit_detached(runtime, specs), run.as_json)
        return None
    records = render_with_progress(runtime, specs, quiet=run.as_json)
    if link_variations:
        from tools.generation.library_runs import link_variations as link

        link(runtime, records)
    return [record.model_dump(mode="json") for record in records]


def _render_in_server(
    client: Any, run: GenerateRun, body: Any, link_variations: bool
) -> list[dict[str, Any]] | None:
    """Queue the job in the server and follow its events; the records as the in-process run."""
    from tools.server.client import with_my_environment
    from tools.server.follow import follow_job, queue_job

    client = with_my_environment(client)
    answer = queue_job(client, body.model_dump(), run.flags)
    echo_notices(answer)
    job_id = answer["job"]
    if run.detach:
        _print_detached(job_id, run.as_json)
        return None
    show = not run.as_json and sys.stderr.isatty()
    records = follow_job(client, job_id, on_progress=_progress_line if show else None)
    if link_variations:
        client.call("POST", "/api/variations/link", {"records": records}, flags=run.flags)
    return records


def _print_records(records: list[dict[str, Any]], as_json: bool) -> None:
    """The run's `{"outputs": [...]}`, or a line per image; exit 1 when none was accepted."""
    if as_json:
        print_json({"outputs": records})
    else:
        for record in records:
            typer.echo(f"{'saved' if record['accepted'] else 'REJECTED'} {record['path']}")
    if not any(record["accepted"] for record in records):
        raise typer.Exit(1)


def _progress_line(data: dict[str, Any]) -> None:
    step = f" step {data['step']}/{data['steps']}" if data.get("step") else ""
    images = plural(data["images"], "image")
    line = f"job {data['job']}: {data['state']} {data['done']}/{images}{step}"
    sys.stderr.write(f"\r{line:<70}")
    sys.stderr.flush()


def print_planned(outputs: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print_json({"outputs": outputs})
        return
    for output in outputs:
        typer.echo(
            f"would draw {output['character']} / {output['pose']['id']} / seed {output['seed']}"
        )
