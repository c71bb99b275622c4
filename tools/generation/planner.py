"""From a request ("sakura, sitting reading, 3 images") to `ImageSpec`s: the front ends' half.

The planner resolves the character, a pose per image and a seed per image (seed S+i, so the same
request with the same seed gives the same pixels). It reads the character library and the pose
bank and never touches an engine; the specs it returns are plain data the job journal stores.
"""

from __future__ import annotations

import random
import secrets
import uuid
from typing import TYPE_CHECKING

from tools.errors import UserError
from tools.generation.specs import SEED_LIMIT, GenerationRequest, ImageSpec, PoseRef

if TYPE_CHECKING:
    from posebank import Pose, PoseBank
    from tools.characters.library import CharacterLibrary
    from tools.settings import Settings


def check_count(count: int, limit: int) -> None:
    if count < 1:
        raise UserError(f"count must be at least 1 (got {count})", "e.g. --batch 3")
    if count > limit:
        raise UserError(
            f"count {count} is more than output.max_batch ({limit})",
            "split the request, or raise output.max_batch in the config",
        )


def check_seed(seed: int | None) -> None:
    if seed is not None and not 0 <= seed < SEED_LIMIT:
        raise UserError(f"seed must be between 0 and {SEED_LIMIT - 1} (got {seed})")


def new_seed() -> int:
    return secrets.randbelow(SEED_LIMIT)


class GenerationPlanner:
    """Requests to specs, given the settings, the character library and the pose bank."""

    def __init__(self, settings: Settings, characters: CharacterLibrary, poses: PoseBank) -> None:
        self.settings = settings
        self.characters = characters
        self.poses = poses

    def plan(self, request: GenerationRequest) -> list[ImageSpec]:
        check_count(request.count, self.settings.output.max_batch)
        check_seed(request.seed)
        character, _ = self.characters.resolve(request.character)
        base_seed = request.seed if request.seed is not None else new_seed()
        poses = self._poses_for(request, base_seed)
        request_id = request.request_id or uuid.uuid4().hex[:12]
        return [
            ImageSpec(
                key=f"{request_id}:{index}",
                request_id=request_id,
                index=index,
                character=character.name,
                pose=PoseRef(id=pose.id, tags=list(pose.tags)),
                posture=pose.posture,
                user_prompt=request.prompt,
                seed=(base_seed + index) % SEED_LIMIT,
                collection=request.collection,
            )
            for index, pose in enumerate(poses)
        ]

    def _poses_for(self, request: GenerationRequest, base_seed: int) -> list[Pose]:
        if request.pose and not request.random_pose:
            exact = self._pose_by_id(request.pose)
            if exact is not None:
                return [exact] * request.count
            match = self.poses.search(request.pose, k=1, posture=request.posture)
            if not match:
                raise UserError(f"no pose matches '{request.pose}'", "see `anime-gen poses list`")
            return [match[0].pose] * request.count
        rng = random.Random(base_seed)
        return self.poses.variations(request.count, rng, posture=request.posture)

    def _pose_by_id(self, text: str) -> Pose | None:
        """A recorded pose id (from a previous image) reproduces that exact skeleton."""
        from posebank.errors import PoseBankError

        if " " in text.strip():
            return None
        try:
            return self.poses.get(text.strip())
        except PoseBankError:
            return None
