"""RulePlanner: the embedded, deterministic planner used when Ollama is not there.

A request is read in passes over one token list (`extract.py`): seed, names, whole-cast phrases,
counts, postures and actions, corrections and negations; then cut into clauses (`clauses.py`),
each character getting its own count, pose and scene and the shared parts applying to all.
Intents other than drawing (`intents.py`) are recognised first: create (and then draw the new
character), list, show, find a pose, and follow-ups on the last turn (`follow_ups.py`).
"""

from __future__ import annotations

import re
from dataclasses import replace

from pydantic import ValidationError

from assistant.planners import extract
from assistant.planners import intents as it
from assistant.planners import vocabulary as v
from assistant.planners.base import Plan, PlannerContext
from assistant.planners.clauses import Attrs, parts_of
from assistant.planners.reader import Reader, shared_reader, take_similar
from assistant.planners.resolve import (
    Resolved,
    compose_reply,
    match_character,
    resolve_call,
    unknown_note,
)
from assistant.planners.rule_types import Request
from assistant.planners.tokens import Tokens, name_forms
from posebank.lexicon import posture_of
from tools.generation.toolbox import MAX_COUNT, validate_args


def parse(
    text: str,
    context: PlannerContext,
    pronouns: list[str] | None = None,
    reader: Reader | None = None,
) -> Request:
    """The request's parts; `pronouns` are the characters 'her' and 'them' stand for; `reader`
    reads the actions and postures the rules do not know."""
    tokens = Tokens.of(text)
    request = Request()
    extract.take_seed(tokens)
    extract.take_names(tokens, context.characters)
    extract.take_pronouns(tokens, pronouns or [])
    extract.take_image_ref(tokens)
    extract.take_markers(tokens)
    # Before counts, so "every single character" is not a count of one.
    extract.take_groups(tokens)
    extract.take_counts(tokens)
    extract.take_pose(tokens)
    extract.take_fuzzy_names(tokens, context.characters, request.notes)
    extract.take_unknown_names(tokens)
    extract.take_pose_word_names(tokens)
    take_similar(tokens, reader)
    request.parts, request.before, request.after = parts_of(tokens)
    seeds, images = tokens.found("seed"), tokens.found("image")
    request.seed = seeds[0].value if seeds else None
    request.image_ref = images[0].value if images else None
    request.excluded = [m.value for m in tokens.found("except")]
    request.unknown = [m.value for m in tokens.found("unknown")]
    request.bad_counts = [m.value for m in tokens.found("bad_count")]
    request.pronoun = re.search(it.PRONOUN_PATTERN, tokens.text()) is not None
    return request


def _pronoun_names(context: PlannerContext) -> list[str]:
    """Who 'her' and 'them' are when they are not the last drawing ("create ren" → "draw her")."""
    if not context.mentioned:
        return []
    if context.previous is None:
        return list(context.mentioned)
    drawn = {
        name
        for call in context.previous.all_calls
        for name in [call.args.get("character"), *((call.resolved or {}).get("characters") or [])]
    }
    return [] if set(context.mentioned) <= drawn else list(context.mentioned)


LIST_VERBS = {"list", "show", "see", "display", "view", "tell", "which", "what", "who", "name"}


def _asks_for_the_list(request: Request, text: str, norm: str, reader: Reader | None) -> bool:
    """'list all characters' lists them; 'show all characters waving' draws them. A question the
    patterns miss ("what's in my roster?") lists them when the reader reads it as one, and only
    where it names no one and asks for no pose, count or drawing (there is nothing to draw)."""
    whole = request.whole()
    if request.characters or whole.pose:
        return False
    words = set(" ".join(whole.scenes).split())
    if request.everyone and not (whole.count is None and words <= LIST_VERBS):
        return False
    if it.matches(it.LIST_PATTERNS, norm):
        return True
    # A request with a drawing verb ("draw", "draw something") asks for a drawing, however near
    # its few words come to a library question.
    drawing = any(word in v.DRAW_VERBS - LIST_VERBS for word in norm.split())
    if drawing or whole.count is not None or reader is None:
        return False
    return reader.read("intent", text) == "list"


def pose_and_prompt(attrs: Attrs) -> tuple[str | None, str]:
    prompt = ", ".join(attrs.scenes)
    if attrs.random:
        return None, prompt
    implied = [v.ACTION_POSTURE[a] for a in attrs.actions if a in v.ACTION_POSTURE]
    # "sleeping" lies; "on a sofa" sits, "in bed" lies
    posture = attrs.posture or (implied[0] if implied else posture_of(prompt))
    words = ([posture] if posture else []) + attrs.actions
    return " ".join(words) or None, prompt


SHARED = "shared"
# A chat request is a few sentences (the longest development case is 105 characters); the passes
# over its tokens grow faster than its length (100 KB of commas took minutes), so a longer one
# is refused in one line rather than left to hold the warm server.
MAX_REQUEST_CHARS = 2000


