"""`anime-gen poses ...`: search, list, show and add poses (the `poses` sub-app).

Settings load inside each command; the pose bank and its heavy dependencies (Chroma, torch,
sentence-transformers) load only when a command needs them, so `--help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from assistant.cli_common import GuardedGroup, print_json, studio_client
from tools.text import plural

if TYPE_CHECKING:
    from posebank import PoseBank

poses_app = typer.Typer(
    cls=GuardedGroup,
    help="Search, show and add poses.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _bank_and_settings() -> tuple[PoseBank, object]:
    from posebank import PoseBank
    from tools.settings import load_settings

    settings = load_settings()
    return PoseBank(settings.paths.state, settings.paths.user_poses), settings


@poses_app.command("search")
def search(
    text: Annotated[str, typer.Argument(help='What the pose looks like, e.g. "sitting reading".')],
    k: Annotated[int, typer.Option("-k", "--top", min=1, max=100, help="How many.")] = 3,
    posture: Annotated[
        str | None, typer.Option("--posture", help="Only this posture (standing, sitting...).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the contract JSON.")] = False,
) -> None:
    """Find the poses that best match a description."""
    client = studio_client()
    if client is not None:
        body = {"text": text, "k": k, "posture": posture}
        matches = client.call("POST", "/api/poses/search", body)
    else:
        bank, _ = _bank_and_settings()
        matches = [
            {"id": m.pose.id, "name": m.pose.name, "tags": m.pose.tags, "score": m.score}
            for m in bank.search(text, k=k, posture=posture)
        ]
    if as_json:
        print_json(matches)
        return
    for m in matches:
        typer.echo(f"{m['score']:6.3f}  {m['id']:32}  {', '.join(m['tags'])}")


@poses_app.command("list")
def list_poses(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every pose in the bank, built-in and your own."""
    bank, _ = _bank_and_settings()
    poses = bank.list()
    if as_json:
        print_json(
            [
                {
                    "id": p.id,
                    "name": p.name,
                    "tags": p.tags,
                    "posture": p.posture,
                    "descriptions": p.descriptions,
                    "source": p.source,
                }
                for p in poses
            ]
        )
        return
    for p in poses:
        typer.echo(f"{p.id:32}  {p.posture:10}  {p.name}")
    typer.echo(plural(len(poses), "pose"), err=True)


@poses_app.command("show")
def show(
    pose_id: Annotated[str, typer.Argument(metavar="ID", help="A pose id (see `poses list`).")],
    as_json: Annotated[bool, typer.Option("--json", help="The keypoints as JSON.")] = False,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the ControlNet conditioning PNG here.")
    ] = None,
    framing: Annotated[
        str, typer.Option("--framing", help="full, knees (knees up) or upper (upper body).")
    ] = "full",
) -> None:
    """A pose's keypoints at the configured resolution, or its conditioning image."""
    from posebank.export import pose_json
    from posebank.framing import check_framing
    from posebank.render import render_pose
    from tools.atomic import write_atomic

    bank, settings = _bank_and_settings()
    pose = bank.get(pose_id)
    width, height = settings.output.resolution.width, settings.output.resolution.height
    data = pose_json(pose, width, height, check_framing(framing))
    if out is not None:
        image = render_pose(pose, width, height, framing)
        write_atomic(out, lambda handle: image.save(handle, format="PNG"))
    if as_json:
        print_json(data)
    elif out is None:
        typer.echo(f"{pose.id}  {pose.name}  [{', '.join(pose.tags)}]  {width}x{height}")
        for name, point in zip(_keypoint_names(), data["keypoints"], strict=True):
            where = "not visible" if point is None else f"{point[0]:7.1f} {point[1]:7.1f}"
            typer.echo(f"  {name:11} {where}")
    else:
        typer.echo(str(out))


def _keypoint_names() -> tuple[str, ...]:
    from posebank.skeleton import KEYPOINT_NAMES

    return KEYPOINT_NAMES


@poses_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="A name for the new pose.")],
    source: Annotated[
        Path,
        typer.Option("--from", help="An OpenPose keypoints .json file, or a picture."),
    ],
) -> None:
    """Add your own pose from an OpenPose JSON file or a picture."""
    bank, _ = _bank_and_settings()
    pose = bank.add(name, source)
    typer.echo(f"added pose {pose.id} ({pose.posture}) -> {pose.source}")