class RulePlanner:
    """`reader`: the embedder reader (by default the process's MiniLM one; None: rules alone)."""

    name = "rules"

    def __init__(self, reader: Reader | None | str = SHARED) -> None:
        self._reader = reader

    @property
    def reader(self) -> Reader | None:
        if self._reader == SHARED:
            self._reader = shared_reader()
        return self._reader  # type: ignore[return-value]

    def plan(self, text: str, context: PlannerContext) -> Plan:
        from assistant.planners import follow_ups

        if len(text) > MAX_REQUEST_CHARS:
            reply = (f"That request is {len(text):,} characters long; I read up to "
                     f"{MAX_REQUEST_CHARS:,}: split it into shorter ones.")  # fmt: skip
            return Plan(planner=self.name, reply=reply, calls=[])
        norm = Tokens.of(text).text()
        resolved = Resolved()
        previous = context.previous
        if it.asks_to_delete(norm, context.characters):
            resolved.notes.append(it.DELETE_NOTE)
            return self._plan(resolved)
        if it.matches(it.CREATE_PATTERNS, norm):
            self._create(text, context, resolved)
            return self._plan(resolved)
        request = parse(text, context, _pronoun_names(context), self.reader)
        whole = request.whole()
        no_target = not request.named
        if previous and no_target and re.search(it.UNDO_PATTERN, norm):
            follow_ups.undo(self, context, resolved)
        elif previous and no_target and (edit := it.edit_term(norm)):
            follow_ups.edit(self, edit, context, resolved)
        elif _asks_for_the_list(request, text.lower(), norm, self.reader):
            self.add(resolved, "list_characters", {}, context)
        elif no_target and it.matches(it.SHOW_PATTERNS, norm) and not whole.pose:
            follow_ups.show(self, whole.count, context, resolved)
        elif no_target and it.matches(it.FIND_POSE_PATTERNS, norm) and not whole.random:
            query = whole.pose or ", ".join(whole.scenes) or "standing"
            self.add(resolved, "find_pose", {"query": query, "k": whole.count or 3}, context)
        elif (
            previous
            and len(request.parts) <= 1
            and (
                it.matches(it.FOLLOW_UP_PATTERNS, norm)
                or request.image_ref is not None
                or (request.pronoun and no_target)
            )
        ):
            follow_ups.follow_up(self, request, norm, context, resolved)
        else:
            self.draw(request, context, resolved)
        return self._plan(resolved)

    def _plan(self, resolved: Resolved) -> Plan:
        reply = compose_reply(resolved, fallback="I did not find anything to do in that.")
        return Plan(planner=self.name, reply=reply, calls=resolved.calls)

    def add(self, resolved: Resolved, tool: str, args: dict, context: PlannerContext) -> None:
        try:
            validated = validate_args(tool, args)
        except ValidationError as error:
            resolved.notes.append(f"I could not plan {tool}: {error.errors()[0]['msg']}.")
            return
        resolve_call(tool, validated, context, resolved)

    def _create(self, text: str, context: PlannerContext, resolved: Resolved) -> None:
        """A new character, and the drawing the same message asks of it ("then draw her")."""
        creation, rest = it.split_creation(text)
        args = it.creation_args(creation)
        self.add(resolved, "create_character", args, context)
        if not rest:
            return
        name = args["name"]
        if not name:
            resolved.notes.append("Give the new character a name to draw it in the same request.")
            return
        known = replace(context, characters=[*context.characters, name], previous=None)
        self.draw(parse(rest, known, [name], self.reader), known, resolved)

    def draw(self, request: Request, context: PlannerContext, resolved: Resolved) -> None:
        resolved.notes.extend(request.notes)
        if request.bad_counts:
            count = request.bad_counts[0]
            shown = str(count) if len(str(count)) <= 12 else f"{str(count)[:12]}..."
            resolved.notes.append(f"I draw 1 to {MAX_COUNT} images at a time, not {shown}.")
            return
        for word in request.unknown:
            match = match_character(name_forms(word)[-1], context.characters)
            resolved.notes.append(unknown_note(word, match, context.characters))
        entries = request.entries(context.characters)
        if not entries:
            if not request.unknown:
                names = ", ".join(context.characters) or "none yet"
                resolved.notes.append(f"Who should I draw? Your characters: {names}.")
            return
        for who, pose, prompt, count in _grouped(entries):
            if who == "all" or len(who) > 1:
                args = {"characters": who, "pose": pose, "prompt": prompt, "count": count}
                self.add(resolved, "batch", args, context)
            else:
                args = {"character": who[0], "pose": pose, "prompt": prompt, "count": count,
                        "seed": request.seed}  # fmt: skip
                self.add(resolved, "generate", args, context)


def _grouped(entries: list[tuple[list[str] | str, Attrs]]):
    """Characters drawn the same way share one call; each different one gets its own."""
    calls: dict[tuple, list[str] | str] = {}
    for who, attrs in entries:
        pose, prompt = pose_and_prompt(attrs)
        key = (pose, prompt, attrs.count or 1, who == "all")
        if who == "all" or key not in calls:
            calls[key if who != "all" else (*key, len(calls))] = who if who == "all" else list(who)
        else:
            existing = calls[key]
            assert isinstance(existing, list)
            existing += [name for name in who if name not in existing]
    return [(who, key[0], key[1], key[2]) for key, who in calls.items()]
